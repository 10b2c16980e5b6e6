//! kennel's engine: runs one OCI runtime-spec `Spec` as a rootless
//! container, for the two front ends (`kennel` and `kennel-oci`).
//!
//! The lifecycle is in phases: `prepare` checks the spec and turns it into
//! a plan; `Plan::create` makes the namespaces, writes the id maps, places
//! the cgroup and builds the root filesystem, and leaves the container's
//! process waiting before its exec; `Container::start` lets it exec;
//! `Container::wait` supervises it to its end; `delete` removes whatever a
//! container left, driven by its state record, from any process. The
//! engine prints nothing and picks no exit code: it returns typed errors
//! and reports what it decided through `Options::events`.

pub mod bridge;
pub mod build_info;
pub mod bundle;
mod cgroup;
mod child;
mod config;
mod copy_up;
mod default_routes;
mod device_rules;
mod device_rules_v1;
mod devices;
pub mod exec;
mod hooks;
pub mod ids;
mod inroot;
pub mod install_kind;
mod join;
mod landlock;
pub mod lifecycle;
mod maps;
mod netns;
pub mod passwd;
pub mod pasta;
mod propagation;
mod protocol;
pub mod publish;
mod reaper;
mod resolv_point;
mod rootfs;
mod run;
pub mod runtime_dir;
pub mod sdnotify;
mod seccomp;
pub mod socket_activation;
pub use seccomp::{
    describe as describe_seccomp, profile_for as seccomp_profile_for,
    ANNOTATION as SECCOMP_ANNOTATION,
};
mod spec_fields;
pub mod state;
pub mod stop_at;
mod sys;
mod tty;

use std::path::PathBuf;

pub use cgroup_delegate::Manager as CgroupManager;
pub use config::{is_bind, mount_option_names, NAMESPACE_TYPES};
pub use landlock::ANNOTATION as LANDLOCK_ANNOTATION;
pub use protocol::{ChildFailure, Stage};
pub use run::{prepare, Container, Exit, Plan};
pub use stop_at::StopPoint;
pub use sys::{pidfd_send_signal, probe_user_namespace};

/// The search path a process gets when its environment has none, and the
/// one `kennel run` gives the container.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths hidden from the container by default (Docker's and runc's).
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths the container sees read-only by default (Docker's and runc's).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Decodes one sync-protocol frame as a message to the parent and as one
/// to the child, and says which it is. For the fuzz target (`fuzz/`): the
/// decoder must refuse any frame without a panic.
#[doc(hidden)]
pub fn decode_sync_frame(frame: &[u8]) -> (bool, bool) {
    (
        protocol::decode::<protocol::ToParent>(frame).is_ok(),
        protocol::decode::<protocol::ToChild>(frame).is_ok(),
    )
}

/// What went wrong. The front end decides how to say it and which exit
/// code it means.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container's process failed before its command ran: the stage,
    /// the errno and the path it was working on.
    #[error("{0}")]
    Container(ChildFailure),
    /// Anything else, with its context.
    #[error(transparent)]
    Setup(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the engine tells its front end while it works.
#[derive(Debug)]
pub enum Event<'a> {
    /// A choice the engine made, and why (kennel's `--verbose`).
    Decided(&'a str),
    /// Something asked for is not fully in effect, and why.
    Warning(&'a str),
}

/// How the container is run: everything besides the spec.
pub struct Options<'a> {
    /// Who runs the container.
    pub caller: ids::Caller,
    /// The container's id: its state record's name. None runs it unnamed.
    pub id: Option<String>,
    /// PID 1 is a small init that reaps and forwards signals.
    pub init: bool,
    /// Fds 3 to 3+N-1 are passed to the container's process.
    pub preserve_fds: u32,
    /// Sockets systemd passed to us (`socket_activation::inherited`): fds
    /// 3 to 3+count-1, before the `preserve_fds` ones, as runc orders them.
    pub activation: Option<socket_activation::Activation>,
    /// kennel-idmap, for maps this process may not write itself.
    pub helper: Option<PathBuf>,
    pub cgroup_manager: CgroupManager,
    pub cgroup_parent: Option<PathBuf>,
    /// The systemd notify protocol, when run as a `Type=notify` unit.
    pub notify: Option<sdnotify::Notify>,
    /// Called with each event; the default ignores them.
    pub events: Box<dyn Fn(&Event) + 'a>,
    /// Where the records are (`--root`); None: `state::default_root`.
    pub state_root: Option<PathBuf>,
    /// The OCI lifecycle: the container is created for another process to
    /// start (`Container::detach`), and its record stays until `delete`.
    /// Holds the bundle directory for the record.
    pub bundle: Option<PathBuf>,
    /// Test only: pause at this point of the start (see `stop_at`).
    pub stop_at: Option<StopPoint>,
}

/// A process left running for another process to look after: the
/// container's waiting init after `create`, or a detached `exec`.
#[derive(Debug)]
pub struct Detached {
    pub pid: i32,
    /// The pty master, when the process has a terminal.
    pub console: Option<std::os::fd::OwnedFd>,
}

impl<'a> Options<'a> {
    /// Options for `caller` with every default.
    pub fn new(caller: ids::Caller) -> Options<'a> {
        Options {
            caller,
            id: None,
            init: false,
            preserve_fds: 0,
            activation: None,
            helper: None,
            cgroup_manager: CgroupManager::Auto,
            cgroup_parent: None,
            notify: None,
            events: Box::new(|_| {}),
            state_root: None,
            bundle: None,
            stop_at: None,
        }
    }

    fn decided(&self, text: &str) {
        (self.events)(&Event::Decided(text));
    }

    fn warn(&self, text: &str) {
        (self.events)(&Event::Warning(text));
    }
}
