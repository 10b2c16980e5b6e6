//! The parent's side of a container's life: prepare, create (`create`),
//! start and wait (with `supervise`). The child side is `child`, the
//! rootfs is `child::rootfs`, and the protocol between them is
//! `protocol`.

pub(crate) mod create;

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{anyhow, Context};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::child::tty::SavedTerminal;
use crate::lifecycle::sdnotify::Notify;
use crate::lifecycle::state;
use crate::lifecycle::supervise::{supervise, wait_for_exec, Started};
use crate::net::netns::NetnsMaker;
use crate::plan::config::Config;
use crate::protocol::{Channel, ToChild, ToParent};
use crate::sys;
use crate::{Detached, Error};

/// A spec checked and turned into what the child works from: every error
/// about the spec itself comes from here, before anything exists.
pub struct Plan {
    spec: Spec,
    cfg: Config,
}

/// Checks `spec`: an unsupported or invalid field is an error naming it.
pub fn prepare(spec: Spec) -> Result<Plan, Error> {
    let cfg = Config::from_spec(&spec)?;
    Ok(Plan { spec, cfg })
}

/// How a container's process ended: its exit code, or 128 + the signal
/// that killed it (as a shell reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// Set when the kernel's OOM killer ended it: the limit, described.
    pub oom_killed: Option<String>,
}

/// A created container: its process builds its root, then execs its
/// command (`start` waits for that), or, for the OCI lifecycle, waits for
/// `kennel-oci start` (`detach`). Dropping it before `wait` or `detach`
/// kills the process and removes what was made.
pub struct Container<'a> {
    pid: Pid,
    pidfd: OwnedFd,
    chan: Channel,
    sigfd: SignalFd,
    spec: Spec,
    leaf: LeafGuard,
    reservation: Option<state::Reservation>,
    start_time: Option<u64>,
    notify: Option<Notify>,
    master: Option<OwnedFd>,
    netns_maker: Option<NetnsMaker>,
    /// User-mode networking; dropped after the process is gone.
    pasta: Option<crate::net::pasta::Pasta>,
    /// The bridged network's address, from kennel-net.
    bridge: Option<crate::net::bridge::Attached>,
    /// Set for the OCI lifecycle (see `Options::bundle`).
    bundle: Option<std::path::PathBuf>,
    /// Left to outlive us (`detach`).
    detached: bool,
    /// The container's id (its pid when it has no name), for hooks.
    id: String,
    hooks: crate::host::hooks::HookPlans,
    landlock: Option<crate::spec::process::Rules>,
    /// PID 1 is kennel's --init, for the record.
    init: bool,
    events: Box<dyn Fn(&crate::Event) + 'a>,
    // Declared last: put back after the container is gone.
    _saved_terminal: Option<SavedTerminal>,
}

impl<'a> Container<'a> {
    /// Lets the process exec its command, and returns once it has (or
    /// failed to, with the child's reason).
    pub fn start(&mut self) -> Result<(), Error> {
        let started = wait_for_exec(&self.chan, self.pid);
        // The child has joined its network namespace (or died): reap the maker.
        self.netns_maker = None;
        match started? {
            Started::Running(master) => self.master = master,
            Started::Failed(f) => return Err(Error::Container(f)),
        }
        if let Some(n) = &self.notify {
            n.started(&self.spec_command());
        }
        self.record(state::Status::Running)?;
        self.run_warned("poststart", &self.hooks.poststart, "running");
        Ok(())
    }

    /// The state document hooks read.
    fn hook_state(&self, status: &str) -> String {
        let annotations = self
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        crate::host::hooks::state_json(
            &self.id,
            status,
            self.pid.as_raw(),
            self.bundle.as_deref().unwrap_or(std::path::Path::new("")),
            &annotations,
        )
    }

    /// Waits until the child's namespaces exist, runs the createRuntime
    /// hooks here, and lets the child go on with the state for its own.
    fn run_create_hooks(&self) -> Result<(), Error> {
        crate::protocol::await_request(
            &self.chan,
            self.pid,
            &ToParent::RunHooks,
            "its createRuntime hooks ran",
        )?;
        let state = self.hook_state("creating");
        crate::host::hooks::run("createRuntime", &self.hooks.create_runtime, &state)?;
        self.chan
            .send_to_child(&ToChild::HooksRan(state))
            .map_err(|e| anyhow!("the container's process is gone: {e}"))?;
        Ok(())
    }

    /// Runs hooks whose failure the spec says to report and go on from.
    fn run_warned(&self, point: &str, hooks: &[crate::host::hooks::HookPlan], status: &str) {
        if hooks.is_empty() {
            return;
        }
        if let Err(e) = crate::host::hooks::run(point, hooks, &self.hook_state(status)) {
            (self.events)(&crate::Event::Warning(&format!("{e:#}")));
        }
    }

    /// Writes the container's record, when it has a name.
    fn record(&self, status: state::Status) -> Result<(), Error> {
        let Some(res) = &self.reservation else {
            return Ok(());
        };
        let start_time = self
            .start_time
            .context("the container exited before it could be recorded")?;
        let recorded = state::Recorded {
            pid: self.pid,
            start_time,
            spec: &self.spec,
            cgroup: self.leaf.0.as_ref().map(|p| p.leaf.clone()),
            cgroup_v1: self
                .leaf
                .0
                .as_ref()
                .map(|p| p.v1.clone())
                .unwrap_or_default(),
            status,
            bundle: self.bundle.as_deref(),
            kept: self.bundle.is_some(),
            hooks: &self.hooks,
            landlock: self.landlock.as_ref(),
            init: self.init,
            bridge_address: self.bridge.as_ref().map(|b| b.address),
        };
        state::record(res, &recorded)?;
        Ok(())
    }

    /// The OCI lifecycle's end of `create`: waits until the process is
    /// ready and waiting for `start`, and leaves it (with its cgroup and
    /// record) to outlive us. The pty master, with a terminal, is returned
    /// for the caller to pass on.
    pub fn detach(mut self) -> Result<Detached, Error> {
        let mut console = None;
        loop {
            match self.chan.recv_to_parent() {
                Ok(Some(r)) => match r.message {
                    ToParent::PtyMaster => console = r.fd,
                    ToParent::Ready => break,
                    // Answered by `create`, before we get here.
                    ToParent::RunHooks | ToParent::StartNetwork => {}
                    ToParent::Failed(f) => {
                        let _ = waitpid(self.pid, None);
                        return Err(Error::Container(f));
                    }
                },
                Ok(None) => {
                    return Err(anyhow!("the container's process ended before it was ready").into())
                }
                Err(e) => return Err(anyhow!("reading from the container: {e}").into()),
            }
        }
        self.netns_maker = None;
        self.record(state::Status::Created)?;
        if let Some(p) = self.pasta.as_mut() {
            p.detach();
        }
        // Ours no more: `delete` removes them.
        drop(self.leaf.0.take());
        if let Some(res) = self.reservation.take() {
            res.keep();
        }
        let pid = self.pid.as_raw();
        self.bundle = None;
        // Not killed on drop: see `Drop`.
        self.detached = true;
        Ok(Detached { pid, console })
    }

    fn spec_command(&self) -> String {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default()
            .join(" ")
    }

    /// Supervises the started container to its end: forwards signals,
    /// relays its terminal, and removes its cgroup and record.
    pub fn wait(mut self) -> Exit {
        let master = self.master.take();
        let code = supervise(
            self.pid,
            &self.pidfd,
            &self.sigfd,
            master.as_ref(),
            self.notify.as_ref(),
        );
        let oom_killed = self
            .leaf
            .0
            .as_ref()
            .and_then(|p| p.finish().oom_killed.then(|| p.memory_description()));
        let code = match oom_killed {
            Some(_) => 128 + Signal::SIGKILL as i32,
            None => code,
        };
        self.reservation = None;
        self.run_warned("poststop", &self.hooks.poststop, "stopped");
        Exit { code, oom_killed }
    }
}

impl Drop for Container<'_> {
    /// A container dropped before its end (a failed start, a front end's
    /// error) must not outlive us.
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if matches!(
            waitpid(self.pid, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        ) {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
            let _ = waitpid(self.pid, None);
        }
    }
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
