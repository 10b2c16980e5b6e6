//! Paths inside a root that the image controls, resolved by the kernel.
//!
//! Every lookup is an `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to the root's fd: an absolute symlink restarts at the root, `..`
//! stops at it, and a magic link (`/proc/self/fd/N`) is refused, whatever the
//! image holds and however it changes while we work. What is made there is
//! made relative to a parent fd opened the same way, never by a path string
//! the image could redirect (the class of runc's CVE-2021-30465). A mount
//! onto such a path goes through the fd (see `rootfs`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// An opened root.
pub struct Root {
    fd: OwnedFd,
}

/// What to make at a path that does not exist yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Make {
    Directory,
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// `path` made relative (the root is the fd), without `.` components.
fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => out.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

impl Root {
    pub fn open(root: &Path) -> Result<Root, Errno> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// The root `fd` refers to (a directory, or a mount's root).
    pub fn from_fd(fd: OwnedFd) -> Root {
        Root { fd }
    }

    /// An `O_PATH` fd for `path`, resolved inside the root.
    pub fn lookup(&self, path: &Path) -> Result<OwnedFd, Errno> {
        self.open_with(path, OFlag::O_PATH)
    }

    /// Opens `path`, resolved inside the root, with `flags`.
    pub fn open_with(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        openat2(self.fd.as_fd(), &relative(path), how(flags))
    }

    /// An `O_PATH` fd for `path`, made first (as `make`, with its missing
    /// parents as directories) if it does not exist. An existing path is
    /// taken as it is, whatever its type.
    pub fn lookup_or_make(&self, path: &Path, make: Make) -> Result<OwnedFd, Errno> {
        self.lookup_or_make_within(path, make, 0)
    }

    fn lookup_or_make_within(&self, path: &Path, make: Make, links: u32) -> Result<OwnedFd, Errno> {
        match self.lookup(path) {
            Err(Errno::ENOENT) => {}
            other => return other,
        }
        let rel = relative(path);
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(Errno::ENOENT);
        };
        let parent_fd = self.lookup_or_make_within(parent, Make::Directory, links)?;
        let made = match make {
            Make::Directory => mkdirat(parent_fd.as_fd(), name, Mode::from_bits_truncate(0o755)),
            // O_NOFOLLOW with O_CREAT|O_EXCL: a symlink by that name (made
            // since our lookup) fails with EEXIST instead of being followed.
            Make::File => openat2(
                parent_fd.as_fd(),
                name,
                OpenHow::new()
                    .flags(
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                    )
                    .mode(Mode::from_bits_truncate(0o644))
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
            )
            .map(drop),
        };
        match made {
            Ok(()) => self.lookup(path),
            Err(Errno::EEXIST) => match self.lookup(path) {
                // A dangling symlink: make its target, inside the root.
                Err(Errno::ENOENT) if links < 40 => {
                    let target = nix::fcntl::readlinkat(parent_fd.as_fd(), name)?;
                    self.lookup_or_make_within(&parent.join(target), make, links + 1)
                }
                Err(Errno::ENOENT) => Err(Errno::ELOOP),
                other => other,
            },
            Err(e) => Err(e),
        }
    }
}

/// Whether `fd` is a directory.
pub fn is_dir(fd: &OwnedFd) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::symlink;

    fn real_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn lookups_never_leave_the_root() {
        let base = std::env::temp_dir().join(format!("kennel-inroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../outside", root.join("escape")).unwrap();
        symlink(base.join("outside"), root.join("host")).unwrap();
        symlink("/proc/self/fd/0", root.join("magic")).unwrap();
        let r = Root::open(&root).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(
            real_path(&r.lookup(Path::new("/abs/dir")).unwrap()),
            root.join("real/dir")
        );
        // Both escapes land inside: one made there, one missing.
        let made = r
            .lookup_or_make(Path::new("/escape/x"), Make::Directory)
            .unwrap();
        assert_eq!(real_path(&made), root.join("outside/x"));
        assert_eq!(
            r.lookup_or_make(Path::new("/host/f"), Make::File)
                .map(|fd| real_path(&fd)),
            Ok(root.join(base.strip_prefix("/").unwrap()).join("outside/f"))
        );
        assert!(!base.join("outside/x").exists());
        assert!(!base.join("outside/f").exists());
        assert_eq!(
            real_path(&r.lookup(Path::new("/../../real")).unwrap()),
            root.join("real")
        );
        assert!(r.lookup(Path::new("/magic")).is_err());
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(r.lookup(Path::new("/loop")).err(), Some(Errno::ELOOP));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
