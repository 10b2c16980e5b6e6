//! cgroup v1, and the v1 side of a hybrid host, as root.
//!
//! The container gets a cgroup in each v1 hierarchy its limits need, at
//! the path runc's cgroupfs driver uses for linux.cgroupsPath: an absolute
//! path below each hierarchy's root, a relative one below our own cgroup
//! in that hierarchy. On a hybrid host it also gets the same path in the
//! unified (v2) tree, as runc does: it is born there with clone3, and that
//! cgroup is what kills (cgroup.kill), freezes and finds its processes.
//! The v1 cgroups cannot be entered at birth; the runner moves the child
//! into them before releasing it to exec.

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::error::{io, CgroupError, Result};
use crate::limits::{LimitFile, Limits};
use crate::placement::{How, PlaceRequest, Placement};

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its controllers ("cpu", "cpuacct" when mounted together).
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Our cgroup in it, as /proc/self/cgroup says.
    pub own: String,
}

/// The unified (v2) tree of a hybrid host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unified {
    pub mount: PathBuf,
    pub own: String,
}

/// What /proc/self/mountinfo and /proc/self/cgroup say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
    pub unified: Option<Unified>,
}

impl Layout {
    pub fn read() -> Result<Layout> {
        let read = |p: &'static str| std::fs::read_to_string(p).map_err(io("read", p));
        Ok(parse(
            &read("/proc/self/mountinfo")?,
            &read("/proc/self/cgroup")?,
        ))
    }

    /// Whether some controller is on a v1 hierarchy.
    pub fn has_v1(&self) -> bool {
        !self.hierarchies.is_empty()
    }

    fn with(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// A mount's fields: (root, mount point, fstype, super options).
fn mount_fields(line: &str) -> Option<(&str, &str, &str, &str)> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    Some((
        left.get(3)?,
        left.get(4)?,
        fstype,
        right.next().unwrap_or(""),
    ))
}

pub fn parse(mountinfo: &str, cgroup: &str) -> Layout {
    let mounts: Vec<_> = mountinfo.lines().filter_map(mount_fields).collect();
    let mut layout = Layout::default();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(list), Some(own)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if list.is_empty() {
            layout.unified = mounts
                .iter()
                .find(|m| m.2 == "cgroup2" && m.0 == "/")
                .map(|m| Unified {
                    mount: m.1.into(),
                    own: own.to_string(),
                });
            continue;
        }
        // Named hierarchies (name=systemd) hold no controller.
        let controllers: Vec<String> = list
            .split(',')
            .filter(|c| !c.starts_with("name="))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        // Only a mount of the hierarchy's root maps cgroup paths to
        // directories as they are (not one of a subtree, in a cgroup
        // namespace or a bind mount).
        let found = mounts.iter().find(|m| {
            m.2 == "cgroup" && m.0 == "/" && {
                let opts: Vec<&str> = m.3.split(',').collect();
                controllers.iter().all(|c| opts.contains(&c.as_str()))
            }
        });
        if let Some(m) = found {
            layout.hierarchies.push(Hierarchy {
                controllers,
                mount: m.1.into(),
                own: own.to_string(),
            });
        }
    }
    // A cgroup2 mount without v1 hierarchies is a v2 host, not hybrid.
    if layout.hierarchies.is_empty() {
        layout.unified = None;
    }
    layout
}

/// Lexically clean `path` as runc does: `..` never climbs above the start.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Where the container's cgroup goes in each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inner {
    /// Below each hierarchy's root.
    Absolute(PathBuf),
    /// Below our own cgroup in each hierarchy.
    Relative(PathBuf),
}

/// linux.cgroupsPath as runc's cgroupfs driver reads it; without one, the
/// container's leaf below `parent` (--cgroup-parent) or below /kennel, as
/// on cgroup v2.
pub fn inner(path: Option<&Path>, parent: Option<&Path>, id: &str) -> Inner {
    let leaf = format!("kennel-{id}");
    match (path, parent) {
        (Some(p), _) if p.is_absolute() => Inner::Absolute(clean(p)),
        (Some(p), _) => Inner::Relative(clean(p)),
        (None, Some(parent)) => Inner::Absolute(clean(parent).join(leaf)),
        (None, None) => Inner::Absolute(Path::new("kennel").join(leaf)),
    }
}

impl Inner {
    fn at(&self, mount: &Path, own: &str) -> PathBuf {
        match self {
            Inner::Absolute(p) => mount.join(p),
            Inner::Relative(p) => mount.join(own.trim_start_matches('/')).join(p),
        }
    }
}

/// Makes the leaf `dir` (and the cgroups above it), which must be new.
fn make_leaf(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    if !crate::tree::make_leaf_dir(dir)? {
        return Err(CgroupError::LeafExists {
            path: dir.to_path_buf(),
        });
    }
    made.push(dir.to_path_buf());
    Ok(())
}

/// The container's cgroups on a v1 or hybrid host, limits written.
pub fn place(req: &PlaceRequest, layout: &Layout) -> Result<Placement> {
    let files = req.limits.files_v1()?;
    let inner = inner(req.path.as_deref(), req.parent.as_deref(), &req.id);
    let mut made = Vec::new();
    let placed = place_in(req, layout, &files, &inner, &mut made);
    if placed.is_err() {
        // A limit the kernel refused changes nothing: remove what we made.
        let _ = remove(&made);
    }
    placed
}

fn place_in(
    req: &PlaceRequest,
    layout: &Layout,
    files: &[LimitFile],
    inner: &Inner,
    made: &mut Vec<PathBuf>,
) -> Result<Placement> {
    let mut v1: Vec<PathBuf> = Vec::new();
    for f in files {
        let h = layout
            .with(f.controller)
            .ok_or(CgroupError::NoV1Controller {
                controller: f.controller,
                limit: f.flag,
            })?;
        let dir = inner.at(&h.mount, &h.own);
        if !v1.contains(&dir) {
            make_leaf(&dir, made)?;
            v1.push(dir.clone());
        }
        write_limit(&dir, f)?;
    }
    // Without a unified tree for a device program, the devices controller
    // keeps the rules (written by the caller: `write_device_rules`).
    if req.device_rules && layout.unified.is_none() {
        let h = layout.with("devices").ok_or(CgroupError::NoV1Controller {
            controller: "devices",
            limit: "linux.resources.devices",
        })?;
        let dir = inner.at(&h.mount, &h.own);
        if !v1.contains(&dir) {
            make_leaf(&dir, made)?;
            v1.push(dir);
        }
    }
    let unified = match &layout.unified {
        Some(u) => {
            let dir = inner.at(&u.mount, &u.own);
            make_leaf(&dir, made)?;
            let fd = open(
                &dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io("open", &dir)(std::io::Error::from(e)))?;
            Some((dir, fd))
        }
        None => None,
    };
    let (leaf, leaf_fd): (PathBuf, Option<OwnedFd>) = match unified {
        Some((dir, fd)) => (dir, Some(fd)),
        // A pure v1 host with no limit asked for (--cgroup-manager=cgroupfs).
        None if v1.is_empty() => {
            return Err(CgroupError::NoV1Controller {
                controller: "pids",
                limit: "--cgroup-manager=cgroupfs",
            })
        }
        None => (v1[0].clone(), None),
    };
    Ok(Placement {
        leaf,
        leaf_fd,
        how: How::CgroupfsV1,
        limits: req.limits.clone(),
        v1,
    })
}

fn write_limit(dir: &Path, f: &LimitFile) -> Result<()> {
    let path = dir.join(f.file);
    let refused = |cause: std::io::Error| {
        let hint = match (f.file, cause.raw_os_error()) {
            (_, Some(libc::ENOENT)) if f.file.starts_with("memory.memsw") => {
                " (this kernel accounts no swap: boot it with swapaccount=1, or leave memory.swap out)"
            }
            ("memory.limit_in_bytes", Some(libc::EBUSY)) => {
                " (is it below what the container already uses?)"
            }
            ("memory.limit_in_bytes", Some(libc::EINVAL)) => {
                " (memory may not exceed memory plus swap, memory.memsw.limit_in_bytes: raise memory.swap with it)"
            }
            ("memory.memsw.limit_in_bytes", _) => {
                " (memory plus swap must be at least the memory limit)"
            }
            ("cpu.cfs_period_us" | "cpu.cfs_quota_us", _) => {
                " (the period must be 1000 to 1000000 microseconds, the quota at least 1000)"
            }
            ("cpu.shares", _) => " (cpu shares are 2 to 262144)",
            _ => "",
        };
        CgroupError::LimitRefused {
            file: f.file,
            value: f.value.clone(),
            cause,
            hint,
        }
    };
    std::fs::write(&path, &f.value).map_err(refused)?;
    // The kernel clamps cpu.shares rather than refuse it: read it back, as
    // runc does, so an out-of-range value is an error, not another value.
    if f.file == "cpu.shares" {
        let got = std::fs::read_to_string(&path).map_err(io("read", &path))?;
        if got.trim() != f.value {
            return Err(refused(std::io::Error::from_raw_os_error(libc::ERANGE)));
        }
    }
    Ok(())
}

/// Writes `limits` into a running container's v1 cgroups (`update`).
pub fn apply(limits: &Limits, dirs: &[PathBuf]) -> Result<()> {
    let layout = Layout::read()?;
    let mut files = limits.files_v1()?;
    raise_swap_first(&mut files, &layout, dirs);
    for f in files {
        let dir = layout
            .with(f.controller)
            .and_then(|h| dirs.iter().find(|d| d.starts_with(&h.mount)))
            .ok_or(CgroupError::NoV1Controller {
                controller: f.controller,
                limit: f.flag,
            })?;
        write_limit(dir, &f)?;
    }
    Ok(())
}

/// The kernel keeps memory at most memory plus swap: when an update
/// raises both past the current memory limit, memsw goes first (as runc
/// orders them).
fn raise_swap_first(files: &mut [LimitFile], layout: &Layout, dirs: &[PathBuf]) {
    let at = |name: &str| files.iter().position(|f| f.file == name);
    let (Some(mem), Some(memsw)) = (
        at("memory.limit_in_bytes"),
        at("memory.memsw.limit_in_bytes"),
    ) else {
        return;
    };
    let current = layout
        .with("memory")
        .and_then(|h| dirs.iter().find(|d| d.starts_with(&h.mount)))
        .and_then(|d| std::fs::read_to_string(d.join("memory.limit_in_bytes")).ok())
        .and_then(|t| t.trim().parse::<u64>().ok());
    let new_memsw = files[memsw].value.parse::<i64>().unwrap_or(-1);
    let raising = new_memsw < 0 || current.is_some_and(|c| c < new_memsw as u64);
    if raising && memsw > mem {
        files.swap(mem, memsw);
    }
}

/// Writes device rules, each a (devices.allow or devices.deny, line)
/// pair in order, into the devices cgroup among `dirs`.
pub fn write_device_rules(dirs: &[PathBuf], lines: &[(&'static str, String)]) -> Result<()> {
    let layout = Layout::read()?;
    let dir = layout
        .with("devices")
        .and_then(|h| dirs.iter().find(|d| d.starts_with(&h.mount)))
        .ok_or(CgroupError::NoV1Controller {
            controller: "devices",
            limit: "linux.resources.devices",
        })?;
    for (file, line) in lines {
        // One rule a write: the kernel parses each write as one.
        std::fs::write(dir.join(file), line).map_err(|cause| CgroupError::LimitRefused {
            file,
            value: line.clone(),
            hint: match cause.raw_os_error() {
                Some(libc::EPERM) => " (a cgroup may allow no device its parent denies)",
                _ => "",
            },
            cause,
        })?;
    }
    Ok(())
}

/// Moves `pid` into each of `dirs`.
pub fn add_process(dirs: &[PathBuf], pid: i32) -> Result<()> {
    for d in dirs {
        let path = d.join("cgroup.procs");
        std::fs::write(&path, pid.to_string()).map_err(io("move the container into", &path))?;
    }
    Ok(())
}

/// Whether the kernel OOM-killed something in one of `dirs`.
pub fn oom_killed(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        std::fs::read_to_string(d.join("memory.oom_control"))
            .ok()
            .and_then(|t| crate::tree::keyed_value(&t, "oom_kill"))
            .unwrap_or(0)
            > 0
    })
}

/// Kills what is left in each of `dirs` (v1 has no cgroup.kill) and
/// removes them. An error names the cgroup that stayed.
pub fn remove(dirs: &[PathBuf]) -> Result<()> {
    for d in dirs.iter().rev() {
        remove_one(d)?;
    }
    Ok(())
}

fn remove_one(dir: &Path) -> Result<()> {
    for _ in 0..400 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io("remove", dir)(e)),
        }
    }
    Err(io("remove", dir)(std::io::Error::from_raw_os_error(
        libc::EBUSY,
    )))
}

/// Our own cgroups in the hierarchies of `dirs`, to return to after a
/// process we fork was made to inherit the container's (`exec`); open, so
/// the way back works from another mount namespace.
pub struct Entered {
    back: Vec<(PathBuf, std::fs::File)>,
}

/// Moves this process into `dirs`, so what it forks starts there; the
/// returned value moves it back.
pub fn enter(dirs: &[PathBuf]) -> Result<Entered> {
    let layout = Layout::read()?;
    let mut back = Vec::new();
    for d in dirs {
        let Some(h) = layout.hierarchies.iter().find(|h| d.starts_with(&h.mount)) else {
            continue;
        };
        let path = h
            .mount
            .join(h.own.trim_start_matches('/'))
            .join("cgroup.procs");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        back.push((path, file));
    }
    add_process(dirs, std::process::id() as i32)?;
    Ok(Entered { back })
}

impl Entered {
    pub fn leave(self) -> Result<()> {
        use std::io::Write;
        let me = std::process::id().to_string();
        for (path, mut file) in self.back {
            file.write_all(me.as_bytes())
                .map_err(io("move back into", &path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/jobs/a
1:cpu,cpuacct:/
0::/u
";

    #[test]
    fn hybrid_layout() {
        let l = parse(MOUNTINFO, CGROUP);
        assert_eq!(l.hierarchies.len(), 3);
        let mem = l.with("memory").unwrap();
        assert_eq!(mem.mount, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mem.own, "/jobs/a");
        assert_eq!(
            l.with("cpuacct").unwrap().mount,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(l.with("devices").is_none());
        assert_eq!(
            l.unified,
            Some(Unified {
                mount: "/sys/fs/cgroup/unified".into(),
                own: "/u".into()
            })
        );
    }

    #[test]
    fn v2_host_is_no_hybrid() {
        let l = parse(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/user.slice\n",
        );
        assert_eq!(l, Layout::default());
        assert!(!l.has_v1());
    }

    #[test]
    fn cgroups_path_as_runc_reads_it() {
        let mem = Path::new("/sys/fs/cgroup/memory");
        let at = |i: Inner| i.at(mem, "/jobs/a");
        assert_eq!(
            at(inner(Some(Path::new("/x/../../y")), None, "c")),
            mem.join("y")
        );
        assert_eq!(
            at(inner(Some(Path::new("x/../../y")), None, "c")),
            mem.join("jobs/a/y")
        );
        assert_eq!(at(inner(None, None, "c")), mem.join("kennel/kennel-c"));
        assert_eq!(
            at(inner(None, Some(Path::new("/p")), "c")),
            mem.join("p/kennel-c")
        );
    }

    #[test]
    fn v1_files() {
        use crate::limits::tests::assert_files;
        use crate::limits::Swap;
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(Swap::Total(96 << 20)),
            memory_reservation: Some(32 << 20),
            pids: Some(20),
            cpu_max: Some((50000, 100000)),
            cpu_shares: Some(512),
            ..Default::default()
        };
        assert_files(
            l.files_v1(),
            &[
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "100663296"),
                ("memory.soft_limit_in_bytes", "33554432"),
                ("pids.max", "20"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpu.shares", "512"),
            ],
        );
        let v2_only = Limits {
            cpu_weight: Some(100),
            ..Default::default()
        };
        assert!(v2_only
            .files_v1()
            .unwrap_err()
            .to_string()
            .contains("cpu.weight is a cgroup v2 file"));
    }
}
