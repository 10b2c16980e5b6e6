//! Building the container's root filesystem, in the child, after the maps
//! are written. The host is reached through a staging root, the way
//! bubblewrap does it:
//!
//! 1. mount a tmpfs on /tmp and pivot into it, so the host tree sits at
//!    /oldroot and nothing in it can be covered; copy the bind sources
//!    that ask for a slave or shared propagation (see `keep`), then make
//!    every host mount private;
//! 2. mount the rootfs (or a fresh tmpfs, for the host sandbox) at /newroot
//!    (a read-only rootfs lacking a mount point: an overlay of it under a
//!    tmpfs of kennel's, so the point is not made in the user's tree)
//!    and make the spec's mounts there, bind sources taken from /oldroot,
//!    every target resolved inside /newroot by the kernel (see `inroot`)
//!    and mounted onto through its fd;
//! 3. mask and write-protect the kernel paths;
//! 4. pivot into /newroot with `pivot_root(".", ".")` and detach the old
//!    root, so no trace of the host (nor a put_old directory) stays inside,
//!    and give / the propagation linux.rootfsPropagation asks for, and
//!    make it read-only if asked.
//!
//! Propagation is runc's, with kennel's default kept: a mount of the
//! container is private unless the spec says otherwise. A slave or shared
//! bind is copied from its `keep` copy, and so takes its propagation from
//! the host's mount; a shared new filesystem is made shared before it is
//! attached; unbindable comes last, once nothing more is copied from the
//! container's mounts (the kernel paths' read-only copies would fail or
//! leave an unbindable mount out).
//!
//! The mounts of steps 2 and 3 are made through the kernel's mount API
//! (`fd_mounts`): a mount is made detached, finished there (read-only, its
//! flags, its contents) and attached onto the target's fd in one call.
//! A kernel without it (before Linux 5.12) gets mount(2) by path
//! (`path_mounts`), decided once per container.
//!
//! A sysfs mount waits for the network namespace, which is made beside the
//! child (see `netns`); the kernel paths no later mount touches (the /proc
//! ones) are protected before that wait.

mod fd_mounts;
mod keep;
mod mountinfo;
mod mounts;
mod nodes;
mod path_mounts;

use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{chdir, mkdir, pivot_root};

use crate::inroot::{self, Make, Root};
use crate::plan::config::Config;
use crate::protocol::{ChildFailure, Stage};
use crate::spec::mounts::MountPlan;
use crate::spec::propagation::Kind;
use crate::sys;
use mounts::{fail, host_path, Fill, Mounts, Step, NEWROOT, OLDROOT};

const STAGING: &str = "/tmp";
/// The mount API this kernel has, asked once: mount_setattr (Linux 5.12) is
/// the newest call `fd_mounts` needs.
fn mounts_for_this_kernel() -> Box<dyn Mounts> {
    match sys::mount_setattr_exists() {
        true => Box::<fd_mounts::FdMounts>::default(),
        false => Box::new(path_mounts::PathMounts::default()),
    }
}

/// `before_sysfs` runs before the first sysfs mount (and may run again).
pub fn setup(cfg: &Config, before_sysfs: &mut dyn FnMut() -> Step) -> Step {
    let mut mounts = mounts_for_this_kernel();
    enter_staging()?;
    // Only now that the staging root is there to hold them, and before the
    // host's mounts go private.
    let mut keeps = keep::Keeps::make(cfg)?;
    let none: Option<&str> = None;
    mount(
        none,
        OLDROOT,
        none,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        none,
    )
    .map_err(|e| fail(Stage::Mount, e, "/").with_detail("make the host's mounts private"))?;

    let root = new_root(cfg, &mut *mounts, &mut keeps)?;
    mount_all(cfg, &root, &mut *mounts, &mut keeps, before_sysfs)?;
    mounts.finish()?;
    drop(root);
    pivot(cfg, &mut *mounts)
}

/// The new root, from the image (or the keep's copy of it) or a tmpfs
/// for the host sandbox; a read-only root lacking a mount point is
/// layered so the points can be made without writing the image.
fn new_root(cfg: &Config, mounts: &mut dyn Mounts, keeps: &mut keep::Keeps) -> Step<Root> {
    // Until the pivot the host is reachable at /oldroot: every path of the
    // image is resolved inside the new root by the kernel, and mounted
    // onto through its fd.
    let rootfs = cfg.root.as_ref().map(|r| host_path(r));
    let root_src = keeps.root().map(Path::to_path_buf).or(rootfs.clone());
    let mut root = mounts.root(root_src.as_deref(), &describe_root(cfg))?;
    // An overlay is a new mount, slave of nothing: a root that follows the
    // host's mount gets its mount points in the tree instead, as runc
    // makes them.
    let layer = !keeps.root_follows_host()?;
    keeps.release_root()?;
    if let (true, true, Some(src)) = (cfg.readonly_root, layer, &rootfs) {
        if lacks_a_mount_point(&root, cfg) {
            drop(root);
            let theirs = cfg.root.as_deref().unwrap_or(src);
            root = match layered_root(src, theirs)? {
                Some(layered) => layered,
                // Overlay is not available to us here: mount points are
                // made in the tree, as on a writable rootfs.
                None => mounts.root(Some(src), &describe_root(cfg))?,
            };
        }
    }
    Ok(root)
}

/// The spec's mounts in order, the devices, and the kernel paths
/// protected; `before_sysfs` runs before the first sysfs mount.
fn mount_all(
    cfg: &Config,
    root: &Root,
    mounts: &mut dyn Mounts,
    keeps: &mut keep::Keeps,
    before_sysfs: &mut dyn FnMut() -> Step,
) -> Step {
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
                protect(root, &mut *mounts, Path::new(p), *readonly)?;
            }
            protected_early = Some(early);
            before_sysfs()?;
        }
        mount_one(root, &mut *mounts, m, keeps.mount(i), cfg)?;
        keeps.release_mount(i)?;
    }
    nodes::make_all(root, &mut *mounts, &cfg.devices)?;
    // The kernel paths a later mount touched (a sysfs one, say), now that
    // every mount is made.
    let early = protected_early.unwrap_or_default();
    for (p, readonly) in kernel_paths(cfg).filter(|(p, _)| !early.iter().any(|(q, _)| q == *p)) {
        protect(root, &mut *mounts, Path::new(p), readonly)?;
    }
    Ok(())
}

/// Into the new root, the old one detached; then the root's propagation
/// and read-only flag, which only apply once it is `/`.
fn pivot(cfg: &Config, mounts: &mut dyn Mounts) -> Step {
    let none: Option<&str> = None;
    chdir(NEWROOT).map_err(|e| fail(Stage::PivotRoot, e, describe_root(cfg)))?;
    pivot_root(".", ".").map_err(|e| {
        fail(Stage::PivotRoot, e, describe_root(cfg)).with_detail("is the rootfs a mount point?")
    })?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| fail(Stage::PivotRoot, e, "/").with_detail("detach the old root"))?;
    chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/"))?;

    // After the pivot, as runc does: pivot_root refuses a shared new root,
    // and an unbindable one could not have been copied for the kernel
    // paths. Private and slave were settled when the root was copied.
    if let Some(p) = cfg
        .root_propagation
        .filter(|p| matches!(p.kind, Kind::Shared | Kind::Unbindable))
    {
        mount(none, "/", none, p.flags(), none).map_err(|e| {
            fail(Stage::Mount, e, "/")
                .with_detail(format!("linux.rootfsPropagation {} on /", p.name()))
        })?;
    }
    if cfg.readonly_root {
        mounts.root_read_only()?;
    }
    Ok(())
}

/// Makes the staging root and pivots into it, the host's tree at /oldroot.
/// Only the mounts this touches are made private here: the root, which
/// pivot_root must not find shared, and the one that holds /tmp, which
/// would otherwise carry the staging tmpfs to the host's peers of it (as
/// root, with no user namespace of ours, every host mount shared on the
/// host still is here). The rest stay as the host's until `keep` has
/// copied what must stay tied to them.
fn enter_staging() -> Step {
    make_private(Path::new("/"))?;
    // /tmp could be a link to elsewhere; the tmpfs goes where it leads.
    let staging = std::fs::canonicalize(STAGING).unwrap_or_else(|_| STAGING.into());
    make_private(&staging)?;
    mount(
        Some("tmpfs"),
        STAGING,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=700"),
    )
    .map_err(|e| fail(Stage::Mount, e, STAGING).with_detail("staging tmpfs"))?;
    for dir in ["newroot", "oldroot", "stage"] {
        mkdir(
            &Path::new(STAGING).join(dir),
            Mode::from_bits_truncate(0o755),
        )
        .map_err(|e| fail(Stage::Mount, e, Path::new(STAGING).join(dir)))?;
    }
    pivot_root(STAGING, &Path::new(STAGING).join("oldroot"))
        .map_err(|e| fail(Stage::PivotRoot, e, STAGING).with_detail("entering the staging root"))?;
    chdir("/").map_err(|e| fail(Stage::PivotRoot, e, "/"))
}

/// Makes private, on its own, the mount that holds `path`: mount(2) says
/// EINVAL for a path that is not a mount point, so its parents are tried
/// in turn.
fn make_private(path: &Path) -> Step {
    let none: Option<&str> = None;
    let mut at = path;
    loop {
        match (
            mount(none, at, none, MsFlags::MS_PRIVATE, none),
            at.parent(),
        ) {
            (Ok(()), _) => return Ok(()),
            (Err(Errno::EINVAL), Some(parent)) => at = parent,
            (Err(e), _) => {
                return Err(fail(Stage::Mount, e, at)
                    .with_detail(format!("make the mount holding {} private", path.display())))
            }
        }
    }
}

/// Whether a mount of the spec lands on a path the rootfs lacks, outside
/// every earlier mount (inside one, the point is made in that mount).
fn lacks_a_mount_point(root: &Root, cfg: &Config) -> bool {
    cfg.mounts.iter().enumerate().any(|(i, m)| {
        let dst = Path::new(&m.destination);
        let inside_earlier = cfg.mounts[..i]
            .iter()
            .any(|e| dst != Path::new(&e.destination) && dst.starts_with(&e.destination));
        !inside_earlier && matches!(root.lookup(dst), Err(Errno::ENOENT))
    })
}

/// A read-only rootfs that lacks mount points gets them without a write
/// to the user's tree: the root becomes an overlay of that tree under a
/// tmpfs of kennel's, where the points are made; the container still sees
/// the tree read-only, and the tmpfs goes with it. None when the kernel
/// cannot give us that overlay (see `overlay_unsupported`); any other
/// failure is an error naming the user's rootfs (`theirs`).
fn layered_root(src: &Path, theirs: &Path) -> Step<Option<Root>> {
    let err = |step: &'static str| {
        move |e: Errno| {
            fail(Stage::Mount, e, theirs).with_detail(format!(
                "layering mount points over the read-only rootfs: {step}"
            ))
        }
    };
    umount2(NEWROOT, MntFlags::MNT_DETACH).map_err(err("unmounting the plain root"))?;
    let layer = Path::new("/stage/layer");
    mkdir(layer, Mode::from_bits_truncate(0o755)).map_err(err("making the layer's directory"))?;
    mount(
        Some("tmpfs"),
        layer,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    )
    .map_err(err("mounting the layer's tmpfs"))?;
    // The root directory comes from the upper layer: give it the tree's mode.
    let mode = nix::sys::stat::stat(src)
        .map_err(err("reading the rootfs's mode"))?
        .st_mode
        & 0o7777;
    for dir in ["upper", "work"] {
        mkdir(&layer.join(dir), Mode::from_bits_truncate(0o755))
            .map_err(err("making the overlay's upper and work directories"))?;
    }
    std::fs::set_permissions(
        layer.join("upper"),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .map_err(|e| err("giving the upper layer the rootfs's mode")(crate::protocol::io_errno(&e)))?;
    // lowerdir relative to the working directory: the user's path may hold
    // the ',', ':' or '\\' that overlay's options give a meaning.
    chdir(src).map_err(err("entering the rootfs"))?;
    let made = mount(
        Some("overlay"),
        NEWROOT,
        Some("overlay"),
        MsFlags::empty(),
        Some("lowerdir=.,upperdir=/stage/layer/upper,workdir=/stage/layer/work"),
    );
    chdir("/").map_err(err("leaving the rootfs"))?;
    match made {
        Ok(()) => {}
        Err(e) if overlay_unsupported(e) => return Ok(None),
        Err(e) => return Err(err("mounting the overlay")(e)),
    }
    Root::open(Path::new(NEWROOT))
        .map(Some)
        .map_err(err("opening the layered root"))
}

/// Whether the overlay mount failed because overlay is not available to
/// an unprivileged user here, rather than for a fault worth reporting:
/// ENODEV, no overlay in this kernel; EPERM, overlay not mountable in a
/// user namespace (kernels before 5.11 without Debian's or Ubuntu's
/// patch, or with it turned off); EINVAL, a rootfs on a file system
/// overlay refuses as a lower layer (vfat, a case-folded directory, a
/// stack of overlays already at the kernel's depth limit).
fn overlay_unsupported(e: Errno) -> bool {
    matches!(e, Errno::ENODEV | Errno::EPERM | Errno::EINVAL)
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

/// Masks `path` or makes it read-only. A path the rootfs does not have is
/// left alone.
fn protect(root: &Root, mounts: &mut dyn Mounts, path: &Path, readonly: bool) -> Step {
    let target = match root.lookup(path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(fail(Stage::Mount, e, path).with_detail("masked or read-only path")),
    };
    let is_dir = inroot::is_dir(&target).map_err(|e| fail(Stage::Mount, e, path))?;
    match readonly {
        true => mounts.read_only(&target, is_dir, path),
        false => mounts.mask(&target, is_dir, path),
    }
}

fn describe_root(cfg: &Config) -> String {
    cfg.root
        .as_ref()
        .map(|r| format!("into {}", r.display()))
        .unwrap_or_else(|| "into the sandbox root".into())
}

/// A mount point that could not be made: in the user's terms (their
/// rootfs's path, not the staging root's), with what to do. `rootfs` is
/// None for the host sandbox, whose root is kennel's own tmpfs.
fn mount_point_failure(e: Errno, dst: &Path, make: Make, rootfs: Option<&Path>) -> ChildFailure {
    let Some(rootfs) = rootfs else {
        return fail(Stage::Mount, e, dst).with_detail("create mount point");
    };
    let theirs = rootfs.join(dst.strip_prefix("/").unwrap_or(dst));
    let shown = theirs.display();
    let create = match make {
        Make::Directory => format!("mkdir -p {shown}"),
        Make::File => format!("touch {shown}"),
    };
    let why = match e {
        Errno::EROFS => "the rootfs is on a read-only file system".to_string(),
        Errno::EACCES | Errno::EPERM => {
            "the rootfs is not writable by your user (owned by another user, root say)".to_string()
        }
        other => other.desc().to_string(),
    };
    fail(Stage::Mount, e, dst).with_detail(format!(
        "{shown} does not exist and cannot be made: {why}; make it once as the rootfs's owner ({create}), or use a rootfs your user owns (see \"A root filesystem\" in kennel's docs/run.md)"
    ))
}

/// Makes mount `m`; a bind takes its source from `kept` when `keep` made a
/// copy of it.
fn mount_one(
    root: &Root,
    mounts: &mut dyn Mounts,
    m: &MountPlan,
    kept: Option<&Path>,
    cfg: &Config,
) -> Step {
    let rootfs = cfg.root.as_deref();
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
    let create_err = |make| move |e| mount_point_failure(e, dst, make, rootfs);
    if m.bind {
        // Every bind source is absolute: the plan refuses others.
        let src = kept.map_or_else(|| host_path(Path::new(&m.source)), Path::to_path_buf);
        let mut target = |make| root.lookup_or_make(dst, make).map_err(create_err(make));
        return mounts.bind(&src, m, &mut target);
    }
    let target = root
        .lookup_or_make(dst, Make::Directory)
        .map_err(create_err(Make::Directory))?;
    // /dev is filled before anything of the container sees it, and right
    // away, so later mounts of the spec can still cover a device.
    let fill = match (m.destination == "/dev", m.copy_up) {
        (true, _) => Fill::Dev(&cfg.devices),
        (false, true) => Fill::CopyUp,
        (false, false) => Fill::Nothing,
    };
    match mounts.filesystem(m, &target, fill) {
        // A network namespace joined by path may belong to a user namespace
        // we hold nothing in, and the kernel then refuses a sysfs for it:
        // the host's /sys is bound instead, as runc binds it.
        Err(f) if m.fstype == "sysfs" && f.errno == Errno::EPERM as i32 => {
            let host_sys = MountPlan {
                source: "/sys".into(),
                flags: m.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
                bind: true,
                ..m.clone()
            };
            let mut again = |_| {
                target.try_clone().map_err(|e| {
                    fail(
                        Stage::Mount,
                        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        dst,
                    )
                })
            };
            mounts.bind(&host_path(Path::new("/sys")), &host_sys, &mut again)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_overlay_the_kernel_cannot_give_falls_back() {
        for e in [Errno::ENODEV, Errno::EPERM, Errno::EINVAL] {
            assert!(overlay_unsupported(e), "{e}");
        }
        // Faults of this run, not of the kernel: the user hears of them.
        for e in [
            Errno::ENOSPC,
            Errno::ENOMEM,
            Errno::EACCES,
            Errno::ENOENT,
            Errno::EIO,
            Errno::EBUSY,
        ] {
            assert!(!overlay_unsupported(e), "{e}");
        }
    }
}
