//! The few system calls nix does not wrap safely. Each function is a small
//! safe wrapper; every `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;

pub use kennel_sys::{ensure_std_fds_open, fd_is_open, ns_owner_uid, receive_fd};

/// Borrows an inherited descriptor given on the command line as `fd:N`.
/// The caller handed it to us; nothing else in this process owns it.
pub fn inherited_fd(fd: RawFd) -> Option<BorrowedFd<'static>> {
    if fd < 0 || !fd_is_open(fd) {
        return None;
    }
    // SAFETY: the fd is open (checked just above), this single-threaded
    // program never closes a descriptor it did not open itself, so it stays
    // open for the 'static lifetime of the process.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// pidfd_open(2): a descriptor that refers to process `pid` and no other,
/// even if the pid is later reused.
pub fn pidfd_open(pid: u32) -> Result<OwnedFd, Errno> {
    kennel_sys::pidfd_open(libc::pid_t::try_from(pid).map_err(|_| Errno::ESRCH)?)
}

/// Succeeds only while the process the pidfd refers to has not been reaped
/// (and we may signal it): pidfd_send_signal(2) with signal 0.
pub fn pidfd_is_alive(pidfd: BorrowedFd<'_>) -> Result<(), Errno> {
    kennel_sys::pidfd_send_signal(pidfd, 0)
}
