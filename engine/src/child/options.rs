//! What the runner tells the child besides the plan.

use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sched::CloneFlags;

use crate::stop_at::StopPoint;
use crate::sys;

/// Runner behaviour the child needs besides the config.
pub struct ChildOptions {
    pub init: bool,
    pub preserve_fds: u32,
    /// Of the preserved fds, the first ones are sockets systemd passed: the
    /// command gets their `LISTEN_*` variables.
    pub activation: Option<crate::host::socket_activation::Activation>,
    /// The mount, uts and ipc namespaces the child creates itself, before
    /// waiting for the maps (clone3 made the user and pid ones; the network
    /// and cgroup ones have their own paths).
    pub unshare: CloneFlags,
    /// Unshare a cgroup namespace once the maps are written (by then the
    /// child sits in its cgroup leaf, so the namespace is rooted there).
    pub new_cgroupns: bool,
    /// `exec`: a pidfd of the container's process whose cgroup namespace
    /// the command joins once born in the container's cgroup. Joined
    /// before the clone, it would have the kernel refuse the clone into
    /// the leaf where cgroup2 is mounted with nsdelegate (as systemd
    /// mounts it): the caller's own cgroup lies outside that namespace.
    pub join_cgroupns: Option<RawFd>,
    /// Set when kennel-idmap writes the maps: our copy of the runner's end of
    /// its socket, on which it sends one byte once they are written. The
    /// maps take long to arrive then (the helper is starting up), and the
    /// runner starts no network namespace maker: we make it while we wait.
    pub helper_socket: Option<UnixStream>,
    /// The signals the runner found ignored (bit N-1 for signal N), which
    /// stay ignored across execve unless reset: the only ones that are not
    /// at their default already (the runner installs no handler, and
    /// execve resets handlers).
    pub ignored_signals: u64,
    /// This process has one thread (it may fork the `--init` command).
    pub single: sys::SingleThreaded,
    /// The OCI lifecycle: once ready, say so and wait for `start` to write
    /// a byte to this fifo (opened read-write, so it never blocks on open
    /// and `start` finds a reader while we live).
    pub start_fifo: Option<OwnedFd>,
    /// The runner exits before the command ends (OCI `create`, a detached
    /// `exec`): the command must not die with it.
    pub outlives_parent: bool,
    /// The runner's uid or gid has no id in the container's user namespace
    /// (root running a bundle whose maps leave host root out): once the
    /// maps are written, become that namespace's root, as runc does, so
    /// that what the child makes has an owner the filesystem can record.
    pub become_root: bool,
    /// Test only: pause at this point (see `stop_at`).
    pub stop_at: Option<StopPoint>,
}

/// The fds `--preserve-fds N` passes: 3 to 3+N-1 (N is checked against the
/// fd limit before the clone).
pub fn preserved_fds(n: u32) -> impl Iterator<Item = RawFd> {
    (3..3 + i64::from(n)).map(|fd| fd as RawFd)
}
