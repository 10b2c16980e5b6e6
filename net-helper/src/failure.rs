//! Why the helper did not do its job, each as one line that names the
//! cause and the fix.

use std::fmt;

use kennel_net::{Subnet, UsageError, LOCK_FILE, POLICY_FILE};
use kennel_sys::cap_helper::SelfCheckFailure;
use nix::errno::Errno;

use crate::lock::LOCK_WAIT;

/// Why the helper did not do its job. One line each.
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(UsageError),
    SelfCheck(SelfCheckFailure),
    NotRoot,
    UnsafePolicy,
    NoGrant {
        user: String,
        bridge: String,
    },
    NoGrantAnywhere {
        user: String,
    },
    NoSubnet {
        bridge: String,
    },
    NoBridge {
        bridge: String,
        subnet: Subnet,
    },
    QuotaFull {
        user: String,
        bridge: String,
        quota: u32,
    },
    SubnetFull {
        bridge: String,
        subnet: Subnet,
    },
    BadFd(i32),
    NotNetns(i32),
    NotYours(i32),
    NotRouteSocket(i32),
    OtherNamespace(i32),
    AlreadyLinked,
    NoLock,
    LockBusy,
    Sys {
        what: String,
        errno: Errno,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(e) => write!(f, "{e} (see --help)"),
            Failure::SelfCheck(e) => write!(f, "{e}"),
            Failure::NotRoot => f.write_str("setup-bridge is root's: run it with sudo"),
            Failure::UnsafePolicy => write!(
                f,
                "refused: {POLICY_FILE} must be owned by root and writable by no one else (sudo chown root: {POLICY_FILE}; sudo chmod 0644 {POLICY_FILE})"
            ),
            Failure::NoGrant { user, bridge } => write!(
                f,
                "refused: no line in {POLICY_FILE} lets {user} attach veths to bridge {bridge}; root can add: {user} veth {bridge} 4"
            ),
            Failure::NoGrantAnywhere { user } => write!(
                f,
                "refused: no line in {POLICY_FILE} lets {user} attach veths to any bridge, so there is nothing of theirs to collect"
            ),
            Failure::NoSubnet { bridge } => write!(
                f,
                "refused: {POLICY_FILE} gives bridge {bridge} no subnet; root can add: bridge {bridge} 10.88.0.0/24"
            ),
            Failure::NoBridge { bridge, subnet } => write!(
                f,
                "bridge {bridge} (in {POLICY_FILE}) does not exist in this network namespace; root creates it with: kennel-net setup-bridge {bridge} {subnet}"
            ),
            Failure::QuotaFull { user, bridge, quota } => write!(
                f,
                "refused: {user} already has {quota} veth(s) on bridge {bridge}, the quota in {POLICY_FILE}; stop one of your bridged containers, or ask root to raise the count"
            ),
            Failure::SubnetFull { bridge, subnet } => write!(
                f,
                "bridge {bridge}'s subnet {subnet} has no free address; root can give it a larger subnet in {POLICY_FILE}"
            ),
            Failure::BadFd(n) => write!(f, "refused: fd:{n} is not an open inherited descriptor"),
            Failure::NotNetns(n) => write!(f, "refused: fd:{n} is not a network namespace (give an fd of /proc/PID/ns/net)"),
            Failure::NotYours(n) => write!(
                f,
                "refused: the network namespace on fd:{n} is not one of yours (it must belong to a user namespace you created)"
            ),
            Failure::NotRouteSocket(n) => write!(f, "refused: fd:{n} is not a NETLINK_ROUTE socket"),
            Failure::OtherNamespace(n) => write!(
                f,
                "refused: the socket on fd:{n} was made in another network namespace than the one given"
            ),
            Failure::AlreadyLinked => f.write_str(
                "refused: this network namespace already has a veth from kennel-net, or an eth0 of its own",
            ),
            Failure::NoLock => write!(
                f,
                "{LOCK_FILE}, which kennel-net locks, is missing or not on procfs: it needs /proc mounted and IPv4 in this network namespace"
            ),
            Failure::LockBusy => write!(
                f,
                "another kennel-net has held its lock ({LOCK_FILE}) for {} s; try again",
                LOCK_WAIT.as_secs()
            ),
            Failure::Sys { what, errno } => {
                write!(f, "failed: {what}: {} ({})", errno.desc(), *errno as i32)
            }
        }
    }
}

pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> Failure {
    let what = what.into();
    move |errno| Failure::Sys { what, errno }
}

pub(crate) fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
