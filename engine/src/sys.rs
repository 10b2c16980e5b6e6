//! The only place in the engine that calls the kernel through `unsafe`.
//!
//! Each function is a small safe wrapper around one system call that nix does
//! not cover (or covers only as an `unsafe fn`). Everything above this module
//! is safe Rust.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::Pid;

pub use kennel_sys::{fd_is_open, pidfd_send_signal, receive_fd, send_fd};

mod bpf;
pub use bpf::{attach_device_program, load_device_program, Insn};
mod image_pages;
pub use image_pages::release_clean_image_pages;
mod mount_api;
pub use mount_api::{
    clone_mount_tree, fs_create, fs_mount, fs_open, fs_set, mount_id, mount_setattr_exists,
    move_mount, set_mount_attributes, MountAttributes,
};

/// setns(2) on an fd this process inherited by number (a pidfd or a
/// namespace fd of the runner's, open until exec).
pub fn setns_raw(fd: RawFd, flags: nix::sched::CloneFlags) -> Result<(), Errno> {
    // SAFETY: setns reads no memory of ours; a number that is no longer a
    // namespace or pidfd is an error (EBADF, EINVAL), not undefined.
    Errno::result(unsafe { libc::setns(fd, flags.bits()) }).map(drop)
}

/// Returns the heap's free pages to the kernel (glibc's malloc_trim).
pub fn release_free_heap() {
    // SAFETY: malloc_trim only gives back memory malloc holds free; no
    // allocation in use moves or changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Proof that this process had a single thread when it was checked:
/// clone3 and fork copy only the calling thread, and one a library left
/// behind could hold a lock the child then waits on forever. The engine
/// starts no thread, so the proof stays good; a cloned child gets its own.
pub struct SingleThreaded {
    ignored_signals: u64,
}

impl SingleThreaded {
    /// The signals this process ignores (bit N-1 for signal N: the
    /// caller's, and SIGPIPE), which stay ignored across execve: the child
    /// resets them.
    pub fn ignored_signals(&self) -> u64 {
        self.ignored_signals
    }
}

/// Checks what a clone copies before making one, in one read of
/// /proc/self/status: a second thread is an error; the ignored signals
/// are kept for the child to reset.
pub fn check_before_clone() -> anyhow::Result<SingleThreaded> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let threads: usize = field("Threads:").and_then(|t| t.parse().ok()).unwrap_or(1);
    if threads != 1 {
        anyhow::bail!("internal error: kennel has {threads} threads before creating the container; please report this");
    }
    // Unreadable: every signal is reset, which is right, only slower.
    let ignored_signals = field("SigIgn:")
        .and_then(|m| u64::from_str_radix(m, 16).ok())
        .unwrap_or(u64::MAX);
    Ok(SingleThreaded { ignored_signals })
}

/// Where a clone returned.
pub enum Forked {
    /// In the new process, which has one thread.
    Child(SingleThreaded),
    /// In the caller: the child's pid (as seen from here) and a pidfd for it.
    Parent { pid: Pid, pidfd: OwnedFd },
}

/// From linux/sched.h (libc's constant is deprecated for overflowing c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` from linux/sched.h (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Fork-like clone with namespace `flags`, returning a pidfd for the child.
/// Uses clone3 (man 2 clone); falls back to the classic clone on ENOSYS.
/// `cgroup_fd`, when given, places the child in that cgroup at birth
/// (CLONE_INTO_CGROUP; clone3 only).
///
/// `single` proves the caller is single-threaded: the child is a copy of
/// this process with only the calling thread.
pub fn clone_process(
    single: &SingleThreaded,
    flags: u64,
    cgroup_fd: Option<BorrowedFd<'_>>,
) -> Result<Forked, Errno> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        // With CLONE_PARENT the kernel wants none: the child takes its
        // exit signal from the caller, whose parent hears of it.
        exit_signal: match flags & libc::CLONE_PARENT as u64 {
            0 => libc::SIGCHLD as u64,
            _ => 0,
        },
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM duplicates the address space like
    // fork(2), so the child runs on its own copy of this stack; `args` and
    // `pidfd` live across the call and their sizes are passed exactly.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let ret = if ret == -1 && Errno::last() == Errno::ENOSYS && cgroup_fd.is_none() {
        // SAFETY: classic clone with a null stack behaves like fork(2) (the
        // child continues on a copy of our stack); CLONE_PIDFD stores the
        // pidfd through the parent_tid argument, which points at `pidfd`.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64) as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                &mut pidfd as *mut RawFd,
                std::ptr::null_mut::<libc::c_int>(),
                0 as libc::c_ulong,
            )
        }
    } else {
        ret
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child(SingleThreaded {
            ignored_signals: single.ignored_signals,
        })),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as libc::pid_t),
            // SAFETY: the kernel just returned this pidfd to us and nothing
            // else owns it.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Ends a process we forked or cloned, at once: no exit handlers, no
/// flushing of buffers that are copies of the runner's (their contents
/// would be written twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes no pointers and does not return.
    unsafe { libc::_exit(code) }
}

/// fork(2) for the container init (`--init`); `_single` proves it has one
/// thread.
pub fn fork_process(_single: &SingleThreaded) -> Result<Option<Pid>, Errno> {
    // SAFETY: the caller is single-threaded (`SingleThreaded`), so the child
    // is a complete copy of it and may run any code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    kennel_sys::pidfd_open(pid.as_raw())
}

/// Marks every fd from `first` upwards close-on-exec (close_range(2)).
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(ret).map(drop)
}

/// Closes every fd of this process except those in `keep` (close_range(2)
/// over the gaps). For a process about to run code of the container's: an
/// fd it inherited, even close-on-exec, is a way out of the container
/// (`/proc/self/fd/N`) until the exec, and forever in an init that never
/// execs. The callers own nothing outside `keep` that they still use.
pub fn close_fds_except(keep: &[RawFd]) -> Result<(), Errno> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 0u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > first {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            // SAFETY: plain syscall with integer arguments; the callers
            // guarantee no live object of theirs owns an fd in the range.
            Errno::result(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) })?;
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// Gives this process a new, empty session keyring
/// (KEYCTL_JOIN_SESSION_KEYRING with no name), so keys of the caller's
/// session are out of its reach. A kernel without keyrings (ENOSYS) has
/// nothing to inherit either.
pub fn join_new_session_keyring() -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    // SAFETY: a null name asks for an anonymous keyring; no memory of ours
    // is read or written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match Errno::result(ret) {
        Ok(_) | Err(Errno::ENOSYS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets or clears FD_CLOEXEC on a raw fd number we do not own (for
/// `--preserve-fds`, whose fds were inherited from our caller).
pub fn set_cloexec(fd: RawFd, cloexec: bool) -> Result<(), Errno> {
    // SAFETY: fcntl on an integer fd only reads or changes its flags; a bad
    // fd gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(Errno::last());
    }
    let flags = if cloexec {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) }).map(drop)
}

/// Brings the loopback interface up in the current network namespace
/// (SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket; no netlink needed).
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: creating a socket has no memory-safety preconditions.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::last());
    }
    // SAFETY: we own the fresh socket fd.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into `req`, which outlives the call.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, which outlives the call.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}

/// Reads the `security.capability` extended attribute of a file (its file
/// capabilities), or None when it has none.
pub fn file_capabilities(path: &Path) -> Result<Option<Vec<u8>>, Errno> {
    kennel_sys::get_xattr(path, "security.capability")
}

/// Makes `fd` (a terminal) the controlling terminal of this session.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// The window size of a terminal, if `fd` is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    // SAFETY: winsize is plain old data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes into `ws`, which outlives the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (ret == 0).then_some(ws)
}

/// Sets the window size of a terminal.
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads `ws`, which outlives the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) }).map(drop)
}

/// Puts the signals in `which` (bit N-1 for signal N) back to their
/// default disposition. An ignored signal stays ignored across execve: the
/// runner ignores SIGPIPE, and a caller under `nohup` ignores SIGHUP, which
/// a shell in the container could then not even trap.
///
/// Through rt_sigaction(2) itself: glibc's sigaction refuses signals 32 and
/// 33, which it reserves for its threads, yet a caller may have them
/// ignored too, and an ignored one would be inherited like any other.
pub fn reset_signals_default(which: u64) {
    /// The kernel's `struct sigaction` (asm-generic and x86-64 layouts);
    /// all zeros is SIG_DFL with no flags and an empty mask.
    #[repr(C)]
    #[derive(Default)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction::default();
    for signal in 1..=libc::SIGRTMAX().min(64) {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || which & (1 << (signal - 1)) == 0 {
            continue;
        }
        // SAFETY: the kernel reads `default`, which lives across the call,
        // and installs SIG_DFL: no handler, so no code of ours can run in
        // signal context. The last argument is the size of the kernel's
        // signal set, 64 bits.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Installs the seccomp filter `program` (see `engine::seccomp`) on this
/// process, with seccomp(2)'s `flags`. Needs CAP_SYS_ADMIN in our user
/// namespace or no_new_privs.
pub fn install_seccomp_filter(program: &[libc::sock_filter], flags: u32) -> Result<(), Errno> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    // SAFETY: the kernel copies the program, which `fprog` points to and
    // which lives across the call; the kernel checks it before use.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    Errno::result(ret).map(drop)
}

/// The Landlock ABI version the kernel offers (landlock_create_ruleset(2)
/// with LANDLOCK_CREATE_RULESET_VERSION). ENOSYS: the kernel is built
/// without Landlock; EOPNOTSUPP: built in but not enabled at boot.
pub fn landlock_abi_version() -> Result<i32, Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with this flag the kernel reads no attribute (it requires a
    // null pointer and a size of 0) and only returns a number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    Errno::result(ret).map(|v| v as i32)
}

/// Takes ownership of an fd that arrived over SCM_RIGHTS.
pub fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed this fd in our table for this message;
    // nothing else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// dup2(2) onto a standard fd number (0, 1, 2) that nothing else owns.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 atomically replaces `target`; the callers only pass
    // 0..=2, which this process uses as raw stdio and never wraps.
    Errno::result(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// prctl(PR_CAPBSET_DROP): removes one capability from the bounding set.
/// A capability this kernel does not know (EINVAL) is not in the set, so
/// that counts as done: one call per capability, no read before it.
pub fn drop_bounding_cap(cap: u8) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes the capability number by value and
    // touches no memory of ours.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    match Errno::result(ret) {
        Err(Errno::EINVAL) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether this process may create a user namespace: clones a child into
/// one, which exits at once. The errno says why not.
pub fn probe_user_namespace() -> anyhow::Result<Result<(), Errno>> {
    let single = check_before_clone()?;
    Ok(
        match clone_process(&single, libc::CLONE_NEWUSER as u64, None) {
            Ok(Forked::Child(_)) => exit_now(0),
            Ok(Forked::Parent { pid, .. }) => match nix::sys::wait::waitpid(pid, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                _ => Err(Errno::ECHILD),
            },
            Err(e) => Err(e),
        },
    )
}

/// setdomainname(2), for the container's own uts namespace.
pub fn set_domainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, which live
    // across the call; the kernel copies them and keeps no pointer.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}
