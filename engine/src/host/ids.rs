//! Who runs kennel, and the kennel-idmap helper that writes the id maps
//! an unprivileged process may not write itself.

use std::path::{Path, PathBuf};

use kennel_idmap::MapLine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    /// Set when kennel runs as uid 0 of a user namespace it did not make
    /// (`unshare -r`, `podman unshare`, rootless podman's runtime calls):
    /// the ids that namespace has. Real root has every id.
    pub nested: Option<NestedIds>,
}

impl Caller {
    /// The user running this process.
    pub fn current() -> Caller {
        let uid = nix::unistd::getuid();
        let name = crate::host::passwd::host_user(uid.as_raw())
            .map(|u| u.0)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| uid.to_string());
        Caller {
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            name,
            nested: match uid.is_root() {
                true => NestedIds::of_this_process(),
                false => None,
            },
        }
    }
}

/// The ids of the user namespace kennel runs in, as its own maps list them
/// (inside ids: the first column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedIds {
    pub uids: Vec<MapLine>,
    pub gids: Vec<MapLine>,
}

impl NestedIds {
    /// Reads /proc/self/uid_map and gid_map; None in the initial user
    /// namespace (the identity map of every id) or if they cannot be read.
    pub fn of_this_process() -> Option<NestedIds> {
        let read = |file: &str| {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines()
                .map(|l| {
                    let mut f = l.split_whitespace().map(str::parse::<u32>);
                    match (f.next(), f.next(), f.next()) {
                        (Some(Ok(inner)), Some(Ok(outer)), Some(Ok(count))) => {
                            Some(line(inner, outer, count))
                        }
                        _ => None,
                    }
                })
                .collect::<Option<Vec<MapLine>>>()
        };
        let uids = read("/proc/self/uid_map")?;
        let gids = read("/proc/self/gid_map")?;
        let initial = [line(0, 0, u32::MAX)];
        (uids != initial || gids != initial).then_some(NestedIds { uids, gids })
    }

    fn describe(lines: &[MapLine]) -> String {
        lines
            .iter()
            .map(|l| format!("{} {} {}", l.inner, l.outer, l.count))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line for `--verbose` and `kennel doctor`.
    pub fn summary(&self) -> String {
        format!(
            "root of a user namespace kennel did not make (uid_map: {}; gid_map: {}): the container gets the ids it has",
            Self::describe(&self.uids),
            Self::describe(&self.gids)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperState {
    Usable(PathBuf),
    NotFound,
    /// Installed, but without cap_setuid,cap_setgid=ep.
    NoCapabilities(PathBuf),
    /// no_new_privs is set on us, so the kernel would ignore its file caps.
    CallerHasNoNewPrivs(PathBuf),
    /// It has its capabilities, but lies on a file system mounted nosuid,
    /// where the kernel ignores them.
    OnNosuidMount(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("--userns={mode} needs subordinate ids, but {user} has no entry in {file}; add one with: {fix}")]
    NoSubIds {
        mode: &'static str,
        user: String,
        file: &'static str,
        /// The command that adds what is missing (`usermod_fix`).
        fix: String,
    },
    #[error("the kennel-idmap helper is needed for {what}, but it was not found next to kennel, in {libexec} or on PATH; fix: {fix}")]
    HelperNotFound {
        what: String,
        libexec: String,
        /// How to install it, for the way kennel was installed.
        fix: String,
    },
    #[error("kennel-idmap's file capabilities are needed for {what}, but {path} has none; fix with: {fix}", path = path.display())]
    HelperNoCapabilities {
        what: String,
        path: PathBuf,
        /// The setcap line, and the package's own way for a package.
        fix: String,
    },
    #[error("kennel-idmap is needed for {what}, but no_new_privs is set on this process, so the kernel ignores its file capabilities; run kennel from a shell without no_new_privs (or use --userns=single)")]
    NoNewPrivs { what: String },
    #[error("kennel-idmap's file capabilities are needed for {what}, but {path} is on a file system mounted nosuid, where the kernel ignores them; install it on one mounted without nosuid (`findmnt -T {path}` shows the options), or use --userns=single", path = path.display())]
    HelperOnNosuid { what: String, path: PathBuf },
}

/// One map line.
pub fn line(inner: u32, outer: u32, count: u32) -> MapLine {
    MapLine {
        inner,
        outer,
        count,
    }
}

/// The helper's path if the kernel will honour its capabilities, else the
/// error naming the missing piece; `what` says what it is needed for, as
/// the object of "needed for" (`--userns=subids`, `these id maps`), so a
/// singular and a plural both read right.
pub fn usable_helper(helper: &HelperState, what: &str) -> Result<PathBuf, PlanError> {
    let what = what.to_string();
    match helper {
        HelperState::Usable(path) => Ok(path.clone()),
        HelperState::NotFound => Err(PlanError::HelperNotFound {
            what,
            libexec: match std::env::var_os(LIBEXECDIR_ENV) {
                Some(d) if !d.is_empty() => {
                    format!("{} (from {LIBEXECDIR_ENV})", libexec_dir().display())
                }
                _ => libexec_dir().display().to_string(),
            },
            fix: crate::host::install_kind::Installed::this().missing_helper_fix("kennel-idmap"),
        }),
        HelperState::NoCapabilities(path) => Err(PlanError::HelperNoCapabilities {
            what,
            path: path.clone(),
            fix: crate::host::install_kind::Installed::this()
                .capabilities_fix(path, "cap_setuid,cap_setgid=ep"),
        }),
        HelperState::CallerHasNoNewPrivs(_) => Err(PlanError::NoNewPrivs { what }),
        HelperState::OnNosuidMount(path) => Err(PlanError::HelperOnNosuid {
            what,
            path: path.clone(),
        }),
    }
}

/// Whether the maps are ones an unprivileged process may write itself:
/// exactly its own uid and gid, once each.
pub fn writable_without_helper(caller: &Caller, uid_map: &[MapLine], gid_map: &[MapLine]) -> bool {
    caller.uid == 0
        || (matches!(uid_map, [l] if l.outer == caller.uid && l.count == 1)
            && matches!(gid_map, [l] if l.outer == caller.gid && l.count == 1))
}

/// The environment variable that names the helpers' directory at run
/// time, instead of the one compiled in. For tests and for running an
/// installed package's helper from a build tree; it only chooses which
/// program the unprivileged runner executes, so it grants nothing the
/// caller could not run by hand.
pub const LIBEXECDIR_ENV: &str = "KENNEL_LIBEXECDIR";

/// The helper's directory: `KENNEL_LIBEXECDIR` from the environment when
/// set, else the one set at build time (the Makefile's LIBEXECDIR, a
/// package's /usr/libexec/kennel).
pub fn libexec_dir() -> PathBuf {
    match std::env::var_os(LIBEXECDIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(option_env!("KENNEL_LIBEXECDIR").unwrap_or("/usr/local/libexec/kennel")),
    }
}

/// Finds one of kennel's helper programs (kennel-idmap, kennel-net). With
/// `KENNEL_LIBEXECDIR` set, only there, so a test knows which helper ran;
/// otherwise next to the kennel binary, in its `../libexec/kennel`, in the
/// build-time libexec directory, then on PATH.
pub fn find_helper_program(name: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if std::env::var_os(LIBEXECDIR_ENV).is_some_and(|d| !d.is_empty()) {
        candidates.push(libexec_dir().join(name));
        return candidates.into_iter().find(|p| p.is_file());
    }
    // The binary we were started from, also when we run from a sealed copy.
    if let Some(exe) = kennel_sys::sealed_exe::original_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(name));
            // The exe's path is canonical, so its grandparent is the real
            // `..`, and messages show /usr/libexec, not /usr/bin/../libexec.
            if let Some(prefix) = dir.parent() {
                candidates.push(prefix.join("libexec/kennel").join(name));
            }
        }
    }
    candidates.push(libexec_dir().join(name));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Finds kennel-idmap (see `find_helper_program`).
pub fn find_helper() -> Option<PathBuf> {
    find_helper_program("kennel-idmap")
}

/// CAP_SETGID and CAP_SETUID bits, and the "effective" flag of vfs_cap_data.
const CAP_SETGID_BIT: u32 = 1 << 6;
const CAP_SETUID_BIT: u32 = 1 << 7;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 1;

/// Whether raw `security.capability` data grants setuid+setgid, effective.
pub fn grants_setid(xattr: &[u8]) -> bool {
    grants_caps(xattr, CAP_SETUID_BIT | CAP_SETGID_BIT)
}

/// Whether raw `security.capability` data grants every capability in
/// `bits` (of the first 32) permitted, with the effective flag set.
pub fn grants_caps(xattr: &[u8], bits: u32) -> bool {
    let word = |i: usize| -> Option<u32> {
        xattr
            .get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (word(0), word(1)) {
        (Some(magic), Some(permitted)) => {
            magic & VFS_CAP_FLAGS_EFFECTIVE != 0 && permitted & bits == bits
        }
        _ => false,
    }
}

/// Looks at the helper the way the kernel will when we execute it.
pub fn helper_state() -> HelperState {
    let Some(path) = find_helper() else {
        return HelperState::NotFound;
    };
    helper_state_of(&path)
}

/// Whether `path` (a symlink followed, as exec follows it) lies on a file
/// system mounted nosuid: exec there grants no file capabilities.
pub fn on_nosuid_mount(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
}

pub fn helper_state_of(path: &Path) -> HelperState {
    match crate::sys::file_capabilities(path) {
        Ok(Some(data)) if grants_setid(&data) => {
            if nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
                HelperState::CallerHasNoNewPrivs(path.to_path_buf())
            } else if on_nosuid_mount(path) {
                HelperState::OnNosuidMount(path.to_path_buf())
            } else {
                HelperState::Usable(path.to_path_buf())
            }
        }
        _ => HelperState::NoCapabilities(path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_capability_decoding() {
        // VFS_CAP_REVISION_2 | effective, permitted = setuid|setgid.
        let mut data = vec![];
        data.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
        data.extend_from_slice(&(CAP_SETUID_BIT | CAP_SETGID_BIT).to_le_bytes());
        data.extend_from_slice(&[0; 12]);
        assert!(grants_setid(&data));
        let mut no_eff = data.clone();
        no_eff[0] = 0;
        assert!(!grants_setid(&no_eff));
        let mut only_uid = data.clone();
        only_uid[4..8].copy_from_slice(&CAP_SETUID_BIT.to_le_bytes());
        assert!(!grants_setid(&only_uid));
        assert!(!grants_setid(&[1, 2]));
    }
}
