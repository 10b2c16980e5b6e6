//! `tmpcopyup`, the mount option runc and crun added and podman sends for
//! `--read-only`'s tmpfs mounts: the fresh tmpfs starts with a copy of what
//! the image has at its destination, so a read-only container still finds
//! its /run, /tmp and /var/tmp as the image made them, writable.
//!
//! The tmpfs is filled before it is attached (see `rootfs`), then moved
//! into place. The image side is reached
//! only through fds: the destination resolved in the container's root by
//! the kernel (`inroot`), and below it every step an `openat2` with
//! RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS from that fd, or an `*at` call
//! that does not follow the last component. A symlink in the image is
//! copied as a symlink and never followed, so nothing outside the
//! destination is read, however the image changes while we copy (another
//! container may share the rootfs). The copy side is the fresh tmpfs,
//! which only this process can reach until it is attached.
//!
//! What is copied: directories, regular files (contents, owner, mode with
//! its set-id and sticky bits, access and modification times), symlinks
//! (target, owner, times), fifos and sockets (made anew: mknod makes both
//! without privilege, and a socket's inode is all a directory holds of
//! it). A device node cannot be made in a user namespace: one is an error
//! naming it, not a silent gap. A file whose owner is not mapped in the
//! container cannot be given its owner: also an error. Hard links become
//! separate files, extended attributes are not copied (runc's copy does
//! neither), and the tmpfs's own root keeps what the mount options give
//! it (as with runc).
//!
//! The walk keeps an explicit list of the directories still to copy (as
//! paths relative to the destination, reopened when their turn comes), so
//! neither a deep nor a wide tree grows the stack or the fd table.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

use crate::protocol::{io_errno, ChildFailure, Stage};

/// Copies what the directory `src` (an fd in the container's root, the
/// mount's destination) holds into the directory `dst` (the root of the
/// fresh tmpfs, detached or in the staging root). `shown` is the destination as the container names
/// it, for errors.
pub fn copy_into(src: &OwnedFd, dst: BorrowedFd<'_>, shown: &Path) -> Result<(), ChildFailure> {
    let mut copy = Copy {
        src: src.as_fd(),
        dst,
        shown,
        made_dirs: Vec::new(),
    };
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        copy.directory(&rel, &mut pending)?;
    }
    // Modes and times of the directories made, last made first: their
    // contents are complete, and a directory's times are set after every
    // change inside it.
    for (rel, st) in copy.made_dirs.iter().rev() {
        let fd = beneath(copy.dst, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| copy.fail(e, rel, "reopen a copied directory"))?;
        fchmod(&fd, permissions(st)).map_err(|e| copy.fail(e, rel, "set the mode"))?;
        let (atime, mtime) = times(st);
        futimens(&fd, &atime, &mtime).map_err(|e| copy.fail(e, rel, "set the times"))?;
    }
    Ok(())
}

fn failure(errno: Errno, path: &Path, what: &str) -> ChildFailure {
    ChildFailure::new(Stage::Mount, errno, Some(path.display().to_string()))
        .with_detail(format!("tmpcopyup: {what}"))
}

/// Opens `rel` below `top` without following any symlink, the last
/// component's included, nor leaving `top`. An empty `rel` is `top`.
fn beneath(top: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        top,
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            ),
    )
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// The permission bits with set-id and sticky bits.
fn permissions(st: &FileStat) -> Mode {
    Mode::from_bits_truncate(st.st_mode & 0o7777)
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

struct Copy<'a> {
    /// The destination in the container's root.
    src: BorrowedFd<'a>,
    /// The staged tmpfs.
    dst: BorrowedFd<'a>,
    shown: &'a Path,
    /// Directories made, relative, with the metadata to give them last.
    made_dirs: Vec<(PathBuf, FileStat)>,
}

impl Copy<'_> {
    fn fail(&self, errno: Errno, rel: &Path, what: &str) -> ChildFailure {
        failure(errno, &self.shown.join(rel), what)
    }

    /// Copies the entries of directory `rel`; its subdirectories, made
    /// empty, join `pending`.
    fn directory(&mut self, rel: &Path, pending: &mut Vec<PathBuf>) -> Result<(), ChildFailure> {
        let from = beneath(self.src, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| self.fail(e, rel, "open a directory of the image"))?;
        let to = beneath(self.dst, rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| self.fail(e, rel, "open a copied directory"))?;
        // The listing reads through its own fd; `from` names the entries.
        let listing = from
            .try_clone()
            .map_err(|e| self.fail(io_errno(&e), rel, "list a directory"))?;
        let mut listing =
            Dir::from_fd(listing).map_err(|e| self.fail(e, rel, "list a directory"))?;
        for entry in listing.iter() {
            let entry = entry.map_err(|e| self.fail(e, rel, "list a directory"))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let child = rel.join(name);
            self.entry(from.as_fd(), to.as_fd(), name, &child, pending)?;
        }
        Ok(())
    }

    /// Copies entry `name` of the directory `from` into `to`; `rel` is its
    /// path below the destination.
    fn entry(
        &mut self,
        from: BorrowedFd<'_>,
        to: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        pending: &mut Vec<PathBuf>,
    ) -> Result<(), ChildFailure> {
        let st = fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.fail(e, rel, "stat"))?;
        match kind(&st) {
            SFlag::S_IFDIR => {
                // Owner-only until its contents are in (see `copy_into`).
                mkdirat(to, name, Mode::S_IRWXU)
                    .map_err(|e| self.fail(e, rel, "make a directory"))?;
                self.chown(to, name, &st, rel)?;
                pending.push(rel.to_path_buf());
                self.made_dirs.push((rel.to_path_buf(), st));
            }
            SFlag::S_IFREG => self.file(from, to, name, rel)?,
            SFlag::S_IFLNK => {
                let target =
                    readlinkat(from, name).map_err(|e| self.fail(e, rel, "read a symlink"))?;
                symlinkat(target.as_os_str(), to, name)
                    .map_err(|e| self.fail(e, rel, "make a symlink"))?;
                self.chown(to, name, &st, rel)?;
                let (atime, mtime) = times(&st);
                utimensat(to, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| self.fail(e, rel, "set the times"))?;
            }
            k @ (SFlag::S_IFIFO | SFlag::S_IFSOCK) => {
                mknodat(to, name, k, Mode::S_IRUSR | Mode::S_IWUSR, 0)
                    .map_err(|e| self.fail(e, rel, "make a fifo or socket"))?;
                self.chown(to, name, &st, rel)?;
                // Following is harmless here: the name is the node just
                // made, in the fresh tmpfs nobody else reaches (and
                // Linux has no fchmodat that refuses to follow).
                fchmodat(to, name, permissions(&st), FchmodatFlags::FollowSymlink)
                    .map_err(|e| self.fail(e, rel, "set the mode"))?;
                let (atime, mtime) = times(&st);
                utimensat(to, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| self.fail(e, rel, "set the times"))?;
            }
            _ => {
                return Err(self.fail(
                    Errno::EPERM,
                    rel,
                    "a device node cannot be made in a user namespace",
                ))
            }
        }
        Ok(())
    }

    /// A regular file: contents, then owner, mode (after the owner, whose
    /// change clears the set-id bits) and times.
    fn file(
        &self,
        from: BorrowedFd<'_>,
        to: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
    ) -> Result<(), ChildFailure> {
        // O_NONBLOCK: should the entry have become a fifo since we looked,
        // the open does not wait for a writer; the type is checked again
        // on what was opened.
        let src = beneath(
            from,
            Path::new(name),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        )
        .map_err(|e| self.fail(e, rel, "open a file of the image"))?;
        let st = fstat(&src).map_err(|e| self.fail(e, rel, "stat"))?;
        if kind(&st) != SFlag::S_IFREG {
            return Err(self.fail(Errno::EAGAIN, rel, "the file changed while it was copied"));
        }
        let dst = beneath(
            to,
            Path::new(name),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        )
        .map_err(|e| self.fail(e, rel, "make a file"))?;
        let (mut reader, mut writer) = (File::from(src), File::from(dst));
        std::io::copy(&mut reader, &mut writer)
            .map_err(|e| self.fail(io_errno(&e), rel, "copy a file"))?;
        fchown(
            &writer,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| self.owner_failure(e, &st, rel))?;
        fchmod(&writer, permissions(&st)).map_err(|e| self.fail(e, rel, "set the mode"))?;
        let (atime, mtime) = times(&st);
        futimens(&writer, &atime, &mtime).map_err(|e| self.fail(e, rel, "set the times"))
    }

    /// Gives `name` in `to` the owner of `st`, itself if a symlink.
    fn chown(
        &self,
        to: BorrowedFd<'_>,
        name: &OsStr,
        st: &FileStat,
        rel: &Path,
    ) -> Result<(), ChildFailure> {
        fchownat(
            to,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.owner_failure(e, st, rel))
    }

    fn owner_failure(&self, errno: Errno, st: &FileStat, rel: &Path) -> ChildFailure {
        let what = match errno {
            // An id the namespace does not map reads as the overflow id,
            // which cannot be given back.
            Errno::EINVAL => format!(
                "set the owner {}:{}, which the container's id maps lack",
                st.st_uid, st.st_gid
            ),
            _ => format!("set the owner {}:{}", st.st_uid, st.st_gid),
        };
        self.fail(errno, rel, &what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};

    fn base(name: &str) -> PathBuf {
        let base =
            std::env::temp_dir().join(format!("kennel-copyup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        base
    }

    fn open_path(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn a_tree_is_copied_with_links_as_links_and_nothing_outside_it() {
        let base = base("tree");
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir_all(src.join("seed/sub/deeper")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(base.join("secret"), "outside").unwrap();
        std::fs::write(src.join("seed/file"), "original").unwrap();
        std::fs::set_permissions(src.join("seed/file"), PermissionsExt::from_mode(0o640)).unwrap();
        std::fs::write(src.join("seed/sub/deeper/f"), "deep").unwrap();
        symlink("file", src.join("seed/link")).unwrap();
        symlink("../../secret", src.join("seed/escape")).unwrap();
        std::fs::set_permissions(src.join("seed/sub"), PermissionsExt::from_mode(0o1750)).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
        let old = std::fs::metadata(src.join("seed/sub")).unwrap();

        copy_into(&open_path(&src), open_path(&dst).as_fd(), Path::new("/tmp")).unwrap();

        assert_eq!(
            std::fs::read_to_string(dst.join("seed/file")).unwrap(),
            "original"
        );
        assert_eq!(
            std::fs::read_to_string(dst.join("seed/link")).unwrap(),
            "original"
        );
        let md = std::fs::symlink_metadata(dst.join("seed/file")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.join("seed/escape")).unwrap(),
            Path::new("../../secret")
        );
        assert_eq!(
            std::fs::read_to_string(dst.join("seed/sub/deeper/f")).unwrap(),
            "deep"
        );
        let sub = std::fs::metadata(dst.join("seed/sub")).unwrap();
        assert_eq!(sub.mode() & 0o7777, 0o1750);
        assert_eq!(
            (sub.mtime(), sub.mtime_nsec()),
            (old.mtime(), old.mtime_nsec())
        );
        let fifo = std::fs::symlink_metadata(dst.join("fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        let sock = std::fs::symlink_metadata(dst.join("sock")).unwrap();
        assert!(sock.file_type().is_socket());
        drop(listener);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_error_names_the_path_in_the_container() {
        let base = base("error");
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir_all(src.join("seed")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("seed/file"), "x").unwrap();
        // Already there on the copy side: the copy must not overwrite it.
        std::fs::create_dir_all(dst.join("seed")).unwrap();
        let err =
            copy_into(&open_path(&src), open_path(&dst).as_fd(), Path::new("/run")).unwrap_err();
        assert_eq!(err.path.as_deref(), Some("/run/seed"));
        assert_eq!(err.errno(), Errno::EEXIST);
        assert_eq!(err.stage, Stage::Mount);
        assert!(err.detail.unwrap().starts_with("tmpcopyup: "));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
