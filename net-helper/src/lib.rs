//! Pure policy of `kennel-net`, the helper that links a rootless
//! container's network namespace to a bridge with a veth pair.
//!
//! Nothing here does I/O: the binary reads `/etc/kennel/net.conf`, the
//! kernel's links and the command line, and this library decides.
//!
//! * [`parse_policy`]: the policy file; malformed lines grant nothing.
//! * [`Policy::quota`]: how many veths a user may have on a bridge.
//! * [`Subnet::pick`]: the lowest free container address on a bridge.
//! * [`port_filter`]: what a container may send on the bridge.
//! * [`Record`]: what is kept about each veth, as its host end's alias.
//! * [`parse_args`]: the command line.

mod args;
mod policy;
mod port_filter;
mod record;
mod subnet;

pub use args::{parse_args, Command, UsageError, USAGE};
pub use policy::{
    parse_policy, valid_ifname, BadLine, BridgeDef, Grant, Grantee, Policy, Requester, MAX_COUNT,
    MAX_IFNAME, POLICY_FILE,
};
pub use port_filter::{port_filter, SockFilter, TC_ACT_OK, TC_ACT_SHOT};
pub use record::{
    container_mac, host_name, is_host_name, LinkFacts, Record, ALIAS_PREFIX, HOST_NAME_PREFIX,
};
pub use subnet::{Subnet, MAX_PREFIX, MIN_PREFIX};

/// What kennel-net's lock is taken on: this network namespace's
/// `net.ipv4.route.flush` sysctl, mode 0200, which the kernel lets only
/// root and a holder of CAP_NET_ADMIN over the namespace open
/// (`net_ctl_permissions`). The helper opens it for writing, writes
/// nothing, and takes an flock on it; no one who could not change the
/// records anyway can hold it.
pub const LOCK_FILE: &str = "/proc/sys/net/ipv4/route/flush";
