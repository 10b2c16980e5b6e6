//! The records under one root: the root checked before it is trusted, the
//! owner file that tells a live runner's claim, and records found, looked
//! up and listed against their live processes, stale ones removed.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;

use super::json::{load, Running, State, Status};
use crate::sys;

/// The records under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid container name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit");
    }
    Ok(())
}

impl Store {
    /// The records under `root`, or under the default root.
    pub fn new(root: Option<&Path>) -> Result<Store> {
        Ok(Store {
            root: match root {
                Some(r) => r.to_path_buf(),
                None => crate::host::runtime_dir::records_dir()?,
            },
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of container `id`'s record.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

/// The state root, made if missing, and refused unless it is a directory
/// of the caller's that nobody else may write: records there decide which
/// processes `kennel kill` signals and `kennel exec` enters.
pub(super) fn checked_state_root(root: &Path, create: bool) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let root = root.to_path_buf();
    if create {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| {
                let hint = crate::host::runtime_dir::env_dir_hint(&root)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                anyhow::anyhow!("cannot create {}: {e}{hint}", root.display())
            })?;
    }
    let md = match std::fs::symlink_metadata(&root) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", root.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    let why = if !md.is_dir() {
        Some("it is not a directory".to_string())
    } else if md.uid() != me {
        Some(format!(
            "it is owned by uid {}, not by you (uid {me})",
            md.uid()
        ))
    } else if md.mode() & 0o022 != 0 {
        Some(format!(
            "others may write to it (mode {:o})",
            md.mode() & 0o7777
        ))
    } else {
        None
    };
    if let Some(why) = why {
        bail!(
            "refusing the state directory {}: {why}; remove it (it holds only kennel's records) or choose a directory of yours with mode 0700",
            root.display()
        );
    }
    Ok(Some(root))
}

/// The runner that holds a reservation: its pid and start time, written
/// before the name appears, so a runner killed while starting is seen to
/// be gone at once.
pub(super) const OWNER: &str = "owner";

pub(super) fn own_identity() -> String {
    let pid = std::process::id() as i32;
    format!("{pid} {}\n", start_time(pid).unwrap_or(0))
}

/// Whether the runner recorded in `dir` is still alive.
pub(super) fn owner_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(OWNER)) else {
        return false;
    };
    let mut f = text.split_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(pid)), Some(Ok(since))) => {
            i32::try_from(pid).is_ok_and(|pid| start_time(pid) == Some(since))
        }
        _ => false,
    }
}

/// Whether the runner that claimed `dir` is still at work on it.
pub fn creator_alive(dir: &Path) -> bool {
    owner_alive(dir)
}

/// Removes claims of `name` made aside (`.NAME.PID`) by runners that died
/// before they could rename them into place.
pub fn remove_stale_claims(store: &Store, name: &str) {
    let Ok(entries) = std::fs::read_dir(&store.root) else {
        return;
    };
    for e in entries.flatten() {
        let entry = e.file_name().to_string_lossy().to_string();
        let mine = entry
            .strip_prefix('.')
            .and_then(|r| r.rsplit_once('.'))
            .is_some_and(|(n, _)| n == name);
        if let (true, Some(pid)) = (mine, aside_owner(&entry)) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Field 22 (starttime) of /proc/PID/stat, for a process that has not
/// exited (a zombie counts as gone).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and ')': skip past the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Checks a record against the live process. The pidfd is opened first and
/// the start time read after, so the pidfd is known to be the container's.
fn verify(state: State) -> Option<Running> {
    let pidfd = sys::pidfd_open(Pid::from_raw(state.pid)).ok()?;
    if start_time(state.pid)? != state.kennel.start_time {
        return None;
    }
    sys::pidfd_send_signal(pidfd.as_fd(), 0).ok()?;
    Some(Running { state, pidfd })
}

/// A live container by name; a stale record is removed (unless it is
/// kept for `delete`) and gives None.
pub fn find(store: &Store, name: &str) -> Result<Option<Running>> {
    validate_name(name)?;
    let Some(root) = checked_state_root(&store.root, false)? else {
        return Ok(None);
    };
    let dir = root.join(name);
    if !dir.exists() {
        return Ok(None);
    }
    let record = load(&dir);
    let kept = record.as_ref().is_some_and(|s| s.kennel.kept);
    match record.and_then(verify) {
        Some(r) => Ok(Some(r)),
        None => {
            // A run that is still starting has a directory but no state yet,
            // and its runner is alive.
            if !kept && (dir.join("state.json").exists() || !owner_alive(&dir)) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(None)
        }
    }
}

/// The record of container `id` (None if there is none), with its status
/// as it is now.
pub fn lookup(store: &Store, id: &str) -> Result<Option<(State, Option<OwnedFd>)>> {
    validate_name(id)?;
    let Some(root) = checked_state_root(&store.root, false)? else {
        return Ok(None);
    };
    let dir = root.join(id);
    let Some(mut state) = load(&dir) else {
        return Ok(None);
    };
    let live = verify(state.clone());
    state.status = match &live {
        None => Status::Stopped,
        Some(_) if dir.join(START_FIFO).exists() => Status::Created,
        Some(_) if frozen(state.kennel.cgroup.as_deref()) => Status::Paused,
        Some(_) => Status::Running,
    };
    Ok(Some((state, live.map(|r| r.pidfd))))
}

/// The fifo a created container's process waits on until `start`.
pub const START_FIFO: &str = "exec.fifo";

/// Whether the cgroup at `leaf` is frozen (cgroup v2's freezer).
fn frozen(leaf: Option<&Path>) -> bool {
    leaf.and_then(|l| std::fs::read_to_string(l.join("cgroup.freeze")).ok())
        .is_some_and(|v| v.trim() == "1")
}

/// All live containers, and the kept records of stopped ones, cleaning
/// stale records on the way.
pub fn list(store: &Store) -> Result<Vec<State>> {
    let Some(root) = checked_state_root(&store.root, false)? else {
        return Ok(vec![]);
    };
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = aside_owner(&name) {
            // A claim made aside by a runner killed before it could rename.
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
        if validate_name(&name).is_err() {
            continue;
        }
        // find() removes a stale record first; lookup() gives the status.
        let _ = find(store, &name)?;
        if let Some((state, _)) = lookup(store, &name)? {
            out.push(state);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The runner's pid in the name of a claim made aside (`.NAME.PID`).
fn aside_owner(entry: &str) -> Option<u32> {
    entry.strip_prefix('.')?.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_tricky_names() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time(&stat.replace(" S ", " Z ")), None);
        let own = start_time(std::process::id() as i32);
        assert!(own.is_some());
    }

    #[test]
    fn names() {
        for ok in ["web", "a.b-c_d", "9x"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "-x", ".x", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
