//! The runner's side of cgroups: from the spec's limits and the
//! `--cgroup-*` flags to a leaf the child is born into.

use std::time::Duration;

use anyhow::Result;
use cgroup_delegate::{PlaceRequest, Placed, Placement};

use crate::config::Config;
use crate::device_rules::{self, Applied};
use crate::device_rules_v1;
use crate::Options;

/// How long systemd may take to start the scope job.
const SYSTEMD_TIMEOUT: Duration = Duration::from_secs(10);

pub fn place(cfg: &Config, opts: &Options<'_>, id: &str) -> Result<Option<Placement>> {
    let req = PlaceRequest {
        manager: opts.cgroup_manager,
        id: id.to_string(),
        parent: opts.cgroup_parent.clone(),
        path: cfg.cgroups_path.clone(),
        limits: cfg.limits.clone(),
        device_rules: device_rules::wanted(&cfg.device_rules),
        timeout: SYSTEMD_TIMEOUT,
    };
    match cgroup_delegate::place(&req)? {
        Placed::Leaf(p) => {
            opts.decided(&format!("cgroup {} ({:?})", p.leaf.display(), p.how));
            if device_rules::wanted(&cfg.device_rules) {
                let applied = if p.leaf_fd.is_none() && !p.v1.is_empty() {
                    // A pure cgroup v1 host: no v2 leaf for a program.
                    device_rules_v1::lines(&cfg.device_rules).and_then(|lines| {
                        cgroup_delegate::v1::write_device_rules(&p.v1, &lines)?;
                        Ok(Applied::Enforced)
                    })
                } else {
                    device_rules::apply(&cfg.device_rules, &p.leaf)
                };
                match applied {
                    Ok(Applied::Enforced) if p.leaf_fd.is_none() => {
                        opts.decided("linux.resources.devices: the cgroup v1 devices controller")
                    }
                    Ok(Applied::Enforced) => opts
                        .decided("linux.resources.devices: an eBPF device program on the cgroup"),
                    Ok(Applied::Skipped(why)) => opts.decided(&why),
                    Err(e) => {
                        p.remove();
                        return Err(e);
                    }
                }
            }
            Ok(Some(p))
        }
        Placed::None(why) => {
            opts.decided(&format!("no cgroup of its own: {why}"));
            if device_rules::wanted(&cfg.device_rules) {
                opts.decided("linux.resources.devices not enforced: no cgroup v2 leaf to hold the device program");
            }
            Ok(None)
        }
    }
}
