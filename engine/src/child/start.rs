//! From the finished root to the command: terminal, descriptors, limits,
//! the working directory, the user and capabilities, the wait for an OCI
//! `start`, the startContainer hooks, then Landlock and seccomp last.

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::prctl;
use nix::sys::signal::Signal;

use crate::child::exec::{cstrings, exec, find_program, prepare_signals_for_exec};
use crate::child::options::{preserved_fds, ChildOptions};
use crate::child::reaper;
use crate::inroot::{Make, Root};
use crate::protocol::{io_errno, Channel, ChildFailure, Stage, ToParent};
use crate::security::apply::{
    drop_bounding, install_seccomp, set_working_caps, switch_user_and_capabilities,
};
use crate::spec::process::ProcessPlan;
use crate::stop_at::{stop_if, StopPoint};
use crate::sys;

type Step<T = ()> = Result<T, ChildFailure>;

/// From the finished rootfs to exec: terminal, limits, user, capabilities,
/// working directory. Shared by `run` and `exec`.
pub fn start_process(
    p: &ProcessPlan,
    chan: &Channel,
    opts: &ChildOptions,
    bounding_dropped: bool,
    start_hooks: Option<(Vec<crate::host::hooks::HookPlan>, String)>,
) -> Step<Infallible> {
    take_terminal(p, chan)?;
    close_inherited(chan, opts)?;
    set_limits(p)?;
    // The working directory is resolved inside the final root by the
    // kernel. Created as root, before the switch, so a workdir in a
    // root-owned tree can appear (Docker does the same); entering it is
    // checked as the user.
    let root = Root::open(Path::new("/"))
        .map_err(|e| ChildFailure::new(Stage::Workdir, e, Some("/".into())))?;
    let _ = root.lookup_or_make(Path::new(&p.cwd), Make::Directory);
    if !bounding_dropped {
        drop_bounding(p)?;
    }
    // Without no_new_privs the kernel takes a filter only from a process
    // with CAP_SYS_ADMIN: keep it through the user switch, so the filter
    // can still go on last and constrain only the command (a profile need
    // not list what kennel calls to set up), and drop it right after.
    let admin = caps::Capability::CAP_SYS_ADMIN;
    let kept_admin = !p.no_new_privs
        && p.seccomp.is_some()
        && !(p.permitted.contains(&admin) && p.effective.contains(&admin));
    switch_user_and_capabilities(p, kept_admin)?;
    enter_workdir(&root, &p.cwd)?;
    drop(root);
    if p.no_new_privs {
        prctl::set_no_new_privs().map_err(|e| ChildFailure::new(Stage::Capabilities, e, None))?;
    }
    // A change of credentials clears the parent-death signal: set it again.
    if !opts.outlives_parent {
        prctl::set_pdeathsig(Signal::SIGKILL)
            .map_err(|e| ChildFailure::new(Stage::User, e, None))?;
    }
    exit_if_parent_gone(chan);
    for fd in preserved_fds(opts.preserve_fds) {
        sys::set_cloexec(fd, false)
            .map_err(|e| ChildFailure::new(Stage::Exec, e, Some(format!("fd {fd}"))))?;
    }

    let program = find_program(p)?;
    let argv = cstrings(&p.args)?;
    let envp = cstrings(&p.env)?;
    if let Some(fifo) = &opts.start_fifo {
        wait_for_start(chan, fifo)?;
    }
    // In the container's root, as its user, just before the command.
    if let Some((hooks, state)) = &start_hooks {
        run_hooks("startContainer", hooks, state)?;
    }
    stop_if(opts.stop_at, StopPoint::BeforeExec);
    // Last before the command: Landlock, then the seccomp filter, so none
    // of kennel's own set-up runs under the container's profile.
    crate::security::landlock::restrict_self(p.landlock.as_ref())?;
    if !opts.init {
        prepare_signals_for_exec()?;
    }
    install_seccomp(p)?;
    if kept_admin {
        set_working_caps(p, None)?;
    }
    if opts.init {
        reaper::run_as_init(
            &opts.single,
            &program,
            &argv,
            &envp,
            opts.activation.as_ref(),
        )
    } else {
        let envp = crate::host::socket_activation::environment(&envp, opts.activation.as_ref());
        Err(exec(&program, &argv, &envp, &p.args[0]))
    }
}

/// Gives the process its own terminal (`process.terminal`), or takes it
/// out of the caller's session.
fn take_terminal(p: &ProcessPlan, chan: &Channel) -> Step {
    if p.terminal {
        let master = open_terminal()?;
        chan.send_to_parent(&ToParent::PtyMaster, Some(master.as_raw_fd()))
            .map_err(|e| ChildFailure::new(Stage::Terminal, e, None))?;
    } else {
        // Out of the caller's session, so the caller's terminal is never our
        // controlling terminal: TIOCSTI on it is refused (bubblewrap's
        // CVE-2017-5226). It stays usable as plain stdio.
        nix::unistd::setsid()
            .map_err(|e| ChildFailure::new(Stage::Terminal, e, Some("setsid".into())))?;
    }
    Ok(())
}

/// Closes every descriptor but the channel, stdio, the start fifo and the
/// preserved fds, before anything of the container's can run.
fn close_inherited(chan: &Channel, opts: &ChildOptions) -> Step {
    // From here on code of the container's may run (in an init that never
    // execs, or through a working directory under /proc/self/fd): only the
    // channel, stdio and the preserved fds may exist.
    let keep: Vec<RawFd> = [0, 1, 2, chan.raw_fd()]
        .into_iter()
        .chain(opts.start_fifo.as_ref().map(|f| f.as_raw_fd()))
        .chain(preserved_fds(opts.preserve_fds))
        .collect();
    sys::close_fds_except(&keep).map_err(|e| {
        ChildFailure::new(Stage::Exec, e, None).with_detail("closing the runner's descriptors")
    })
}

/// process.rlimits, oomScoreAdj and umask.
fn set_limits(p: &ProcessPlan) -> Step {
    for (resource, soft, hard) in &p.rlimits {
        nix::sys::resource::setrlimit(*resource, *soft, *hard).map_err(|e| {
            ChildFailure::new(
                Stage::Rlimit,
                e,
                Some(format!("{resource:?}={soft}:{hard}")),
            )
        })?;
    }
    if let Some(adj) = p.oom_score_adj {
        set_oom_score_adj(adj)?;
    }
    if let Some(mask) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// The OCI lifecycle's pause between create and start: the runner is told
/// we are ready (and exits), then a byte on the fifo from `start` lets us
/// exec. From here the runner is gone, so we must not die with it.
fn wait_for_start(chan: &Channel, fifo: &OwnedFd) -> Step {
    let err = |e: Errno| ChildFailure::new(Stage::Exec, e, None).with_detail("waiting for start");
    prctl::set_pdeathsig(None).map_err(err)?;
    // Until it execs, this process is the runtime's code and its
    // /proc/PID/exe the runtime's binary on the host, which a process
    // `exec` puts into the container could open and later rewrite (runc's
    // CVE-2019-5736). Not dumpable, it is out of reach of everyone without
    // CAP_SYS_PTRACE where the binary was executed; the exec resets it.
    prctl::set_dumpable(false).map_err(err)?;
    chan.send_to_parent(&ToParent::Ready, None).map_err(err)?;
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fifo.as_fd(), &mut byte) {
            Ok(1) => break,
            Err(Errno::EINTR) => continue,
            Ok(_) => return Err(err(Errno::EPIPE)),
            Err(e) => return Err(err(e)),
        }
    }
    // Closed by the exec (close-on-exec), or by the init's clean-up.
    Ok(())
}

/// process.oomScoreAdj. Raising it is always allowed; lowering it below
/// what kennel was started with needs CAP_SYS_RESOURCE of the host.
fn set_oom_score_adj(adj: i32) -> Step {
    let path = "/proc/self/oom_score_adj";
    std::fs::write(path, adj.to_string()).map_err(|e| {
        let f = ChildFailure::new(
            Stage::Rlimit,
            io_errno(&e),
            Some(format!("process.oomScoreAdj {adj}")),
        );
        match std::fs::read_to_string(path) {
            Ok(now) if e.kind() == std::io::ErrorKind::PermissionDenied => f.with_detail(format!(
                "lowering it below kennel's own ({}) needs privilege; ask for {} or more",
                now.trim(),
                now.trim()
            )),
            _ => f,
        }
    })
}

/// Changes to `cwd`, looked up inside the root (no magic link, no way out),
/// and checks where that landed: a directory outside the root (reached
/// through an fd the container was given) is refused, as runc does.
fn enter_workdir(root: &Root, cwd: &str) -> Step {
    let err = |e: Errno| ChildFailure::new(Stage::Workdir, e, Some(cwd.to_string()));
    let dir = root
        .open_with(Path::new(cwd), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| match e {
            Errno::ELOOP | Errno::EXDEV => err(e).with_detail(
                "a symlink loop, or a link through /proc/self/fd that could lead outside the container's root; refused",
            ),
            e => err(e),
        })?;
    nix::unistd::fchdir(&dir).map_err(err)?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(
            ChildFailure::new(Stage::Workdir, Errno::EXDEV, Some(cwd.to_string()))
                .with_detail("it lies outside the container's root; refused"),
        ),
    }
}

/// Opens a pty in the container's own devpts and makes it our stdio and
/// controlling terminal. Returns the master for the parent.
fn open_terminal() -> Step<OwnedFd> {
    let err = |e: Errno, what: &str| ChildFailure::new(Stage::Terminal, e, Some(what.to_string()));
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| err(e, "/dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(|e| err(e, "grantpt"))?;
    nix::pty::unlockpt(&master).map_err(|e| err(e, "unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| err(e, "ptsname"))?;
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err(e, &name))?;
    // Size the pty from the runner's terminal (still our stdin) before the
    // command can ask; the parent keeps it in step on SIGWINCH.
    if let Some(ws) = sys::window_size(std::io::stdin().as_fd())
        .or_else(|| sys::window_size(std::io::stdout().as_fd()))
    {
        let _ = sys::set_window_size(slave.as_fd(), &ws);
    }
    nix::unistd::setsid().map_err(|e| err(e, "setsid"))?;
    sys::set_controlling_tty(slave.as_fd()).map_err(|e| err(e, "TIOCSCTTY"))?;
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target).map_err(|e| err(e, "dup2"))?;
    }
    drop(slave);
    let raw: OwnedFd = master.into();
    Ok(raw)
}

pub fn run_hooks(point: &str, hooks: &[crate::host::hooks::HookPlan], state: &str) -> Step {
    crate::host::hooks::run(point, hooks, state).map_err(|e| {
        ChildFailure::new(Stage::Hooks, Errno::UnknownErrno, None).with_detail(format!("{e:#}"))
    })
}

/// Exits if the parent is gone. PR_SET_PDEATHSIG only covers a parent that
/// dies after it is set; one killed before (or while our credentials
/// changed, which clears it) has closed its end of the channel, and we
/// hold no other copy.
pub fn exit_if_parent_gone(chan: &Channel) {
    if chan.peer_gone() {
        sys::exit_now(125);
    }
}
