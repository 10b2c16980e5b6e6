//! Building the container's root filesystem, in the child, after the maps
//! are written. The host is reached through a staging root, the way
//! bubblewrap does it:
//!
//! 1. make every mount private, mount a tmpfs on /tmp and pivot into it, so
//!    the host tree sits at /oldroot and nothing in it can be covered;
//! 2. bind the rootfs (or a fresh tmpfs, for the host sandbox) at /newroot
//!    and make the spec's mounts there, bind sources taken from /oldroot;
//! 3. pivot into /newroot with `pivot_root(".", ".")` and detach the old
//!    root, so no trace of the host (nor a put_old directory) stays inside;
//! 4. mask and write-protect the kernel paths, and make / read-only if asked.
//!
//! A sysfs mount waits for the network namespace, which is made beside the
//! child (see `netns`); the kernel paths no later mount touches (the /proc
//! ones) are protected before that wait, under /newroot.

use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, mkdir, pivot_root};

use super::config::{Config, MountPlan};
use super::protocol::{ChildFailure, Stage};

const STAGING: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";

/// Host devices bound into the container's /dev (mknod is not allowed to us).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

type Step<T = ()> = Result<T, ChildFailure>;

fn fail(stage: Stage, errno: Errno, path: impl AsRef<Path>) -> ChildFailure {
    ChildFailure::new(stage, errno, Some(path.as_ref().display().to_string()))
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
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
    for dir in ["newroot", "oldroot"] {
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
                let target =
                    resolve_in_root(newroot, Path::new(p)).map_err(|e| fail(Stage::Mount, e, p))?;
                protect(&target, *readonly, &host_path(Path::new("/dev/null")))?;
            }
            protected_early = Some(early);
            before_sysfs()?;
        }
        mount_one(newroot, m)?;
        // Right away, so later mounts of the spec can still cover a device.
        if m.destination == "/dev" {
            populate_dev(newroot)?;
        }
    }

    chdir(newroot).map_err(|e| fail(Stage::PivotRoot, e, describe_root(cfg)))?;
    pivot_root(".", ".").map_err(|e| {
        fail(Stage::PivotRoot, e, describe_root(cfg)).with_detail("is the rootfs a mount point?")
    })?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| fail(Stage::PivotRoot, e, "/").with_detail("detach the old root"))?;
    chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/"))?;

    let early = protected_early.unwrap_or_default();
    for (p, readonly) in kernel_paths(cfg) {
        if !early.iter().any(|(q, _)| q == p) {
            protect(Path::new(p), readonly, "/dev/null")?;
        }
    }
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

/// Masks `target` (`null` is the /dev/null to bind over files) or makes it
/// read-only. A path the rootfs does not have is left alone.
fn protect(target: &Path, readonly: bool, null: &str) -> Step {
    if !readonly {
        return mask(target, null);
    }
    if target.exists() {
        let shown = target.display().to_string();
        do_mount(
            &shown,
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            "",
            "readonly path",
        )?;
        remount_readonly(target, MsFlags::empty())?;
    }
    Ok(())
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

/// Joins `path` under `root`, following symlinks but never leaving `root`
/// (an absolute link restarts at `root`, `..` stops at it).
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, Errno> {
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut resolved = Vec::<PathBuf>::new();
    let mut links = 0;
    while let Some(next) = pending.pop() {
        if next == Path::new("..") {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&next);
        match std::fs::read_link(&candidate) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return Err(Errno::ELOOP);
                }
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(target.components().rev().filter_map(|c| match c {
                    Component::Normal(n) => Some(PathBuf::from(n)),
                    Component::ParentDir => Some(PathBuf::from("..")),
                    _ => None,
                }));
            }
            Err(_) => resolved.push(next),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(resolved);
    Ok(out)
}

fn ensure_mountpoint(target: &Path, as_file: bool) -> Step {
    // Made straight away: it usually exists (EEXIST) or only it is missing;
    // parents are made only when they are missing too. O_EXCL, so an
    // existing file is never opened.
    let make = || {
        if as_file {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(target)
                .map(drop)
        } else {
            std::fs::create_dir(target)
        }
    };
    let made = match make() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = target.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(parent).map_err(|e| {
                fail(Stage::Mount, io_errno(&e), parent).with_detail("create mount point")
            })?;
            make()
        }
        other => other,
    };
    match made {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(fail(Stage::Mount, io_errno(&e), target).with_detail("create mount point"))
        }
        _ => Ok(()),
    }
}

fn mount_one(newroot: &Path, m: &MountPlan) -> Step {
    let dst = Path::new(&m.destination);
    if m.destination == "/proc" && newroot.join("proc").is_symlink() {
        return Err(fail(Stage::Mount, Errno::ELOOP, "/proc")
            .with_detail("/proc in the rootfs is a symlink"));
    }
    let target = resolve_in_root(newroot, dst).map_err(|e| fail(Stage::Mount, e, dst))?;
    if m.bind {
        let src = if m.source.starts_with('/') {
            host_path(Path::new(&m.source))
        } else {
            m.source.clone()
        };
        let src_is_file = std::fs::metadata(&src)
            .map(|md| !md.is_dir())
            .unwrap_or(false);
        ensure_mountpoint(&target, src_is_file)?;
        let rec = m.flags & MsFlags::MS_REC;
        do_mount(
            &src,
            &target,
            None,
            MsFlags::MS_BIND | rec,
            "",
            &format!("bind {}", m.source),
        )?;
        let extra = m.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if m.readonly || !extra.is_empty() {
            remount_bind(&target, m.readonly, extra)?;
        }
        return Ok(());
    }
    ensure_mountpoint(&target, false)?;
    do_mount(
        &m.source,
        &target,
        Some(&m.fstype),
        m.flags,
        &m.data,
        &format!("{} on {}", m.fstype, m.destination),
    )
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

fn remount_readonly(target: &Path, extra: MsFlags) -> Step {
    remount_bind(target, true, extra)
}

fn mask(path: &Path, null: &str) -> Step {
    let Ok(md) = std::fs::metadata(path) else {
        return Ok(());
    };
    if md.is_dir() {
        do_mount(
            "tmpfs",
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "size=0",
            "mask",
        )
    } else {
        do_mount(null, path, None, MsFlags::MS_BIND, "", "mask")
    }
}

/// Fills the container's fresh /dev tmpfs: the host's devices bound onto
/// files (a device the host lacks is left out) and the standard links.
fn populate_dev(newroot: &Path) -> Step {
    let dev = newroot.join("dev");
    for name in DEVICES {
        let target = dev.join(name);
        let host = format!("{OLDROOT}/dev/{name}");
        ensure_mountpoint(&target, true)?;
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
                return Err(fail(Stage::Mount, e, &target).with_detail(format!("bind /dev/{name}")))
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
        let path = dev.join(link);
        match std::os::unix::fs::symlink(to, &path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(fail(Stage::Mount, io_errno(&e), &path));
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
    fn resolve_stays_inside_root() {
        let root = std::env::temp_dir().join(format!("kennel-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("real/dir", root.join("rel")).unwrap();
        assert_eq!(
            resolve_in_root(&root, Path::new("/abs/dir")).unwrap(),
            root.join("real/dir")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("/escape/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("/rel/x")).unwrap(),
            root.join("real/dir/x")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(&root, Path::new("/loop")),
            Err(Errno::ELOOP)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
