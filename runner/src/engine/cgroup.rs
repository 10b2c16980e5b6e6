//! The runner's side of cgroups: from the spec's limits and the
//! `--cgroup-*` flags to a leaf the child is born into.

use std::time::Duration;

use anyhow::{bail, Result};
use cgroup_delegate::{Manager, PlaceRequest, Placed, Placement};

use super::config::Config;
use crate::cli::CgroupManager;
use crate::spec_build::RunOptions;

/// How long systemd may take to start the scope job.
const SYSTEMD_TIMEOUT: Duration = Duration::from_secs(10);

pub fn place(cfg: &Config, opts: &RunOptions, id: &str) -> Result<Option<Placement>> {
    let manager = match opts.cgroup_manager {
        CgroupManager::Auto => Manager::Auto,
        CgroupManager::Systemd => Manager::Systemd,
        CgroupManager::Cgroupfs => Manager::Cgroupfs,
        CgroupManager::Disabled => Manager::Disabled,
    };
    let req = PlaceRequest {
        manager,
        id: id.to_string(),
        parent: opts.cgroup_parent.clone(),
        limits: cfg.limits.clone(),
        timeout: SYSTEMD_TIMEOUT,
    };
    match cgroup_delegate::place(&req)? {
        Placed::Leaf(p) => {
            if opts.verbose {
                eprintln!("kennel: cgroup {} ({:?})", p.leaf.display(), p.how);
            }
            Ok(Some(p))
        }
        Placed::None(why) => {
            if opts.verbose {
                eprintln!("kennel: no cgroup of its own: {why}");
            }
            Ok(None)
        }
    }
}

/// clone3 copies only the calling thread: a second thread (say, one a
/// library left behind) could hold a lock the child then waits on forever.
/// Checks that kennel is single-threaded (a clone copies only the calling
/// thread), and returns the signals it has ignored (SigIgn): the caller's,
/// which the container must not inherit, and SIGPIPE. One read of
/// /proc/self/status answers both.
pub fn ensure_single_threaded() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let threads: usize = field("Threads:").and_then(|t| t.parse().ok()).unwrap_or(1);
    if threads != 1 {
        bail!("internal error: kennel has {threads} threads before creating the container; please report this");
    }
    // Unreadable: every signal is reset, which is right, only slower.
    Ok(field("SigIgn:")
        .and_then(|m| u64::from_str_radix(m, 16).ok())
        .unwrap_or(u64::MAX))
}
