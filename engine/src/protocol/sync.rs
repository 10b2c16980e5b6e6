//! The parent's waits at the sync points: for a request of the child's,
//! and for the network exchange of step 3, each turning a failure the
//! child reports instead into the error returned.

use std::os::fd::OwnedFd;

use anyhow::anyhow;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::channel::{Channel, Received};
use super::failure::ChildFailure;
use super::messages::{ToChild, ToParent};

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
    use crate::protocol::failure::Stage;
    use nix::errno::Errno;

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
