//! kennel's process entry point: the one piece of the binary that needs
//! `unsafe` (an exported symbol), kept apart from everything else.
#![allow(unsafe_code)]

/// The process entry point, called by glibc's start-up code in place of
/// Rust's. Rust's runtime set-up before `main` (a stack-guard probe that
/// reads /proc/self/maps, an alternate signal stack for overflow reports)
/// costs tens of microseconds on every container start. What kennel relies
/// on it does here: SIGPIPE ignored and fds 0-2 open (no fd of ours, a
/// signalfd say, may become the container's stdio).
#[cfg_attr(not(test), unsafe(no_mangle))]
#[cfg_attr(test, allow(dead_code))]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    kennel_sys::ignore_sigpipe();
    if kennel_sys::ensure_std_fds_open().is_err() {
        return 125;
    }
    crate::kennel_main()
}
