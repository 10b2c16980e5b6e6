//! The system calls kennel's binaries share (kennel, kennel-idmap,
//! kennel-net and the cgroup library), each a small safe wrapper around one
//! call that nix does not cover safely, and the capability helpers'
//! self-check ([`cap_helper`]). The only crate of the workspace besides the
//! binaries' own `sys` modules that may use `unsafe`; every block says why
//! it is sound.
#![allow(unsafe_code)]

pub mod cap_helper;
pub mod sealed_exe;

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

#[doc(hidden)]
pub use libc;

/// Defines the process entry point of a kennel binary, called by glibc's
/// start-up code in place of Rust's: `$run` is called after
/// `prepare_process`, and its return value is the exit status. Rust's own
/// set-up before `main` (a stack-guard probe that reads /proc/self/maps,
/// an alternate signal stack for overflow reports) costs tens of
/// microseconds on every start; what kennel relies on is done here. The
/// binary declares `#![cfg_attr(not(test), no_main)]`.
#[macro_export]
macro_rules! entry_point {
    ($run:path) => {
        $crate::entry_point!(@with $crate::prepare_process, $run);
    };
    // `$prepare` runs first; its failure is exit status 125.
    (@with $prepare:path, $run:path) => {
        /// The process entry point (see `kennel_sys::entry_point`).
        #[allow(unsafe_code)]
        #[cfg_attr(not(test), unsafe(no_mangle))]
        #[cfg_attr(test, allow(dead_code))]
        pub extern "C" fn main(
            _argc: $crate::libc::c_int,
            _argv: *const *const $crate::libc::c_char,
        ) -> $crate::libc::c_int {
            if $prepare().is_err() {
                return 125;
            }
            $run()
        }
    };
}

/// What an entry point does before anything else: SIGPIPE ignored and fds
/// 0-2 open (no fd of ours, a signalfd say, may become a container's
/// stdio).
pub fn prepare_process() -> Result<(), Errno> {
    ignore_sigpipe();
    ensure_std_fds_open()
}

/// What a binary's entry point does before anything else: SIGPIPE ignored
/// (a write to a closed pipe or socket is an error, never a silent death),
/// as Rust's own start-up would.
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler, so no code of ours can run in
    // signal context.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}

/// Whether `fd` is an open descriptor of this process (fcntl(2) F_GETFD).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; an invalid fd yields
    // EBADF and nothing else happens.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Opens `/dev/null` on each of fds 0, 1 and 2 that is closed, so that no
/// file opened later (a map file, a signalfd) can land on stdin, stdout or
/// stderr. Each stays open for the life of the process.
pub fn ensure_std_fds_open() -> Result<(), Errno> {
    for fd in 0..3 {
        if !fd_is_open(fd) {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )?;
            // open(2) returns the lowest free descriptor: this one, as the
            // lower ones are open.
            if null.as_raw_fd() != fd {
                return Err(Errno::EBADF);
            }
            std::mem::forget(null);
        }
    }
    Ok(())
}

/// pidfd_open(2): a descriptor that refers to process `pid` and no other,
/// even if the pid is later reused.
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new
    // descriptor or -1; no memory is shared with the kernel.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    let fd = RawFd::try_from(Errno::result(ret)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor to us; we are its
    // only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl_ns(2) `NS_GET_OWNER_UID` (`_IO(0xb7, 0x4)` in linux/nsfs.h): the
/// uid (in our namespace) of the user who created the user namespace `ns`
/// refers to. Both capability helpers check it before they act.
pub fn ns_owner_uid(ns: impl std::os::fd::AsFd) -> Result<u32, Errno> {
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
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

/// pidfd_send_signal(2); signal 0 only checks that the process has not
/// been reaped (and that we may signal it).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: the fd is borrowed and stays open during the call; a null
    // siginfo pointer means "as kill(2) would", as the man page allows.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// Sends `fd` over the unix socket `sock` as SCM_RIGHTS, with one byte.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"p")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// Receives one descriptor sent by `send_fd` (close-on-exec). None when
/// the peer closed without sending one.
pub fn receive_fd(sock: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => other?,
        };
        let mut received = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for this message; nothing else owns it.
                    // Extra ones are closed by their OwnedFd at once.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    received.get_or_insert(owned);
                }
            }
        }
        return Ok(received);
    }
}

/// The value of extended attribute `name` of `path` (getxattr(2)), or None
/// when it has none.
pub fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, Errno> {
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u8; 64];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for the
    // length we pass.
    let n = unsafe {
        libc::getxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return match Errno::last() {
            Errno::ENODATA => Ok(None),
            e => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}
