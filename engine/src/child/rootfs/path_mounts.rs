//! Mounts through mount(2), for kernels without mount_setattr (before Linux
//! 5.12). mount(2) takes only paths: a target is named by the fd `inroot`
//! resolved (`mount_point`), and a mount that needs a second step (a
//! remount read-only, /dev's devices, a `tmpcopyup` tmpfs's copy) is made
//! and finished in the staging root first, then moved onto the target in
//! one call. Looking the target up again after mounting on it would let
//! another container sharing the rootfs swap the path in between (the
//! remount would land elsewhere). A propagation is such a second step too.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use super::mountinfo::mounts_below;
use super::mounts::{
    fail, host_path, open_staged, populate_dev, Fill, Mounts, Step, NEWROOT, OLDROOT,
};
use crate::child::copy_up;
use crate::inroot::{Make, Root};
use crate::protocol::{io_errno, Stage};
use crate::spec::mounts::MountPlan;
use crate::spec::propagation::{Kind, Propagation};

/// The staging mount points made so far (/stage/1, /stage/2, ...), which
/// only this process can reach.
#[derive(Default)]
pub struct PathMounts {
    made: usize,
    /// Mounts to make unbindable in `finish`: an fd of each one's root,
    /// opened where it was staged (mount(2) reaches it through
    /// /proc/self/fd), with its destination.
    unbindable: Vec<(OwnedFd, Propagation, String)>,
}

impl PathMounts {
    /// A fresh mount point in the staging root: a directory, or a file for
    /// a file bind.
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

    /// Keeps the mount staged at `at` for `finish` when plan `m` asks for
    /// an unbindable one.
    fn defer_unbindable(&mut self, at: &Path, m: &MountPlan) -> Step {
        let Some(p) = m.propagation.filter(|p| p.kind == Kind::Unbindable) else {
            return Ok(());
        };
        let dst = Path::new(&m.destination);
        let mnt = nix::fcntl::open(
            at,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| fail(Stage::Mount, e, dst).with_detail("open the staged mount"))?;
        self.unbindable.push((mnt, p, m.destination.clone()));
        Ok(())
    }
}

/// Whether plan `m` asks for a propagation that is a step of its own here
/// (a slave or shared bind has it from its `keep` source already, and a new
/// mount is private, which slave is for it too).
fn propagation_step(m: &MountPlan) -> Option<Propagation> {
    m.propagation.filter(|p| match p.kind {
        Kind::Unbindable => true,
        Kind::Shared => !m.bind,
        Kind::Private | Kind::Slave => false,
    })
}

impl Mounts for PathMounts {
    fn root(&mut self, rootfs: Option<&Path>, shown: &str) -> Step<Root> {
        let newroot = Path::new(NEWROOT);
        match rootfs {
            Some(src) => do_mount(
                src,
                newroot,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                "",
                "bind the rootfs",
            )?,
            None => do_mount(
                Path::new("tmpfs"),
                newroot,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                "mode=755",
                "sandbox root tmpfs",
            )?,
        }
        Root::open(newroot).map_err(|e| fail(Stage::Mount, e, shown))
    }

    fn bind(
        &mut self,
        src: &Path,
        m: &MountPlan,
        target: &mut dyn FnMut(Make) -> Step<OwnedFd>,
    ) -> Step {
        let dst = Path::new(&m.destination);
        let src_is_file = std::fs::metadata(src)
            .map(|md| !md.is_dir())
            .unwrap_or(false);
        let target = target(match src_is_file {
            true => Make::File,
            false => Make::Directory,
        })?;
        let rec = m.flags & MsFlags::MS_REC;
        let extra = m.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        let finish = m.readonly || !extra.is_empty() || propagation_step(m).is_some();
        // A mount point of `.` changes the current directory: the source
        // is absolute.
        let at = match finish {
            true => self.point(src_is_file)?,
            false => mount_point(&target),
        };
        do_mount(
            src,
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
            self.defer_unbindable(&at, m)?;
            move_onto(&at, &mount_point(&target), dst)?;
        }
        Ok(())
    }

    fn filesystem(&mut self, m: &MountPlan, target: &OwnedFd, fill: Fill<'_>) -> Step {
        let dst = Path::new(&m.destination);
        // A cgroup2 mount is made aside and moved into place too: where the
        // spec binds the host's /sys (runc's rootless specs), the target is
        // already a cgroup2 mount of the same superblock, on which the
        // kernel refuses a new one (EBUSY) but not a move.
        let staged =
            fill != Fill::Nothing || m.fstype == "cgroup2" || propagation_step(m).is_some();
        let at = match staged {
            true => self.point(false)?,
            false => mount_point(target),
        };
        let flags = match fill {
            Fill::CopyUp => m.flags & !MsFlags::MS_RDONLY,
            _ => m.flags,
        };
        do_mount(
            Path::new(&m.source),
            &at,
            Some(&m.fstype),
            flags,
            &m.data,
            &format!("{} on {}", m.fstype, m.destination),
        )
        .map_err(|f| f.at(dst))?;
        match fill {
            Fill::Nothing => {}
            Fill::CopyUp => {
                copy_up::copy_into(target, open_staged(&at, dst)?.as_fd(), dst)?;
                if m.flags.contains(MsFlags::MS_RDONLY) {
                    remount_bind(&at, true, MsFlags::empty()).map_err(|f| f.at(dst))?;
                }
            }
            Fill::Dev(replaced) => {
                let dev = open_staged(&at, dst)?;
                populate_dev(dev.as_fd(), replaced, &mut |host, name| {
                    mount(
                        Some(host),
                        &at.join(name),
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                })?;
            }
        }
        if let Some(p) = m.propagation.filter(|p| p.kind == Kind::Shared) {
            let none: Option<&str> = None;
            mount(none, &at, none, p.flags(), none).map_err(|e| {
                fail(Stage::Mount, e, dst).with_detail(format!(
                    "{} on {}: {}",
                    m.fstype,
                    m.destination,
                    p.name()
                ))
            })?;
        }
        if staged {
            self.defer_unbindable(&at, m)?;
            move_onto(&at, &mount_point(target), dst)?;
        }
        Ok(())
    }

    fn mask(&mut self, target: &OwnedFd, is_dir: bool, shown: &Path) -> Step {
        let what = format!("mask {}", shown.display());
        match is_dir {
            true => do_mount(
                Path::new("tmpfs"),
                &mount_point(target),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                "size=0",
                &what,
            ),
            false => do_mount(
                &host_path(Path::new("/dev/null")),
                &mount_point(target),
                None,
                MsFlags::MS_BIND,
                "",
                &what,
            ),
        }
    }

    fn read_only(&mut self, target: &OwnedFd, is_dir: bool, shown: &Path) -> Step {
        let at = mount_point(target);
        let staged = self.point(!is_dir)?;
        do_mount(
            &at,
            &staged,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            "",
            &format!("read-only {}", shown.display()),
        )?;
        remount_bind(&staged, true, MsFlags::empty()).map_err(|f| f.at(shown))?;
        restrict_submounts(&staged, true, MsFlags::empty()).map_err(|f| f.at(shown))?;
        move_onto(&staged, &at, shown)
    }

    fn root_read_only(&mut self) -> Step {
        remount_bind(Path::new("/"), true, MsFlags::empty())
    }

    fn finish(&mut self) -> Step {
        let none: Option<&str> = None;
        for (mnt, p, dst) in self.unbindable.drain(..) {
            let at = format!("{OLDROOT}/proc/self/fd/{}", mnt.as_raw_fd());
            mount(none, at.as_str(), none, p.flags(), none)
                .map_err(|e| fail(Stage::Mount, e, &dst).with_detail(p.name()))?;
        }
        Ok(())
    }
}

fn do_mount(
    src: &Path,
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

/// A path naming `fd` as a mount point for mount(2): `.` once we have
/// changed into it, when it is a directory (a short walk), else a path
/// through the host's procfs (the child is visible in it), which follows it
/// to the very file the fd refers to. Valid until the next change of
/// directory.
fn mount_point(fd: &OwnedFd) -> PathBuf {
    match nix::unistd::fchdir(fd) {
        Ok(()) => PathBuf::from("."),
        Err(_) => PathBuf::from(format!("{OLDROOT}/proc/self/fd/{}", fd.as_raw_fd())),
    }
}

/// Moves the finished mount at `staged` onto `target` (a `mount_point`).
fn move_onto(staged: &Path, target: &Path, shown: &Path) -> Step {
    let none: Option<&str> = None;
    mount(Some(staged), target, none, MsFlags::MS_MOVE, none)
        .map_err(|e| fail(Stage::Mount, e, shown).with_detail("move the finished mount into place"))
}

/// Flags the kernel locks on a mount made in a less privileged user
/// namespace: a remount replaces every flag of the mount, so it must
/// repeat them or it fails with EPERM.
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
/// mount inside it. Each submount found in our mountinfo is remounted (the
/// one call that does it at once, mount_setattr, is what this kernel
/// lacks).
fn restrict_submounts(top: &Path, readonly: bool, extra: MsFlags) -> Step {
    for point in mounts_below(top)? {
        remount_bind(&point, readonly, extra)?;
    }
    Ok(())
}
