//! The mount point of a pasta container's /etc/resolv.conf in a writable
//! rootfs that has none.
//!
//! A bind mount needs a file to land on, and a writable rootfs is used as
//! it is (no layer over it, so the container's writes stay), so the file
//! is made in the user's tree. pasta's keeper makes it, before the child
//! looks for it, and removes it once the container is gone: the keeper
//! outlives a runner that is killed, so nothing stays behind either way.
//!
//! Several containers may share one rootfs. Each keeper holds a shared
//! `flock` on the file while its container runs; the one that ends and
//! gets the lock exclusively is the last user and removes the file, but
//! only a file kennel made (its text says so), never the user's own. An
//! unlink while another container still mounts onto the file would take
//! that container's resolv.conf away (the kernel detaches a mount whose
//! point is unlinked from another mount namespace). The directory's mtime
//! is put back as it was when nothing else changed it meanwhile.
//!
//! Every path is resolved inside the rootfs by the kernel, as the child
//! does (see `inroot`): the tree is the container's to change.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, Flock, FlockArg, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, futimens, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};

const NAME: &str = "resolv.conf";

/// The first lines of a mount point kennel made; the last line records
/// the directory's mtime before and after the file was made.
const MARKER: &str = "# kennel made this file as the mount point of a running container's\n# /etc/resolv.conf; it removes it when the last such container ends.\n";

/// A container's hold on the mount point (see the module's comment).
pub struct Claim {
    etc: OwnedFd,
    file: Flock<OwnedFd>,
}

/// Takes a hold on ROOTFS/etc/resolv.conf, making it (with kennel's
/// marker) when it is missing. None when the rootfs has no /etc, when the
/// file is not a regular file (a symlink, say), or when it cannot be made
/// (an unwritable tree): the child then makes or reports the mount point
/// as for any other mount.
pub fn claim(rootfs: &Path) -> Option<Claim> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let etc = openat2(
        root.as_fd(),
        "etc",
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
    .ok()?;
    // A retry follows a file removed by the last other user between our
    // open and our lock; a few are plenty.
    for _ in 0..8 {
        let file = match open_in(&etc, OFlag::O_RDONLY, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => match make(&etc) {
                Ok(fd) => fd,
                Err(Errno::EEXIST) => continue,
                Err(_) => return None,
            },
            Err(_) => return None,
        };
        let st = fstat(&file).ok()?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return None;
        }
        let file = Flock::lock(file, FlockArg::LockShared).ok()?;
        if still_linked(&etc, &file) {
            return Some(Claim { etc, file });
        }
    }
    None
}

impl Claim {
    /// Drops the hold once the container is gone; the last holder
    /// removes a file kennel made.
    pub fn release(self) {
        if self.file.relock(FlockArg::LockExclusiveNonblock).is_err() {
            return;
        }
        let mut text = [0u8; 512];
        let Ok(n) = nix::sys::uio::pread(&*self.file, &mut text, 0) else {
            return;
        };
        let Some((before, after)) = std::str::from_utf8(&text[..n])
            .ok()
            .and_then(made_by_kennel)
        else {
            return;
        };
        if !still_linked(&self.etc, &self.file) {
            return;
        }
        let etc_mtime = fstat(&self.etc).ok().map(|st| mtime(&st));
        if unlinkat(&self.etc, NAME, UnlinkatFlags::NoRemoveDir).is_err() {
            return;
        }
        if etc_mtime == Some(after) {
            let _ = futimens(&self.etc, &TimeSpec::UTIME_OMIT, &before);
        }
    }
}

/// Opens ETC/resolv.conf itself (no symlink followed).
fn open_in(etc: &OwnedFd, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
    openat2(
        etc.as_fd(),
        NAME,
        OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )
}

/// Makes the mount point with kennel's marker; EEXIST when another
/// container made it first.
fn make(etc: &OwnedFd) -> Result<OwnedFd, Errno> {
    let before = mtime(&fstat(etc)?);
    let file = open_in(
        etc,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o644),
    )?;
    let after = mtime(&fstat(etc)?);
    let text = marker(before, after);
    if nix::sys::uio::pwrite(&file, text.as_bytes(), 0) != Ok(text.len()) {
        // Not ours to keep half made: as if it could not be made.
        let _ = unlinkat(etc, NAME, UnlinkatFlags::NoRemoveDir);
        return Err(Errno::EIO);
    }
    Ok(file)
}

/// Whether `file` is still what ETC/resolv.conf names.
fn still_linked(etc: &OwnedFd, file: &Flock<OwnedFd>) -> bool {
    let (Ok(held), Ok(named)) = (
        fstat(&**file),
        fstatat(etc, NAME, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW),
    ) else {
        return false;
    };
    held.st_nlink > 0 && (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
}

fn mtime(st: &nix::sys::stat::FileStat) -> TimeSpec {
    TimeSpec::new(st.st_mtime, st.st_mtime_nsec)
}

fn marker(before: TimeSpec, after: TimeSpec) -> String {
    let at = |t: TimeSpec| format!("{}.{:09}", t.tv_sec(), t.tv_nsec());
    format!(
        "{MARKER}# /etc mtime before {} after {}\n",
        at(before),
        at(after)
    )
}

/// The mtimes a file kennel made records, or None for any other text
/// (the user's own file).
fn made_by_kennel(text: &str) -> Option<(TimeSpec, TimeSpec)> {
    let rest = text.strip_prefix(MARKER)?;
    let line = rest
        .strip_prefix("# /etc mtime before ")?
        .strip_suffix('\n')?;
    let (before, after) = line.split_once(" after ")?;
    let parse = |t: &str| -> Option<TimeSpec> {
        let (s, ns) = t.split_once('.')?;
        Some(TimeSpec::new(s.parse().ok()?, ns.parse().ok()?))
    };
    Some((parse(before)?, parse(after)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kennels_own_text_is_taken_as_kennels() {
        let (b, a) = (TimeSpec::new(10, 5), TimeSpec::new(11, 123_456_789));
        assert_eq!(made_by_kennel(&marker(b, a)), Some((b, a)));
        for theirs in [
            "",
            "nameserver 1.1.1.1\n",
            &marker(b, a).replace("kennel", "someone"),
            &format!("{}nameserver 1.1.1.1\n", marker(b, a)),
        ] {
            assert_eq!(made_by_kennel(theirs), None, "{theirs:?}");
        }
    }

    #[test]
    fn the_last_holder_removes_the_point_and_restores_the_mtime() {
        let base = std::env::temp_dir().join(format!("kennel-resolv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("etc")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::open(base.join("etc"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let point = base.join("etc/resolv.conf");
        let first = claim(&base).expect("made");
        let second = claim(&base).expect("shared");
        assert!(point.exists());
        first.release();
        assert!(point.exists(), "removed while another container used it");
        second.release();
        assert!(!point.exists(), "left behind by the last container");
        let mtime = std::fs::metadata(base.join("etc")).unwrap().modified();
        assert_eq!(mtime.unwrap(), old);

        // The user's own file is used, never removed.
        std::fs::write(&point, "").unwrap();
        claim(&base).expect("the user's file").release();
        assert!(point.exists(), "the user's own file was removed");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
