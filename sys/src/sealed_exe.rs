//! Running this process's own binary from a sealed memfd copy, so that a
//! container which reaches one of our processes through `/proc/PID/exe`
//! finds a file nobody can write, never the binary on the host (runc's
//! CVE-2019-5736). The copy is made only where a caller decided it is
//! needed: copying costs a few milliseconds, and most starts can show
//! that no process of the container can reach or write the binary.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Where the copy records the path of the binary it was made from: our
/// own helpers are found next to that path, not next to a memfd.
pub const SEALED_FROM_ENV: &str = "KENNEL_SEALED_FROM";

/// Every seal: the copy can neither change nor grow nor shrink, and the
/// set of seals itself is final.
fn all_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Whether this process runs from a copy sealed against every change.
/// A regular file has no seals (fcntl says EINVAL); a memfd made without
/// all of them is no protection and counts as not sealed.
pub fn running_sealed_copy() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    match fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(all_seals()),
        Err(_) => false,
    }
}

/// The path of the binary this process was started from: the one the
/// sealed copy was made of, when it runs from one.
pub fn original_exe() -> Option<PathBuf> {
    if running_sealed_copy() {
        if let Some(path) = std::env::var_os(SEALED_FROM_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
    }
    std::fs::read_link("/proc/self/exe").ok()
}

/// Copies our binary into a memfd, seals it and executes it with the same
/// arguments and environment (plus [`SEALED_FROM_ENV`]). Returns only on
/// failure, with what failed.
pub fn reexec_from_sealed_copy() -> Result<std::convert::Infallible, (&'static str, Errno)> {
    let from = std::fs::read_link("/proc/self/exe").map_err(|e| ("read /proc/self/exe", io(e)))?;
    let mut source = File::open("/proc/self/exe").map_err(|e| ("open /proc/self/exe", io(e)))?;
    let copy = make_memfd()?;
    let mut sink = File::from(copy);
    // std copies File to File inside the kernel (copy_file_range, sendfile).
    std::io::copy(&mut source, &mut sink).map_err(|e| ("copy the binary into a memfd", io(e)))?;
    fcntl(sink.as_fd(), FcntlArg::F_ADD_SEALS(all_seals())).map_err(|e| ("seal the memfd", e))?;
    let args = cstrings(std::env::args_os())?;
    let env = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_FROM_ENV)
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .chain(std::iter::once({
            let mut kv = OsString::from(SEALED_FROM_ENV);
            kv.push("=");
            kv.push(from.as_os_str());
            kv
        }));
    let env = cstrings(env)?;
    let Err(e) = nix::unistd::fexecve(sink.as_fd(), &args, &env);
    Err(("execute the sealed copy", e))
}

/// A memfd that may be sealed and executed. Kernels since 6.3 want
/// MFD_EXEC said (vm.memfd_noexec may refuse it); older ones reject the
/// flag, and their memfds are executable anyway.
fn make_memfd() -> Result<std::os::fd::OwnedFd, (&'static str, Errno)> {
    let name = c"kennel-sealed-exe";
    let base = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    match memfd_create(name, base | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(Errno::EINVAL) => memfd_create(name, base),
        other => other,
    }
    .map_err(|e| ("memfd_create for the sealed copy", e))
}

fn cstrings(items: impl Iterator<Item = OsString>) -> Result<Vec<CString>, (&'static str, Errno)> {
    items
        .map(|s| {
            CString::new(s.into_vec())
                .map_err(|_| ("pass an argument with a NUL byte", Errno::EINVAL))
        })
        .collect()
}

fn io(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_is_not_a_sealed_copy() {
        assert!(!running_sealed_copy());
        let exe = original_exe().expect("our own path");
        assert_eq!(exe, std::env::current_exe().unwrap());
    }
}
