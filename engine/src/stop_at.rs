//! Test-only pauses at the sync points of a container's start, so a test
//! can kill the runner, the child or kennel-idmap at each of them and
//! check that nothing is left behind (tests/test_kill_matrix.py).
//!
//! The front end reads `KENNEL_TEST_STOP_AT` once and passes the point in
//! `Options::stop_at`; the child gets it in its options, never from the
//! environment. Unset, each point costs one comparison.

use nix::sys::signal::{raise, Signal};

/// Where a process stops: the parent's points first, then the child's,
/// in the order of the protocol (see `protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPoint {
    /// Parent: the child exists, its maps are not written (kennel-idmap,
    /// when used, waits for the child's pidfd).
    Cloned,
    /// Parent: the maps are written and the child told.
    MapsWritten,
    /// Parent: the command has been executed; supervision is next.
    Started,
    /// Child: alive, its parent-death signal armed.
    ChildBorn,
    /// Child: its maps are written.
    ChildMapped,
    /// Child: the root filesystem is built and entered.
    RootBuilt,
    /// Child: user, capabilities and working directory set; exec is next.
    BeforeExec,
}

impl StopPoint {
    /// The variable the front ends read.
    pub const ENV: &'static str = "KENNEL_TEST_STOP_AT";

    pub const ALL: [StopPoint; 7] = [
        StopPoint::Cloned,
        StopPoint::MapsWritten,
        StopPoint::Started,
        StopPoint::ChildBorn,
        StopPoint::ChildMapped,
        StopPoint::RootBuilt,
        StopPoint::BeforeExec,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StopPoint::Cloned => "cloned",
            StopPoint::MapsWritten => "maps-written",
            StopPoint::Started => "started",
            StopPoint::ChildBorn => "child-born",
            StopPoint::ChildMapped => "child-mapped",
            StopPoint::RootBuilt => "root-built",
            StopPoint::BeforeExec => "before-exec",
        }
    }

    /// The point `KENNEL_TEST_STOP_AT` names, if set; an unknown name is
    /// an error (a test that meant to stop must not run through).
    pub fn from_env() -> anyhow::Result<Option<StopPoint>> {
        let Some(value) = std::env::var_os(Self::ENV) else {
            return Ok(None);
        };
        let value = value.to_string_lossy();
        match Self::ALL.into_iter().find(|p| p.name() == value) {
            Some(p) => Ok(Some(p)),
            None => anyhow::bail!(
                "{}={value:?} names no stop point; use one of {} (or unset it)",
                Self::ENV,
                Self::ALL.map(StopPoint::name).join(", ")
            ),
        }
    }
}

/// Stops this process if `at` is `point`: it renames itself
/// `kennel-stopped` (what the test waits for) and raises SIGSTOP. The
/// init of a pid namespace cannot stop itself (the kernel drops the
/// signal), so there it waits until it is killed.
pub fn stop_if(at: Option<StopPoint>, point: StopPoint) {
    if at != Some(point) {
        return;
    }
    let _ = nix::sys::prctl::set_name(c"kennel-stopped");
    if nix::unistd::getpid().as_raw() == 1 {
        loop {
            nix::unistd::pause();
        }
    }
    let _ = raise(Signal::SIGSTOP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_named_once() {
        let names: std::collections::HashSet<_> = StopPoint::ALL.map(StopPoint::name).into();
        assert_eq!(names.len(), StopPoint::ALL.len());
    }
}
