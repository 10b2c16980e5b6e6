//! The engine: runs one OCI `Spec` as a rootless container.
//!
//! Parent side here; the child side is `child`, the rootfs is `rootfs`, and
//! the protocol between them is `protocol`.

mod cgroup;
pub mod child;
pub mod config;
pub mod inroot;
mod maps;
mod netns;
pub mod protocol;
mod reaper;
mod rootfs;
mod seccomp;
mod spec_fields;
mod tty;

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::idmap::Caller;
use crate::sdnotify::Notify;
use crate::spec_build::RunOptions;
use crate::state;
use crate::sys::{self, Forked};
use child::ChildOptions;
use config::Config;
use maps::MapWriter;
use netns::NetnsMaker;
use protocol::{Channel, ChildFailure, Received, Stage, ToChild, ToParent};
pub use tty::SavedTerminal;

/// Exit code for kennel's own failures (Docker's convention).
pub const EXIT_KENNEL: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// Signals the parent handles: the forwarded ones, SIGCHLD and SIGWINCH.
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in reaper::FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set
}

/// Blocks the handled signals and returns a signalfd for them. The child
/// unblocks every signal before exec.
pub fn block_signals() -> Result<SignalFd> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None)
        .context("cannot block signals")?;
    SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd")
}

/// Runs the container and returns the exit code kennel should exit with.
pub fn run(spec: &Spec, opts: &RunOptions, caller: &Caller) -> Result<i32> {
    let cfg = Config::from_spec(spec)?;
    let (fd_limit, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .context("cannot read the fd limit")?;
    if 3 + u64::from(opts.preserve_fds) > fd_limit {
        anyhow::bail!(
            "--preserve-fds {}: fds 3 to {} cannot exist, this process may have only {fd_limit} open (ulimit -n)",
            opts.preserve_fds,
            2 + u64::from(opts.preserve_fds)
        );
    }
    for fd in child::preserved_fds(opts.preserve_fds) {
        if !sys::fd_is_open(fd) {
            anyhow::bail!("--preserve-fds {}: fd {fd} is not open", opts.preserve_fds);
        }
    }
    let reservation = match &opts.name {
        Some(name) => Some(state::reserve(name)?),
        None => None,
    };
    // Nothing of ours may leak into the container or the helper; the
    // preserved fds are reopened for exec by the child.
    sys::cloexec_from(3).context("cannot mark fds close-on-exec")?;
    let sigfd = block_signals()?;
    // Before the clone: the container may change it from its first moment.
    let _terminal = (!cfg.process.terminal).then(tty::SavedTerminal::save);

    let status = |text: &str| {
        if let Some(n) = &opts.notify {
            n.status(text);
        }
    };
    status("creating the container's cgroup");
    let id = opts
        .name
        .clone()
        .unwrap_or_else(|| std::process::id().to_string());
    let leaf = LeafGuard(cgroup::place(&cfg, opts, &id)?);
    // After the placement: a helper still in a delegated unit's cgroup would
    // keep kennel from enabling controllers there (no internal processes).
    let mut map_writer = MapWriter::prepare(
        caller,
        &cfg.uid_map,
        &cfg.gid_map,
        opts.verbose,
        opts.helper.as_deref(),
    )?;
    let ignored_signals = check_before_clone()?;
    // After the placement (the maker must not sit in a delegated unit's
    // cgroup either), before the sync channel (which the maker must not
    // hold open). Without it, or with kennel-idmap, the child makes the
    // namespace itself (see `netns`).
    let mut netns_maker = match cfg.new_net() && !map_writer.uses_helper() {
        true => NetnsMaker::start()
            .inspect_err(|e| {
                if opts.verbose {
                    eprintln!(
                        "kennel: cannot fork the network namespace's maker ({}); the container makes it itself",
                        e.desc()
                    );
                }
            })
            .ok(),
        false => None,
    };
    let (parent_end, child_end) = Channel::pair().context("cannot create the sync socketpair")?;

    status("creating the container's namespaces");
    // clone3 makes only the user and pid namespaces (a pid namespace can
    // only be entered at birth). The child unshares the others itself, in
    // parallel with our map writing (kennel-idmap's start-up above all),
    // and its cgroup namespace once it sits in its leaf, so that namespace
    // is rooted there on either path below.
    let at_clone = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID;
    let flags = (cfg.clone_flags & at_clone).bits() as u64;
    let leaf_fd = leaf.0.as_ref().map(|p| p.leaf_fd.as_fd());
    let mut born_in_leaf = leaf_fd.is_some();
    let forked = match sys::clone_process(flags, leaf_fd) {
        Err(e) if born_in_leaf => {
            if opts.verbose {
                eprintln!(
                    "kennel: clone3 into the cgroup failed ({}); moving the child before it starts",
                    e.desc()
                );
            }
            born_in_leaf = false;
            sys::clone_process(flags, None)
        }
        other => other,
    };
    let (pid, pidfd) = match forked {
        Ok(Forked::Child) => {
            drop(parent_end);
            let opts = ChildOptions {
                init: opts.init,
                preserve_fds: opts.preserve_fds,
                // The network namespace has its own path (see `netns`).
                unshare: cfg.clone_flags
                    - at_clone
                    - CloneFlags::CLONE_NEWCGROUP
                    - CloneFlags::CLONE_NEWNET,
                new_cgroupns: cfg.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP),
                helper_socket: map_writer.take_helper_socket(),
                ignored_signals,
            };
            let maker = netns_maker.as_mut().and_then(NetnsMaker::take_part);
            child::run(&cfg, child_end, &opts, maker);
        }
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
        Err(e) => return Err(clone_error(e)),
    };
    drop(child_end);
    if let Some(m) = netns_maker.as_mut() {
        m.hand_over(pidfd.as_fd());
    }
    // Now, while the child surely lives (it waits for its maps): once
    // kennel-idmap has told it they are written, its command may be done
    // before we are, and a zombie's start time says nothing.
    let start_time = reservation
        .as_ref()
        .and_then(|_| state::start_time(pid.as_raw()));

    let moved = match (&leaf.0, born_in_leaf) {
        (Some(p), false) => p.add_process(pid.as_raw()).map_err(anyhow::Error::from),
        _ => Ok(()),
    };
    // kennel-idmap tells the child itself (see `take_helper_socket`).
    let child_told = map_writer.uses_helper();
    if let Err(e) = moved.and_then(|()| map_writer.write(pid, &pidfd)) {
        // A child that failed on its own (creating its namespaces) has
        // already said why, and that is the cause worth printing.
        if let Some(code) = child_failed_early(&parent_end, pid) {
            return Ok(code);
        }
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL as i32);
        let _ = waitpid(pid, None);
        return Err(e.context("preparing the container"));
    }
    status("setting up the root filesystem");
    // A child that is gone has left its reason on the channel, which
    // wait_for_exec reads next.
    if !child_told {
        let _ = parent_end.send_to_child(&ToChild::MapsWritten);
    }

    let started = wait_for_exec(&parent_end, pid)?;
    // The child has joined its network namespace (or died): reap the maker.
    drop(netns_maker);
    let master = match started {
        Started::Running(master) => master,
        Started::Failed(code) => return Ok(code),
    };
    let notify = opts.notify.as_ref();
    if let Some(n) = notify {
        n.started(&cfg.process.args.join(" "));
    }
    if let Some(res) = &reservation {
        let start_time = start_time.context("the container exited before it could be recorded")?;
        let cgroup = leaf.0.as_ref().map(|p| p.leaf.clone());
        state::record(res, pid, start_time, spec, cgroup)?;
    }
    let mut code = supervise(pid, &pidfd, &sigfd, master.as_ref(), notify);
    if let Some(p) = &leaf.0 {
        if p.finish().oom_killed {
            eprintln!(
                "kennel: container killed by the OOM killer ({})",
                p.limits.memory_description()
            );
            code = 128 + Signal::SIGKILL as i32;
        }
    }
    drop(reservation);
    Ok(code)
}

/// Checks what a clone copies before making one, in one read of
/// /proc/self/status. A second thread is an error: clone3 copies only the
/// calling thread, and one a library left behind could hold a lock the
/// child then waits on forever. Returns the signals this process ignores
/// (SigIgn: the caller's, and SIGPIPE), which stay ignored across execve:
/// the child resets them (`ChildOptions::ignored_signals`).
pub fn check_before_clone() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let threads: usize = field("Threads:").and_then(|t| t.parse().ok()).unwrap_or(1);
    if threads != 1 {
        bail!("internal error: kennel has {threads} threads before creating the container; please report this");
    }
    // Unreadable: every signal is reset, which is right, only slower.
    Ok(field("SigIgn:")
        .and_then(|m| u64::from_str_radix(m, 16).ok())
        .unwrap_or(u64::MAX))
}

/// Removes the container's leaf on every way out of `run`.
struct LeafGuard(Option<cgroup_delegate::Placement>);

impl Drop for LeafGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            p.remove();
        }
    }
}

/// How the start of the command went.
pub enum Started {
    /// It is running; with `--tty`, here is the pty master.
    Running(Option<OwnedFd>),
    /// It failed before exec; the failure was printed; exit with this code.
    Failed(i32),
}

/// Reads the child's messages until its exec closes the channel.
pub fn wait_for_exec(chan: &Channel, pid: Pid) -> Result<Started> {
    let mut master = None;
    loop {
        match chan.recv_to_parent() {
            Ok(None) => return Ok(Started::Running(master)),
            Ok(Some(r)) => match r.message {
                ToParent::PtyMaster => master = r.fd,
                ToParent::Failed(f) => {
                    let _ = waitpid(pid, None);
                    return Ok(Started::Failed(report_failure(&f)));
                }
            },
            Err(e) => anyhow::bail!("reading from the container: {e}"),
        }
    }
}

/// The exit code for a failure the child has already reported, if any
/// (reads without waiting).
fn child_failed_early(chan: &Channel, pid: Pid) -> Option<i32> {
    match chan.try_recv_to_parent() {
        Ok(Some(Received {
            message: ToParent::Failed(f),
            ..
        })) => {
            let _ = waitpid(pid, None);
            Some(report_failure(&f))
        }
        _ => None,
    }
}

pub fn clone_error(e: Errno) -> anyhow::Error {
    let hint = match e {
        Errno::EPERM | Errno::ENOSPC | Errno::EACCES => {
            "; unprivileged user namespaces may be disabled: run `kennel doctor` for the exact fix"
        }
        _ => "",
    };
    anyhow::anyhow!(
        "cannot create the container's namespaces (clone3): {}{hint}",
        e.desc()
    )
}

/// Prints one clear line for a failure inside the container and returns the
/// exit code (126/127 for a command that cannot run, 125 otherwise).
pub fn report_failure(f: &ChildFailure) -> i32 {
    let errno = f.errno();
    let path = f.path.as_deref().unwrap_or("");
    if f.stage == Stage::Exec {
        let code = match errno {
            Errno::ENOENT => EXIT_NOT_FOUND,
            Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM => EXIT_CANNOT_EXECUTE,
            _ => EXIT_KENNEL,
        };
        let why = match (errno, &f.detail) {
            (_, Some(d)) => d.clone(),
            (Errno::ENOENT, None) => "no such file (or its interpreter is missing)".into(),
            (Errno::EACCES, None) => "permission denied (is it executable?)".into(),
            (e, None) => e.desc().to_string(),
        };
        eprintln!("kennel: cannot execute {path:?}: {why}");
        return code;
    }
    let mut line = format!("kennel: {}", f.stage.describe());
    if !path.is_empty() {
        line.push_str(&format!(" {path}"));
    }
    if f.errno != 0 {
        line.push_str(&format!(" failed: {}", errno.desc()));
    } else {
        line.push_str(" failed");
    }
    if let Some(d) = &f.detail {
        line.push_str(&format!(" ({d})"));
    }
    eprintln!("{line}");
    EXIT_KENNEL
}

fn status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for the container, forwarding signals and relaying the terminal.
pub fn supervise(
    pid: Pid,
    pidfd: &OwnedFd,
    sigfd: &SignalFd,
    master: Option<&OwnedFd>,
    notify: Option<&Notify>,
) -> i32 {
    let _raw = master.map(|m| {
        tty::copy_window_size(m.as_fd());
        tty::RawMode::enter()
    });
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let watchdog = notify.and_then(|n| n.watchdog_interval());
    let timeout = watchdog
        .map(|w| PollTimeout::try_from(w.as_millis().max(1) as i32).unwrap_or(PollTimeout::MAX))
        .unwrap_or(PollTimeout::NONE);
    let notify_fd = notify.and_then(|n| n.container_fd());
    loop {
        if let (Some(n), Some(fd)) = (notify, notify_fd) {
            let mut nfds = [PollFd::new(fd, PollFlags::POLLIN)];
            if matches!(poll(&mut nfds, PollTimeout::ZERO), Ok(k) if k > 0) {
                n.forward_from_container();
            }
        }
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && master_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = notify_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Ok(0) => {
                if let Some(n) = notify {
                    n.ping_watchdog();
                }
                continue;
            }
            Err(_) | Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if let (Some(m), true) = (master, ready.get(1).copied().unwrap_or(false)) {
            master_open = tty::pump(m.as_fd(), stdout.as_fd());
        }
        if let (Some(m), true) = (master, ready.get(2).copied().unwrap_or(false)) {
            stdin_open = tty::pump(stdin.as_fd(), m.as_fd());
        }
        if !ready[0] {
            continue;
        }
        let Ok(Some(info)) = sigfd.read_signal() else {
            continue;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match sig {
            Signal::SIGCHLD => {
                if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    if let Some(code) = status_code(status) {
                        if let Some(m) = master {
                            tty::drain(m);
                        }
                        if let Some(n) = notify {
                            n.stopping();
                        }
                        return code;
                    }
                }
            }
            Signal::SIGWINCH => {
                if let Some(m) = master {
                    tty::copy_window_size(m.as_fd());
                }
            }
            other => {
                if sys::pidfd_send_signal(pidfd.as_fd(), other as i32).is_err() {
                    let _ = kill(pid, other);
                }
            }
        }
    }
}
