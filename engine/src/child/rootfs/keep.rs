//! Copies of host mounts that a slave or shared propagation must stay
//! tied to. A mount is a slave of, or a peer of, the host's mount only if
//! it is copied from a mount that still is one: in a new mount namespace
//! every copy of a shared host mount starts in its peer group (or as its
//! slave, when the namespace belongs to a user namespace of ours: the
//! kernel reduces shared to slave there), and making the host's tree
//! private, as kennel does before building the root, cuts that for good.
//! So the bind sources (and the rootfs) that ask for it are bound here
//! first, in the staging root, with their propagation; the container's
//! mount is then copied from this copy, which it takes after, and the copy
//! goes.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::mountinfo::{mounts_below, propagation_of};
use super::mounts::{fail, host_path, Step};
use crate::plan::config::Config;
use crate::protocol::{io_errno, Stage};
use crate::spec::propagation::{Kind, Propagation};

const KEEP: &str = "/stage/keep";

/// The kept copies: of the rootfs, and of each mount of the spec by index.
pub struct Keeps {
    root: Option<PathBuf>,
    mounts: Vec<Option<PathBuf>>,
}

impl Keeps {
    /// Copies what asks for it, from the host's tree at /oldroot: a bind
    /// that is slave or shared, and the rootfs when linux.rootfsPropagation
    /// is slave (a shared one is given to the container's / after the
    /// pivot, as runc does, in a peer group of its own).
    pub fn make(cfg: &Config) -> Step<Keeps> {
        let mut keeps = Keeps {
            root: None,
            mounts: vec![None; cfg.mounts.len()],
        };
        let root_slave = cfg.root_propagation.filter(|p| p.kind == Kind::Slave);
        if let (Some(root), Some(p)) = (&cfg.root, root_slave) {
            let shown = format!("the rootfs {}", root.display());
            keeps.root = Some(keep(
                &host_path(root),
                "root",
                true,
                p,
                Path::new("/"),
                &shown,
            )?);
        }
        for (i, m) in cfg.mounts.iter().enumerate() {
            let Some(p) = m.propagation.filter(|p| m.bind && p.follows_host()) else {
                continue;
            };
            let recursive = m.flags.contains(MsFlags::MS_REC);
            let shown = format!("bind {}", m.source);
            let src = host_path(Path::new(&m.source));
            let dst = Path::new(&m.destination);
            keeps.mounts[i] = Some(keep(&src, &i.to_string(), recursive, p, dst, &shown)?);
        }
        Ok(keeps)
    }

    /// The rootfs's copy, when it has one, in place of the rootfs.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The copy of mount `i`'s source, when it has one.
    pub fn mount(&self, i: usize) -> Option<&Path> {
        self.mounts.get(i).and_then(|k| k.as_deref())
    }

    /// Whether the rootfs's copy still follows a host mount (it is a slave
    /// of one): a copy of a private host mount has nothing to follow.
    pub fn root_follows_host(&self) -> Step<bool> {
        let Some(point) = &self.root else {
            return Ok(false);
        };
        let tags = propagation_of(point)?.unwrap_or_default();
        Ok(tags.iter().any(|t| t.starts_with("master:")))
    }

    /// Drops the rootfs's copy, once the container's root is made.
    pub fn release_root(&mut self) -> Step {
        release(self.root.take())
    }

    /// Drops mount `i`'s copy, once the container's mount is made.
    pub fn release_mount(&mut self, i: usize) -> Step {
        release(self.mounts.get_mut(i).and_then(Option::take))
    }
}

/// Binds `src` (recursively if `recursive`) at /stage/keep/`name` and gives
/// the copy propagation `p`: its r-form to every mount of it, the plain
/// form to the bind's own mount, the mounts below it private (kennel's
/// default). `dst` and `shown` name the mount for errors.
fn keep(
    src: &Path,
    name: &str,
    recursive: bool,
    p: Propagation,
    dst: &Path,
    shown: &str,
) -> Step<PathBuf> {
    let err = |step: &str| {
        let detail = format!("{shown}: {step}, for its {} propagation", p.name());
        move |e: Errno| fail(Stage::Mount, e, dst).with_detail(detail)
    };
    let point = Path::new(KEEP).join(name);
    match std::fs::create_dir(KEEP) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(err("making the staging directory")(io_errno(&e)))
        }
        _ => {}
    }
    let is_dir = std::fs::metadata(src)
        .map_err(|e| err("reading the source")(io_errno(&e)))?
        .is_dir();
    let made = match is_dir {
        true => std::fs::create_dir(&point),
        false => std::fs::File::create(&point).map(drop),
    };
    made.map_err(|e| err("making a staging mount point")(io_errno(&e)))?;
    let rec = match recursive {
        true => MsFlags::MS_REC,
        false => MsFlags::empty(),
    };
    let none: Option<&str> = None;
    mount(Some(src), &point, none, MsFlags::MS_BIND | rec, none)
        .map_err(err("binding it in the staging root"))?;
    if recursive && !p.recursive {
        for below in mounts_below(&point)? {
            mount(none, &below, none, MsFlags::MS_PRIVATE, none)
                .map_err(err("making a mount below it private"))?;
        }
    }
    mount(none, &point, none, p.flags(), none).map_err(err("setting the propagation"))?;
    Ok(point)
}

/// Makes a kept copy private, then detaches it. Private first: detaching a
/// tree whose top is a peer of a host mount would carry the unmount of
/// each mount below it to the host's copies of them.
fn release(point: Option<PathBuf>) -> Step {
    let Some(point) = point else {
        return Ok(());
    };
    let err = |step: &'static str| {
        let shown = point.clone();
        move |e: Errno| fail(Stage::Mount, e, &shown).with_detail(step)
    };
    let none: Option<&str> = None;
    mount(
        none,
        &point,
        none,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        none,
    )
    .map_err(err("making a kept copy private before dropping it"))?;
    umount2(&point, MntFlags::MNT_DETACH).map_err(err("dropping a kept copy"))
}
