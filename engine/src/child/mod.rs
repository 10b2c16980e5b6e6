//! The child (container init) side: runs in the new namespaces from the
//! moment clone3 returns until it execs the command. Every failure goes back
//! to the parent as a `ChildFailure`; the child then exits.
//!
//! Owns what runs in the new namespaces: this file's set-up, the root
//! filesystem (`rootfs`, with `copy_up` for tmpcopyup), the init that
//! reaps and forwards signals (`reaper`) and the terminal (`tty`).
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec`, `host`,
//! `security`, `net` and `plan`.

pub(crate) mod copy_up;
pub(crate) mod reaper;
pub(crate) mod rootfs;
pub(crate) mod tty;

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::prctl;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{Gid, Uid};

use crate::inroot::{Make, Root};
use crate::net::netns::{Maker, Netns};
use crate::plan::config::Config;
use crate::protocol::{
    io_errno, namespace_failure, Channel, ChildFailure, Stage, ToChild, ToParent,
};
use crate::spec::process::ProcessPlan;
use crate::stop_at::{stop_if, StopPoint};
use crate::sys;

/// Runner behaviour the child needs besides the config.
pub struct ChildOptions {
    pub init: bool,
    pub preserve_fds: u32,
    /// Of the preserved fds, the first ones are sockets systemd passed: the
    /// command gets their `LISTEN_*` variables.
    pub activation: Option<crate::host::socket_activation::Activation>,
    /// The mount, uts and ipc namespaces the child creates itself, before
    /// waiting for the maps (clone3 made the user and pid ones; the network
    /// and cgroup ones have their own paths).
    pub unshare: CloneFlags,
    /// Unshare a cgroup namespace once the maps are written (by then the
    /// child sits in its cgroup leaf, so the namespace is rooted there).
    pub new_cgroupns: bool,
    /// Set when kennel-idmap writes the maps: our copy of the runner's end of
    /// its socket, on which it sends one byte once they are written. The
    /// maps take long to arrive then (the helper is starting up), and the
    /// runner starts no network namespace maker: we make it while we wait.
    pub helper_socket: Option<UnixStream>,
    /// The signals the runner found ignored (bit N-1 for signal N), which
    /// stay ignored across execve unless reset: the only ones that are not
    /// at their default already (the runner installs no handler, and
    /// execve resets handlers).
    pub ignored_signals: u64,
    /// This process has one thread (it may fork the `--init` command).
    pub single: sys::SingleThreaded,
    /// The OCI lifecycle: once ready, say so and wait for `start` to write
    /// a byte to this fifo (opened read-write, so it never blocks on open
    /// and `start` finds a reader while we live).
    pub start_fifo: Option<OwnedFd>,
    /// The runner exits before the command ends (OCI `create`, a detached
    /// `exec`): the command must not die with it.
    pub outlives_parent: bool,
    /// The runner's uid or gid has no id in the container's user namespace
    /// (root running a bundle whose maps leave host root out): once the
    /// maps are written, become that namespace's root, as runc does, so
    /// that what the child makes has an owner the filesystem can record.
    pub become_root: bool,
    /// Test only: pause at this point (see `stop_at`).
    pub stop_at: Option<StopPoint>,
}

type Step<T = ()> = Result<T, ChildFailure>;

/// Entry point after clone for `run`, with the maker of our network
/// namespace when the runner started one. Never returns.
pub fn run(cfg: &Config, chan: Channel, opts: &ChildOptions, maker: Option<Maker>) -> ! {
    report_and_exit(&chan, setup_and_exec(cfg, &chan, opts, maker))
}

/// Entry point after the fork for `exec`, already in the container's
/// namespaces. Never returns.
pub fn run_process(p: &ProcessPlan, chan: Channel, opts: &ChildOptions) -> ! {
    sys::reset_signals_default(opts.ignored_signals);
    let keys_filter = needs_keys_filter(p, opts, false);
    let started =
        isolate_keys(keys_filter).and_then(|()| start_process(p, &chan, opts, false, None));
    report_and_exit(&chan, started)
}

fn report_and_exit(chan: &Channel, result: Step<Infallible>) -> ! {
    let failure = match result {
        Ok(never) => match never {},
        Err(f) => f,
    };
    // A runner that has gone (it created the container for another to
    // start) cannot say it: the container's stderr is where it is read.
    if chan
        .send_to_parent(&ToParent::Failed(failure.clone()), None)
        .is_err()
    {
        let line = format!("kennel: {failure}\n");
        let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
    }
    sys::exit_now(match failure.errno() {
        Errno::ENOENT if failure.stage == Stage::Exec => 127,
        Errno::EACCES | Errno::ENOEXEC | Errno::EPERM if failure.stage == Stage::Exec => 126,
        _ => 125,
    });
}

fn setup_and_exec(
    cfg: &Config,
    chan: &Channel,
    opts: &ChildOptions,
    maker: Option<Maker>,
) -> Step<Infallible> {
    // Die with the runner. Set before waiting, so a parent that dies from
    // here on takes us with it; one that died before makes recv see EOF.
    prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| ChildFailure::new(Stage::WaitForMaps, e, None))?;
    exit_if_parent_gone(chan);
    stop_if(opts.stop_at, StopPoint::ChildBorn);
    // Here, while the parent writes the maps, rather than just before exec.
    sys::reset_signals_default(opts.ignored_signals);
    isolate_keys(needs_keys_filter(
        &cfg.process,
        opts,
        cfg.hooks.during_create(),
    ))?;
    // Unmapped, we still hold every capability in our new user namespace,
    // which is all that creating namespaces and naming the host take: done
    // here, it overlaps the parent's map writing. The network namespace is
    // made beside us by the runner's maker (see `netns`), or by us.
    let mut netns = match cfg.new_net() {
        true => Some(Netns::start(maker)?),
        false => None,
    };
    // One at a time, so a failure names the namespace (and its limit).
    for flag in opts.unshare.iter() {
        nix::sched::unshare(flag).map_err(|e| namespace_failure(e, flag))?;
    }
    if let Some(name) = &cfg.hostname {
        nix::unistd::sethostname(name)
            .map_err(|e| ChildFailure::new(Stage::Hostname, e, Some(name.clone())))?;
    }
    if !maps_written(chan, opts.helper_socket.as_ref()) {
        // The parent failed to write the maps (and says why) or died.
        sys::exit_now(125);
    }
    stop_if(opts.stop_at, StopPoint::ChildMapped);
    if opts.become_root {
        become_namespace_root()?;
    }
    if opts.new_cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| namespace_failure(e, CloneFlags::CLONE_NEWCGROUP))?;
    }
    // The network comes up before anything of the container's can run
    // (hooks included), so its first connect() finds a route; it is
    // asked for here, and the rootfs is built while it comes.
    let mut network_pending = false;
    if cfg.pasta.is_some() || cfg.bridge.is_some() {
        if let Some(n) = netns.as_mut() {
            n.join()?;
        }
        ask_for_network(chan)?;
        network_pending = true;
    }
    let mut network_up = || match std::mem::take(&mut network_pending) {
        true => wait_for_network(chan),
        false => Ok(()),
    };
    // sysfs shows the network namespace it is mounted in: join before. The
    // namespace may still be on its way, so first do what needs nothing
    // further: shrink the bounding set.
    let mut bounding_dropped = false;
    let mut join_netns = || {
        if !bounding_dropped {
            drop_bounding(&cfg.process)?;
            bounding_dropped = true;
        }
        netns.as_mut().map_or(Ok(()), Netns::join)
    };
    // Written through the runner's /proc, which shows the namespaces of
    // the process that opens a file: the network one must be joined first.
    // Not while pasta or kennel-net configures the namespace.
    if !cfg.sysctl.is_empty() {
        join_netns()?;
        network_up()?;
        write_sysctls(&cfg.sysctl)?;
    }
    // Hooks see the namespaces complete: the network one joined too.
    let hook_state = match cfg.hooks.during_create() {
        true => {
            join_netns()?;
            network_up()?;
            let state = hooks_ran(chan)?;
            run_hooks("createContainer", &cfg.hooks.create_container, &state)?;
            Some(state)
        }
        false => None,
    };
    crate::child::rootfs::setup(cfg, &mut join_netns)?;
    // A spec without a sysfs mount still gets its network namespace.
    if let Some(mut n) = netns {
        n.join()?;
    }
    network_up()?;
    stop_if(opts.stop_at, StopPoint::RootBuilt);

    let start_hooks = hook_state.map(|s| (cfg.hooks.start_container.clone(), s));
    start_process(&cfg.process, chan, opts, bounding_dropped, start_hooks)
}

/// Asks the runner to run the createRuntime hooks and waits until it has;
/// returns the state document for the container's own hooks.
fn hooks_ran(chan: &Channel) -> Step<String> {
    let err = |e: Errno| ChildFailure::new(Stage::Hooks, e, None);
    chan.send_to_parent(&ToParent::RunHooks, None)
        .map_err(err)?;
    match chan.recv_to_child() {
        Ok(Some(ToChild::HooksRan(state))) => Ok(state),
        // The runner says why (a hook failed) and kills us.
        Ok(_) => sys::exit_now(125),
        Err(e) => Err(err(e)),
    }
}

/// Asks the runner to start pasta for our network namespace, or to have
/// kennel-net link it to a bridge, and waits until what the rootfs takes
/// from it exists. The request carries a NETLINK_ROUTE socket made here:
/// kennel-net configures eth0 through it, and pasta's keeper watches
/// through it for the routes that say the interface is configured.
fn ask_for_network(chan: &Channel) -> Step {
    let err = |e: Errno| ChildFailure::new(Stage::UserNetwork, e, None);
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Netlink,
        nix::sys::socket::SockType::Raw,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        nix::sys::socket::SockProtocol::NetlinkRoute,
    )
    .map_err(err)?;
    chan.send_to_parent(
        &ToParent::StartNetwork,
        Some(std::os::fd::AsRawFd::as_raw_fd(&socket)),
    )
    .map_err(err)?;
    drop(socket);
    wait_for(chan, |m| matches!(m, ToChild::NetworkStarted))
}

/// Waits until the runner says the interface is configured.
fn wait_for_network(chan: &Channel) -> Step {
    wait_for(chan, |m| matches!(m, ToChild::NetworkUp))
}

fn wait_for(chan: &Channel, wanted: impl Fn(&ToChild) -> bool) -> Step {
    match chan.recv_to_child() {
        Ok(Some(m)) if wanted(&m) => Ok(()),
        // The runner says why (pasta failed) and kills us.
        Ok(_) => sys::exit_now(125),
        Err(e) => Err(ChildFailure::new(Stage::UserNetwork, e, None)),
    }
}

fn run_hooks(point: &str, hooks: &[crate::host::hooks::HookPlan], state: &str) -> Step {
    crate::host::hooks::run(point, hooks, state).map_err(|e| {
        ChildFailure::new(Stage::Hooks, Errno::UnknownErrno, None).with_detail(format!("{e:#}"))
    })
}

/// linux.sysctl, each already checked to belong to a namespace of the
/// container's own.
fn write_sysctls(sysctl: &[(String, String)]) -> Step {
    for (key, value) in sysctl {
        let err = |e: Errno| ChildFailure::new(Stage::Sysctl, e, Some(format!("{key}={value}")));
        // Their files answer only the host's root; the system calls answer
        // the owner of the uts namespace, which we are.
        match key.as_str() {
            "kernel.hostname" => nix::unistd::sethostname(value).map_err(err)?,
            "kernel.domainname" => sys::set_domainname(value).map_err(err)?,
            _ => {
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                std::fs::write(&path, value).map_err(|e| err(io_errno(&e)))?;
            }
        }
    }
    Ok(())
}

/// Out of reach of the caller's keys: a new, empty session keyring, then
/// a seccomp filter that refuses the key management system calls (the
/// container's root is the caller's uid on the host, so the caller's user
/// keyring, found by its serial number, would be its to link and read).
/// Done as early as it can be, while the parent writes the maps: the
/// kernel studies a new filter against every system call number, which is
/// the costliest part. `filter` false leaves the filter to the process's
/// own, which includes it.
fn isolate_keys(filter: bool) -> Step {
    sys::join_new_session_keyring().map_err(|e| {
        let f = ChildFailure::new(Stage::Keyring, e, None);
        match e {
            Errno::EDQUOT => f.with_detail("your key quota is used up; raise it, e.g. `sudo sysctl -w kernel.keys.maxkeys=2000 kernel.keys.maxbytes=200000`"),
            Errno::EPERM | Errno::EACCES => f.with_detail("a seccomp filter around kennel (a container's default profile, say) refuses keyctl; allow keyctl there"),
            _ => f,
        }
    })?;
    if !filter {
        return Ok(());
    }
    // SPEC_ALLOW: without it the kernel turns on its speculation
    // mitigations (SSBD, IBPB at every switch) for any task with a filter,
    // slowing the container's whole workload; this filter only narrows what
    // the container may ask, and it had none of those mitigations before.
    let spec_allow = 1 << 2;
    sys::install_seccomp_filter(&crate::security::seccomp::keys_program(), spec_allow).map_err(
        |e| {
            ChildFailure::new(Stage::Keyring, e, None)
                .with_detail("installing the seccomp filter that refuses keyctl and TIOCSTI")
        },
    )
}

/// Whether the keys filter goes in early, on its own: unless the process's
/// filter includes it and nothing of the container's (a hook, or whoever
/// the start waits for) runs before that one is installed, just before
/// exec. One filter instead of two is the cheaper start.
fn needs_keys_filter(p: &ProcessPlan, opts: &ChildOptions, hooks_in_container: bool) -> bool {
    let includes = p.seccomp.as_ref().is_some_and(|f| f.includes_keys);
    !includes || hooks_in_container || opts.start_fifo.is_some()
}

/// Installs linux.seccomp's filter, compiled by the parent.
fn install_seccomp(p: &ProcessPlan) -> Step {
    let Some(filter) = &p.seccomp else {
        return Ok(());
    };
    sys::install_seccomp_filter(&filter.program, filter.flags).map_err(|e| {
        let f = ChildFailure::new(Stage::Seccomp, e, None);
        match e {
            Errno::EINVAL => f.with_detail("the kernel refused the filter or one of linux.seccomp.flags; remove the flags it lacks"),
            Errno::EACCES => f.with_detail("the process has neither no_new_privs nor CAP_SYS_ADMIN; set process.noNewPrivileges"),
            _ => f,
        }
    })
}

/// Exits if the parent is gone. PR_SET_PDEATHSIG only covers a parent that
/// dies after it is set; one killed before (or while our credentials
/// changed, which clears it) has closed its end of the channel, and we
/// hold no other copy.
fn exit_if_parent_gone(chan: &Channel) {
    if chan.peer_gone() {
        sys::exit_now(125);
    }
}

/// Takes uid and gid 0 of our user namespace. Unmapped, we still hold our
/// capabilities there, but the kernel refuses to create a file for an
/// owner it cannot write down (EOVERFLOW); 0 keeps them, being root there.
fn become_namespace_root() -> Step {
    let root = |e: Errno, what: &str| {
        ChildFailure::new(Stage::User, e, Some(what.to_string()))
            .with_detail("becoming root of the user namespace, the runner's ids being unmapped")
    };
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|e| root(e, "gid 0"))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|e| root(e, "uid 0"))
}

/// The fds `--preserve-fds N` passes: 3 to 3+N-1 (N is checked against the
/// fd limit before the clone).
pub fn preserved_fds(n: u32) -> impl Iterator<Item = RawFd> {
    (3..3 + i64::from(n)).map(|fd| fd as RawFd)
}

/// Waits until the maps are written: the parent says so, or kennel-idmap
/// does on `helper_socket`. False if the parent died, or the helper ended
/// without writing them (the parent reports why).
fn maps_written(chan: &Channel, helper_socket: Option<&UnixStream>) -> bool {
    let Some(helper) = helper_socket else {
        return matches!(chan.recv_to_child(), Ok(Some(ToChild::MapsWritten)));
    };
    loop {
        let mut fds = [
            PollFd::new(chan.as_fd(), PollFlags::POLLIN),
            PollFd::new(helper.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) => {}
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        if ready(1) {
            let mut byte = [0u8; 1];
            return matches!(nix::unistd::read(helper.as_fd(), &mut byte), Ok(1) if byte == *b"k");
        }
        if ready(0) {
            return matches!(chan.recv_to_child(), Ok(Some(ToChild::MapsWritten)));
        }
    }
}

/// From the finished rootfs to exec: terminal, limits, user, capabilities,
/// working directory. Shared by `run` and `exec`.
pub fn start_process(
    p: &ProcessPlan,
    chan: &Channel,
    opts: &ChildOptions,
    bounding_dropped: bool,
    start_hooks: Option<(Vec<crate::host::hooks::HookPlan>, String)>,
) -> Step<Infallible> {
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
    })?;
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

/// The command starts with every signal at its default disposition (reset
/// when the child started, see `ChildOptions::ignored_signals`) and none
/// blocked, whatever the caller ignored or blocked (and whatever the
/// runner blocked to forward them).
pub fn prepare_signals_for_exec() -> Step {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ChildFailure::new(Stage::Exec, e, None))
}

pub fn exec(program: &CString, argv: &[CString], envp: &[CString], shown: &str) -> ChildFailure {
    let errno = match nix::unistd::execve(program, argv, envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    ChildFailure::new(Stage::Exec, errno, Some(shown.to_string()))
}

fn cstrings(items: &[String]) -> Step<Vec<CString>> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| ChildFailure::new(Stage::Exec, Errno::EINVAL, Some(s.clone())))
        })
        .collect()
}

/// Looks the command up in the container's PATH (the process env's).
fn find_program(p: &ProcessPlan) -> Step<CString> {
    let cmd = &p.args[0];
    let path = if cmd.contains('/') {
        PathBuf::from(cmd)
    } else {
        let search = p
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::DEFAULT_PATH);
        let mut found = None;
        // A name that is there but cannot be reached (a symlink loop, a
        // directory we may not search) is reported as itself, as execvp
        // does, not as missing.
        let mut unreachable = None;
        for dir in search.split(':').filter(|d| !d.is_empty()) {
            let candidate = Path::new(dir).join(cmd);
            match std::fs::metadata(&candidate) {
                Ok(meta) if meta.is_file() => {
                    found = Some(candidate);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    if !matches!(errno, Errno::ENOENT | Errno::ENOTDIR) && unreachable.is_none() {
                        unreachable = Some((candidate, errno));
                    }
                }
            }
        }
        match (found, unreachable) {
            (Some(f), _) => f,
            (None, Some((candidate, errno))) => {
                return Err(ChildFailure::new(
                    Stage::Exec,
                    errno,
                    Some(candidate.to_string_lossy().into_owned()),
                )
                .with_detail(format!(
                    "{}, looking it up on the container's PATH",
                    errno.desc()
                )))
            }
            (None, None) => {
                return Err(
                    ChildFailure::new(Stage::Exec, Errno::ENOENT, Some(cmd.clone()))
                        .with_detail(format!("not found in the container's PATH ({search})")),
                )
            }
        }
    };
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| ChildFailure::new(Stage::Exec, Errno::EINVAL, Some(cmd.clone())))
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

fn cap_err(e: caps::errors::CapsError) -> ChildFailure {
    ChildFailure::new(Stage::Capabilities, Errno::EPERM, None).with_detail(e.to_string())
}

/// Sets the effective and permitted sets to the plan's, with `extra` in
/// both when one is kept for a while.
fn set_working_caps(p: &ProcessPlan, extra: Option<caps::Capability>) -> Step {
    use caps::CapSet;
    let set = |which: CapSet, list: Vec<caps::Capability>| {
        caps::set(None, which, &list.into_iter().collect()).map_err(cap_err)
    };
    // Effective must stay a subset of permitted at every step: shrink it first.
    let effective = p.effective.iter().filter(|c| p.permitted.contains(c));
    set(CapSet::Effective, effective.copied().chain(extra).collect())?;
    set(
        CapSet::Permitted,
        p.permitted.iter().copied().chain(extra).collect(),
    )
}

/// Shrinks the bounding set to the spec's. Done first: dropping needs
/// CAP_SETPCAP, which we still hold; the effective set (mounts, setns) is
/// untouched until `switch_user_and_capabilities`.
fn drop_bounding(p: &ProcessPlan) -> Step {
    for cap in caps::all() {
        if !p.bounding.contains(&cap) {
            sys::drop_bounding_cap(cap.index()).map_err(|e| {
                ChildFailure::new(Stage::Capabilities, e, Some(cap.to_string()))
                    .with_detail("dropping it from the bounding set")
            })?;
        }
    }
    Ok(())
}

/// Switches to the container user keeping the capabilities we still need,
/// then sets the final capability sets.
fn switch_user_and_capabilities(p: &ProcessPlan, keep_admin: bool) -> Step {
    use caps::CapSet;
    prctl::set_keepcaps(true).map_err(|e| ChildFailure::new(Stage::User, e, None))?;
    let user_err = |e: Errno, what: String| {
        let f = ChildFailure::new(Stage::User, e, Some(what));
        if e == Errno::EINVAL {
            f.with_detail("that id is not mapped into the container's user namespace")
        } else {
            f
        }
    };
    // setgroups is denied when only our own gid is mapped (no helper); then
    // there are no supplementary groups to set anyway.
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "allow")
        .unwrap_or(false);
    if setgroups_allowed {
        let mut groups: Vec<Gid> = p
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        if groups.is_empty() {
            groups.push(Gid::from_raw(p.gid));
        }
        nix::unistd::setgroups(&groups)
            .map_err(|e| user_err(e, format!("groups {:?}", p.additional_gids)))?;
    }
    // Checked when the plan was made; here too, since a miss would leave
    // the command root: (uid_t)-1 means "unchanged" to these calls.
    if p.uid == u32::MAX || p.gid == u32::MAX || p.additional_gids.contains(&u32::MAX) {
        return Err(user_err(Errno::EINVAL, format!("{}:{}", p.uid, p.gid)));
    }
    let gid = Gid::from_raw(p.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| user_err(e, format!("gid {}", p.gid)))?;
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| user_err(e, format!("uid {}", p.uid)))?;
    prctl::set_keepcaps(false).map_err(|e| ChildFailure::new(Stage::User, e, None))?;

    let set = |which: CapSet, list: &[caps::Capability]| {
        caps::set(None, which, &list.iter().copied().collect()).map_err(cap_err)
    };
    set_working_caps(p, keep_admin.then_some(caps::Capability::CAP_SYS_ADMIN))?;
    set(CapSet::Inheritable, &p.inheritable)?;
    caps::clear(None, CapSet::Ambient).map_err(cap_err)?;
    for cap in &p.ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(cap_err)?;
    }
    Ok(())
}
