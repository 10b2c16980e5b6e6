//! The only place in the engine that calls the kernel through `unsafe`.
//!
//! Each function is a small safe wrapper around one system call that nix does
//! not cover (or covers only as an `unsafe fn`). Everything above this module
//! is safe Rust.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::Pid;

pub use kennel_sys::{fd_is_open, pidfd_send_signal, receive_fd, send_fd};

mod bpf;
pub use bpf::{attach_device_program, load_device_program, Insn};
mod image_pages;
pub use image_pages::release_clean_image_pages;

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

// The new mount API (Linux 5.2; mount_setattr 5.12): mounts made and
// changed through fds, so no path is looked up twice. See `rootfs::fd_mounts`.

fn c_string(s: &[u8]) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

/// The dirfd for a `*at` call: `dir`, or the current directory.
fn dir_or_cwd(dir: Option<BorrowedFd<'_>>) -> RawFd {
    dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd())
}

/// AT_EMPTY_PATH when `path` is empty: the call then acts on `dir` itself.
fn empty_path_flag(path: &Path) -> libc::c_uint {
    match path.as_os_str().is_empty() {
        true => libc::AT_EMPTY_PATH as libc::c_uint,
        false => 0,
    }
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at
/// `path` (relative to `dir`; empty: `dir` itself), as a bind would make
/// it, with the mounts below it when `recursive`. The copy is private to
/// this process until `move_mount` attaches it; closing the fd first
/// unmounts it.
pub fn clone_mount_tree(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    recursive: bool,
) -> Result<OwnedFd, Errno> {
    let cpath = c_string(path.as_os_str().as_bytes())?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | empty_path_flag(path);
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is NUL-terminated and lives across the call; the
    // kernel returns a new fd that nothing else owns.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dir_or_cwd(dir), cpath.as_ptr(), flags) };
    let fd = Errno::result(ret)?;
    // SAFETY: open_tree just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// move_mount(2): attaches the detached mount `from` (from open_tree or
/// fsmount) onto `to_path` relative to `to_dir` (empty: `to_dir` itself,
/// as an O_PATH fd from openat2 refers to it). The last component of a
/// non-empty `to_path` is not followed if it is a symlink.
pub fn move_mount(
    from: BorrowedFd<'_>,
    to_dir: Option<BorrowedFd<'_>>,
    to_path: &Path,
) -> Result<(), Errno> {
    let to = c_string(to_path.as_os_str().as_bytes())?;
    let mut flags = libc::MOVE_MOUNT_F_EMPTY_PATH;
    if to_path.as_os_str().is_empty() {
        flags |= libc::MOVE_MOUNT_T_EMPTY_PATH;
    }
    // SAFETY: both paths are NUL-terminated and live across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            dir_or_cwd(to_dir),
            to.as_ptr(),
            flags,
        )
    };
    Errno::result(ret).map(drop)
}

/// Mount attributes to change: `set` and `clear` are MOUNT_ATTR_* bits
/// (`clear` must hold MOUNT_ATTR__ATIME to change the atime mode);
/// `propagation` is one of MS_PRIVATE, MS_SLAVE, MS_SHARED and
/// MS_UNBINDABLE, or 0 to leave it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountAttributes {
    pub set: u64,
    pub clear: u64,
    pub propagation: u64,
}

/// mount_setattr(2) on the mount at `path` relative to `dir` (empty: the
/// mount `dir` refers to, attached or not), and on every mount below it
/// when `recursive`. Only the bits named change: a flag the kernel locked
/// on the mount is left as it is, never cleared.
pub fn set_mount_attributes(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    recursive: bool,
    attrs: MountAttributes,
) -> Result<(), Errno> {
    let cpath = c_string(path.as_os_str().as_bytes())?;
    let attr = libc::mount_attr {
        attr_set: attrs.set,
        attr_clr: attrs.clear,
        propagation: attrs.propagation,
        userns_fd: 0,
    };
    let mut flags = empty_path_flag(path);
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the path is NUL-terminated and `attr` lives across the call;
    // its exact size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir_or_cwd(dir),
            cpath.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Whether this kernel has mount_setattr(2) (Linux 5.12, the newest call
/// of the mount API kennel uses): asked with a size too small for any
/// version of its argument, which the kernel refuses (EINVAL) before
/// touching anything. ENOSYS (an older kernel, or a seccomp filter that
/// hides the call) or any other answer: it cannot be used.
pub fn mount_setattr_exists() -> bool {
    // SAFETY: null pointers with a zero size: the kernel checks the size
    // and returns before it reads the path or the attributes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<libc::mount_attr>(),
            0,
        )
    };
    ret == -1 && Errno::last() == Errno::EINVAL
}

/// fsopen(2): a new filesystem context of type `fstype`, configured with
/// `fs_set` and made with `fs_create`. read(2) on it returns the kernel's
/// messages about the configuration.
pub fn fs_open(fstype: &str) -> Result<OwnedFd, Errno> {
    let name = c_string(fstype.as_bytes())?;
    // SAFETY: the name is NUL-terminated and lives across the call; the
    // kernel returns a new fd that nothing else owns.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) };
    let fd = Errno::result(ret)?;
    // SAFETY: fsopen just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// fsconfig(2): sets option `key` of a filesystem context, to `value`
/// (FSCONFIG_SET_STRING) or as a flag (FSCONFIG_SET_FLAG) when None.
pub fn fs_set(fs: BorrowedFd<'_>, key: &str, value: Option<&str>) -> Result<(), Errno> {
    let key = c_string(key.as_bytes())?;
    let value = value.map(|v| c_string(v.as_bytes())).transpose()?;
    let (cmd, value_ptr) = match &value {
        Some(v) => (libc::FSCONFIG_SET_STRING, v.as_ptr()),
        None => (libc::FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: the key and the value (or null, for a flag) are
    // NUL-terminated and live across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd as libc::c_uint,
            key.as_ptr(),
            value_ptr,
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// fsconfig(2) FSCONFIG_CMD_CREATE: makes (or finds) the superblock the
/// context describes.
pub fn fs_create(fs: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: the command takes no key and no value: null pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE as libc::c_uint,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// fsmount(2): a detached mount of the created filesystem context, with
/// the MOUNT_ATTR_* bits `attrs`; attach it with `move_mount`.
pub fn fs_mount(fs: BorrowedFd<'_>, attrs: u64) -> Result<OwnedFd, Errno> {
    let attrs = libc::c_uint::try_from(attrs).map_err(|_| Errno::EINVAL)?;
    // SAFETY: integer arguments only; the kernel returns a new fd that
    // nothing else owns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs,
        )
    };
    let fd = Errno::result(ret)?;
    // SAFETY: fsmount just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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

/// The id of the mount `fd` lies on (statx STATX_MNT_ID, Linux 5.8).
pub fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: an empty path with AT_EMPTY_PATH names `fd` itself; the
    // kernel writes at most one `struct statx` to the buffer, which is
    // valid and zeroed, so reading it afterwards is sound either way.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            stx.as_mut_ptr(),
        )
    };
    Errno::result(ret)?;
    // SAFETY: zeroed above and filled by the kernel: every bit pattern is
    // a valid statx.
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(stx.stx_mnt_id)
}
