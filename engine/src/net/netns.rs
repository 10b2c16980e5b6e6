//! The container's network namespace, made beside the child instead of by
//! it.
//!
//! A new network namespace is the single most expensive thing a container
//! start asks of the kernel (it registers a loopback device and hundreds of
//! sysctl tables, ~0.4 ms here), and nothing but the sysfs mount depends on
//! it. So the runner forks a short-lived maker process just before it clones
//! the child. Once the child exists, the maker receives its pidfd, enters
//! its user namespace (as that namespace's owner it holds every capability
//! there), unshares a network namespace and raises lo, while the child
//! creates its other namespaces and builds the rootfs; the child joins
//! through the maker's pidfd just before it mounts sysfs. The namespace is
//! owned by the container's user namespace exactly as if the child had made
//! it, and the container's pid namespace never sees the maker.
//!
//! Forked before the clone, not by the child after it: a new process often
//! lands on an idle CPU, and waking a halted virtual CPU costs a few hundred
//! microseconds on the VMs this was measured on, so the earlier it is
//! forked, the more of that wake-up hides behind the clone (~0.2 ms per
//! start here).
//!
//! The maker lives until the child lets go of the release pipe (joined, or
//! died), then exits; the runner reaps it. If it cannot be forked (the
//! caller's process limit), or kennel-idmap writes the maps (the child waits
//! for them longer than the namespace takes, and a process beside it would
//! only compete with the helper for a CPU), the child makes the namespace
//! itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, read, write, Pid};

use crate::protocol::{io_errno, namespace_failure, ChildFailure, Stage};
use crate::sys::{self, Forked};

/// The runner's side of a maker, from before the clone until it is reaped.
pub struct NetnsMaker {
    pid: Pid,
    /// What the child joins through; the child takes its copy of it.
    part: Option<Maker>,
    /// On which the child's pidfd goes to the maker.
    sock: Option<UnixStream>,
}

/// What the child holds of the maker.
pub struct Maker {
    pidfd: OwnedFd,
    /// The maker's status: 4 bytes, 0 or the errno it failed with.
    status: OwnedFd,
    /// Held only to be dropped: that lets the maker exit.
    _release: OwnedFd,
}

impl NetnsMaker {
    /// Forks the maker.
    pub fn start(single: &sys::SingleThreaded) -> Result<NetnsMaker, Errno> {
        let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC)?;
        let (release_read, release_write) = pipe2(OFlag::O_CLOEXEC)?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| io_errno(&e))?;
        match sys::clone_process(single, 0, None)? {
            Forked::Child(_) => {
                drop((status_read, release_write, ours));
                let code = match make_in_namespace_of(&theirs) {
                    Ok(()) => 0,
                    Err(e) => e as i32,
                };
                let _ = write(&status_write, &code.to_ne_bytes());
                // Wait for the child to join (or die), then go.
                let _ = read(release_read.as_fd(), &mut [0u8; 1]);
                sys::exit_now(0);
            }
            Forked::Parent { pid, pidfd } => Ok(NetnsMaker {
                pid,
                part: Some(Maker {
                    pidfd,
                    status: status_read,
                    _release: release_write,
                }),
                sock: Some(ours),
            }),
        }
    }

    /// For the child only: the maker to join.
    pub fn take_part(&mut self) -> Option<Maker> {
        self.part.take()
    }

    /// Sends the maker the child's pidfd, and lets go of our copies of what
    /// the child holds (so the maker exits once the child is done with it).
    /// If it cannot be sent, the maker fails and the child makes the
    /// namespace itself.
    pub fn hand_over(&mut self, child: BorrowedFd<'_>) {
        if let Some(sock) = self.sock.take() {
            let _ = sys::send_fd(sock.as_fd(), child);
        }
        self.part = None;
    }
}

impl Drop for NetnsMaker {
    /// Reaps the maker: it has exited, or soon will, once the child joined
    /// or died. Never handed a pidfd (kennel failed before the clone), it
    /// is stopped first.
    fn drop(&mut self) {
        if self.sock.is_some() {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        }
        self.part = None;
        let _ = waitpid(self.pid, None);
    }
}

/// The maker's work: the child's pidfd arrives on `sock`.
fn make_in_namespace_of(sock: &UnixStream) -> Result<(), Errno> {
    // None: the runner died before the clone, or could not send.
    let child = sys::receive_fd(sock.as_fd())?.ok_or(Errno::ESRCH)?;
    nix::sched::setns(child.as_fd(), CloneFlags::CLONE_NEWUSER)?;
    make_namespace()
}

/// A network namespace on its way, or already joined.
pub enum Netns {
    /// The maker is making it.
    Pending(Maker),
    /// Joined, or made by the child itself.
    Joined,
}

impl Netns {
    /// Joins what `maker` makes, or makes the namespace right here when
    /// there is no maker.
    pub fn start(maker: Option<Maker>) -> Result<Netns, ChildFailure> {
        match maker {
            Some(m) => Ok(Netns::Pending(m)),
            None => {
                make_namespace().map_err(|e| namespace_failure(e, CloneFlags::CLONE_NEWNET))?;
                Ok(Netns::Joined)
            }
        }
    }

    /// Enters the namespace once the maker has made it (waiting if it has
    /// not yet). Idempotent; dropping the maker's part releases it.
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
            // The maker could not (a seccomp filter refusing setns, say):
            // make it here; if that fails too, its error is the one to
            // report (a namespace limit names itself there).
            *self = Netns::start(None)?;
            return Ok(());
        }
        nix::sched::setns(m.pidfd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            let why = if e == Errno::EINVAL {
                "joining the network namespace by pidfd (needs Linux 5.8 or newer)"
            } else {
                "joining the network namespace"
            };
            ChildFailure::new(Stage::Network, e, None).with_detail(why)
        })?;
        *self = Netns::Joined;
        Ok(())
    }
}

fn make_namespace() -> Result<(), Errno> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
    sys::loopback_up()
}
