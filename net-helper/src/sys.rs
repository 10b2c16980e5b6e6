//! The few system calls nix does not wrap safely. Each function is a small
//! safe wrapper; every `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

pub use kennel_sys::{ensure_std_fds_open, fd_is_open, ns_owner_uid};

/// Takes an inherited descriptor given on the command line as `fd:N`.
/// The caller handed it to us and nothing else in this process owns it;
/// it is taken once per number (`main` parses each `fd:N` once).
pub fn take_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 || !fd_is_open(fd) {
        return None;
    }
    // SAFETY: the fd is open (checked just above) and was inherited from
    // the caller; no other owner exists in this process, and the caller
    // asks for each number once.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl_ns(2) requests, `_IO(0xb7, N)` in linux/nsfs.h.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_PARENT: libc::c_ulong = 0xb702;
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// SIOCGSKNS in linux/sockios.h: the network namespace of a socket.
const SIOCGSKNS: libc::c_ulong = 0x894c;

/// An ioctl that returns a new descriptor (or -1).
fn ioctl_new_fd(fd: BorrowedFd<'_>, request: libc::c_ulong) -> Result<OwnedFd, Errno> {
    // SAFETY: these requests take no argument and return a new descriptor
    // or -1; the fd is open for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _) };
    let fd = Errno::result(ret)?;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// NS_GET_USERNS: the user namespace owning namespace `ns`.
pub fn ns_owning_userns(ns: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    ioctl_new_fd(ns, NS_GET_USERNS)
}

/// NS_GET_PARENT: a user namespace's parent (EPERM past our own).
pub fn ns_parent(ns: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    ioctl_new_fd(ns, NS_GET_PARENT)
}

/// SIOCGSKNS: the network namespace a socket was made in.
pub fn socket_netns(sock: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    ioctl_new_fd(sock, SIOCGSKNS)
}

/// NS_GET_NSTYPE: which kind of namespace (a CLONE_NEW* flag).
pub fn ns_type(ns: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type or -1;
    // the fd is open for the call.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_NSTYPE as _) };
    Errno::result(ret)
}

/// A netlink socket from an owned descriptor (one inherited from the
/// caller, checked by `main` to live in the container's namespace).
pub fn netlink_socket_from(fd: OwnedFd) -> netlink_sys::Socket {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: `raw` comes from an OwnedFd given up just above, so the
    // socket becomes its only owner.
    unsafe { netlink_sys::Socket::from_raw_fd(raw) }
}

/// getsockopt(SO_DOMAIN) and getsockopt(SO_PROTOCOL) of a socket.
pub fn socket_domain_protocol(sock: BorrowedFd<'_>) -> Result<(i32, i32), Errno> {
    let get = |opt: libc::c_int| -> Result<i32, Errno> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: SO_DOMAIN and SO_PROTOCOL write one int; `value` and
        // `len` are live locals sized for it; the fd is open for the call.
        let ret = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        Errno::result(ret).map(|_| value)
    };
    Ok((get(libc::SO_DOMAIN)?, get(libc::SO_PROTOCOL)?))
}
