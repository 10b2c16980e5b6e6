//! Mounts through the kernel's mount API (Linux 5.12 for all of it): each
//! one is made detached (open_tree for a bind, fsopen/fsconfig/fsmount for
//! a new filesystem), finished while nothing can see it (mount_setattr for
//! read-only and the other flags, a `tmpcopyup` copy), then attached with
//! move_mount onto the fd `inroot` resolved. No path of the image is looked
//! up twice, no path through /proc stands for an fd, and there is no moment
//! when a read-only mount is writable in place.
//!
//! mount_setattr changes only the attributes it names, so a flag the
//! kernel locked on a mount from a more privileged user namespace (a
//! host's nosuid, say) is simply left set: unlike a bind remount, which
//! replaces every flag, it needs no list of the locked ones.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::mounts::{fail, host_path, populate_dev, Fill, Mounts, Step, NEWROOT};
use crate::child::copy_up;
use crate::inroot::{self, Make, Root};
use crate::protocol::{ChildFailure, Stage};
use crate::spec::mounts::MountPlan;
use crate::spec::propagation::{Kind, Propagation};
use crate::sys::{self, MountAttributes};

#[derive(Default)]
pub struct FdMounts {
    /// Attached mounts to make unbindable in `finish`, with their
    /// destinations.
    unbindable: Vec<(OwnedFd, Propagation, String)>,
}

impl FdMounts {
    /// Keeps the attached mount `mnt` for `finish` when plan `m` asks for
    /// an unbindable one.
    fn defer_unbindable(&mut self, mnt: OwnedFd, m: &MountPlan) {
        if let Some(p) = m.propagation.filter(|p| p.kind == Kind::Unbindable) {
            self.unbindable.push((mnt, p, m.destination.clone()));
        }
    }
}

impl Mounts for FdMounts {
    fn root(&mut self, rootfs: Option<&Path>, shown: &str) -> Step<Root> {
        let root = match rootfs {
            Some(src) => sys::clone_mount_tree(None, src, true)
                .map_err(|e| fail(Stage::Mount, e, shown).with_detail("bind the rootfs"))?,
            None => new_filesystem(
                "tmpfs",
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                "mode=755",
            )
            .map_err(|f| about(f, Path::new(shown), "sandbox root tmpfs"))?,
        };
        sys::move_mount(root.as_fd(), None, Path::new(NEWROOT))
            .map_err(|e| fail(Stage::Mount, e, shown).with_detail("attach the root at /newroot"))?;
        // Still the root of that mount, now attached: the root to resolve in.
        Ok(Root::from_fd(root))
    }

    fn bind(
        &mut self,
        src: &Path,
        m: &MountPlan,
        target: &mut dyn FnMut(Make) -> Step<OwnedFd>,
    ) -> Step {
        let dst = Path::new(&m.destination);
        let recursive = m.flags.contains(MsFlags::MS_REC);
        let what = || format!("bind {}", m.source);
        let tree = sys::clone_mount_tree(None, src, recursive).map_err(|e| {
            fail(Stage::Mount, e, dst).with_detail(format!("{} (open_tree)", what()))
        })?;
        let is_dir = inroot::is_dir(&tree).map_err(|e| fail(Stage::Mount, e, dst))?;
        let target = target(match is_dir {
            true => Make::Directory,
            false => Make::File,
        })?;
        let attrs = attributes(m.flags);
        if attrs != MountAttributes::default() {
            sys::set_mount_attributes(Some(tree.as_fd()), Path::new(""), recursive, attrs)
                .map_err(|e| {
                    fail(Stage::Mount, e, dst).with_detail(format!(
                        "{}: set {} (mount_setattr)",
                        what(),
                        describe_flags(m.flags)
                    ))
                })?;
        }
        // A slave or shared bind needs nothing more: its source is the
        // copy `keep` made, whose propagation a copy takes after.
        attach(&tree, &target, dst, &what())?;
        self.defer_unbindable(tree, m);
        Ok(())
    }

    fn filesystem(&mut self, m: &MountPlan, target: &OwnedFd, fill: Fill<'_>) -> Step {
        let dst = Path::new(&m.destination);
        let what = format!("{} on {}", m.fstype, m.destination);
        // A `tmpcopyup` tmpfs is written first, and made read-only after.
        let flags = match fill {
            Fill::CopyUp => m.flags & !MsFlags::MS_RDONLY,
            _ => m.flags,
        };
        let mnt = new_filesystem(&m.fstype, &m.source, flags, &m.data)
            .map_err(|f| about(f, dst, &what))?;
        if fill == Fill::CopyUp {
            copy_up::copy_into(target, mnt.as_fd(), dst)?;
            if m.flags.contains(MsFlags::MS_RDONLY) {
                let ro = attributes(MsFlags::MS_RDONLY);
                sys::set_mount_attributes(Some(mnt.as_fd()), Path::new(""), false, ro).map_err(
                    |e| {
                        fail(Stage::Mount, e, dst).with_detail(format!(
                            "{what}: read-only after tmpcopyup (mount_setattr)"
                        ))
                    },
                )?;
            }
        }
        // A new mount has no master: slave is private for it, as mount(2)
        // leaves it. Shared before it is attached, so what is mounted on
        // it from now on is shared too, as with mount(2).
        if let Some(p) = m.propagation.filter(|p| p.kind == Kind::Shared) {
            let shared = propagate(p);
            sys::set_mount_attributes(Some(mnt.as_fd()), Path::new(""), false, shared).map_err(
                |e| {
                    fail(Stage::Mount, e, dst)
                        .with_detail(format!("{what}: shared (mount_setattr)"))
                },
            )?;
        }
        // A move, not a new mount at the target: where the spec binds the
        // host's /sys (runc's rootless specs) a cgroup2 target is already a
        // mount of the same superblock, on which mount(2) refuses another.
        attach(&mnt, target, dst, &what)?;
        if let Fill::Dev(replaced) = fill {
            // Attached, so devices can be bound into it (a detached mount
            // takes no mounts below it before Linux 6.15); still reached
            // only through its own fd, which nothing of the image can
            // redirect.
            populate_dev(mnt.as_fd(), replaced, &mut |host, name| {
                let device = sys::clone_mount_tree(None, host, false)?;
                sys::move_mount(device.as_fd(), Some(mnt.as_fd()), Path::new(name))
            })?;
        }
        self.defer_unbindable(mnt, m);
        Ok(())
    }

    fn mask(&mut self, target: &OwnedFd, is_dir: bool, shown: &Path) -> Step {
        let what = format!("mask {}", shown.display());
        let cover = match is_dir {
            true => new_filesystem(
                "tmpfs",
                "tmpfs",
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                "size=0",
            )
            .map_err(|f| about(f, shown, &what))?,
            false => sys::clone_mount_tree(None, &host_path(Path::new("/dev/null")), false)
                .map_err(|e| {
                    fail(Stage::Mount, e, shown)
                        .with_detail(format!("{what} (open_tree /dev/null)"))
                })?,
        };
        attach(&cover, target, shown, &what)
    }

    fn read_only(&mut self, target: &OwnedFd, _is_dir: bool, shown: &Path) -> Step {
        let what = format!("read-only {}", shown.display());
        let tree = sys::clone_mount_tree(Some(target.as_fd()), Path::new(""), true)
            .map_err(|e| fail(Stage::Mount, e, shown).with_detail(format!("{what} (open_tree)")))?;
        let ro = attributes(MsFlags::MS_RDONLY);
        sys::set_mount_attributes(Some(tree.as_fd()), Path::new(""), true, ro).map_err(|e| {
            fail(Stage::Mount, e, shown).with_detail(format!("{what} (mount_setattr)"))
        })?;
        attach(&tree, target, shown, &what)
    }

    fn root_read_only(&mut self) -> Step {
        let ro = attributes(MsFlags::MS_RDONLY);
        sys::set_mount_attributes(None, Path::new("/"), false, ro)
            .map_err(|e| fail(Stage::Mount, e, "/").with_detail("read-only root (mount_setattr)"))
    }

    fn finish(&mut self) -> Step {
        for (mnt, p, dst) in self.unbindable.drain(..) {
            sys::set_mount_attributes(Some(mnt.as_fd()), Path::new(""), p.recursive, propagate(p))
                .map_err(|e| {
                    fail(Stage::Mount, e, &dst).with_detail(format!("{} (mount_setattr)", p.name()))
                })?;
        }
        Ok(())
    }
}

/// The mount_setattr(2) change to propagation `p`'s kind (AT_RECURSIVE,
/// for an r-form, is the call's flag, not an attribute).
fn propagate(p: Propagation) -> MountAttributes {
    MountAttributes {
        propagation: p.kind_flag().bits(),
        ..MountAttributes::default()
    }
}

/// A `new_filesystem` failure, told about the mount it was for.
fn about(failure: ChildFailure, shown: &Path, what: &str) -> ChildFailure {
    let detail = match &failure.detail {
        Some(d) => format!("{what}: {d}"),
        None => what.to_string(),
    };
    failure.at(shown).with_detail(detail)
}

/// Attaches the detached mount `mnt` onto `target`.
fn attach(mnt: &OwnedFd, target: &OwnedFd, shown: &Path, what: &str) -> Step {
    sys::move_mount(mnt.as_fd(), Some(target.as_fd()), Path::new("")).map_err(|e| {
        let detail = match e {
            // The kernel's answer to a file mounted on a directory, or
            // the other way round.
            Errno::EINVAL | Errno::ENOTDIR => format!(
                "{what} (move_mount): is one of the source and the destination a file and the other a directory?"
            ),
            _ => format!("{what} (move_mount)"),
        };
        fail(Stage::Mount, e, shown).with_detail(detail)
    })
}

/// A detached mount of a new filesystem: mount(2)'s `fstype`, `source`,
/// `flags` and comma-separated `data`, given to the kernel one option at a
/// time. A failure carries the kernel's own messages about the options,
/// when it left any.
fn new_filesystem(
    fstype: &str,
    source: &str,
    flags: MsFlags,
    data: &str,
) -> Result<OwnedFd, ChildFailure> {
    let failed = |e: Errno, call: &str, fs: Option<BorrowedFd<'_>>| {
        let said = fs.map(kernel_messages).unwrap_or_default();
        let detail = match said.is_empty() {
            true => call.to_string(),
            false => format!("{call}: the kernel says {said:?}"),
        };
        ChildFailure::new(Stage::Mount, e, None).with_detail(detail)
    };
    let fs = sys::fs_open(fstype).map_err(|e| failed(e, &format!("fsopen {fstype}"), None))?;
    let set = |key: &str, value: Option<&str>| {
        sys::fs_set(fs.as_fd(), key, value).map_err(|e| {
            let option = value.map_or(key.to_string(), |v| format!("{key}={v}"));
            failed(e, &format!("option {option}"), Some(fs.as_fd()))
        })
    };
    set("source", Some(source))?;
    for option in data.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some((key, value)) => set(key, Some(value))?,
            None => set(option, None)?,
        }
    }
    // What mount(2) gives the superblock rather than the mount.
    for (flag, key) in [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_SYNCHRONOUS, "sync"),
    ] {
        if flags.contains(flag) {
            set(key, None)?;
        }
    }
    sys::fs_create(fs.as_fd()).map_err(|e| failed(e, "create the filesystem", Some(fs.as_fd())))?;
    sys::fs_mount(fs.as_fd(), attributes(flags).set)
        .map_err(|e| failed(e, "fsmount", Some(fs.as_fd())))
}

/// The error lines the kernel queued on a filesystem context (read(2) on
/// it returns one "e ..." message per call), joined.
fn kernel_messages(fs: BorrowedFd<'_>) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = nix::unistd::read(fs, &mut buf) {
        let line = String::from_utf8_lossy(&buf[..n]);
        if let Some(error) = line.strip_prefix("e ") {
            out.push(error.trim_end().to_string());
        }
    }
    out.join("; ")
}

/// The mount attributes mount(2)'s `flags` ask for: read-only,
/// nosuid/nodev/noexec, nodiratime, and an atime mode when one is named
/// (else the mount's own is kept, and a new mount gets relatime, as with
/// mount(2)).
fn attributes(flags: MsFlags) -> MountAttributes {
    let mut attrs = MountAttributes::default();
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(flag) {
            attrs.set |= attr;
        }
    }
    let atime = if flags.contains(MsFlags::MS_STRICTATIME) {
        Some(libc::MOUNT_ATTR_STRICTATIME)
    } else if flags.contains(MsFlags::MS_NOATIME) {
        Some(libc::MOUNT_ATTR_NOATIME)
    } else if flags.contains(MsFlags::MS_RELATIME) {
        Some(libc::MOUNT_ATTR_RELATIME)
    } else {
        None
    };
    if let Some(atime) = atime {
        attrs.set |= atime;
        attrs.clear |= libc::MOUNT_ATTR__ATIME;
    }
    attrs
}

/// The options behind `attributes(flags)`, for errors.
fn describe_flags(flags: MsFlags) -> String {
    let names: Vec<&str> = [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_NODIRATIME, "nodiratime"),
        (MsFlags::MS_STRICTATIME, "strictatime"),
        (MsFlags::MS_NOATIME, "noatime"),
        (MsFlags::MS_RELATIME, "relatime"),
    ]
    .into_iter()
    .filter(|(flag, _)| flags.contains(*flag))
    .map(|(_, name)| name)
    .collect();
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_the_mount_options() {
        let ro_nosuid = attributes(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_BIND);
        assert_eq!(
            ro_nosuid,
            MountAttributes {
                set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID,
                ..MountAttributes::default()
            }
        );
        // No atime named: the mount's own stays (it may be locked).
        assert_eq!(attributes(MsFlags::MS_BIND), MountAttributes::default());
        let noatime = attributes(MsFlags::MS_NOATIME);
        assert_eq!(noatime.set, libc::MOUNT_ATTR_NOATIME);
        assert_eq!(noatime.clear, libc::MOUNT_ATTR__ATIME);
        // strictatime wins, as with mount(2).
        let strict = attributes(MsFlags::MS_NOATIME | MsFlags::MS_STRICTATIME);
        assert_eq!(strict.set, libc::MOUNT_ATTR_STRICTATIME);
    }
}
