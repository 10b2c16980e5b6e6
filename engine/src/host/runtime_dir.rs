//! The one directory for a user's runtime files (records of named
//! containers, compiled seccomp programs, pasta's files): real root's
//! `/run`, else `$XDG_RUNTIME_DIR`, else, as podman does when a login
//! manager made none (after `su -`, in cron, over some ssh set-ups),
//! `/run/user/UID` if it exists, or a private `/tmp/kennel-run-UID`.
//!
//! The fallback lives in a directory everyone may write, so it is only
//! used when it is a real directory of the caller's that nobody else can
//! enter: another user who made it first would otherwise choose which
//! records `kennel kill` and `kennel exec` trust.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where the directory came from, for `kennel doctor` to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Real root: `/run`.
    Root,
    /// `$XDG_RUNTIME_DIR`.
    Environment,
    /// `XDG_RUNTIME_DIR` unset; the login manager's `/run/user/UID`.
    RunUser,
    /// `XDG_RUNTIME_DIR` unset and no `/run/user/UID`: `/tmp/kennel-run-UID`.
    TmpFallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    pub path: PathBuf,
    pub source: Source,
}

/// The private fallback under /tmp for `uid`. A fixed /tmp rather than
/// `$TMPDIR`: `kennel ps` in another shell must find the same records.
pub fn tmp_fallback(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/kennel-run-{uid}"))
}

/// Why `meta` (from lstat) is not a directory of `uid`'s alone, if it is not.
fn not_private(meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    if meta.file_type().is_symlink() {
        return Some("is a symbolic link".into());
    }
    if !meta.is_dir() {
        return Some("is not a directory".into());
    }
    if meta.uid() != uid {
        return Some(format!(
            "is owned by uid {}, not by you ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Some(format!(
            "has mode {:04o}; it must be 0700",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// The /tmp fallback could not be used; `why` says what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("XDG_RUNTIME_DIR is not set and kennel's fallback {} {why}; {}", path.display(), fix(path))]
pub struct FallbackRefused {
    pub path: PathBuf,
    pub why: String,
}

/// What makes the fallback usable again (or unneeded).
pub fn fix(path: &Path) -> String {
    format!(
        "remove it (sudo rm -r {}) or export XDG_RUNTIME_DIR=DIR naming a directory of yours with mode 0700",
        path.display()
    )
}

/// What makes an unusable `$XDG_RUNTIME_DIR` usable, or lets kennel's own
/// fallback take over: `su` without `-` keeps the other user's, and a
/// login without logind names a directory nobody made.
pub fn env_dir_fix(dir: &Path, uid: u32) -> String {
    format!(
        "unset XDG_RUNTIME_DIR (kennel then uses {}), or create it: sudo install -d -m 0700 -o {uid} {}",
        tmp_fallback(uid).display(),
        dir.display()
    )
}

/// The sentence for a record directory `root` that could not be made,
/// when it lies in `$XDG_RUNTIME_DIR`.
pub fn env_dir_hint(root: &Path) -> Option<String> {
    let env = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    if root.parent() != Some(env.as_path()) || is_real_root() {
        return None;
    }
    let uid = nix::unistd::geteuid().as_raw();
    Some(format!(
        "XDG_RUNTIME_DIR={} is not a directory you can write; {}",
        env.display(),
        env_dir_fix(&env, uid)
    ))
}

/// `path` made (mode 0700) if missing, and refused with the reason unless
/// it is then a directory of `uid`'s that no one else may enter.
pub fn checked_private_dir(path: &Path, uid: u32) -> Result<(), FallbackRefused> {
    let refused = |why: String| FallbackRefused {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused(format!("cannot be created: {e}"))),
    }
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| refused(format!("cannot be read: {e}")))?;
    match not_private(&meta, uid) {
        Some(why) => Err(refused(format!(
            "{why}, so another user could plant records there"
        ))),
        None => Ok(()),
    }
}

/// Root of the initial user namespace (root of one kennel did not make,
/// `podman unshare` say, cannot write /run and is treated as a user).
fn is_real_root() -> bool {
    nix::unistd::geteuid().is_root() && crate::host::ids::NestedIds::of_this_process().is_none()
}

/// The runtime directory, made if it is the /tmp fallback.
pub fn runtime_dir() -> Result<RuntimeDir, FallbackRefused> {
    if is_real_root() {
        return Ok(RuntimeDir {
            path: PathBuf::from("/run"),
            source: Source::Root,
        });
    }
    // The XDG spec says to ignore a relative value.
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        if Path::new(&dir).is_absolute() {
            return Ok(RuntimeDir {
                path: PathBuf::from(dir),
                source: Source::Environment,
            });
        }
    }
    let uid = nix::unistd::geteuid().as_raw();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    let usable =
        |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| not_private(&m, uid).is_none());
    if usable(&run_user) {
        return Ok(RuntimeDir {
            path: run_user,
            source: Source::RunUser,
        });
    }
    let path = tmp_fallback(uid);
    checked_private_dir(&path, uid)?;
    Ok(RuntimeDir {
        path,
        source: Source::TmpFallback,
    })
}

/// The default directory of the records: `kennel` in the runtime
/// directory (`/run/kennel` for real root).
pub fn records_dir() -> anyhow::Result<PathBuf> {
    Ok(runtime_dir()?.path.join("kennel"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "kennel-runtime-dir-test.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        p
    }

    #[test]
    fn a_missing_fallback_is_made_private() {
        let base = scratch();
        let dir = base.join("run");
        let me = nix::unistd::geteuid().as_raw();
        checked_private_dir(&dir, me).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_fallback_open_to_others_or_not_ours_is_refused_by_name() {
        let base = scratch();
        let me = nix::unistd::geteuid().as_raw();
        let wide = base.join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = checked_private_dir(&wide, me).unwrap_err().to_string();
        assert!(err.contains("has mode 0755; it must be 0700"), "{err}");
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = checked_private_dir(&wide, me + 1).unwrap_err().to_string();
        assert!(err.contains(&format!("is owned by uid {me}")), "{err}");
        let link = base.join("link");
        std::os::unix::fs::symlink(&wide, &link).unwrap();
        let err = checked_private_dir(&link, me).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
