//! Building the container's root filesystem, in the child, after the maps
//! are written. The host is reached through a staging root, the way
//! bubblewrap does it:
//!
//! 1. make every mount private, mount a tmpfs on /tmp and pivot into it, so
//!    the host tree sits at /oldroot and nothing in it can be covered;
//! 2. bind the rootfs (or a fresh tmpfs, for the host sandbox) at /newroot
//!    and make the spec's mounts there, bind sources taken from /oldroot,
//!    every target resolved inside /newroot by the kernel (see `inroot`);
//!    a mount that needs a second step (read-only, /dev's devices, a
//!    `tmpcopyup` tmpfs's copy of what it covers) is finished at /stage
//!    first and then moved into place;
//! 3. mask and write-protect the kernel paths;
//! 4. pivot into /newroot with `pivot_root(".", ".")` and detach the old
//!    root, so no trace of the host (nor a put_old directory) stays inside,
//!    and make / read-only if asked.
//!
//! A sysfs mount waits for the network namespace, which is made beside the
//! child (see `netns`); the kernel paths no later mount touches (the /proc
//! ones) are protected before that wait.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, mkdir, pivot_root};

use super::config::{Config, MountPlan};
use super::copy_up;
use super::inroot::{self, Make, Root};
use super::protocol::{io_errno, ChildFailure, Stage};
use crate::sys;

const STAGING: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";

/// Host devices bound into the container's /dev (mknod is not allowed to us).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

type Step<T = ()> = Result<T, ChildFailure>;

fn fail(stage: Stage, errno: Errno, path: impl AsRef<Path>) -> ChildFailure {
    ChildFailure::new(stage, errno, Some(path.as_ref().display().to_string()))
}

fn do_mount(
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
    what: &str,
) -> Step {
    let data = (!data.is_empty()).then_some(data);
    mount(Some(src), target, fstype, flags, data)
        .map_err(|e| fail(Stage::Mount, e, target).with_detail(what.to_string()))
}

/// `before_sysfs` runs before the first sysfs mount (and may run again).
pub fn setup(cfg: &Config, before_sysfs: &mut dyn FnMut() -> Step) -> Step {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| fail(Stage::Mount, e, "/").with_detail("make mounts private"))?;
    do_mount(
        "tmpfs",
        Path::new(STAGING),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=700",
        "staging tmpfs",
    )?;
    for dir in ["newroot", "oldroot", "stage"] {
        mkdir(
            &Path::new(STAGING).join(dir),
            Mode::from_bits_truncate(0o755),
        )
        .map_err(|e| fail(Stage::Mount, e, Path::new(STAGING).join(dir)))?;
    }
    pivot_root(STAGING, &Path::new(STAGING).join("oldroot"))
        .map_err(|e| fail(Stage::PivotRoot, e, STAGING).with_detail("entering the staging root"))?;
    chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/"))?;

    let newroot = Path::new(NEWROOT);
    match &cfg.root {
        Some(root) => {
            let src = host_path(root);
            do_mount(
                &src,
                newroot,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                "",
                "bind the rootfs",
            )?;
        }
        None => do_mount(
            "tmpfs",
            newroot,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=755",
            "sandbox root tmpfs",
        )?,
    }
    // Until the pivot the host is reachable at /oldroot: every path of the
    // image is resolved inside the new root by the kernel, and mounted
    // through its fd (see `mount_point`).
    let root = Root::open(newroot).map_err(|e| fail(Stage::Mount, e, describe_root(cfg)))?;
    let null = PathBuf::from(host_path(Path::new("/dev/null")));
    let mut stage = Staging::default();

    // Kernel paths protected before the first sysfs mount, if there is one.
    let mut protected_early: Option<Vec<(String, bool)>> = None;
    for (i, m) in cfg.mounts.iter().enumerate() {
        if m.fstype == "sysfs" && protected_early.is_none() {
            // The network namespace may still be on its way: first protect
            // the kernel paths no later mount touches (the /proc ones).
            let later = &cfg.mounts[i..];
            let early: Vec<(String, bool)> = kernel_paths(cfg)
                .filter(|(p, _)| !later.iter().any(|m| touches(m, p)))
                .map(|(p, readonly)| (p.clone(), readonly))
                .collect();
            for (p, readonly) in &early {
                protect(&root, &mut stage, Path::new(p), *readonly, &null)?;
            }
            protected_early = Some(early);
            before_sysfs()?;
        }
        mount_one(&root, &mut stage, m)?;
    }
    // The kernel paths a later mount touched (a sysfs one, say), now that
    // every mount is made.
    let early = protected_early.unwrap_or_default();
    for (p, readonly) in kernel_paths(cfg).filter(|(p, _)| !early.iter().any(|(q, _)| q == *p)) {
        protect(&root, &mut stage, Path::new(p), readonly, &null)?;
    }
    drop(root);

    chdir(newroot).map_err(|e| fail(Stage::PivotRoot, e, describe_root(cfg)))?;
    pivot_root(".", ".").map_err(|e| {
        fail(Stage::PivotRoot, e, describe_root(cfg)).with_detail("is the rootfs a mount point?")
    })?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| fail(Stage::PivotRoot, e, "/").with_detail("detach the old root"))?;
    chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/"))?;

    if cfg.readonly_root {
        remount_readonly(Path::new("/"), MsFlags::empty())?;
    }
    Ok(())
}

/// The spec's masked paths (false) and read-only paths (true), in order.
fn kernel_paths(cfg: &Config) -> impl Iterator<Item = (&String, bool)> {
    let masked = cfg.masked_paths.iter().map(|p| (p, false));
    masked.chain(cfg.readonly_paths.iter().map(|p| (p, true)))
}

/// Whether mount `m` covers `path` or lands inside it.
fn touches(m: &MountPlan, path: &str) -> bool {
    let (dst, path) = (Path::new(&m.destination), Path::new(path));
    path.starts_with(dst) || dst.starts_with(path)
}

/// Mount points in the staging root, which only this process can reach: a
/// mount that needs a second step (a remount read-only, /dev's devices) is
/// made and finished there, then moved onto its target's fd in one call.
/// Looking the target up again after mounting on it would let another
/// container sharing the rootfs swap the path in between (the remount
/// would land elsewhere).
#[derive(Default)]
struct Staging {
    made: usize,
}

impl Staging {
    /// A fresh mount point: a directory, or a file for a file bind.
    fn point(&mut self, file: bool) -> Step<PathBuf> {
        self.made += 1;
        let path = Path::new("/stage").join(self.made.to_string());
        let made = if file {
            std::fs::File::create(&path).map(drop)
        } else {
            std::fs::create_dir(&path)
        };
        made.map_err(|e| {
            fail(Stage::Mount, io_errno(&e), &path).with_detail("staging mount point")
        })?;
        Ok(path)
    }
}

/// A path naming `fd` as a mount point for mount(2): `.` once we have
/// changed into it, when it is a directory (a short walk), else its
/// `fd_path`. Valid until the next change of directory.
fn mount_point(fd: &OwnedFd) -> PathBuf {
    match nix::unistd::fchdir(fd) {
        Ok(()) => PathBuf::from("."),
        Err(_) => fd_path(fd),
    }
}

/// A path naming `fd` for mount(2), which takes only paths: the host's
/// procfs (the child is visible in it) follows it to the very file the fd
/// refers to.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("{OLDROOT}/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Moves the finished mount at `staged` onto `target` (an fd path).
fn move_onto(staged: &Path, target: &Path, shown: &Path) -> Step {
    let none: Option<&str> = None;
    mount(Some(staged), target, none, MsFlags::MS_MOVE, none)
        .map_err(|e| fail(Stage::Mount, e, shown).with_detail("move the finished mount into place"))
}

/// Masks `path` (`null` is the /dev/null to bind over files) or makes it
/// read-only. A path the rootfs does not have is left alone.
fn protect(root: &Root, stage: &mut Staging, path: &Path, readonly: bool, null: &Path) -> Step {
    let target = match root.lookup(path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fail(Stage::Mount, e, path).with_detail("masked or read-only path")),
    };
    let at = mount_point(&target);
    let is_dir = inroot::is_dir(&target).map_err(|e| fail(Stage::Mount, e, path))?;
    if !readonly {
        return if is_dir {
            do_mount(
                "tmpfs",
                &at,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                "size=0",
                &format!("mask {}", path.display()),
            )
        } else {
            do_mount(
                &null.display().to_string(),
                &at,
                None,
                MsFlags::MS_BIND,
                "",
                &format!("mask {}", path.display()),
            )
        };
    }
    let staged = stage.point(!is_dir)?;
    do_mount(
        &at.display().to_string(),
        &staged,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        "",
        &format!("read-only {}", path.display()),
    )?;
    remount_bind(&staged, true, MsFlags::empty()).map_err(|f| f.at(path))?;
    restrict_submounts(&staged, true, MsFlags::empty()).map_err(|f| f.at(path))?;
    move_onto(&staged, &at, path)
}

fn describe_root(cfg: &Config) -> String {
    cfg.root
        .as_ref()
        .map(|r| format!("into {}", r.display()))
        .unwrap_or_else(|| "into the sandbox root".into())
}

/// A host path as seen from the staging root.
fn host_path(p: &Path) -> String {
    format!("{OLDROOT}{}", p.display())
}

fn mount_one(root: &Root, stage: &mut Staging, m: &MountPlan) -> Step {
    let dst = Path::new(&m.destination);
    if m.destination == "/proc" {
        // A fresh procfs is what kennel's own later steps trust: refuse a
        // link, wherever it points.
        if let Ok(fd) = root.open_with(Path::new("proc"), OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            if nix::sys::stat::fstat(&fd).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
            }) {
                return Err(fail(Stage::Mount, Errno::ELOOP, "/proc")
                    .with_detail("/proc in the rootfs is a symlink"));
            }
        }
    }
    let create_err = |e: Errno| fail(Stage::Mount, e, dst).with_detail("create mount point");
    if m.bind {
        let src = if m.source.starts_with('/') {
            host_path(Path::new(&m.source))
        } else {
            m.source.clone()
        };
        let src_is_file = std::fs::metadata(&src)
            .map(|md| !md.is_dir())
            .unwrap_or(false);
        let make = if src_is_file {
            Make::File
        } else {
            Make::Directory
        };
        let target = root.lookup_or_make(dst, make).map_err(create_err)?;
        let rec = m.flags & MsFlags::MS_REC;
        let extra = m.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        let finish = m.readonly || !extra.is_empty();
        // Every bind source is absolute (the plan refuses others): a mount
        // point of `.` below changes the current directory.
        let at = if finish {
            stage.point(src_is_file)?
        } else {
            mount_point(&target)
        };
        do_mount(
            &src,
            &at,
            None,
            MsFlags::MS_BIND | rec,
            "",
            &format!("bind {}", m.source),
        )
        .map_err(|f| f.at(dst))?;
        if finish {
            remount_bind(&at, m.readonly, extra).map_err(|f| f.at(dst))?;
            if !rec.is_empty() {
                restrict_submounts(&at, m.readonly, extra).map_err(|f| f.at(dst))?;
            }
            move_onto(&at, &mount_point(&target), dst)?;
        }
        return Ok(());
    }
    let target = root
        .lookup_or_make(dst, Make::Directory)
        .map_err(create_err)?;
    // /dev is filled before it is moved into place: right away, so later
    // mounts of the spec can still cover a device. A `tmpcopyup` tmpfs is
    // filled there too, from what it is about to cover, writable until
    // then.
    let dev = m.destination == "/dev";
    // A cgroup2 mount is made aside and moved into place too: where the
    // spec binds the host's /sys (runc's rootless specs), the target is
    // already a cgroup2 mount of the same superblock, on which the kernel
    // refuses a new one (EBUSY) but not a move.
    let staged = dev || m.copy_up || m.fstype == "cgroup2";
    let at = if staged {
        stage.point(false)?
    } else {
        mount_point(&target)
    };
    let flags = if m.copy_up {
        m.flags & !MsFlags::MS_RDONLY
    } else {
        m.flags
    };
    do_mount(
        &m.source,
        &at,
        Some(&m.fstype),
        flags,
        &m.data,
        &format!("{} on {}", m.fstype, m.destination),
    )
    .map_err(|f| f.at(dst))?;
    if m.copy_up {
        copy_up::copy_into(&target, &at, dst)?;
        if m.flags.contains(MsFlags::MS_RDONLY) {
            remount_readonly(&at, MsFlags::empty()).map_err(|f| f.at(dst))?;
        }
    }
    if dev {
        populate_dev(&at)?;
    }
    if staged {
        move_onto(&at, &mount_point(&target), dst)?;
    }
    Ok(())
}

/// Flags the kernel locks on a mount made in a less privileged user
/// namespace: a remount must repeat them or it fails with EPERM.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    out
}

fn remount_bind(target: &Path, readonly: bool, extra: MsFlags) -> Step {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | locked_flags(target) | extra;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let none: Option<&str> = None;
    mount(none, target, none, flags, none)
        .map_err(|e| fail(Stage::Mount, e, target).with_detail("remount read-only"))
}

/// Gives the mounts below `top` (a recursive bind's submounts) what
/// `remount_bind` gave `top`: a read-only volume must not keep a writable
/// mount inside it. One mount_setattr(2) (Linux 5.12); before that, each
/// submount found in our mountinfo is remounted.
fn restrict_submounts(top: &Path, readonly: bool, extra: MsFlags) -> Step {
    match sys::set_mount_attributes_recursive(top, readonly, extra) {
        Err(Errno::ENOSYS) => {}
        other => {
            return other.map_err(|e| fail(Stage::Mount, e, top).with_detail("restrict submounts"))
        }
    }
    let mountinfo = std::fs::read_to_string(format!("{OLDROOT}/proc/self/mountinfo"))
        .map_err(|e| fail(Stage::Mount, io_errno(&e), "/proc/self/mountinfo"))?;
    let below = format!("{}/", top.display());
    for line in mountinfo.lines() {
        let Some(point) = line.split(' ').nth(4).map(unescape_mountinfo) else {
            continue;
        };
        if point.starts_with(&below) {
            remount_bind(Path::new(&point), readonly, extra)?;
        }
    }
    Ok(())
}

/// A mountinfo path field, with its octal escapes (`\040` for a space)
/// undone.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn remount_readonly(target: &Path, extra: MsFlags) -> Step {
    remount_bind(target, true, extra)
}

/// Fills the container's fresh /dev tmpfs, mounted at `dev` in the staging
/// root (so nothing of the image is in the way): the host's devices bound
/// onto files (a device the host lacks is left out) and the standard links.
fn populate_dev(dev: &Path) -> Step {
    for name in DEVICES {
        let shown = format!("/dev/{name}");
        let target = dev.join(name);
        std::fs::File::create(&target).map_err(|e| {
            fail(Stage::Mount, io_errno(&e), &shown).with_detail("create mount point")
        })?;
        let host = format!("{OLDROOT}/dev/{name}");
        match mount(
            Some(host.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {
                let _ = std::fs::remove_file(&target);
            }
            Err(e) => {
                return Err(fail(Stage::Mount, e, &shown).with_detail(format!("bind /dev/{name}")))
            }
        }
    }
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        match std::os::unix::fs::symlink(to, dev.join(link)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(fail(Stage::Mount, io_errno(&e), format!("/dev/{link}")))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/stage/1/a\040b"), "/stage/1/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y\011"), "/x\\y\t");
        assert_eq!(unescape_mountinfo(r"/plain\0"), r"/plain\0");
    }
}
