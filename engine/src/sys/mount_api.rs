//! The new mount API (Linux 5.2; mount_setattr 5.12): mounts made and
//! changed through fds, so no path is looked up twice. See
//! `child::rootfs::fd_mounts`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

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
