//! `--init`: a tiny PID 1 built into kennel. It forks the command, forwards
//! the signals it receives to it, reaps every orphan that is re-parented to
//! it, and exits with the command's status when the command exits.

use std::convert::Infallible;
use std::ffi::CString;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::child::{exec, prepare_signals_for_exec};
use super::protocol::{ChildFailure, Stage};
use crate::sys;

/// Signals the runner forwards (and so does the init).
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub fn run_as_init(
    single: &sys::SingleThreaded,
    program: &CString,
    argv: &[CString],
    envp: &[CString],
    activation: Option<&crate::socket_activation::Activation>,
) -> Result<Infallible, ChildFailure> {
    // Never dumpable: this process is kennel, forked from the runner, and
    // never execs. Its memory holds the caller's environment and argv, and
    // the container's root has its uid: without this, /proc/1/environ and
    // /proc/1/mem would show them. The command regains dumpability when it
    // execs.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| ChildFailure::new(Stage::Init, e, None).with_detail("set non-dumpable"))?;
    // The forwarded signals and SIGCHLD are still blocked (inherited from
    // the parent), so none is lost between fork and sigwait.
    let command =
        match sys::fork_process(single).map_err(|e| ChildFailure::new(Stage::Init, e, None))? {
            None => {
                prepare_signals_for_exec()?;
                // LISTEN_PID names the command, not this init.
                let envp = crate::socket_activation::environment(envp, activation);
                return Err(exec(program, argv, &envp, &argv[0].to_string_lossy()));
            }
            Some(pid) => pid,
        };
    // Our copy of the channel must close so the parent sees EOF once the
    // command has exec'd; the command's own copy reports a failed exec.
    // The preserved fds are the command's: we keep nothing but stdio.
    sys::close_fds_except(&[0, 1, 2])
        .map_err(|e| ChildFailure::new(Stage::Init, e, None).with_detail("closing fds"))?;
    // From here on this process only waits: the code and freed heap of the
    // set-up need not stay resident for as long as the container runs. A
    // failure leaves them mapped, which costs memory and nothing else.
    let _ = sys::release_clean_image_pages();
    sys::release_free_heap();

    let mut waited = SigSet::empty();
    for s in FORWARDED {
        waited.add(s);
    }
    waited.add(Signal::SIGCHLD);
    loop {
        let Ok(sig) = waited.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(command, sig);
            continue;
        }
        if let Some(code) = reap_all(command) {
            sys::exit_now(code);
        }
    }
}

/// Reaps every exited child; returns the exit code once `command` is gone.
fn reap_all(command: Pid) -> Option<i32> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => result = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                result = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}
