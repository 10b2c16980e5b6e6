//! The checks on the descriptors a caller hands in: the namespace must be
//! one of theirs, and the socket must have been made in it.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::stat::fstat;

use crate::caller::Caller;
use crate::failure::{sys, Failure};

/// nsfs's magic number (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The inode of the network namespace on `fd`, once it is known to be one
/// whose user namespace the caller created (below our own).
pub(crate) fn check_netns(caller: &Caller, n: i32, ns: BorrowedFd<'_>) -> Result<u64, Failure> {
    let on_nsfs = nix::sys::statfs::fstatfs(ns)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false);
    if !on_nsfs || crate::sys::ns_type(ns) != Ok(libc::CLONE_NEWNET) {
        return Err(Failure::NotNetns(n));
    }
    let id = |fd: BorrowedFd<'_>| fstat(fd).map(|s| (s.st_dev, s.st_ino));
    let own = nix::sys::stat::stat("/proc/self/ns/user")
        .map(|s| (s.st_dev, s.st_ino))
        .map_err(sys("stat /proc/self/ns/user"))?;
    let not_yours = |_| Failure::NotYours(n);
    let mut userns = crate::sys::ns_owning_userns(ns).map_err(not_yours)?;
    loop {
        if id(userns.as_fd()).map_err(not_yours)? == own {
            // The host's namespace, or one root made without a user
            // namespace of its own.
            return Err(Failure::NotYours(n));
        }
        let parent = crate::sys::ns_parent(userns.as_fd()).map_err(not_yours)?;
        if id(parent.as_fd()).map_err(not_yours)? == own {
            // `userns` is the top of the chain below ours: its creator
            // made everything beneath it.
            if crate::sys::ns_owner_uid(&userns).map_err(not_yours)? != caller.uid {
                return Err(Failure::NotYours(n));
            }
            return id(ns).map(|(_, ino)| ino).map_err(not_yours);
        }
        userns = parent;
    }
}

/// Checks that `sock` is a NETLINK_ROUTE socket made in the namespace
/// whose inode is `netns`.
pub(crate) fn check_socket(n: i32, sock: BorrowedFd<'_>, netns: u64) -> Result<(), Failure> {
    match crate::sys::socket_domain_protocol(sock) {
        Ok((libc::AF_NETLINK, libc::NETLINK_ROUTE)) => {}
        _ => return Err(Failure::NotRouteSocket(n)),
    }
    let its = crate::sys::socket_netns(sock).map_err(|_| Failure::OtherNamespace(n))?;
    let ino = fstat(its.as_fd())
        .map_err(sys("fstat the socket's namespace"))?
        .st_ino;
    if ino != netns {
        return Err(Failure::OtherNamespace(n));
    }
    Ok(())
}
