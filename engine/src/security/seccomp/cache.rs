//! Compiled programs kept between starts. libseccomp takes far longer to
//! compile a full profile than kennel takes to start a container (see
//! bench/), so each program is compiled once per user and kept in
//! `kennel-seccomp` beside the records' directory (see `dir`), named by
//! what it was compiled
//! from: kennel's version, its compiling code's text, libseccomp's
//! version, and the profile's SHA-256 (or, for kennel's default profile,
//! which is part of the binary, a name spelt out from the same parts,
//! the capabilities and the architecture: no hashing at every start).
//!
//! A program is what stands between the container and the kernel, so a
//! kept one is trusted only from a directory and file that are ours and
//! writable by no one else, opened without following links; anything else
//! is compiled afresh. A different profile cannot reach a kept program:
//! the name is a collision-resistant hash of everything that decides it.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::process::Filter;

/// The kernel's limit (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// The libseccomp this binary runs with (the distribution build links it
/// dynamically, so it can change under a kept program).
fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default()
}

/// The name of the program compiled from `what`.
pub fn key(what: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(super::program::COMPILER_ID.to_le_bytes());
    h.update(format!("libseccomp {}", libseccomp_version()).as_bytes());
    for part in what {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// The name of kennel's default profile compiled for `arch` and a
/// bounding set of `capabilities` (a mask of capability numbers). Every
/// part is spelt out; the profile's text and the compiler's are in the
/// binary and named by their 64-bit ids, which only kennel's own builds
/// can choose, so no SHA-256 is needed (whose CPU feature probe alone
/// costs a start more than the rest of this).
pub fn default_key(profile_id: u64, arch: &str, capabilities: u64) -> String {
    format!(
        "default-{}-{:016x}-{profile_id:016x}-{arch}-{capabilities:016x}-libseccomp-{}",
        env!("CARGO_PKG_VERSION"),
        super::program::COMPILER_ID,
        libseccomp_version()
    )
}

fn is_ours_alone(meta: &std::fs::Metadata) -> bool {
    meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

/// Where programs are kept, made if missing: `kennel-seccomp` beside the
/// records' directory in the runtime directory
/// (`$XDG_RUNTIME_DIR/kennel-seccomp` or its fallback's,
/// `/run/kennel-seccomp` for root). Not under a home or cache directory:
/// the host sandbox binds the home read-write, and a container must never
/// write a program a later one loads. None when there is no such
/// directory that is ours alone (nothing is kept then).
pub fn dir() -> Option<PathBuf> {
    let mut path = crate::host::runtime_dir::records_dir()
        .ok()?
        .into_os_string();
    path.push("-seccomp");
    let dir = PathBuf::from(path);
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // The parent must be writable by no one else either: there, ours
    // could be swapped for theirs between the check and the open.
    let parent_ok = dir.parent().is_some_and(|p| {
        std::fs::metadata(p).is_ok_and(|m| {
            let me = nix::unistd::geteuid().as_raw();
            (m.uid() == me || m.uid() == 0) && m.mode() & 0o022 == 0
        })
    });
    let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && is_ours_alone(&m));
    (parent_ok && ours).then_some(dir)
}

/// The kept program named `key` under `dir`, if there is a trustworthy one.
pub fn load(dir: &Path, key: &str) -> Option<Filter> {
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && is_ours_alone(&m)) {
        return None;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(key))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || !is_ours_alone(&meta) {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    decode(&bytes)
}

/// Keeps `filter` as `key` under `dir` (best effort: a cache that cannot
/// be written only costs the next start a compile).
pub fn store(dir: &Path, key: &str, filter: &Filter) {
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    if made.is_err() {
        return;
    }
    let aside: PathBuf = dir.join(format!(".{key}.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .and_then(|mut f| {
            f.write_all(&encode(filter))?;
            nix::unistd::fsync(f.as_fd()).map_err(std::io::Error::from)
        });
    if written.is_err() || std::fs::rename(&aside, dir.join(key)).is_err() {
        let _ = std::fs::remove_file(&aside);
    }
}

/// Flags (4 bytes), whether the program includes the keys filter (4
/// bytes, 0 or 1), then the `struct sock_filter`s (8 bytes each), in the
/// machine's byte order.
fn encode(filter: &Filter) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 8 * filter.program.len());
    out.extend_from_slice(&filter.flags.to_ne_bytes());
    out.extend_from_slice(&u32::from(filter.includes_keys).to_ne_bytes());
    for i in &filter.program {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

pub fn decode(bytes: &[u8]) -> Option<Filter> {
    let (flags, rest) = bytes.split_first_chunk::<4>()?;
    let (includes_keys, program) = rest.split_first_chunk::<4>()?;
    let includes_keys = match u32::from_ne_bytes(*includes_keys) {
        0 => false,
        1 => true,
        _ => return None,
    };
    if program.is_empty() || program.len() % 8 != 0 || program.len() / 8 > MAX_INSTRUCTIONS {
        return None;
    }
    Some(Filter {
        flags: u32::from_ne_bytes(*flags),
        includes_keys,
        program: super::program::instructions(program),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            program: super::super::keys::program(),
            flags: 4,
            includes_keys: true,
        }
    }

    #[test]
    fn a_kept_program_comes_back_whole() {
        let dir = std::env::temp_dir().join(format!("kennel-seccomp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k = key(&[b"profile"]);
        assert!(load(&dir, &k).is_none());
        store(&dir, &k, &filter());
        let back = load(&dir, &k).unwrap();
        assert_eq!(encode(&back), encode(&filter()));
        assert!(load(&dir, &key(&[b"profilf"])).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_program_others_could_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kennel-seccomp-w-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k = key(&[b"p"]);
        store(&dir, &k, &filter());
        std::fs::set_permissions(dir.join(&k), std::fs::Permissions::from_mode(0o622)).unwrap();
        assert!(load(&dir, &k).is_none());
        std::fs::set_permissions(dir.join(&k), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(load(&dir, &k).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_programs_are_refused() {
        for bad in [
            &b""[..],
            &[0; 4],
            &[0; 8],
            &[0; 19],
            &[2; 16],
            &[0; 8 + 8 * 4097],
        ] {
            assert!(decode(bad).is_none(), "{} bytes", bad.len());
        }
    }

    #[test]
    fn keys_differ_with_every_part() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x"]), key(&[b"x"]));
    }

    #[test]
    fn default_keys_differ_with_every_part_and_are_file_names() {
        let base = default_key(1, "x86_64", 0b101);
        for other in [
            default_key(2, "x86_64", 0b101),
            default_key(1, "aarch64", 0b101),
            default_key(1, "x86_64", 0b100),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base, default_key(1, "x86_64", 0b101));
        assert!(!base.contains('/') && base.len() < 255, "{base}");
    }
}
