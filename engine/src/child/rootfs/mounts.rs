//! What the two ways of mounting (`fd_mounts`, `path_mounts`) and the rest
//! of `rootfs` share: the staging paths, the `Mounts` interface, how a new
//! filesystem is filled, a host path seen from the staging root, and the
//! container's /dev.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::inroot::{Make, Root};
use crate::protocol::{ChildFailure, Stage};
use crate::spec::devices::DevicePlan;
use crate::spec::mounts::MountPlan;

pub const NEWROOT: &str = "/newroot";
pub const OLDROOT: &str = "/oldroot";

/// Host devices bound into the container's /dev (mknod is not allowed to us).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub type Step<T = ()> = Result<T, ChildFailure>;

pub fn fail(stage: Stage, errno: Errno, path: impl AsRef<Path>) -> ChildFailure {
    ChildFailure::new(stage, errno, Some(path.as_ref().display().to_string()))
}

/// How the mounts inside the new root are made. Every target is an fd that
/// `inroot` resolved inside the root; `shown` and a plan's destination are
/// the user's names for it, for errors.
pub trait Mounts {
    /// Mounts the container's root at /newroot and opens it: the host
    /// directory `rootfs` (a path in the staging root) bound with the
    /// mounts below it, or a fresh tmpfs when None.
    fn root(&mut self, rootfs: Option<&Path>, shown: &str) -> Step<Root>;

    /// Binds the host path `src` (in the staging root) as plan `m` says;
    /// `target` makes the destination, a file or a directory like the
    /// source, and opens it.
    fn bind(
        &mut self,
        src: &Path,
        m: &MountPlan,
        target: &mut dyn FnMut(Make) -> Step<OwnedFd>,
    ) -> Step;

    /// A new filesystem as plan `m` says, onto `target`, with its contents
    /// made first (`fill`).
    fn filesystem(&mut self, m: &MountPlan, target: &OwnedFd, fill: Fill<'_>) -> Step;

    /// Covers `target` with an empty read-only tmpfs (a directory) or the
    /// host's /dev/null (anything else).
    fn mask(&mut self, target: &OwnedFd, is_dir: bool, shown: &Path) -> Step;

    /// Makes `target` and every mount below it read-only.
    fn read_only(&mut self, target: &OwnedFd, is_dir: bool, shown: &Path) -> Step;

    /// Makes the mount at / read-only, after the pivot.
    fn root_read_only(&mut self) -> Step;

    /// Makes unbindable the mounts that asked for it, once every mount is
    /// made and nothing more is copied from them.
    fn finish(&mut self) -> Step;
}

/// What a new filesystem holds before anything of the container sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fill<'a> {
    Nothing,
    /// The container's /dev: the host's devices and the standard links,
    /// but for those linux.devices puts in their place.
    Dev(&'a [DevicePlan]),
    /// `tmpcopyup`: a copy of what the target holds (see `copy_up`).
    CopyUp,
}

/// A host path as seen from the staging root, its symlinks followed as
/// the host would follow them: an absolute link (/etc/localtime, say)
/// resolves under /oldroot, not in the staging root, which is what a
/// plain join would give. The kernel resolves it (openat2 with the old
/// root as root) and the fd's name is read back. A path that cannot be
/// resolved is returned as given, so the mount that uses it fails with
/// the user's path.
pub fn host_path(p: &Path) -> std::path::PathBuf {
    let given = Path::new(OLDROOT).join(p.strip_prefix("/").unwrap_or(p));
    let resolved = Root::open(Path::new(OLDROOT))
        .and_then(|root| root.lookup(p))
        .and_then(|fd| {
            nix::fcntl::readlink(format!("{OLDROOT}/proc/self/fd/{}", fd.as_raw_fd()).as_str())
        });
    match resolved {
        Ok(name) if Path::new(&name).starts_with(OLDROOT) => name.into(),
        _ => given,
    }
}

/// Fills the container's fresh /dev tmpfs `dev` (nothing of the image is
/// in it): the host's devices bound onto files by `bind_device` (a device
/// the host lacks is left out) and the standard links.
pub fn populate_dev(
    dev: BorrowedFd<'_>,
    replaced: &[DevicePlan],
    bind_device: &mut dyn FnMut(&Path, &str) -> Result<(), Errno>,
) -> Step {
    let theirs = |name: &str| {
        replaced
            .iter()
            .any(|d| d.path == Path::new("/dev").join(name))
    };
    for name in DEVICES.into_iter().filter(|n| !theirs(n)) {
        let shown = format!("/dev/{name}");
        nix::fcntl::openat(
            dev,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| fail(Stage::Mount, e, &shown).with_detail("create mount point"))?;
        match bind_device(&host_path(Path::new(&shown)), name) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {
                let _ = nix::unistd::unlinkat(dev, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
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
    ]
    .into_iter()
    .filter(|(link, _)| !theirs(link))
    {
        match nix::unistd::symlinkat(to, dev, link) {
            Err(e) if e != Errno::EEXIST => {
                return Err(fail(Stage::Mount, e, format!("/dev/{link}")))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Opens a directory made in the staging root, for `populate_dev` and
/// `copy_up` there.
pub fn open_staged(path: &Path, shown: &Path) -> Step<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(Stage::Mount, e, shown).with_detail("open the staged mount"))
}
