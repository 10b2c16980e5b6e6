//! kennel-idmap: writes `/proc/PID/uid_map` and `gid_map` of a process in a
//! new user namespace, mapping the ranges /etc/subuid and /etc/subgid grant
//! the caller. It runs with the file capabilities `cap_setuid,cap_setgid=ep`
//! (never setuid), so it is the one privileged part of kennel. Everything
//! it does with privilege, the threat, and the check that answers it:
//!
//! * Stray privilege: a helper that is setuid, or holds more than
//!   CAP_SETUID and CAP_SETGID, could be turned to other ends. We refuse to
//!   run if the real and effective ids differ, the file has the setuid or
//!   setgid bit, or any other capability is permitted (unless the caller is
//!   root already). Under no_new_privs (the caller asked that exec grant
//!   nothing new), without `setcap`, under a tracer or on a nosuid mount
//!   (the kernel drops file capabilities then), we say which and stop at
//!   once (`kennel_sys::cap_helper`, shared with kennel-net).
//! * Someone else's process: mapping ids into another user's namespace would
//!   hand them our caller's subordinate ids. The target must be the caller's
//!   (every uid in its status) and its user namespace must have been created
//!   by the caller (NS_GET_OWNER_UID), and must not be our own namespace.
//!   "No such process" and "not yours" give the same answer.
//! * A recycled pid: between checking and writing, the pid could be reused
//!   by another process. We hold a pidfd (or the caller's `/proc/PID`
//!   directory) from the start (with `sock:N`, from its arrival, before any
//!   check of the target), check after opening `/proc/PID` that the
//!   pidfd's process is still alive, and reach every file through that one
//!   directory fd with openat(2), so all checks and writes hit one process.
//! * Ids the caller may not use: every range is the caller's own id with
//!   count 1, or inside their /etc/subuid (/etc/subgid) ranges, with no
//!   overflow or overlap; host id 0 only for root. The pure, tested rules
//!   live in the library (`kennel_idmap::validate_map`).
//! * Shedding a restricting group (CVE-2018-7169): when the only gid mapped
//!   is the caller's own, `deny` is written to `setgroups` first.
//! * Tricks with the process state: we make ourselves non-dumpable first
//!   thing, put /dev/null on closed fds 0-2 so no map file lands there, never
//!   read the environment, drop every capability but the one a write needs
//!   before opening a map file, and write each map with one write(2).
//!   Nothing is written unless every check of both maps has passed.

#![cfg_attr(not(test), no_main)]

mod sys;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use caps::Capability;
use kennel_idmap::{
    allowed_ranges, entry_for_uid, parse_args, parse_subid_file, render_map,
    setgroups_must_be_denied, usage, validate_map, Command, Form, IdKind, MapLine, MapPolicy,
    Refusal, Request, Target, UsageError,
};
use kennel_sys::cap_helper::{check_privileges, Helper, SelfCheckFailure};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};
use nix::unistd::User;

kennel_sys::helper_entry_point!(helper_main);

static IDMAP: Helper = Helper {
    program: "kennel-idmap",
    caps: &[Capability::CAP_SETUID, Capability::CAP_SETGID],
    work: "write id maps",
    otherwise: "",
};

/// Why the helper did not (completely) do its job. One line each.
#[derive(Debug)]
enum Failure {
    Usage(UsageError),
    Refused(Refusal),
    SelfCheck(SelfCheckFailure),
    NotYours(Target),
    OwnNamespace(Target),
    AlreadyWritten(Target, IdKind),
    BadFd(i32),
    NotProcess(i32),
    NothingSent(i32),
    Sys { what: String, errno: Errno },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(e) => write!(f, "{e} (see --help)"),
            Failure::Refused(r) => write!(f, "{r}"),
            Failure::SelfCheck(e) => write!(f, "{e}"),
            Failure::NotYours(t) => write!(f, "refused: {t} does not exist or is not yours"),
            Failure::OwnNamespace(t) => write!(
                f,
                "refused: {t} is in this user namespace, not a new one it owns (create one with unshare -U)"
            ),
            Failure::AlreadyWritten(t, kind) => write!(
                f,
                "refused: the {} map of {t} is already written; the kernel takes it once",
                kind.name()
            ),
            Failure::BadFd(fd) => write!(f, "refused: fd:{fd} is not an open file descriptor"),
            Failure::NotProcess(fd) => write!(
                f,
                "refused: fd:{fd} is neither a pidfd nor a /proc/PID directory on procfs"
            ),
            Failure::NothingSent(fd) => write!(
                f,
                "refused: no process arrived on fd:{fd} (the caller closed it)"
            ),
            Failure::Sys { what, errno } => {
                write!(f, "failed: {what}: {} ({})", errno.desc(), *errno as i32)
            }
        }
    }
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> Failure {
    let what = what.into();
    move |errno| Failure::Sys { what, errno }
}

/// The caller: real ids, which every check is about.
struct Caller {
    uid: u32,
    gid: u32,
}

/// Called by `main`, the process entry point.
fn helper_main() -> ! {
    // Before anything can open a file: no map file may become fd 0-2.
    let std_fds = sys::ensure_std_fds_open();
    // Nobody may ptrace us or read our memory. File capabilities already
    // imply this; say it anyway. Failure leaves the kernel's default.
    let _ = nix::sys::prctl::set_dumpable(false);
    let result = std_fds
        .map_err(sys("opening /dev/null on closed fds 0-2"))
        .and_then(|()| run(std::env::args_os().collect()));
    if let Err(failure) = result {
        let _ = writeln!(std::io::stderr(), "kennel-idmap: {failure}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

fn run(argv: Vec<OsString>) -> Result<(), Failure> {
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(|a| {
            a.to_str().ok_or_else(|| {
                Failure::Usage(UsageError::ExtraArgument(a.to_string_lossy().into()))
            })
        })
        .collect::<Result<_, _>>()?;
    let form = Form::from_argv0(&argv0);
    let request = match parse_args(form, &args).map_err(Failure::Usage)? {
        Command::Help => {
            let _ = std::io::stdout().write_all(usage(form).as_bytes());
            return Ok(());
        }
        Command::Write(request) => request,
    };

    let ids = check_privileges(&IDMAP, |uid| {
        let mut needed = needed_caps(uid, &request, IdKind::Uid);
        needed.extend(needed_caps(uid, &request, IdKind::Gid));
        needed
    })
    .map_err(Failure::SelfCheck)?;
    let caller = Caller {
        uid: ids.uid,
        gid: ids.gid,
    };
    // From here on only the capabilities the writes need are permitted, and
    // none is effective until its write.
    let mut needed = needed_caps(caller.uid, &request, IdKind::Uid);
    needed.extend(needed_caps(caller.uid, &request, IdKind::Gid));
    limit_caps(&needed, &HashSet::new())?;

    // The ranges are judged before the target is looked at: with `sock:N`
    // this runs while the caller is still creating the process.
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| entry_for_uid(&text, caller.uid))
        .map(|e| e.name)
        .or_else(|| {
            User::from_uid(caller.uid.into())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_default();
    let maps = [
        (IdKind::Uid, &request.uid_map, caller.uid),
        (IdKind::Gid, &request.gid_map, caller.gid),
    ];
    for (kind, lines, own_id) in maps {
        if lines.is_empty() {
            continue;
        }
        let policy = MapPolicy {
            kind,
            own_id,
            caller_is_root: caller.uid == 0,
            allowed: allowed_ranges(&parse_subid_file(&read_subid_file(kind)), &name, caller.uid),
        };
        validate_map(&policy, lines).map_err(Failure::Refused)?;
    }

    let proc_dir = open_target(request.target)?;
    check_owner(&caller, request.target, proc_dir.as_fd())?;
    for (kind, lines, _) in maps {
        if !lines.is_empty()
            && !read_at(proc_dir.as_fd(), kind.map_file())
                .map_err(|_| Failure::NotYours(request.target))?
                .is_empty()
        {
            return Err(Failure::AlreadyWritten(request.target, kind));
        }
    }
    write_maps(&caller, &request, proc_dir.as_fd())?;
    if let Target::Socket(n) = request.target {
        // Tell whoever waits on the socket's other end (the new process
        // itself, holding a copy of it) that both maps are in place, sooner
        // than our exit would. A caller gone by now changes nothing written.
        if let Some(sock) = sys::inherited_fd(n) {
            let _ = nix::unistd::write(sock, b"k");
        }
    }
    Ok(())
}

/// The capabilities writing one map needs: CAP_SETUID (CAP_SETGID), and
/// CAP_SETFCAP when root maps host uid 0 (the kernel asks for it then).
fn needed_caps(caller_uid: u32, request: &Request, kind: IdKind) -> HashSet<Capability> {
    let mut set = HashSet::new();
    match kind {
        IdKind::Uid if !request.uid_map.is_empty() => {
            set.insert(Capability::CAP_SETUID);
            if caller_uid == 0 && request.uid_map.iter().any(|l| l.outer == 0) {
                set.insert(Capability::CAP_SETFCAP);
            }
        }
        IdKind::Gid if !request.gid_map.is_empty() => {
            set.insert(Capability::CAP_SETGID);
        }
        _ => {}
    }
    set
}

/// Opens the target's `/proc/PID` directory, making sure it is the process
/// the caller meant and not a later one with a recycled pid.
fn open_target(target: Target) -> Result<OwnedFd, Failure> {
    let not_yours = |_| Failure::NotYours(target);
    match target {
        Target::Pid(pid) => {
            let pidfd = sys::pidfd_open(pid).map_err(not_yours)?;
            let dir = open_proc_dir(pid).map_err(not_yours)?;
            sys::pidfd_is_alive(pidfd.as_fd()).map_err(not_yours)?;
            Ok(dir)
        }
        Target::Fd(n) => {
            let fd = sys::inherited_fd(n).ok_or(Failure::BadFd(n))?;
            open_fd_target(target, n, fd)
        }
        Target::Socket(n) => {
            let sock = sys::inherited_fd(n).ok_or(Failure::BadFd(n))?;
            let fd = sys::receive_fd(sock)
                .map_err(sys(format!("receiving the target on fd:{n}")))?
                .ok_or(Failure::NothingSent(n))?;
            open_fd_target(target, n, fd.as_fd())
        }
    }
}

/// `open_target` for a pidfd or a `/proc/PID` directory fd; messages name
/// the fd the caller gave (`given`).
fn open_fd_target(target: Target, given: i32, fd: BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
    let not_yours = |_| Failure::NotYours(target);
    let on_proc = fstatfs(fd)
        .map_err(sys(format!("fstatfs fd:{given}")))?
        .filesystem_type()
        == PROC_SUPER_MAGIC;
    if on_proc {
        let is_dir = fstat(fd)
            .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
        if !is_dir.map_err(sys(format!("fstat fd:{given}")))? {
            return Err(Failure::NotProcess(given));
        }
        // Reopen through the fd so we own a read-only directory fd.
        return openat(
            fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(not_yours);
    }
    let pid = pidfd_pid(fd.as_raw_fd()).ok_or(Failure::NotProcess(given))?;
    let pid = u32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(Failure::NotYours(target))?;
    let dir = open_proc_dir(pid).map_err(not_yours)?;
    sys::pidfd_is_alive(fd).map_err(not_yours)?;
    Ok(dir)
}

fn open_proc_dir(pid: u32) -> Result<OwnedFd, Errno> {
    let dir = nix::fcntl::open(
        format!("/proc/{pid}").as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if fstatfs(&dir)?.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(Errno::ENODEV);
    }
    Ok(dir)
}

/// The pid a pidfd refers to, from the `Pid:` line of its fdinfo (-1 once
/// the process is gone, 0 if it is in a pid namespace we cannot see), or
/// None when the fd is not a pidfd.
fn pidfd_pid(fd: i32) -> Option<i64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Rule 1: the process and its user namespace belong to the caller, and
/// that namespace is not our own.
fn check_owner(caller: &Caller, target: Target, dir: BorrowedFd<'_>) -> Result<(), Failure> {
    let not_yours = |_| Failure::NotYours(target);
    let status = read_at(dir, "status").map_err(not_yours)?;
    let uids: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    if uids.len() != 4 || uids.iter().any(|u| u.parse() != Ok(caller.uid)) {
        return Err(Failure::NotYours(target));
    }
    let ns = openat(
        dir,
        "ns/user",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(not_yours)?;
    let theirs = fstat(&ns).map_err(not_yours)?;
    let ours =
        nix::sys::stat::stat("/proc/self/ns/user").map_err(sys("stat /proc/self/ns/user"))?;
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) {
        return Err(Failure::OwnNamespace(target));
    }
    if sys::ns_owner_uid(&ns).map_err(not_yours)? != caller.uid {
        return Err(Failure::NotYours(target));
    }
    Ok(())
}

/// Reads a small file under the target's `/proc/PID` directory.
fn read_at(dir: BorrowedFd<'_>, name: &str) -> Result<String, Errno> {
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    Ok(text)
}

/// A subordinate id file; unreadable means no entries, and lines that are
/// not UTF-8 are dropped (they could not name anyone anyway).
fn read_subid_file(kind: IdKind) -> String {
    let bytes = std::fs::read(kind.subid_file()).unwrap_or_default();
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Narrows our capabilities to `permitted`, of which `effective` are in
/// effect (see `kennel_sys::cap_helper::limit_caps`).
fn limit_caps(
    permitted: &HashSet<Capability>,
    effective: &HashSet<Capability>,
) -> Result<(), Failure> {
    kennel_sys::cap_helper::limit_caps(permitted, effective).map_err(sys("capset"))
}

/// Writes the maps: uid_map with only CAP_SETUID, then setgroups and
/// gid_map with only CAP_SETGID; each map in a single write(2).
fn write_maps(caller: &Caller, request: &Request, dir: BorrowedFd<'_>) -> Result<(), Failure> {
    let uid_caps = needed_caps(caller.uid, request, IdKind::Uid);
    let gid_caps = needed_caps(caller.uid, request, IdKind::Gid);
    if !request.uid_map.is_empty() {
        limit_caps(&uid_caps.union(&gid_caps).copied().collect(), &uid_caps)?;
        write_map(request.target, dir, IdKind::Uid, &request.uid_map)?;
    }
    limit_caps(&gid_caps, &gid_caps)?;
    if !request.gid_map.is_empty() {
        if setgroups_must_be_denied(&request.gid_map, caller.gid) {
            write_once(dir, "setgroups", b"deny").map_err(sys(format!(
                "writing deny to setgroups of {}",
                request.target
            )))?;
        }
        write_map(request.target, dir, IdKind::Gid, &request.gid_map)?;
    }
    limit_caps(&HashSet::new(), &HashSet::new())
}

fn write_map(
    target: Target,
    dir: BorrowedFd<'_>,
    kind: IdKind,
    lines: &[MapLine],
) -> Result<(), Failure> {
    let text = render_map(lines);
    write_once(dir, kind.map_file(), text.as_bytes())
        .map_err(sys(format!("writing {} of {target}", kind.map_file())))
}

/// Opens `name` under `dir` for writing and writes `data` in one write(2).
fn write_once(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> Result<(), Errno> {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?;
    match nix::unistd::write(&fd, data)? {
        n if n == data.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}
