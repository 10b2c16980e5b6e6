//! The runner's side of cgroups: from the spec's limits and the
//! `--cgroup-*` flags to a leaf the child is born into.

use std::time::Duration;

use anyhow::Result;
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
