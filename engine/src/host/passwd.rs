//! Resolving `--user` against the container's own /etc/passwd and /etc/group.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kennel_idmap::parse_passwd;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode, SFlag};

use crate::inroot::Root;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    pub gid: u32,
    pub home: Option<PathBuf>,
}

fn parse_group(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3).then(|| Some((f[0].to_string(), f[2].parse().ok()?)))?
        })
        .collect()
}

/// The largest account file kennel reads from an image.
const MAX_IMAGE_FILE: u64 = 16 << 20;

/// Reads `file` of the image at `root` (its rootfs, or a running
/// container's /proc/PID/root): resolved inside it by the kernel, read
/// only if it is a regular file of at most `MAX_IMAGE_FILE` bytes, never
/// waiting (the image may offer a FIFO, a device, a link out of its root).
/// A missing file reads as empty.
fn read(root: &Path, file: &str) -> Result<String> {
    let shown = || format!("/{file} in {}", root.display());
    let inside = Root::open(root).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the container's root {}: {}",
            root.display(),
            e.desc()
        )
    })?;
    let found = match inside.lookup(Path::new(file)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(String::new()),
        Err(e) => bail!("cannot read {}: {}", shown(), e.desc()),
    };
    let st = fstat(&found).with_context(shown)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        bail!("refusing to read {}: it is not a regular file", shown());
    }
    if st.st_size as u64 > MAX_IMAGE_FILE {
        bail!(
            "refusing to read {}: it has {} bytes, more than the {} an account file may have",
            shown(),
            st.st_size,
            MAX_IMAGE_FILE
        );
    }
    // Reopened through the fd, so what is read is what was checked.
    let fd = nix::fcntl::open(
        format!("/proc/self/fd/{}", found.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(shown)?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_IMAGE_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", shown()))?;
    if text.len() as u64 > MAX_IMAGE_FILE {
        bail!("refusing to read {}: it grew while being read", shown());
    }
    Ok(text)
}

/// The home directory of `uid` in the container's /etc/passwd, if listed.
pub fn home_of(root: &Path, uid: u32) -> Result<Option<PathBuf>> {
    Ok(parse_passwd(&read(root, "etc/passwd")?)
        .into_iter()
        .find(|e| e.uid == uid)
        .map(|e| PathBuf::from(e.home)))
}

/// The host user's name and home: /etc/passwd first, NSS (LDAP, sssd, ...)
/// only for users it does not list, as getpwuid(3) would.
pub fn host_user(uid: u32) -> Option<(String, PathBuf)> {
    let local = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| kennel_idmap::entry_for_uid(&text, uid))
        .map(|e| (e.name, PathBuf::from(e.home)));
    local.or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| (u.name, u.dir))
    })
}

/// Resolves USER[:GROUP], each a number or a name in the container's files.
pub fn resolve_user(root: &Path, spec: &str) -> Result<Who> {
    resolve_in(&read(root, "etc/passwd")?, &read(root, "etc/group")?, spec)
}

fn resolve_in(passwd: &str, group: &str, spec: &str) -> Result<Who> {
    let users = parse_passwd(passwd);
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        bail!("--user {spec:?} is malformed: expected USER[:GROUP]");
    }
    let entry = users.iter().find(|e| e.name == user).or_else(|| {
        user.parse::<u32>()
            .ok()
            .and_then(|u| users.iter().find(|e| e.uid == u))
    });
    let (uid, mut gid, home) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(PathBuf::from(&e.home))),
        (None, Ok(uid)) => (uid, uid, None),
        (None, Err(_)) => bail!("unknown user {user:?}: it is not in the container's /etc/passwd"),
    };
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match parse_group(group).into_iter().find(|(n, _)| n == g) {
                Some((_, n)) => n,
                None => bail!("unknown group {g:?}: it is not in the container's /etc/group"),
            },
        };
    }
    Ok(Who { uid, gid, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1001:u:/home/user:/bin/sh\nbroken:x:notanumber:0::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    #[test]
    fn names_numbers_and_groups() {
        let w = resolve_in(PASSWD, GROUP, "user").unwrap();
        assert_eq!((w.uid, w.gid), (1000, 1001));
        assert_eq!(w.home.as_deref(), Some(Path::new("/home/user")));
        let w = resolve_in(PASSWD, GROUP, "1000:staff").unwrap();
        assert_eq!((w.uid, w.gid), (1000, 50));
        let w = resolve_in(PASSWD, GROUP, "4242").unwrap();
        assert_eq!((w.uid, w.gid, w.home), (4242, 4242, None));
        let w = resolve_in(PASSWD, GROUP, "4242:7").unwrap();
        assert_eq!(w.gid, 7);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve_in(PASSWD, GROUP, "nobody-here")
            .unwrap_err()
            .to_string()
            .contains("unknown user"));
        assert!(resolve_in(PASSWD, GROUP, "user:nogroup")
            .unwrap_err()
            .to_string()
            .contains("unknown group"));
        assert!(resolve_in(PASSWD, GROUP, "broken").is_err());
        assert!(resolve_in(PASSWD, GROUP, ":0").is_err());
    }
}
