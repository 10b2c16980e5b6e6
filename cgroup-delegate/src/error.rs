//! What can go wrong placing a container in a cgroup, each with its fix.

use std::path::PathBuf;

/// The drop-in that delegates every controller kennel can limit.
pub const DELEGATE_FIX: &str = "create /etc/systemd/system/user@.service.d/delegate.conf containing \"[Service]\\nDelegate=cpu cpuset io memory pids\", run `sudo systemctl daemon-reload`, then log in again";

/// Whether systemd is this host's init (sd_booted(3)): fixes that name
/// its boot options or drop-ins apply only then.
pub fn systemd_booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// How to get cgroup v2 at /sys/fs/cgroup, for a host with or without
/// systemd as init.
pub fn cgroup2_fix(systemd: bool) -> &'static str {
    match systemd {
        true => "boot with systemd.unified_cgroup_hierarchy=1 (the default on current distributions)",
        false => "have your init mount cgroup2 at /sys/fs/cgroup instead of the v1 hierarchies (OpenRC: rc_cgroup_mode=\"unified\" in /etc/rc.conf)",
    }
}

/// How to make `controller` available below `path`.
fn delegate_fix(systemd: bool, controller: &str, path: &std::path::Path) -> String {
    match systemd {
        true => DELEGATE_FIX.to_string(),
        false => format!(
            "as root, enable it in cgroup.subtree_control of every directory above {} (echo +{controller} > DIR/cgroup.subtree_control, from /sys/fs/cgroup down)",
            path.display()
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("resource limits need a cgroup, but --cgroup-manager=disabled was given; drop the limit flags or use --cgroup-manager=auto")]
    LimitsWithoutCgroup,

    #[error("{wanted} cgroup v2 at /sys/fs/cgroup, but this host mounts {found} there; {fix}, or run without limits and with --cgroup-manager=disabled", fix = cgroup2_fix(*systemd))]
    NoCgroup2 {
        wanted: String,
        found: String,
        /// Whether systemd is init, for the fix.
        systemd: bool,
    },

    #[error("the {controller} controller is not delegated to {path} ({limit} needs it); to delegate it: {fix}", path = path.display(), fix = delegate_fix(*systemd, controller, path))]
    NotDelegated {
        controller: &'static str,
        limit: &'static str,
        path: PathBuf,
        /// Whether systemd is init, for the fix.
        systemd: bool,
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

    #[error("{what} is a cgroup v2 file, and this host keeps its controllers on cgroup v1; {instead}, or run on a cgroup v2 host")]
    V2Only {
        what: &'static str,
        instead: &'static str,
    },

    #[error("resource limits on cgroup v1 need root (this host keeps its controllers on cgroup v1, and its hierarchies are not delegated); run as root, or on a cgroup v2 host ({fix}), or without limits", fix = cgroup2_fix(*systemd))]
    V1NeedsRoot { systemd: bool },

    #[error("{limit} needs the {controller} controller, which no cgroup v1 hierarchy mounted at its root holds on this host (see /proc/self/cgroup and /proc/self/mountinfo); mount it, or leave the limit out")]
    NoV1Controller {
        controller: &'static str,
        limit: &'static str,
    },

    #[error("the systemd cgroup driver is not implemented on cgroup v1; use the cgroupfs driver (leave out --systemd-cgroup), or run on a cgroup v2 host")]
    SystemdOnV1,

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

    /// Asking systemd for a scope where it is not init: its bus, its
    /// sessions and lingering are no fix there.
    #[error("{wanted} a cgroup, but systemd is not this host's init, so there is no manager to ask for a scope; place it with --cgroup-manager=cgroupfs (rootless: and --cgroup-parent naming a cgroup v2 directory delegated to you), or run without limits")]
    NoSystemd { wanted: String },
}

pub type Result<T> = std::result::Result<T, CgroupError>;

pub fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.into();
    move |cause| CgroupError::Io { op, path, cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_name_systemd_only_where_it_is_init() {
        let no_v2 = |systemd| {
            CgroupError::NoCgroup2 {
                wanted: "--memory needs".into(),
                found: "cgroup v1 or a hybrid layout".into(),
                systemd,
            }
            .to_string()
        };
        assert!(no_v2(true).contains("boot with systemd.unified_cgroup_hierarchy=1"));
        assert!(!no_v2(false).contains("systemd"), "{}", no_v2(false));
        assert!(no_v2(false).contains("mount cgroup2 at /sys/fs/cgroup"));
        let not_delegated = |systemd| {
            CgroupError::NotDelegated {
                controller: "memory",
                limit: "--memory",
                path: "/sys/fs/cgroup/mine".into(),
                systemd,
            }
            .to_string()
        };
        assert!(not_delegated(true).ends_with(DELEGATE_FIX));
        let text = not_delegated(false);
        assert!(!text.contains("systemd"), "{text}");
        assert!(
            text.contains("echo +memory > DIR/cgroup.subtree_control"),
            "{text}"
        );
    }
}
