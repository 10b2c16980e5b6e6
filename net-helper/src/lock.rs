//! The lock every request that reads or changes records holds.

use std::time::{Duration, Instant};

use kennel_net::LOCK_FILE;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::failure::{sys, Failure};

/// How long a request waits for another's lock.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(5);

/// procfs's magic number (linux/magic.h).
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Takes the lock every request that reads or changes records holds (see
/// `LOCK_FILE`: only root and CAP_NET_ADMIN can open it). Called only
/// once the caller has passed the policy.
pub(crate) fn lock() -> Result<Flock<std::fs::File>, Failure> {
    let fd = match nix::fcntl::open(
        LOCK_FILE,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(Failure::NoLock),
        Err(e) => return Err(sys(format!("opening {LOCK_FILE}"))(e)),
    };
    let on_proc = nix::sys::statfs::fstatfs(&fd)
        .map(|s| s.filesystem_type().0 == PROC_SUPER_MAGIC)
        .unwrap_or(false);
    if !on_proc {
        return Err(Failure::NoLock);
    }
    let mut file = std::fs::File::from(fd);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(Failure::LockBusy),
            Err((_, e)) => return Err(sys(format!("flock {LOCK_FILE}"))(e)),
        }
    }
}
