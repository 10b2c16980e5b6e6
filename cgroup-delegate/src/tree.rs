//! Reading and shaping the cgroup v2 tree.

use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::unistd::{access, AccessFlags};

use crate::error::{io, CgroupError, Result};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The leaf a runner moves itself (and its unit's other processes) into,
/// so the unit's cgroup may enable controllers for its children.
pub const SUPERVISOR_LEAF: &str = "kennel-supervisor";

/// Whether /sys/fs/cgroup is the cgroup v2 unified hierarchy.
pub fn cgroup2_mounted() -> bool {
    statfs(CGROUP_ROOT).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// What is mounted at /sys/fs/cgroup, for error messages.
pub fn describe_mount() -> String {
    match statfs(CGROUP_ROOT) {
        Ok(s) if s.filesystem_type() == CGROUP2_SUPER_MAGIC => "cgroup v2".into(),
        Ok(_) => "cgroup v1 or a hybrid layout".into(),
        Err(e) => format!("nothing ({})", e.desc()),
    }
}

/// Our cgroup v2 path ("/user.slice/..."), from /proc/self/cgroup.
pub fn own_cgroup() -> Result<String> {
    let text =
        std::fs::read_to_string("/proc/self/cgroup").map_err(io("read", "/proc/self/cgroup"))?;
    Ok(parse_own_cgroup(&text).unwrap_or_else(|| "/".into()))
}

pub fn parse_own_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

pub fn absolute(cgroup: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(cgroup.trim_start_matches('/'))
}

fn writable(path: &Path) -> bool {
    access(path, AccessFlags::W_OK).is_ok()
}

/// Whether `dir` is a unit's cgroup we may manage ourselves: for an
/// unprivileged caller, one whose process list and subtree_control we may
/// write (a user unit with `Delegate=yes`; systemd 252 marks user units no
/// other way); for root, which may write anything, one systemd marked
/// delegated with the `trusted.delegate` attribute.
pub fn is_delegated(dir: &Path) -> bool {
    let is_unit = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".service") || n.ends_with(".scope"));
    if !is_unit {
        return false;
    }
    if nix::unistd::geteuid().is_root() {
        return kennel_sys::get_xattr(dir, "trusted.delegate")
            .ok()
            .flatten()
            .is_some_and(|v| v == b"1");
    }
    writable(&dir.join("cgroup.procs")) && writable(&dir.join("cgroup.subtree_control"))
}

pub fn read_controllers(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("cgroup.controllers");
    let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// Enables `controllers` for the children of `dir`.
pub fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<()> {
    if controllers.is_empty() {
        return Ok(());
    }
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let path = dir.join("cgroup.subtree_control");
    std::fs::write(&path, missing.join(" ")).map_err(io("enable controllers in", &path))
}

/// Moves every process of `from` into `to` (a leaf under it).
pub fn move_all_processes(from: &Path, to: &Path) -> Result<()> {
    let procs = from.join("cgroup.procs");
    let target = to.join("cgroup.procs");
    // A process may fork while we move its siblings: loop until empty.
    for _ in 0..10 {
        let text = std::fs::read_to_string(&procs).map_err(io("read", &procs))?;
        let pids: Vec<&str> = text.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match std::fs::write(&target, pid) {
                Ok(()) => {}
                // Exited meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(io("move processes into", &target)(e)),
            }
        }
    }
    Err(CgroupError::Io {
        op: "empty",
        path: from.to_path_buf(),
        cause: std::io::Error::from_raw_os_error(libc::EBUSY),
    })
}

pub fn mkdir(path: &Path) -> Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io("create", path)(e)),
    }
}

/// Makes a container's leaf. One already there that holds no process and
/// no cgroup (a creator killed between making it and recording it, whose
/// `delete --force` could not know it) is taken back: the kernel refuses
/// to remove a cgroup that holds either, so a live container's stays, and
/// the answer is false, as for `mkdir`.
pub fn make_leaf_dir(path: &Path) -> Result<bool> {
    if mkdir(path)? {
        return Ok(true);
    }
    match std::fs::remove_dir(path) {
        Ok(()) => mkdir(path),
        Err(_) => Ok(false),
    }
}

/// Whether any process is left in `dir` or below (cgroup.events).
pub fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// A counter from a flat-keyed file such as memory.events.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_line() {
        assert_eq!(
            parse_own_cgroup("0::/user.slice/a.scope\n").as_deref(),
            Some("/user.slice/a.scope")
        );
        assert_eq!(
            parse_own_cgroup("12:pids:/x\n1:name=systemd:/y\n0::/z\n").as_deref(),
            Some("/z")
        );
        assert_eq!(parse_own_cgroup("12:pids:/x\n"), None);
        assert_eq!(absolute("/a/b"), PathBuf::from("/sys/fs/cgroup/a/b"));
    }

    #[test]
    fn keyed() {
        let t = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(keyed_value(t, "oom_kill"), Some(2));
        assert_eq!(keyed_value(t, "oom"), Some(1));
        assert_eq!(keyed_value(t, "nope"), None);
    }
}
