//! `kennel box unpack-layers ROOT KIND:BLOB...` (hidden): applies an OCI
//! image's layers, bottom first, to ROOT. `create` runs it inside a
//! keep-id container as the mapped root, so the image's owners go through
//! the user's map as `rootfs import`'s tar does.
//!
//! A layer is the image's to write: every entry's parent is opened with
//! `openat2(RESOLVE_IN_ROOT)` on ROOT, so an absolute symlink an earlier
//! layer left restarts at ROOT and `..` stops there, and the entry itself
//! is made relative to that fd under a single name, never followed. A
//! whiteout (`.wh.NAME`) removes NAME in its directory, and an opaque
//! marker (`.wh..wh..opq`) what lower layers left there, the same way.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::layout::Compression;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

/// An entry's path as components; `..` is refused (no layer a builder
/// writes has one), `.` and empty ones dropped.
fn components(path: &Path) -> Result<Vec<String>> {
    let text = path.to_str().context("an entry name that is not UTF-8")?;
    let mut out = Vec::new();
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => bail!("the entry {text:?} climbs out of the image's root with '..'"),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

struct Root {
    fd: OwnedFd,
}

impl Root {
    /// The directory at `dir` (components), resolved inside the root;
    /// `make` creates the missing ones (0755, owned by the mapped root).
    fn dir(&self, dir: &[String], make: bool) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let path: PathBuf = std::iter::once(".".to_string())
            .chain(dir.iter().cloned())
            .collect();
        match openat2(self.fd.as_fd(), &path, how) {
            Err(Errno::ENOENT) if make && !dir.is_empty() => {
                let (name, parent) = dir.split_last().expect("not empty");
                let parent = self.dir(parent, true)?;
                match mkdirat(
                    parent.as_fd(),
                    name.as_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                openat2(self.fd.as_fd(), &path, how)
            }
            other => other,
        }
    }
}

/// Removes `name` in `dir`, a directory with all it holds; nothing is
/// followed (every open is O_NOFOLLOW under a single name).
fn remove_all(dir: &OwnedFd, name: &str) -> Result<(), Errno> {
    let st = match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir);
    }
    let sub = nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for child in children(sub.try_clone().map_err(|_| Errno::EBADF)?)? {
        remove_all(&sub, &child)?;
    }
    unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
}

/// The names in the directory `fd`, without `.` and `..`.
fn children(fd: OwnedFd) -> Result<Vec<String>, Errno> {
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push(name);
        }
    }
    Ok(out)
}

/// A directory fd that can be read (the O_PATH ones cannot).
fn readable(root: &Root, dir: &[String]) -> Result<OwnedFd, Errno> {
    let path = root.dir(dir, false)?;
    nix::fcntl::openat(
        path.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// What one layer's entries did: the paths it wrote (an opaque marker
/// keeps them) and the device nodes it could not make.
#[derive(Default)]
struct Applied {
    written: HashSet<Vec<String>>,
    devices: usize,
}

fn apply_entry<R: Read>(root: &Root, e: &mut tar::Entry<R>, done: &mut Applied) -> Result<()> {
    let path = components(&e.path()?)?;
    let Some((name, parent)) = path.split_last() else {
        return Ok(()); // the root itself: its owner and mode stay the box's
    };
    let kind = e.header().entry_type();
    if name == OPAQUE {
        return clear_opaque_dir(root, parent, done);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT) {
        // `..` here would remove the directory's parent, past the root.
        if matches!(hidden, "" | "." | "..") {
            bail!(
                "the whiteout {:?} names no entry of its directory",
                path.join("/")
            );
        }
        if let Ok(dir) = root.dir(parent, false) {
            remove_all(&dir, hidden)?;
        }
        return Ok(());
    }
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        done.devices += 1;
        return Ok(());
    }
    let dir = root.dir(parent, true)?;
    let existing = fstatat(dir.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let existing_dir = existing
        .is_some_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
    if existing.is_some() && !(kind.is_dir() && existing_dir) {
        remove_all(&dir, name)?;
    }
    let mode = Mode::from_bits_truncate(e.header().mode()? & 0o7777);
    make_entry(root, &dir, name, e, mode, existing_dir)?;
    if kind != tar::EntryType::Link {
        // A hard link's inode is the target's, with its owner and mode.
        set_owner_mode_time(&dir, name, e, mode)?;
    }
    done.written.insert(path);
    Ok(())
}

/// An opaque marker: removes what lower layers put in its directory, all
/// but what this layer wrote.
fn clear_opaque_dir(root: &Root, parent: &[String], done: &Applied) -> Result<()> {
    let Ok(dir) = readable(root, parent) else {
        return Ok(());
    };
    let dir_path = root.dir(parent, false)?;
    for child in children(dir)? {
        let mut p = parent.to_vec();
        p.push(child.clone());
        if !done.written.contains(&p) {
            remove_all(&dir_path, &child).with_context(|| format!("removing {}", p.join("/")))?;
        }
    }
    Ok(())
}

/// Makes entry `e` as `name` in `dir`, under that one name, never through
/// a symlink; a hard link's target is resolved inside `root`.
fn make_entry<R: Read>(
    root: &Root,
    dir: &OwnedFd,
    name: &str,
    e: &mut tar::Entry<R>,
    mode: Mode,
    existing_dir: bool,
) -> Result<()> {
    match e.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let fd = openat2(
                dir.as_fd(),
                name,
                OpenHow::new()
                    .flags(
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                    )
                    .mode(Mode::from_bits_truncate(0o600)),
            )?;
            let mut file = File::from(fd);
            std::io::copy(e, &mut file)?;
        }
        tar::EntryType::Directory => {
            if !existing_dir {
                mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o700))?;
            }
        }
        tar::EntryType::Symlink => {
            let target = e.link_name()?.context("a symlink without a target")?;
            symlinkat(target.as_ref(), dir.as_fd(), name)?;
        }
        tar::EntryType::Link => {
            let target = e.link_name()?.context("a hard link without a target")?;
            let target = components(&target)?;
            let (tname, tparent) = target.split_last().context("a hard link to the root")?;
            let tdir = root.dir(tparent, false)?;
            linkat(
                tdir.as_fd(),
                tname.as_str(),
                dir.as_fd(),
                name,
                AtFlags::empty(),
            )?;
        }
        tar::EntryType::Fifo => {
            mknodat(dir.as_fd(), name, SFlag::S_IFIFO, mode, 0)?;
        }
        other => bail!("an entry of tar type {other:?}, which kennel does not unpack"),
    }
    Ok(())
}

/// The entry's owner (its PAX id where ustar's is too small), its mode
/// after the chown (which clears set-id bits), and its mtime.
fn set_owner_mode_time<R: Read>(
    dir: &OwnedFd,
    name: &str,
    e: &mut tar::Entry<R>,
    mode: Mode,
) -> Result<()> {
    let uid = pax_id(e, "uid")?.unwrap_or(e.header().uid()?);
    let gid = pax_id(e, "gid")?.unwrap_or(e.header().gid()?);
    fchownat(
        dir.as_fd(),
        name,
        Some(Uid::from_raw(uid as u32)),
        Some(Gid::from_raw(gid as u32)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("owner {uid}:{gid} (is it in your subordinate ids?)"))?;
    if e.header().entry_type() != tar::EntryType::Symlink {
        // After the chown, which clears set-id bits. `name` is what this
        // process made just now under this fd, not a symlink.
        fchmodat(dir.as_fd(), name, mode, FchmodatFlags::FollowSymlink)?;
    }
    let mtime = TimeSpec::new(e.header().mtime()? as i64, 0);
    utimensat(
        dir.as_fd(),
        name,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// A numeric id from the entry's PAX header (ids too big for ustar).
fn pax_id<R: Read>(e: &mut tar::Entry<R>, key: &str) -> Result<Option<u64>> {
    let Some(pax) = e.pax_extensions()? else {
        return Ok(None);
    };
    for ext in pax {
        let ext = ext?;
        if ext.key() == Ok(key) {
            return Ok(ext.value().ok().and_then(|v| v.parse().ok()));
        }
    }
    Ok(None)
}

/// Applies one layer's tar stream.
fn apply_layer(root: &Root, stream: impl Read) -> Result<usize> {
    let mut archive = tar::Archive::new(stream);
    let mut done = Applied::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.display().to_string();
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        apply_entry(root, &mut entry, &mut done).with_context(|| format!("entry {path}"))?;
    }
    Ok(done.devices)
}

/// `kennel box unpack-layers ROOT KIND:BLOB...`.
pub fn unpack(root: &Path, layers: &[String]) -> Result<i32> {
    let fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("box create: cannot open {}", root.display()))?;
    // The image's root directory is its root's, as a tarball's `./` makes it.
    fchownat(
        fd.as_fd(),
        "",
        Some(Uid::from_raw(0)),
        Some(Gid::from_raw(0)),
        AtFlags::AT_EMPTY_PATH,
    )
    .and_then(|()| {
        fchmodat(
            fd.as_fd(),
            ".",
            Mode::from_bits_truncate(0o755),
            FchmodatFlags::FollowSymlink,
        )
    })
    .with_context(|| format!("box create: cannot make {} root's", root.display()))?;
    let root_fd = Root { fd };
    let mut devices = 0;
    for spec in layers {
        let (kind, blob) = spec
            .split_once(':')
            .and_then(|(k, b)| Some((Compression::from_name(k)?, b)))
            .with_context(|| format!("box unpack-layers: {spec:?} is not KIND:BLOB"))?;
        let file = File::open(blob).with_context(|| format!("box create: cannot read {blob}"))?;
        let tool = match kind {
            Compression::Plain => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        };
        let what = format!("box create: the layer {blob}");
        devices += match tool {
            None => apply_layer(&root_fd, file).with_context(|| what.clone())?,
            Some(tool) => {
                let mut child = Command::new(tool)
                    .arg("-dc")
                    .stdin(file)
                    .stdout(Stdio::piped())
                    .spawn()
                    .with_context(|| {
                        format!("{what}: cannot run {tool} to decompress it (install {tool})")
                    })?;
                let mut out = child.stdout.take().expect("piped");
                let n = apply_layer(&root_fd, &mut out).with_context(|| what.clone());
                // Whatever follows the tar's end, so the tool is not killed by SIGPIPE.
                let _ = std::io::copy(&mut out, &mut std::io::sink());
                let status = child.wait()?;
                let n = n?;
                if !status.success() {
                    bail!("{what}: {tool} -dc failed ({status}; its messages are above)");
                }
                n
            }
        };
    }
    if devices > 0 {
        eprintln!("kennel: {devices} device nodes in the image's layers were not made (a user namespace cannot make them; the box has its own /dev)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::components;
    use std::path::Path;

    #[test]
    fn entry_names_never_climb() {
        assert_eq!(
            components(Path::new("./usr//bin/")).unwrap(),
            ["usr", "bin"]
        );
        assert_eq!(
            components(Path::new("/etc/passwd")).unwrap(),
            ["etc", "passwd"]
        );
        assert!(components(Path::new("../escape")).is_err());
        assert!(components(Path::new("a/../../b")).is_err());
    }
}
