//! The container's network namespace, made beside the child instead of by
//! it.
//!
//! A new network namespace is the single most expensive thing a container
//! start asks of the kernel (it registers a loopback device and hundreds of
//! sysctl tables, ~0.4 ms here), and nothing but the sysfs mount depends on
//! it. So the child forks a short-lived helper process first thing; the
//! helper unshares the network namespace and raises lo while the child
//! creates its other namespaces, waits for the maps and builds the rootfs;
//! the child then joins that namespace through the helper's pidfd just
//! before it mounts sysfs. Both are in the container's user namespace, so
//! the namespace is owned by it exactly as if the child had made it.
//!
//! The helper lives until the child lets go of the release pipe (joined, or
//! the child died), then exits; the child reaps it before exec, so the
//! command never inherits it.
//!
//! When kennel-idmap writes the maps, the child waits for them longer than
//! the namespace takes (the helper is still starting up), so it makes the
//! namespace itself in that wait: a process beside it would only compete
//! with kennel-idmap for a CPU. Measured on 2 cores: ~0.2 ms faster that way
//! with the helper, and slower without it.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, read, write, Pid};

use super::child::namespace_failure;
use super::protocol::{ChildFailure, Stage};
use crate::sys::{self, Forked};

/// A network namespace on its way, or already joined.
pub enum Netns {
    /// The helper is making it.
    Pending(Maker),
    /// Joined (or made by the child itself); the helper to reap, if any.
    Joined(Option<Pid>),
}

pub struct Maker {
    pid: Pid,
    pidfd: OwnedFd,
    /// The helper's status: 4 bytes, 0 or the errno it failed with.
    status: OwnedFd,
    /// Held only to be dropped: that lets the helper exit.
    _release: OwnedFd,
}

impl Netns {
    /// Starts the helper, or makes the namespace right here when `here`
    /// (or when the helper cannot be forked: a pids limit of 1, say).
    pub fn start(here: bool) -> Result<Netns, ChildFailure> {
        if here {
            return Netns::make_here();
        }
        let err = |e: Errno| ChildFailure::new(Stage::Network, e, None);
        let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC).map_err(err)?;
        let (release_read, release_write) = pipe2(OFlag::O_CLOEXEC).map_err(err)?;
        match sys::clone_process(0, None) {
            Ok(Forked::Child) => {
                drop((status_read, release_write));
                let code = match make_namespace() {
                    Ok(()) => 0,
                    Err(e) => e as i32,
                };
                let _ = write(&status_write, &code.to_ne_bytes());
                // Wait for the child to join (or die), then go.
                let _ = read(release_read.as_fd(), &mut [0u8; 1]);
                sys::exit_now(0);
            }
            Ok(Forked::Parent { pid, pidfd }) => Ok(Netns::Pending(Maker {
                pid,
                pidfd,
                status: status_read,
                _release: release_write,
            })),
            Err(_) => Netns::make_here(),
        }
    }

    fn make_here() -> Result<Netns, ChildFailure> {
        make_namespace().map_err(|e| namespace_failure(e, CloneFlags::CLONE_NEWNET))?;
        Ok(Netns::Joined(None))
    }

    /// Enters the namespace once the helper has made it (waiting if it has
    /// not yet). Idempotent.
    pub fn join(&mut self) -> Result<(), ChildFailure> {
        let Netns::Pending(m) = self else {
            return Ok(());
        };
        let mut buf = [0u8; 4];
        let got = loop {
            match read(m.status.as_fd(), &mut buf) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        let code = match got {
            Ok(4) => i32::from_ne_bytes(buf),
            Ok(_) => libc::ECHILD,
            Err(e) => e as i32,
        };
        if code != 0 {
            return Err(namespace_failure(
                Errno::from_raw(code),
                CloneFlags::CLONE_NEWNET,
            ));
        }
        nix::sched::setns(m.pidfd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            let why = if e == Errno::EINVAL {
                "joining the network namespace by pidfd (needs Linux 5.8 or newer)"
            } else {
                "joining the network namespace"
            };
            ChildFailure::new(Stage::Network, e, None).with_detail(why)
        })?;
        let pid = m.pid;
        *self = Netns::Joined(Some(pid));
        Ok(())
    }

    /// Joins if not done yet and reaps the helper, which has exited (or is
    /// about to) once the release pipe closed.
    pub fn finish(mut self) -> Result<(), ChildFailure> {
        self.join()?;
        if let Netns::Joined(Some(pid)) = self {
            let _ = waitpid(pid, None);
        }
        Ok(())
    }
}

fn make_namespace() -> Result<(), Errno> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
    sys::loopback_up()
}
