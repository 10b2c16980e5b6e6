//! One end of the socketpair: typed messages, each with at most one fd
//! beside it (SCM_RIGHTS), sized by a peek and refused when too long.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use super::messages::{decode, ToChild, ToParent, MAX_MESSAGE};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::failure::{ChildFailure, Stage};
    use crate::protocol::messages::tests::malformed_frames;

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
}
