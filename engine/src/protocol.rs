//! The parent <-> child protocol, readable in one place.
//!
//! One `SOCK_SEQPACKET` socketpair, close-on-exec on both ends. The sequence:
//!
//! 1. parent: clone3 the child into new user and pid namespaces, and hand
//!    its pidfd to the maker of its network namespace (see `netns`).
//! 2. child:  unshares its mount, uts and ipc namespaces and sets the
//!    hostname (none of which needs the maps), then waits for the maps (it
//!    is still unmapped).
//! 3. parent: meanwhile writes uid_map/gid_map and sends
//!    [`ToChild::MapsWritten`]; or hands the child's pidfd to the
//!    kennel-idmap it started before the clone, which writes them and says
//!    so itself with one byte on the socket the child inherited.
//!    With a network (`run.kennel.net=pasta` or `bridge[=NAME]`), the
//!    child then joins its network namespace and sends
//!    [`ToParent::StartNetwork`], carrying a NETLINK_ROUTE socket made
//!    there. The parent starts the network (pasta, see `pasta`; or
//!    kennel-net, see `bridge`) and answers [`ToChild::NetworkStarted`]
//!    once what the rootfs needs of it exists (pasta's resolv.conf), then
//!    [`ToChild::NetworkUp`] once the interface is configured. The child
//!    builds the rootfs in between, and waits for the second answer
//!    before anything of the container's runs (hooks included).
//! 4. child:  sets up the rootfs, joining the network namespace before it
//!    mounts sysfs, pivots, switches user, drops capabilities. With
//!    `--tty` it sends [`ToParent::PtyMaster`] with the master fd.
//! 5. child:  execs. Success closes its end (close-on-exec), so the parent
//!    reads end-of-file; any failure instead sends [`ToParent::Failed`] with
//!    (stage, errno, path) and the child exits.
//!
//! The child dies with the parent: PR_SET_PDEATHSIG is its first act, and
//! right after it (and again after the credential switch, which clears it)
//! it checks that the parent's end is still open, so a parent killed before
//! the signal was armed is noticed too.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use anyhow::anyhow;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The errno of an I/O error (EIO when it carries none).
pub fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// What the child was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Namespaces,
    WaitForMaps,
    Hostname,
    Network,
    UserNetwork,
    Mount,
    PivotRoot,
    Terminal,
    Rlimit,
    User,
    Capabilities,
    Workdir,
    Keyring,
    Seccomp,
    Sysctl,
    Hooks,
    Landlock,
    Init,
    Exec,
}

impl Stage {
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Namespaces => "creating the container's",
            Stage::WaitForMaps => "waiting for the id maps",
            Stage::Hostname => "setting the hostname",
            Stage::Network => "bringing up lo",
            Stage::UserNetwork => "waiting for the container's network (pasta)",
            Stage::Mount => "mount",
            Stage::PivotRoot => "pivot_root",
            Stage::Terminal => "setting up the terminal",
            Stage::Rlimit => "setting a resource limit",
            Stage::User => "switching to the container user",
            Stage::Capabilities => "setting capabilities",
            Stage::Workdir => "changing to the working directory",
            Stage::Keyring => "creating the container's session keyring",
            Stage::Seccomp => "installing the seccomp filter of linux.seccomp",
            Stage::Sysctl => "setting the sysctl",
            Stage::Hooks => "running the hooks",
            Stage::Landlock => "confining the container with Landlock",
            Stage::Init => "starting the init process",
            Stage::Exec => "executing",
        }
    }
}

/// A failure inside the container, as sent to the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildFailure {
    pub stage: Stage,
    /// 0 when the failure is not a system call's.
    pub errno: i32,
    /// The path (or value) the stage was working on.
    pub path: Option<String>,
    /// What the child knows that the errno does not say.
    pub detail: Option<String>,
}

impl ChildFailure {
    pub fn new(stage: Stage, errno: Errno, path: impl Into<Option<String>>) -> Self {
        ChildFailure {
            stage,
            errno: errno as i32,
            path: path.into(),
            detail: None,
        }
    }

    /// The same failure, told about `path` (the user's name for what a
    /// system call reached through an fd).
    pub fn at(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.path = Some(path.as_ref().display().to_string());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }
}

/// A failure to create the namespace `which` (one flag), with the limit
/// that refused it when that is the cause.
pub fn namespace_failure(e: Errno, which: CloneFlags) -> ChildFailure {
    let name = match which {
        CloneFlags::CLONE_NEWNS => "mnt",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "other",
    };
    let f = ChildFailure::new(Stage::Namespaces, e, Some(format!("{name} namespace")));
    if e == Errno::ENOSPC {
        f.with_detail(format!(
            "the limit user.max_{name}_namespaces is reached, here or in a user namespace kennel runs in; raise it, e.g. `sudo sysctl -w user.max_{name}_namespaces=15000`"
        ))
    } else {
        f
    }
}

/// One line: what failed, on what, and why.
impl std::fmt::Display for ChildFailure {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errno = self.errno();
        let path = self.path.as_deref().unwrap_or("");
        if self.stage == Stage::Exec {
            let why = match (errno, &self.detail) {
                (_, Some(d)) => d.clone(),
                (Errno::ENOENT, None) => "no such file (or its interpreter is missing)".into(),
                (Errno::EACCES, None) => "permission denied (is it executable?)".into(),
                (e, None) => e.desc().to_string(),
            };
            return write!(out, "cannot execute {path:?}: {why}");
        }
        write!(out, "{}", self.stage.describe())?;
        if !path.is_empty() {
            write!(out, " {path}")?;
        }
        match self.errno {
            0 => write!(out, " failed")?,
            _ => write!(out, " failed: {}", errno.desc())?,
        }
        if let Some(d) = &self.detail {
            write!(out, " ({d})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    MapsWritten,
    /// The createRuntime hooks have run; the state document the
    /// container's own hooks read.
    HooksRan(String),
    /// The network is on its way; what the rootfs takes from it exists.
    NetworkStarted,
    /// The network namespace's interface is configured.
    NetworkUp,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    Failed(ChildFailure),
    /// Carries the pty master as an SCM_RIGHTS fd.
    PtyMaster,
    /// Created: everything is set up and the process waits for `start`.
    Ready,
    /// The namespaces exist: run the createRuntime hooks, then answer
    /// with `ToChild::HooksRan`.
    RunHooks,
    /// In the network namespace: start pasta, or have kennel-net link it
    /// to the bridge (carrying a NETLINK_ROUTE socket made there as an
    /// SCM_RIGHTS fd), then answer with `ToChild::NetworkStarted` and
    /// `ToChild::NetworkUp`.
    StartNetwork,
}

/// The largest message either side accepts. The biggest real one is
/// `ToChild::HooksRan`'s state document, which holds the spec's
/// annotations; anything longer is refused (and discarded) before a buffer
/// is sized from the peer's word.
pub const MAX_MESSAGE: usize = 128 << 10;

/// Decodes one message: an oversized, truncated or unknown one is an
/// error, never a panic, and nothing is allocated beyond what the bytes
/// describe.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> nix::Result<T> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Errno::EMSGSIZE);
    }
    serde_json::from_slice(bytes).map_err(|_| Errno::EBADMSG)
}

/// One end of the socketpair.
pub struct Channel {
    fd: OwnedFd,
}

/// A message with an optional fd that came with it.
pub struct Received<T> {
    pub message: T,
    pub fd: Option<OwnedFd>,
}

impl Channel {
    /// (parent end, child end), both close-on-exec.
    pub fn pair() -> nix::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Whether the other end is closed: its process is gone. Never waits.
    pub fn peer_gone(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).is_ok()
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn send_to_child(&self, msg: &ToChild) -> nix::Result<()> {
        self.send(msg, None)
    }

    pub fn send_to_parent(&self, msg: &ToParent, fd: Option<RawFd>) -> nix::Result<()> {
        self.send(msg, fd)
    }

    /// None means the other side closed (exec succeeded, or it died).
    pub fn recv_to_child(&self) -> nix::Result<Option<ToChild>> {
        Ok(self.recv(MsgFlags::empty())?.map(|r| r.message))
    }

    pub fn recv_to_parent(&self) -> nix::Result<Option<Received<ToParent>>> {
        self.recv(MsgFlags::empty())
    }

    /// Like `recv_to_parent`, but EAGAIN instead of waiting.
    pub fn try_recv_to_parent(&self) -> nix::Result<Option<Received<ToParent>>> {
        self.recv(MsgFlags::MSG_DONTWAIT)
    }

    /// Runs a receive again on EINTR, and on ECONNRESET: the other side
    /// exited with a message of ours unread (the child failing while
    /// MapsWritten was on its way), which the kernel reports once, ahead of
    /// the messages it sent before closing; those are still queued.
    fn retrying<R>(&self, mut op: impl FnMut() -> nix::Result<R>) -> nix::Result<R> {
        loop {
            match op() {
                Err(Errno::EINTR | Errno::ECONNRESET) => continue,
                other => return other,
            }
        }
    }

    fn send<T: Serialize>(&self, msg: &T, fd: Option<RawFd>) -> nix::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(|_| Errno::EINVAL)?;
        let iov = [IoSlice::new(&bytes)];
        let fds = fd.map(|f| [f]);
        let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None) {
                Err(Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    }

    fn recv<T: for<'de> Deserialize<'de>>(
        &self,
        flags: MsgFlags,
    ) -> nix::Result<Option<Received<T>>> {
        // A peek says how long the message is, so the buffer is just that
        // (a fixed 64 KiB one cost the runner 16 page faults, on the path
        // the child waits on).
        let size = self.retrying(|| {
            let mut iov = [IoSliceMut::new(&mut [])];
            recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | flags,
            )
            .map(|msg| msg.bytes)
        })?;
        if size == 0 {
            return Ok(None);
        }
        if size > MAX_MESSAGE {
            // Taken off the queue (with any fd it carried, closed), so the
            // next receive does not meet it again.
            let mut cmsg = nix::cmsg_space!([RawFd; 1]);
            let _ = self.retrying(|| {
                let mut iov = [IoSliceMut::new(&mut [])];
                recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_TRUNC | flags,
                )
                .map(|msg| {
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                fds.into_iter()
                                    .for_each(|raw| drop(crate::sys::own_received_fd(raw)));
                            }
                        }
                    }
                })
            });
            return Err(Errno::EMSGSIZE);
        }
        let mut buf = vec![0u8; size];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = self.retrying(|| {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | flags,
            )?;
            let mut fd = None;
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        fd = Some(crate::sys::own_received_fd(raw));
                    }
                }
            }
            Ok((msg.bytes, fd))
        })?;
        let message = decode(&buf[..len])?;
        Ok(Some(Received { message, fd }))
    }
}

/// The parent's wait at a sync point: reads the child's messages until
/// the request `wanted` (compared by variant) and returns the fd it
/// carried. A failure the child reports instead is returned as
/// `Error::Container` once the child is reaped; a child gone silently is
/// "the container's process ended before `before`".
pub fn await_request(
    chan: &Channel,
    pid: Pid,
    wanted: &ToParent,
    before: &str,
) -> crate::Result<Option<OwnedFd>> {
    loop {
        match chan.recv_to_parent() {
            Ok(Some(r)) => match r.message {
                ToParent::Failed(f) => {
                    let _ = waitpid(pid, None);
                    return Err(crate::Error::Container(f));
                }
                m if std::mem::discriminant(&m) == std::mem::discriminant(wanted) => {
                    return Ok(r.fd)
                }
                _ => {}
            },
            Ok(None) => return Err(anyhow!("the container's process ended before {before}").into()),
            Err(e) => return Err(anyhow!("reading from the container: {e}").into()),
        }
    }
}

/// Step 3's network exchange, the parent's side: waits for
/// [`ToParent::StartNetwork`], runs `begin` with the fd it carried and
/// answers [`ToChild::NetworkStarted`], then runs `finish` and answers
/// [`ToChild::NetworkUp`]. The child builds its rootfs meanwhile; if it
/// fails there, its own report is the error returned.
pub fn serve_network_request<S, T>(
    chan: &Channel,
    pid: Pid,
    begin: impl FnOnce(Option<OwnedFd>) -> crate::Result<S>,
    finish: impl FnOnce(S) -> crate::Result<T>,
) -> crate::Result<T> {
    let fd = await_request(chan, pid, &ToParent::StartNetwork, "its network was set up")?;
    let steps = || -> crate::Result<T> {
        let started = begin(fd)?;
        chan.send_to_child(&ToChild::NetworkStarted)
            .map_err(|e| anyhow!("the container's process is gone: {e}"))?;
        let done = finish(started)?;
        chan.send_to_child(&ToChild::NetworkUp)
            .map_err(|e| anyhow!("the container's process is gone: {e}"))?;
        Ok(done)
    };
    steps().map_err(|e| match reported_failure(chan, pid) {
        Some(f) => crate::Error::Container(f),
        None => e,
    })
}

/// A failure the child has already reported, if any (reads without
/// waiting; reaps the child when there is one).
pub fn reported_failure(chan: &Channel, pid: Pid) -> Option<ChildFailure> {
    match chan.try_recv_to_parent() {
        Ok(Some(Received {
            message: ToParent::Failed(f),
            ..
        })) => {
            let _ = waitpid(pid, None);
            Some(f)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_sent_before_closing_with_our_message_unread_is_still_read() {
        let (parent, child) = Channel::pair().unwrap();
        parent.send_to_child(&ToChild::MapsWritten).unwrap();
        let failure = ChildFailure::new(Stage::Mount, Errno::ENOSPC, None);
        child
            .send_to_parent(&ToParent::Failed(failure), None)
            .unwrap();
        drop(child);
        match parent.recv_to_parent().unwrap().map(|r| r.message) {
            Some(ToParent::Failed(f)) => assert_eq!(f.stage, Stage::Mount),
            _ => panic!("the child's failure was lost"),
        }
        assert!(parent.recv_to_parent().unwrap().is_none());
    }

    /// Frames no kennel sends: truncated, unknown variants, wrong types,
    /// numbers out of range, bytes that are not UTF-8, nesting deep enough
    /// to exhaust a recursive parser's stack, trailing garbage.
    fn malformed_frames() -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = [
            "{",
            "null",
            "0",
            "[]",
            "{}",
            "\"Unknown\"",
            "\"ready\"",
            "\"Ready\" trailing",
            "\"Ready\"\"Ready\"",
            "{\"Failed\":{}}",
            "{\"Failed\":null}",
            "{\"Failed\":{\"stage\":\"Nope\",\"errno\":1,\"path\":null,\"detail\":null}}",
            "{\"Failed\":{\"stage\":\"Mount\",\"errno\":99999999999,\"path\":null,\"detail\":null}}",
            "{\"Failed\":{\"stage\":\"Mount\",\"errno\":1.5,\"path\":null,\"detail\":null}}",
            "{\"Failed\":{\"stage\":\"Mount\",\"errno\":1,\"path\":7,\"detail\":null}}",
            "{\"HooksRan\":5}",
            "{\"HooksRan\":\"unterminated}",
            "{\"MapsWritten\":{\"MapsWritten\":{}}}",
            "\"\\ud800\"",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        frames.push(b"\"Re\xffady\"".to_vec());
        frames.push(b"\x00\x00\x00\x00".to_vec());
        frames.push(vec![b'['; 100_000]);
        frames.push(
            std::iter::repeat_n(&b"{\"HooksRan\":"[..], 5_000)
                .flatten()
                .copied()
                .collect(),
        );
        frames
    }

    #[test]
    fn malformed_frames_are_refused_without_a_panic() {
        for frame in malformed_frames() {
            let shown = String::from_utf8_lossy(&frame[..frame.len().min(60)]).to_string();
            assert_eq!(
                decode::<ToParent>(&frame).err(),
                Some(Errno::EBADMSG),
                "{shown}"
            );
            assert_eq!(
                decode::<ToChild>(&frame).err(),
                Some(Errno::EBADMSG),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_parsed() {
        let frame = vec![b' '; MAX_MESSAGE + 1];
        assert_eq!(decode::<ToParent>(&frame).err(), Some(Errno::EMSGSIZE));
    }

    /// Sends `bytes` as one raw frame, as a peer that is not kennel would.
    fn send_raw(end: &Channel, bytes: &[u8]) {
        let iov = [IoSlice::new(bytes)];
        sendmsg::<()>(end.raw_fd(), &iov, &[], MsgFlags::empty(), None).unwrap();
    }

    #[test]
    fn the_channel_refuses_bad_frames_and_reads_the_next_good_one() {
        let (parent, child) = Channel::pair().unwrap();
        for frame in malformed_frames() {
            send_raw(&child, &frame);
            assert_eq!(parent.recv_to_parent().err(), Some(Errno::EBADMSG));
            send_raw(&parent, &frame);
            assert_eq!(child.recv_to_child().err(), Some(Errno::EBADMSG));
        }
        // Too long: discarded whole, with the fd it carried.
        let big = vec![b' '; MAX_MESSAGE + 1];
        let carried = std::fs::File::open("/dev/null").unwrap();
        let iov = [IoSlice::new(&big)];
        let fds = [carried.as_raw_fd()];
        sendmsg::<()>(
            child.raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert_eq!(parent.recv_to_parent().err(), Some(Errno::EMSGSIZE));
        child.send_to_parent(&ToParent::Ready, None).unwrap();
        match parent.recv_to_parent().unwrap() {
            Some(Received {
                message: ToParent::Ready,
                fd: None,
            }) => {}
            _ => panic!("the good message after the bad ones was lost"),
        }
    }

    #[test]
    fn a_failure_with_any_errno_and_path_still_displays() {
        for errno in [0, -1, 4095, i32::MAX, i32::MIN] {
            let f = ChildFailure {
                stage: Stage::Exec,
                errno,
                path: Some("\u{0}\n\u{202e}".into()),
                detail: None,
            };
            assert!(!f.to_string().is_empty());
            let f = ChildFailure {
                stage: Stage::Mount,
                ..f
            };
            assert!(!f.to_string().is_empty());
        }
    }

    /// Never our child, so the reap after a reported failure is a no-op.
    fn not_our_child() -> Pid {
        Pid::this()
    }

    #[test]
    fn the_network_request_is_answered_after_setup_with_the_fd_it_carried() {
        let (parent, child) = Channel::pair().unwrap();
        let (carried, _other) = Channel::pair().unwrap();
        // Ignored on the way: only StartNetwork starts the setup.
        child.send_to_parent(&ToParent::RunHooks, None).unwrap();
        child
            .send_to_parent(&ToParent::StartNetwork, Some(carried.raw_fd()))
            .unwrap();
        let got = serve_network_request(&parent, not_our_child(), |fd| Ok(fd.is_some()), Ok);
        assert!(got.unwrap(), "the fd sent with StartNetwork reached setup");
        assert!(matches!(
            child.recv_to_child().unwrap(),
            Some(ToChild::NetworkStarted)
        ));
        assert!(matches!(
            child.recv_to_child().unwrap(),
            Some(ToChild::NetworkUp)
        ));
    }

    #[test]
    fn a_network_failing_at_either_step_is_not_answered_past_it() {
        // (begin fails, the error, the answers the child gets)
        for (begin_fails, cause, answered) in [(true, "no bridge", 0), (false, "pasta exited", 1)] {
            let (parent, child) = Channel::pair().unwrap();
            child.send_to_parent(&ToParent::StartNetwork, None).unwrap();
            let got: crate::Result<()> = serve_network_request(
                &parent,
                not_our_child(),
                |_| match begin_fails {
                    true => Err(anyhow!("no bridge").into()),
                    false => Ok(()),
                },
                |()| Err(anyhow!("pasta exited").into()),
            );
            assert!(got.unwrap_err().to_string().contains(cause));
            drop(parent);
            let mut answers = 0;
            while let Some(m) = child.recv_to_child().unwrap() {
                assert!(matches!(m, ToChild::NetworkStarted), "{m:?} was sent");
                answers += 1;
            }
            assert_eq!(answers, answered);
        }
    }

    #[test]
    fn a_child_failing_while_its_network_starts_is_the_error_reported() {
        let (parent, child) = Channel::pair().unwrap();
        child.send_to_parent(&ToParent::StartNetwork, None).unwrap();
        let got: crate::Result<()> = serve_network_request(
            &parent,
            not_our_child(),
            |_| Ok(()),
            |()| {
                // The child fails building its rootfs, and leaves; the
                // network then fails for want of it.
                let failure = ChildFailure::new(Stage::Mount, Errno::ENOENT, Some("/x".into()));
                child
                    .send_to_parent(&ToParent::Failed(failure), None)
                    .unwrap();
                Err(anyhow!("pasta exited").into())
            },
        );
        match got {
            Err(crate::Error::Container(f)) => assert_eq!(f.errno(), Errno::ENOENT),
            other => panic!("expected the child's failure, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_child_failing_or_leaving_before_the_request_is_reported() {
        let (parent, child) = Channel::pair().unwrap();
        let failure = ChildFailure::new(Stage::UserNetwork, Errno::EPERM, None);
        child
            .send_to_parent(&ToParent::Failed(failure), None)
            .unwrap();
        match await_request(&parent, not_our_child(), &ToParent::StartNetwork, "x") {
            Err(crate::Error::Container(f)) => assert_eq!(f.errno(), Errno::EPERM),
            other => panic!("the child's failure was lost: {:?}", other.err()),
        }
        drop(child);
        let gone = await_request(
            &parent,
            not_our_child(),
            &ToParent::RunHooks,
            "its hooks ran",
        );
        assert_eq!(
            gone.unwrap_err().to_string(),
            "the container's process ended before its hooks ran"
        );
    }
}
