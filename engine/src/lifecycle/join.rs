//! Making the container's process inside user and pid namespaces that
//! exist already (`linux.namespaces[].path`), which the runner cannot enter
//! itself: setns(2) to a user namespace is for good (the runner would lose
//! its capabilities over the host's files and cgroups), and setns to a pid
//! namespace makes every later child of the runner (hooks, pasta) be born
//! there. So a forked copy of the runner enters them, then clones the
//! container's process as the runner's own child (CLONE_PARENT), sends its
//! pid and pidfd back, and exits.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::Pid;

use crate::sys::{self, Forked, SingleThreaded};
use kennel_idmap::MapLine;

/// What the forked copy reports.
const CLONED: u8 = 0;
const SETNS_FAILED: u8 = 1;
const CLONE_FAILED: u8 = 2;
const MAPS_DIFFER: u8 = 3;

/// The namespaces to enter, in order (a user namespace first: the others
/// belong to it), and the maps a joined user namespace must have.
pub struct Entry<'a> {
    pub namespaces: &'a [(CloneFlags, PathBuf)],
    /// linux.uidMappings and gidMappings; empty when the spec gives none.
    pub uid_map: &'a [MapLine],
    pub gid_map: &'a [MapLine],
}

/// Whether `join` needs a forked copy of the runner: it names a user or a
/// pid namespace.
pub fn needs_fork(join: &[(CloneFlags, PathBuf)]) -> bool {
    join.iter()
        .any(|(f, _)| matches!(*f, CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID))
}

/// The name of the namespace type `flag`, for errors.
pub fn kind(flag: CloneFlags) -> &'static str {
    match flag {
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNET => "network",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUTS => "uts",
        _ => "other",
    }
}

/// clone_process(`flags`, `cgroup_fd`) from inside `entry`'s namespaces;
/// the new process is our child. The outer error is about the
/// namespaces; the inner one is clone3's, as clone_process gives it.
pub fn clone_inside(
    single: &SingleThreaded,
    flags: u64,
    cgroup_fd: Option<std::os::fd::BorrowedFd<'_>>,
    entry: &Entry<'_>,
) -> Result<Result<Forked, Errno>> {
    let mut fds = Vec::new();
    for (flag, path) in entry.namespaces {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| {
            format!(
                "cannot open the {} namespace {}",
                kind(*flag),
                path.display()
            )
        })?;
        fds.push((*flag, fd));
    }
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the namespace joiner")?;
    let Some(joiner) = sys::fork_process(single).context("fork for the namespace joiner")? else {
        drop(ours);
        return Ok(enter_and_clone(
            single, flags, cgroup_fd, entry, &fds, theirs,
        ));
    };
    drop(theirs);
    drop(fds);
    let reply = receive(&ours);
    let _ = nix::sys::wait::waitpid(joiner, None);
    let (code, value, text, pidfd) = reply.context("the namespace joiner said nothing")?;
    match code {
        CLONED => {
            let pidfd = pidfd.context("the namespace joiner sent no pidfd")?;
            Ok(Ok(Forked::Parent {
                pid: Pid::from_raw(value),
                pidfd,
            }))
        }
        CLONE_FAILED => Ok(Err(Errno::from_raw(value))),
        SETNS_FAILED => {
            let (flag, path) = &entry.namespaces[text.parse::<usize>().unwrap_or(0)];
            bail!(
                "cannot join the {} namespace {}: {} (is it a {} namespace, and one you may enter?)",
                kind(*flag),
                path.display(),
                Errno::from_raw(value).desc(),
                kind(*flag)
            )
        }
        _ => bail!("{text}"),
    }
}

/// In the forked copy: enters the namespaces and clones. Returns only in
/// the container's process; the copy itself reports and exits.
fn enter_and_clone(
    single: &SingleThreaded,
    flags: u64,
    cgroup_fd: Option<std::os::fd::BorrowedFd<'_>>,
    entry: &Entry<'_>,
    fds: &[(CloneFlags, OwnedFd)],
    report: OwnedFd,
) -> Result<Forked, Errno> {
    for (i, (flag, fd)) in fds.iter().enumerate() {
        if let Err(e) = nix::sched::setns(fd, *flag) {
            report_and_exit(&report, SETNS_FAILED, e as i32, &i.to_string(), None);
        }
        if *flag == CloneFlags::CLONE_NEWUSER {
            if let Err(text) = same_maps(entry) {
                report_and_exit(&report, MAPS_DIFFER, 0, &text, None);
            }
        }
    }
    let parent = libc::CLONE_PARENT as u64;
    match sys::clone_process(single, flags | parent, cgroup_fd) {
        Ok(Forked::Child(s)) => {
            drop(report);
            Ok(Forked::Child(s))
        }
        Ok(Forked::Parent { pid, pidfd }) => {
            report_and_exit(&report, CLONED, pid.as_raw(), "", Some(pidfd.as_raw_fd()))
        }
        Err(e) => report_and_exit(&report, CLONE_FAILED, e as i32, "", None),
    }
}

/// Checks that the user namespace we are now in has the maps the spec
/// gives, if it gives any: a spec that names both must get both.
fn same_maps(entry: &Entry<'_>) -> std::result::Result<(), String> {
    for (file, wanted) in [("uid_map", entry.uid_map), ("gid_map", entry.gid_map)] {
        if wanted.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(format!("/proc/self/{file}")).unwrap_or_default();
        let has: Vec<(u32, u32, u32)> = text
            .lines()
            .filter_map(|l| {
                let n: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                (n.len() == 3).then(|| (n[0], n[1], n[2]))
            })
            .collect();
        let mut want: Vec<(u32, u32, u32)> =
            wanted.iter().map(|l| (l.inner, l.outer, l.count)).collect();
        let mut has_sorted = has.clone();
        want.sort_unstable();
        has_sorted.sort_unstable();
        if want != has_sorted {
            return Err(format!(
                "the user namespace joined by path has {file} {has:?} (inside, outside, count), and the spec's mappings ask for {want:?}; give the namespace's own mappings, or none"
            ));
        }
    }
    Ok(())
}

fn report_and_exit(sock: &OwnedFd, code: u8, value: i32, text: &str, fd: Option<RawFd>) -> ! {
    send(sock, code, value, text, fd);
    sys::exit_now(0)
}

fn send(sock: &OwnedFd, code: u8, value: i32, text: &str, fd: Option<RawFd>) {
    let mut bytes = vec![code];
    bytes.extend_from_slice(&value.to_ne_bytes());
    bytes.extend_from_slice(text.as_bytes());
    let iov = [IoSlice::new(&bytes)];
    let fds = fd.map(|f| [f]);
    let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    let _ = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None);
}

/// The report: code, value, text, and the pidfd if one came.
fn receive(sock: &OwnedFd) -> Result<(u8, i32, String, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (len, fd) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("reading the namespace joiner's report"),
            Ok(msg) => {
                let mut fd = None;
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            fd = Some(sys::own_received_fd(raw));
                        }
                    }
                }
                break (msg.bytes, fd);
            }
        }
    };
    if len < 5 {
        bail!("the namespace joiner ended without a report");
    }
    let value = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let text = String::from_utf8_lossy(&buf[5..len]).into_owned();
    Ok((buf[0], value, text, fd))
}
