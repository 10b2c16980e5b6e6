//! Choosing the container's cgroup, making it, and cleaning it up.
//!
//! Every manager ends in the same shape, so one code path handles it:
//!
//! ```text
//! <unit>/                      delegated to us (service, scope, or --cgroup-parent)
//!   kennel-supervisor/         the runner (and its unit's other processes)
//!   kennel-<name>/             the container's leaf: limits, clone3 target
//! ```
//!
//! A cgroup with processes may not enable controllers for its children (the
//! no-internal-processes rule), hence the supervisor leaf. With cgroupfs the
//! parent is not ours to move into, so the leaf goes straight under it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::error::{io, CgroupError, Result};
use crate::limits::Limits;
use crate::systemd::{self, Bus, ScopeRequest};
use crate::tree::{self, SUPERVISOR_LEAF};

/// `--cgroup-manager`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// A delegated cgroup we already run in, else systemd; without either,
    /// no cgroup at all when no limit was asked for.
    Auto,
    Systemd,
    Cgroupfs,
    Disabled,
}

#[derive(Debug, Clone)]
pub struct PlaceRequest {
    pub manager: Manager,
    /// The container's name, or a generated id: names the leaf and the scope.
    pub id: String,
    /// `--cgroup-parent` for cgroupfs.
    pub parent: Option<PathBuf>,
    /// linux.cgroupsPath: on cgroup v1, the container's cgroup in each
    /// hierarchy, as runc's cgroupfs driver reads it (see `v1::inner`).
    pub path: Option<PathBuf>,
    pub limits: Limits,
    /// linux.resources.devices has rules, which an eBPF program on a v2
    /// cgroup enforces (or, on a pure v1 host, the devices controller): as
    /// root on a v1 or hybrid host that is a reason to make the
    /// container's cgroup (the unified leaf, or the devices one) even
    /// without a limit.
    pub device_rules: bool,
    /// Timeout for systemd's job.
    pub timeout: Duration,
}

/// How the cgroup was obtained, for `--verbose`, `ps` and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// Inside the delegated unit kennel already ran in: no D-Bus call.
    DelegatedUnit,
    /// A transient scope from systemd.
    SystemdScope { unit: String },
    /// Written directly.
    Cgroupfs,
    /// Written directly in each cgroup v1 hierarchy the limits need (and
    /// the unified tree of a hybrid host).
    CgroupfsV1,
}

/// The container's leaf.
#[derive(Debug)]
pub struct Placement {
    /// Absolute path of the leaf, under /sys/fs/cgroup: a cgroup v2
    /// directory (on a hybrid host, in the unified tree), except on a pure
    /// cgroup v1 host, where it is the first of `v1`.
    pub leaf: PathBuf,
    /// An O_PATH directory fd of the v2 leaf, for clone3(CLONE_INTO_CGROUP).
    pub leaf_fd: Option<OwnedFd>,
    pub how: How,
    pub limits: Limits,
    /// The container's cgroups in the v1 hierarchies, which it cannot be
    /// born into: [`Placement::add_v1`] moves it.
    pub v1: Vec<PathBuf>,
}

/// What happened to the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub oom_killed: bool,
}

/// The outcome of [`place`]: a leaf, or why there is none.
#[derive(Debug)]
pub enum Placed {
    Leaf(Placement),
    /// No cgroup of its own; the string says why (for `--verbose`).
    None(String),
}

fn wanted(limits: &Limits) -> String {
    if limits.is_empty() {
        "this --cgroup-manager needs".into()
    } else {
        "resource limits need".into()
    }
}

pub fn place(req: &PlaceRequest) -> Result<Placed> {
    if req.manager == Manager::Disabled {
        if !req.limits.is_empty() {
            return Err(CgroupError::LimitsWithoutCgroup);
        }
        return Ok(Placed::None("--cgroup-manager=disabled".into()));
    }
    // Check the limits themselves before anything is created.
    req.limits.files()?;
    if !tree::cgroup2_mounted() {
        if let Some(placed) = place_v1(req)? {
            return Ok(placed);
        }
        if req.manager == Manager::Auto && req.limits.is_empty() {
            return Ok(Placed::None(format!(
                "cgroup v2 is not mounted at {} ({}), and no limit was asked for",
                tree::CGROUP_ROOT,
                tree::describe_mount()
            )));
        }
        return Err(CgroupError::NoCgroup2 {
            wanted: wanted(&req.limits),
            found: tree::describe_mount(),
            systemd: crate::error::systemd_booted(),
        });
    }
    // Root of a user namespace kennel did not make (rootless podman's
    // runtime calls) is the user it maps to, to systemd and the cgroup tree.
    let root = nix::unistd::geteuid().is_root() && crate::systemd::host_uid().is_none();
    let no_systemd = || CgroupError::NoSystemd {
        wanted: wanted(&req.limits),
    };
    match req.manager {
        Manager::Cgroupfs => place_cgroupfs(req, root),
        Manager::Systemd if !crate::error::systemd_booted() => Err(no_systemd()),
        Manager::Systemd => place_with_systemd(req, root),
        Manager::Auto => {
            let own = tree::absolute(&tree::own_cgroup()?);
            let unit = unit_dir(&own);
            // A unit we may write, with every controller the limits need
            // (a user service without Delegate=yes has only memory and
            // pids): no D-Bus call at all. Otherwise a scope has them.
            if tree::is_delegated(&unit) && has_controllers(&unit, &req.limits)? {
                return prepare_delegated(&unit, req, How::DelegatedUnit).map(Placed::Leaf);
            }
            if !crate::error::systemd_booted() {
                return match req.limits.is_empty() {
                    true => Ok(Placed::None(
                        "no delegated cgroup, and systemd is not this host's init to ask for a scope; no limit was asked for, so the container shares kennel's cgroup".into(),
                    )),
                    false => Err(no_systemd()),
                };
            }
            match place_with_systemd(req, root) {
                Err(CgroupError::Systemd { cause, .. }) if req.limits.is_empty() && cause.is_unreachable() => Ok(
                    Placed::None(format!("no delegated cgroup and {cause}; no limit was asked for, so the container shares kennel's cgroup")),
                ),
                other => other,
            }
        }
        Manager::Disabled => unreachable!("handled above"),
    }
}

/// On a cgroup v1 or hybrid host, as root: the container's cgroups in
/// the v1 hierarchies. None where v1 does not apply (no v1 controller, or
/// nothing asked for), so the caller says what it says without cgroup v2.
fn place_v1(req: &PlaceRequest) -> Result<Option<Placed>> {
    let layout = crate::v1::Layout::read()?;
    if !layout.has_v1() {
        return Ok(None);
    }
    let root = nix::unistd::geteuid().is_root() && crate::systemd::host_uid().is_none();
    // Rootless, device rules are skipped (see the engine's device_rules):
    // they ask for a leaf only where the program can go on one.
    let for_devices = req.device_rules && root;
    let asked = !req.limits.is_empty() || req.manager == Manager::Cgroupfs || for_devices;
    if !asked {
        return Ok(None);
    }
    if !root {
        return Err(CgroupError::V1NeedsRoot {
            systemd: crate::error::systemd_booted(),
        });
    }
    if req.manager == Manager::Systemd {
        return Err(CgroupError::SystemdOnV1);
    }
    crate::v1::place(req, &layout).map(|p| Some(Placed::Leaf(p)))
}

/// The unit's own directory: a runner already in its supervisor leaf (a
/// second kennel in the same unit) places containers beside it.
fn unit_dir(own: &Path) -> PathBuf {
    if own.file_name().is_some_and(|n| n == SUPERVISOR_LEAF) {
        own.parent().unwrap_or(own).to_path_buf()
    } else {
        own.to_path_buf()
    }
}

fn place_with_systemd(req: &PlaceRequest, root: bool) -> Result<Placed> {
    let unit = format!("kennel-{}.scope", req.id);
    let scope = ScopeRequest {
        unit: &unit,
        pid: std::process::id(),
        description: &format!("kennel container {}", req.id),
        timeout: req.timeout,
    };
    let bus = if root { Bus::System } else { Bus::User };
    systemd::start_scope(bus, &scope).map_err(|cause| CgroupError::Systemd {
        what: format!("asking systemd for the scope {unit}"),
        cause,
    })?;
    // systemd moved us into the scope: that is now our cgroup.
    let scope_dir = tree::absolute(&tree::own_cgroup()?);
    prepare_delegated(&scope_dir, req, How::SystemdScope { unit }).map(Placed::Leaf)
}

fn place_cgroupfs(req: &PlaceRequest, root: bool) -> Result<Placed> {
    let parent = match &req.parent {
        Some(p) => {
            let p = if p.is_absolute() && p.starts_with(tree::CGROUP_ROOT) {
                p.clone()
            } else {
                tree::absolute(&p.to_string_lossy())
            };
            if !p.join("cgroup.controllers").exists() {
                return Err(CgroupError::BadParent { path: p });
            }
            p
        }
        None if root => {
            let p = tree::absolute("kennel");
            let controllers = needed_controllers(Path::new(tree::CGROUP_ROOT), &req.limits)?;
            tree::enable_controllers(Path::new(tree::CGROUP_ROOT), &controllers)?;
            tree::mkdir(&p)?;
            p
        }
        None => return Err(CgroupError::NeedParent),
    };
    let controllers = needed_controllers(&parent, &req.limits)?;
    tree::enable_controllers(&parent, &controllers)?;
    make_leaf(&parent, req, How::Cgroupfs).map(Placed::Leaf)
}

fn has_controllers(dir: &Path, limits: &Limits) -> Result<bool> {
    let available = tree::read_controllers(dir)?;
    Ok(limits
        .controllers()?
        .iter()
        .all(|c| available.iter().any(|a| a == c)))
}

/// The controllers to enable below `dir`: those the limits need (each must
/// be available there, or the error names it and the fix), plus the ones
/// `kennel stats` reads when they are available anyway.
fn needed_controllers(dir: &Path, limits: &Limits) -> Result<Vec<&'static str>> {
    let available = tree::read_controllers(dir)?;
    let files = limits.files()?;
    let mut out = Vec::new();
    for f in &files {
        if !available.iter().any(|a| a == f.controller) {
            return Err(CgroupError::NotDelegated {
                controller: f.controller,
                limit: f.flag,
                path: dir.to_path_buf(),
                systemd: crate::error::systemd_booted(),
            });
        }
        out.push(f.controller);
    }
    for extra in ["memory", "pids", "cpu"] {
        if available.iter().any(|a| a == extra) {
            out.push(extra);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Empty container leaves older than this, left by a runner that was
/// SIGKILLed, are removed by the next run in the same unit. (A scope needs
/// no such care: systemd removes it, leaves and all, once it is empty.)
const STALE_LEAF_AGE: Duration = Duration::from_secs(30);

fn remove_stale_leaves(unit: &Path) {
    let Ok(entries) = std::fs::read_dir(unit) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("kennel-") || name == SUPERVISOR_LEAF {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_LEAF_AGE);
        if old && !tree::populated(&e.path()) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// In a unit delegated to us: supervisor leaf, controllers, container leaf.
fn prepare_delegated(unit: &Path, req: &PlaceRequest, how: How) -> Result<Placement> {
    remove_stale_leaves(unit);
    let supervisor = unit.join(SUPERVISOR_LEAF);
    tree::mkdir(&supervisor)?;
    tree::move_all_processes(unit, &supervisor)?;
    let controllers = needed_controllers(unit, &req.limits)?;
    tree::enable_controllers(unit, &controllers)?;
    make_leaf(unit, req, how)
}

fn make_leaf(parent: &Path, req: &PlaceRequest, how: How) -> Result<Placement> {
    let leaf = parent.join(format!("kennel-{}", req.id));
    if !tree::make_leaf_dir(&leaf)? {
        return Err(CgroupError::LeafExists { path: leaf });
    }
    let made = req.limits.apply(&leaf).and_then(|()| {
        open(
            &leaf,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open", &leaf)(std::io::Error::from(e)))
    });
    match made {
        Ok(leaf_fd) => Ok(Placement {
            leaf,
            leaf_fd: Some(leaf_fd),
            how,
            limits: req.limits.clone(),
            v1: Vec::new(),
        }),
        Err(e) => {
            // A limit the kernel refused changes nothing: remove the leaf.
            let _ = std::fs::remove_dir(&leaf);
            Err(e)
        }
    }
}

impl Placement {
    /// The fallback when clone3 cannot place the child at birth: move it
    /// before it is released.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        if !self.v1.contains(&self.leaf) {
            let path = self.leaf.join("cgroup.procs");
            std::fs::write(&path, pid.to_string()).map_err(io("move the container into", &path))?;
        }
        self.add_v1(pid)
    }

    /// Moves a child born in the v2 leaf into its v1 cgroups, before it is
    /// released.
    pub fn add_v1(&self, pid: i32) -> Result<()> {
        crate::v1::add_process(&self.v1, pid)
    }

    /// The memory limit as the file that holds it, for the OOM message.
    pub fn memory_description(&self) -> String {
        let text = self.limits.memory_description();
        match self.v1.is_empty() {
            true => text,
            false => text.replace("memory.max", "memory.limit_in_bytes"),
        }
    }

    /// After the container's init exited: was it OOM-killed? Then kill
    /// whatever is left and remove the leaf.
    pub fn finish(&self) -> Finish {
        let events = std::fs::read_to_string(self.leaf.join("memory.events")).unwrap_or_default();
        let oom_killed = tree::keyed_value(&events, "oom_kill").unwrap_or(0) > 0
            || crate::v1::oom_killed(&self.v1);
        self.remove();
        Finish { oom_killed }
    }

    /// Kills what is left in the leaf and removes it (also for a start that
    /// failed). Best effort: systemd collects a scope once it is empty.
    pub fn remove(&self) {
        if tree::populated(&self.leaf) {
            let _ = std::fs::write(self.leaf.join("cgroup.kill"), "1");
        }
        for _ in 0..200 {
            match remove_tree(&self.leaf) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => break,
            }
        }
        let _ = crate::v1::remove(&self.v1);
    }
}

/// Removes a cgroup and the ones the container made below it (with
/// --cgroup-rw it may), deepest first.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    std::fs::remove_dir(dir)
}
