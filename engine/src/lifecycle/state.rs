//! Container records: `ROOT/ID/state.json`, ROOT being `--root`, else
//! `kennel` in the runtime directory (`runtime_dir`: `$XDG_RUNTIME_DIR` or
//! its fallback; as real root `/run`). A record is in
//! OCI's shape (`ociVersion`, `id`, `status`, `pid`, `bundle`,
//! `annotations`) plus what kennel keeps for itself under `kennel`. A
//! record is trusted only while its pid is alive with the same start time.
//! `kennel run`'s records go with their runner; those of an OCI container
//! stay, stopped, until `delete`.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::spec::OCI_VERSION;
use crate::sys;

/// A container's status, as the runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    /// As recorded; `Store::status` says what it is now.
    pub status: Status,
    pub pid: i32,
    /// The bundle directory (empty for a container built from flags).
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub kennel: Private,
}

/// What kennel keeps for itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Private {
    /// Field 22 of /proc/PID/stat: tells a recycled pid from ours.
    pub start_time: u64,
    pub rootfs: Option<PathBuf>,
    pub command: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// The container's process, for `exec` to inherit env, user and caps.
    pub process: Process,
    /// The container's cgroup leaf, when it has one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Its cgroups in the cgroup v1 hierarchies (a v1 or hybrid host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_v1: Vec<PathBuf>,
    /// The record stays after the container stops, until `delete` (the
    /// OCI lifecycle); otherwise it goes with the runner.
    #[serde(default)]
    pub kept: bool,
    /// poststart and poststop, for `start` and `delete` to run.
    #[serde(default)]
    pub hooks: crate::host::hooks::HookPlans,
    /// linux.seccomp, which `exec` installs in its process too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The container's Landlock rules, for `exec` to confine its command
    /// the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<crate::spec::process::Rules>,
    /// The container's network (pasta, or a bridge), for `ps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// PID 1 is kennel's --init, which takes every signal it forwards
    /// with sigwait: /proc shows no handler for them.
    #[serde(default)]
    pub init: bool,
    /// The container has a pid namespace of its own, made for it: its
    /// processes are that namespace's, and go with its first process.
    /// Otherwise (the host's, or one joined by path) they are told by
    /// their mount namespace, which is always the container's own.
    #[serde(default = "own_pid_namespace_before_it_was_recorded")]
    pub own_pid_namespace: bool,
}

/// Records written before the field were all of containers with a pid
/// namespace made for them.
fn own_pid_namespace_before_it_was_recorded() -> bool {
    true
}

/// A pasta or bridged container's network as `ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub mode: String,
    /// The container's IPv4 address (pasta copies the host's).
    pub address: Option<std::net::IpAddr>,
    /// `[IP:]HOSTPORT:CONTAINERPORT/PROTO` each.
    pub publish: Vec<String>,
}

/// A live container, with a pidfd that is known to refer to it.
pub struct Running {
    pub state: State,
    pub pidfd: OwnedFd,
}

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
fn checked_state_root(root: &Path, create: bool) -> Result<Option<PathBuf>> {
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

/// A claimed name; the directory is removed when this is dropped, unless
/// it was kept (`keep`).
pub struct Reservation {
    dir: PathBuf,
    name: String,
    /// What we wrote to its owner file (`own_identity`).
    owner: String,
    kept: bool,
}

impl Reservation {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves the record in place for `delete` to remove.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    /// Removes the record only while it is still ours: once our container
    /// has exited, another runner may have found it stale and claimed the
    /// name before we got here.
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let ours = std::fs::read_to_string(self.dir.join(OWNER)).is_ok_and(|o| o == self.owner);
        if ours {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The runner that holds a reservation: its pid and start time, written
/// before the name appears, so a runner killed while starting is seen to
/// be gone at once.
const OWNER: &str = "owner";

fn own_identity() -> String {
    let pid = std::process::id() as i32;
    format!("{pid} {}\n", start_time(pid).unwrap_or(0))
}

/// Whether the runner recorded in `dir` is still alive.
fn owner_alive(dir: &Path) -> bool {
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

/// Claims `name` atomically: a directory holding our identity is made
/// aside and renamed into place. A stale record of the same name (its
/// container gone, or its runner killed while starting) is cleaned first;
/// a live one is an error.
pub fn reserve(store: &Store, name: &str) -> Result<Reservation> {
    /// The claim made aside: removed on every way out, unless it was
    /// renamed into place (then there is nothing left to remove).
    struct Aside(PathBuf);
    impl Drop for Aside {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    validate_name(name)?;
    let root = checked_state_root(&store.root, true)?.context("no state directory")?;
    let dir = root.join(name);
    let aside = Aside(root.join(format!(".{name}.{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&aside.0);
    std::fs::create_dir(&aside.0)
        .with_context(|| format!("cannot create {}", aside.0.display()))?;
    let owner = own_identity();
    std::fs::write(aside.0.join(OWNER), &owner)
        .with_context(|| format!("cannot write {}", aside.0.join(OWNER).display()))?;
    for _ in 0..3 {
        match std::fs::rename(&aside.0, &dir) {
            Ok(()) => {
                return Ok(Reservation {
                    dir,
                    name: name.to_string(),
                    owner,
                    kept: false,
                })
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                if let Some(r) = find(store, name)? {
                    bail!(
                        "a container named {name:?} already exists (pid {}, {}); pick another name, or remove it first",
                        r.state.pid,
                        r.state.status
                    );
                }
                if load(&dir).is_some_and(|s| s.kennel.kept) {
                    bail!("a container named {name:?} already exists (stopped); delete it first");
                }
                if dir.exists() && !dir.join("state.json").exists() && owner_alive(&dir) {
                    bail!("a container named {name:?} is being started by another kennel; pick another --name");
                }
                // find() removed the stale record; try again.
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    bail!(
        "cannot claim the name {name:?}: {} keeps reappearing",
        dir.display()
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a record says about a container besides its reservation.
pub struct Recorded<'a> {
    pub pid: Pid,
    pub start_time: u64,
    pub spec: &'a Spec,
    pub cgroup: Option<PathBuf>,
    pub cgroup_v1: Vec<PathBuf>,
    pub status: Status,
    pub bundle: Option<&'a Path>,
    pub kept: bool,
    pub hooks: &'a crate::host::hooks::HookPlans,
    pub landlock: Option<&'a crate::spec::process::Rules>,
    pub init: bool,
    /// The address kennel-net gave a bridged container.
    pub bridge_address: Option<std::net::Ipv4Addr>,
}

/// Writes (or rewrites) the record of a reserved container, atomically.
pub fn record(res: &Reservation, r: &Recorded) -> Result<()> {
    let process = r.spec.process().clone().unwrap_or_default();
    let state = State {
        oci_version: OCI_VERSION.to_string(),
        id: res.name.clone(),
        status: r.status,
        pid: r.pid.as_raw(),
        bundle: r.bundle.map(Path::to_path_buf).unwrap_or_default(),
        annotations: r
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        kennel: Private {
            start_time: r.start_time,
            rootfs: r.spec.root().as_ref().map(|root| root.path().clone()),
            command: process.args().clone().unwrap_or_default(),
            created: now(),
            process,
            cgroup: r.cgroup.clone(),
            cgroup_v1: r.cgroup_v1.clone(),
            kept: r.kept,
            hooks: crate::host::hooks::HookPlans {
                poststart: r.hooks.poststart.clone(),
                poststop: r.hooks.poststop.clone(),
                ..Default::default()
            },
            seccomp: r.spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            landlock: r.landlock.cloned(),
            init: r.init,
            own_pid_namespace: owns_pid_namespace(r.spec),
            network: match crate::net::bridge::plan(r.spec.annotations().as_ref()) {
                Ok(Some(plan)) => Some(Network {
                    mode: format!("bridge={}", plan.bridge),
                    address: r.bridge_address.map(std::net::IpAddr::V4),
                    publish: Vec::new(),
                }),
                _ => crate::net::publish::plan(r.spec.annotations().as_ref())
                    .ok()
                    .flatten()
                    .map(|plan| Network {
                        mode: "pasta".into(),
                        address: crate::net::pasta::container_address(),
                        publish: plan.publish.iter().map(|p| p.to_string()).collect(),
                    }),
            },
        },
    };
    let init = res.dir.join(INIT);
    if !init.exists() {
        std::fs::write(&init, format!("{} {}\n", r.pid, r.start_time))
            .with_context(|| format!("cannot write {}", init.display()))?;
    }
    write_record(&res.dir, &state)
}

/// Whether the spec has a pid namespace made for the container (listed,
/// with no path to join).
fn owns_pid_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none()
            })
        })
}

/// The container's first process as a line of its own (`pid start_time`),
/// written with its first record: `delete --force` finds the process by it
/// even when state.json cannot be read.
const INIT: &str = "init";

/// The container's first process from the `init` file of `dir`, while it
/// lives (same start time), as a pidfd known to refer to it.
pub fn recorded_init(dir: &Path) -> Option<OwnedFd> {
    let text = std::fs::read_to_string(dir.join(INIT)).ok()?;
    let mut f = text.split_whitespace();
    let pid: i32 = f.next()?.parse().ok()?;
    let since: u64 = f.next()?.parse().ok()?;
    let pidfd = sys::pidfd_open(Pid::from_raw(pid)).ok()?;
    (start_time(pid)? == since).then_some(pidfd)
}

/// The container's cgroups, one path a line (its leaf first, then its v1
/// cgroups), written as soon as they are made, before its first process
/// and record: `delete --force` removes them even when a creator killed
/// on the way left no record naming them.
const CGROUPS: &str = "cgroups";

/// Writes the `cgroups` file of a reserved container.
pub fn record_cgroups(res: &Reservation, leaf: &Path, v1: &[PathBuf]) -> Result<()> {
    let mut text = format!("{}\n", leaf.display());
    for d in v1.iter().filter(|d| d.as_path() != leaf) {
        text.push_str(&format!("{}\n", d.display()));
    }
    let path = res.dir.join(CGROUPS);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The cgroups the `cgroups` file of `dir` names: the leaf, then the v1
/// ones. Only paths under /sys/fs/cgroup are taken.
pub fn recorded_cgroups(dir: &Path) -> Option<(PathBuf, Vec<PathBuf>)> {
    let text = std::fs::read_to_string(dir.join(CGROUPS)).ok()?;
    let mut paths = text
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.starts_with("/sys/fs/cgroup") && !p.ends_with(".."));
    let leaf = paths.next()?;
    Some((leaf, paths.collect()))
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

/// Replaces the record in `dir` with `state`, atomically.
pub fn write_record(dir: &Path, state: &State) -> Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("state.json")).context("cannot record the container's state")?;
    Ok(())
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

/// The record in `dir`, whatever the state of its container.
pub fn load(dir: &Path) -> Option<State> {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()
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
