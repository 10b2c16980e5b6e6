//! What can go wrong placing a container in a cgroup, each with its fix.

use std::path::PathBuf;

/// The drop-in that delegates every controller kennel can limit.
pub const DELEGATE_FIX: &str = "create /etc/systemd/system/user@.service.d/delegate.conf containing \"[Service]\\nDelegate=cpu cpuset io memory pids\", run `sudo systemctl daemon-reload`, then log in again";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("resource limits need a cgroup, but --cgroup-manager=disabled was given; drop the limit flags or use --cgroup-manager=auto")]
    LimitsWithoutCgroup,

    #[error("{wanted} cgroup v2 at /sys/fs/cgroup, but this host mounts {found} there; boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2), or run without limits and with --cgroup-manager=disabled")]
    NoCgroup2 { wanted: String, found: String },

    #[error("the {controller} controller is not delegated to {path} ({limit} needs it); to delegate it: {fix}", path = path.display(), fix = DELEGATE_FIX)]
    NotDelegated {
        controller: &'static str,
        limit: &'static str,
        path: PathBuf,
    },

    #[error("cannot {op} {path}: {cause}", path = path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("the kernel refused {file}={value} for the container: {cause}{hint}")]
    LimitRefused {
        file: &'static str,
        value: String,
        cause: std::io::Error,
        hint: &'static str,
    },

    #[error("--cgroup-manager=cgroupfs needs --cgroup-parent DIR (a cgroup v2 directory delegated to you) when not run as root")]
    NeedParent,

    #[error("--cgroup-parent {path} is not a cgroup v2 directory", path = path.display())]
    BadParent { path: PathBuf },

    #[error("cgroup {path} already exists: is another container of that name running? (pick another --name)", path = path.display())]
    LeafExists { path: PathBuf },

    #[error("{what}: {cause}")]
    Systemd {
        what: String,
        cause: crate::systemd::SystemdError,
    },
}

pub type Result<T> = std::result::Result<T, CgroupError>;

pub fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.into();
    move |cause| CgroupError::Io { op, path, cause }
}
