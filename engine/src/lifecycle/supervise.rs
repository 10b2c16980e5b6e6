//! The parent's watch over a container's process, for `run` and `exec`:
//! the signals it blocks and forwards, the wait for the command's exec,
//! and the supervision to its end (signals, terminal, sd_notify).

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::child::reaper;
use crate::child::tty;
use crate::lifecycle::sdnotify::Notify;
use crate::protocol::{Channel, ChildFailure, ToParent};
use crate::sys;

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

/// How the start of the command went.
pub enum Started {
    /// It is running; with `--tty`, here is the pty master.
    Running(Option<OwnedFd>),
    /// It failed before exec, for this reason.
    Failed(ChildFailure),
}

/// Reads the child's messages until its exec closes the channel.
pub fn wait_for_exec(chan: &Channel, pid: Pid) -> Result<Started> {
    let mut master = None;
    loop {
        match chan.recv_to_parent() {
            Ok(None) => return Ok(Started::Running(master)),
            Ok(Some(r)) => match r.message {
                ToParent::PtyMaster => master = r.fd,
                // Only a child with a start fifo says it, and only `detach`
                // reads from such a child; `create` answers RunHooks.
                ToParent::Ready | ToParent::RunHooks | ToParent::StartNetwork => {}
                ToParent::Failed(f) => {
                    let _ = waitpid(pid, None);
                    return Ok(Started::Failed(f));
                }
            },
            Err(e) => anyhow::bail!("reading from the container: {e}"),
        }
    }
}

fn status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// What a signal for the supervisor does: SIGCHLD reaps the container
/// (its exit code, once it has one), SIGWINCH copies the window size,
/// any other goes on to the container.
fn on_signal(
    sig: Signal,
    pid: Pid,
    pidfd: &OwnedFd,
    master: Option<&OwnedFd>,
    notify: Option<&Notify>,
) -> Option<i32> {
    match sig {
        Signal::SIGCHLD => {
            let code = status_code(waitpid(pid, Some(WaitPidFlag::WNOHANG)).ok()?)?;
            if let Some(m) = master {
                tty::drain(m);
            }
            if let Some(n) = notify {
                n.stopping();
            }
            return Some(code);
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
    None
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
        // Where the terminal's fds sit among those polled, if they are.
        let mut master_at = None;
        let mut stdin_at = None;
        if let (Some(m), true) = (master, master_open) {
            master_at = Some(fds.len());
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && master_open {
            stdin_at = Some(fds.len());
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
        let is_ready = |at: Option<usize>| at.is_some_and(|i| ready[i]);
        if let (Some(m), true) = (master, is_ready(master_at)) {
            master_open = tty::pump(m.as_fd(), stdout.as_fd());
        }
        if let (Some(m), true) = (master, is_ready(stdin_at)) {
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
        if let Some(code) = on_signal(sig, pid, pidfd, master, notify) {
            return code;
        }
    }
}
