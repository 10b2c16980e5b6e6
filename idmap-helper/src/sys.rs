//! The few system calls nix does not wrap safely. Each function is a small
//! safe wrapper; every `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// The process entry point, called by glibc's start-up code in place of
/// Rust's. Rust's runtime set-up before `main` (a stack-guard probe that
/// reads /proc/self/maps, an alternate signal stack for overflow reports)
/// costs tens of microseconds on every container start and guards nothing
/// here. What the helper relies on it does itself: fds 0-2 are checked
/// first thing in `helper_main`, and SIGPIPE is ignored as Rust does, so a
/// closed stderr pipe gives an error instead of a silent death.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[cfg_attr(test, allow(dead_code))]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: SIG_IGN installs no handler, so no code of ours can run in
    // signal context.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    crate::helper_main()
}

/// Whether `fd` is an open descriptor of this process (fcntl(2) F_GETFD).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; an invalid fd yields
    // EBADF and nothing else happens.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Opens `/dev/null` on each of fds 0, 1 and 2 that is closed, so that no
/// file opened later (a map file!) can land on stdin, stdout or stderr.
pub fn ensure_std_fds_open() -> Result<(), Errno> {
    for fd in 0..3 {
        if !fd_is_open(fd) {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )?;
            // open(2) returns the lowest free descriptor: this one, as the
            // lower ones are open. Keep it open for the life of the process.
            if null.as_raw_fd() != fd {
                return Err(Errno::EBADF);
            }
            std::mem::forget(null);
        }
    }
    Ok(())
}

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
    let pid = libc::pid_t::try_from(pid).map_err(|_| Errno::ESRCH)?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new
    // descriptor or -1; no memory is shared with the kernel.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    let fd = RawFd::try_from(Errno::result(ret)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor to us; we are its
    // only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pidfd_send_signal(2) with signal 0: succeeds only while the process the
/// pidfd refers to has not been reaped (and we may signal it).
pub fn pidfd_is_alive(pidfd: BorrowedFd<'_>) -> Result<(), Errno> {
    let null: *const libc::siginfo_t = std::ptr::null();
    // SAFETY: signal 0 sends nothing; a null siginfo pointer is allowed by
    // the man page; the fd is borrowed and stays open during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0 as libc::c_int,
            null,
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `NS_GET_OWNER_UID`, `_IO(0xb7, 0x4)` in linux/nsfs.h.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// ioctl_ns(2) NS_GET_OWNER_UID: the uid (in our namespace) of the user who
/// created the user namespace `ns` refers to.
pub fn ns_owner_uid(ns: impl AsFd) -> Result<u32, Errno> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer, which points
    // to a live, writable uid_t on our stack; the fd is open for the call.
    let ret = unsafe {
        libc::ioctl(
            ns.as_fd().as_raw_fd(),
            NS_GET_OWNER_UID as _,
            &mut uid as *mut libc::uid_t,
        )
    };
    Errno::result(ret).map(|_| uid)
}

/// Receives one descriptor sent as SCM_RIGHTS on the unix socket `sock`
/// (close-on-exec). None when the peer closed without sending one.
pub fn receive_fd(sock: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut received = None;
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(msg) => {
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for fd in fds {
                            // SAFETY: the kernel just installed this
                            // descriptor in our table for this message;
                            // nothing else owns it. Extra ones are closed
                            // by their OwnedFd at once.
                            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                            received.get_or_insert(owned);
                        }
                    }
                }
                return Ok(received);
            }
        }
    }
}
