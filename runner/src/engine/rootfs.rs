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

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, mkdir, pivot_root};

use super::config::{Config, MountPlan};
use super::inroot::{self, Make, Root};
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
    // Until the pivot the host is reachable at /oldroot: every path of the
    // image is resolved inside the new root by the kernel, and mounted
    // through its fd, named in the host's procfs.
    let root = Root::open(newroot, format!("{OLDROOT}/proc"))
        .map_err(|e| fail(Stage::Mount, e, describe_root(cfg)))?;
    let null = PathBuf::from(host_path(Path::new("/dev/null")));

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
                protect(&root, Path::new(p), *readonly, &null)?;
            }
            protected_early = Some(early);
            before_sysfs()?;
        }
        mount_one(&root, m)?;
        // Right away, so later mounts of the spec can still cover a device.
        if m.destination == "/dev" {
            populate_dev(&root)?;
        }
    }
    drop(root);

    chdir(newroot).map_err(|e| fail(Stage::PivotRoot, e, describe_root(cfg)))?;
    pivot_root(".", ".").map_err(|e| {
        fail(Stage::PivotRoot, e, describe_root(cfg)).with_detail("is the rootfs a mount point?")
    })?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| fail(Stage::PivotRoot, e, "/").with_detail("detach the old root"))?;
    chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/"))?;

    let early = protected_early.unwrap_or_default();
    let late: Vec<_> = kernel_paths(cfg)
        .filter(|(p, _)| !early.iter().any(|(q, _)| q == *p))
        .collect();
    if !late.is_empty() {
        // The host is gone now; the container's own procfs names the fds.
        let root = Root::open(Path::new("/"), "/proc").map_err(|e| fail(Stage::Mount, e, "/"))?;
        for (p, readonly) in late {
            protect(&root, Path::new(p), readonly, Path::new("/dev/null"))?;
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

/// Masks `path` (`null` is the /dev/null to bind over files) or makes it
/// read-only. A path the rootfs does not have is left alone.
fn protect(root: &Root, path: &Path, readonly: bool, null: &Path) -> Step {
    let target = match root.lookup(path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fail(Stage::Mount, e, path).with_detail("masked or read-only path")),
    };
    let at = root.fd_path(&target);
    if !readonly {
        let is_dir = inroot::is_dir(&target).map_err(|e| fail(Stage::Mount, e, path))?;
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
    do_mount(
        &at.display().to_string(),
        &at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        "",
        &format!("read-only {}", path.display()),
    )?;
    remount_on_top(root, path, true, MsFlags::empty())
}

/// Remounts the mount just made at `path`: looked up again, since the fd
/// the mount was made through still names what lies beneath it.
fn remount_on_top(root: &Root, path: &Path, readonly: bool, extra: MsFlags) -> Step {
    let top = root
        .lookup(path)
        .map_err(|e| fail(Stage::Mount, e, path).with_detail("remount"))?;
    remount_bind(&root.fd_path(&top), readonly, extra).map_err(|f| f.at(path))
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

fn mount_one(root: &Root, m: &MountPlan) -> Step {
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
        do_mount(
            &src,
            &root.fd_path(&target),
            None,
            MsFlags::MS_BIND | rec,
            "",
            &format!("bind {}", m.source),
        )
        .map_err(|f| f.at(dst))?;
        let extra = m.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if m.readonly || !extra.is_empty() {
            remount_on_top(root, dst, m.readonly, extra)?;
        }
        return Ok(());
    }
    let target = root
        .lookup_or_make(dst, Make::Directory)
        .map_err(create_err)?;
    do_mount(
        &m.source,
        &root.fd_path(&target),
        Some(&m.fstype),
        m.flags,
        &m.data,
        &format!("{} on {}", m.fstype, m.destination),
    )
    .map_err(|f| f.at(dst))
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

/// Fills the container's fresh /dev tmpfs: the host's devices bound onto
/// files (a device the host lacks is left out) and the standard links. The
/// /dev in question is the one just mounted, wherever the image's `/dev`
/// led (inside the root): everything is made relative to its fd.
fn populate_dev(root: &Root) -> Step {
    let dev = root
        .lookup(Path::new("/dev"))
        .map_err(|e| fail(Stage::Mount, e, "/dev"))?;
    let dev_root = Root::from_fd(dev, root);
    for name in DEVICES {
        let shown = format!("/dev/{name}");
        let target = dev_root
            .lookup_or_make(Path::new(name), Make::File)
            .map_err(|e| fail(Stage::Mount, e, &shown).with_detail("create mount point"))?;
        let host = format!("{OLDROOT}/dev/{name}");
        match mount(
            Some(host.as_str()),
            &dev_root.fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {
                let _ = nix::unistd::unlinkat(
                    dev_root.as_fd(),
                    name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
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
        match nix::unistd::symlinkat(to, dev_root.as_fd(), link) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(fail(Stage::Mount, e, format!("/dev/{link}"))),
        }
    }
    Ok(())
}
