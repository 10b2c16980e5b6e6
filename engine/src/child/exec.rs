//! The exec of the command itself, shared by `start` and the `reaper`:
//! the signal mask it starts with, its lookup on the container's PATH and
//! execve.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow};

use crate::protocol::{ChildFailure, Stage};
use crate::spec::process::ProcessPlan;

type Step<T = ()> = Result<T, ChildFailure>;

/// The command starts with every signal at its default disposition (reset
/// when the child started, see `ChildOptions::ignored_signals`) and none
/// blocked, whatever the caller ignored or blocked (and whatever the
/// runner blocked to forward them).
pub fn prepare_signals_for_exec() -> Step {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ChildFailure::new(Stage::Exec, e, None))
}

pub fn exec(program: &CString, argv: &[CString], envp: &[CString], shown: &str) -> ChildFailure {
    let errno = match nix::unistd::execve(program, argv, envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    ChildFailure::new(Stage::Exec, errno, Some(shown.to_string()))
}

pub fn cstrings(items: &[String]) -> Step<Vec<CString>> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| ChildFailure::new(Stage::Exec, Errno::EINVAL, Some(s.clone())))
        })
        .collect()
}

/// Looks the command up in the container's PATH (the process env's).
pub fn find_program(p: &ProcessPlan) -> Step<CString> {
    let cmd = &p.args[0];
    let path = if cmd.contains('/') {
        PathBuf::from(cmd)
    } else {
        let search = p
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::DEFAULT_PATH);
        let mut found = None;
        // A name that is there but cannot be reached (a symlink loop, a
        // directory we may not search) is reported as itself, as execvp
        // does, not as missing.
        let mut unreachable = None;
        for dir in search.split(':').filter(|d| !d.is_empty()) {
            let candidate = Path::new(dir).join(cmd);
            match std::fs::metadata(&candidate) {
                Ok(meta) if meta.is_file() => {
                    found = Some(candidate);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    if !matches!(errno, Errno::ENOENT | Errno::ENOTDIR) && unreachable.is_none() {
                        unreachable = Some((candidate, errno));
                    }
                }
            }
        }
        match (found, unreachable) {
            (Some(f), _) => f,
            (None, Some((candidate, errno))) => {
                return Err(ChildFailure::new(
                    Stage::Exec,
                    errno,
                    Some(candidate.to_string_lossy().into_owned()),
                )
                .with_detail(format!(
                    "{}, looking it up on the container's PATH",
                    errno.desc()
                )))
            }
            (None, None) => {
                return Err(
                    ChildFailure::new(Stage::Exec, Errno::ENOENT, Some(cmd.clone()))
                        .with_detail(format!("not found in the container's PATH ({search})")),
                )
            }
        }
    };
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| ChildFailure::new(Stage::Exec, Errno::EINVAL, Some(cmd.clone())))
}
