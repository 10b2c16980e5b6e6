//! A failure inside the container, as the child reports it: the stage,
//! the errno, the path, and one line that says them.

use nix::errno::Errno;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

/// The errno of an I/O error (EIO when it carries none).
pub fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// What the child was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Namespaces,
    WaitForMaps,
    Hostname,
    Network,
    UserNetwork,
    Mount,
    PivotRoot,
    Terminal,
    Rlimit,
    User,
    Capabilities,
    Workdir,
    Keyring,
    Seccomp,
    Sysctl,
    Hooks,
    Landlock,
    Init,
    Exec,
}

impl Stage {
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Namespaces => "creating the container's",
            Stage::WaitForMaps => "waiting for the id maps",
            Stage::Hostname => "setting the hostname",
            Stage::Network => "bringing up lo",
            Stage::UserNetwork => "waiting for the container's network (pasta)",
            Stage::Mount => "mount",
            Stage::PivotRoot => "pivot_root",
            Stage::Terminal => "setting up the terminal",
            Stage::Rlimit => "setting a resource limit",
            Stage::User => "switching to the container user",
            Stage::Capabilities => "setting capabilities",
            Stage::Workdir => "changing to the working directory",
            Stage::Keyring => "creating the container's session keyring",
            Stage::Seccomp => "installing the seccomp filter of linux.seccomp",
            Stage::Sysctl => "setting the sysctl",
            Stage::Hooks => "running the hooks",
            Stage::Landlock => "confining the container with Landlock",
            Stage::Init => "starting the init process",
            Stage::Exec => "executing",
        }
    }
}

/// A failure inside the container, as sent to the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildFailure {
    pub stage: Stage,
    /// 0 when the failure is not a system call's.
    pub errno: i32,
    /// The path (or value) the stage was working on.
    pub path: Option<String>,
    /// What the child knows that the errno does not say.
    pub detail: Option<String>,
}

impl ChildFailure {
    pub fn new(stage: Stage, errno: Errno, path: impl Into<Option<String>>) -> Self {
        ChildFailure {
            stage,
            errno: errno as i32,
            path: path.into(),
            detail: None,
        }
    }

    /// The same failure, told about `path` (the user's name for what a
    /// system call reached through an fd).
    pub fn at(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.path = Some(path.as_ref().display().to_string());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }
}

/// A failure to create the namespace `which` (one flag), with the limit
/// that refused it when that is the cause.
pub fn namespace_failure(e: Errno, which: CloneFlags) -> ChildFailure {
    let name = match which {
        CloneFlags::CLONE_NEWNS => "mnt",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "other",
    };
    let f = ChildFailure::new(Stage::Namespaces, e, Some(format!("{name} namespace")));
    if e == Errno::ENOSPC {
        f.with_detail(format!(
            "the limit user.max_{name}_namespaces is reached, here or in a user namespace kennel runs in; raise it, e.g. `sudo sysctl -w user.max_{name}_namespaces=15000`"
        ))
    } else {
        f
    }
}

/// One line: what failed, on what, and why.
impl std::fmt::Display for ChildFailure {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errno = self.errno();
        let path = self.path.as_deref().unwrap_or("");
        if self.stage == Stage::Exec {
            let why = match (errno, &self.detail) {
                (_, Some(d)) => d.clone(),
                (Errno::ENOENT, None) => "no such file (or its interpreter is missing)".into(),
                (Errno::EACCES, None) => "permission denied (is it executable?)".into(),
                (e, None) => e.desc().to_string(),
            };
            return write!(out, "cannot execute {path:?}: {why}");
        }
        write!(out, "{}", self.stage.describe())?;
        if !path.is_empty() {
            write!(out, " {path}")?;
        }
        match self.errno {
            0 => write!(out, " failed")?,
            _ => write!(out, " failed: {}", errno.desc())?,
        }
        if let Some(d) = &self.detail {
            write!(out, " ({d})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_with_any_errno_and_path_still_displays() {
        for errno in [0, -1, 4095, i32::MAX, i32::MIN] {
            let f = ChildFailure {
                stage: Stage::Exec,
                errno,
                path: Some("\u{0}\n\u{202e}".into()),
                detail: None,
            };
            assert!(!f.to_string().is_empty());
            let f = ChildFailure {
                stage: Stage::Mount,
                ..f
            };
            assert!(!f.to_string().is_empty());
        }
    }
}
