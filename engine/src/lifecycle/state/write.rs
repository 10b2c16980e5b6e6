//! A reserved container's record written from what the run knows, and
//! the two files `delete --force` reads when state.json cannot be:
//! `init` (the first process) and `cgroups`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::claim::Reservation;
use super::json::{write_record, Network, Private, State, Status};
use super::store::start_time;
use crate::spec::OCI_VERSION;
use crate::sys;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a record says about a container besides its reservation.
pub struct Recorded<'a> {
    pub pid: Pid,
    pub start_time: u64,
    pub spec: &'a Spec,
    pub cgroup: Option<PathBuf>,
    pub cgroup_v1: Vec<PathBuf>,
    pub status: Status,
    pub bundle: Option<&'a Path>,
    pub kept: bool,
    pub hooks: &'a crate::host::hooks::HookPlans,
    pub landlock: Option<&'a crate::spec::process::Rules>,
    pub init: bool,
    /// The address kennel-net gave a bridged container.
    pub bridge_address: Option<std::net::Ipv4Addr>,
}

/// Writes (or rewrites) the record of a reserved container, atomically.
pub fn record(res: &Reservation, r: &Recorded) -> Result<()> {
    let process = r.spec.process().clone().unwrap_or_default();
    let state = State {
        oci_version: OCI_VERSION.to_string(),
        id: res.name.clone(),
        status: r.status,
        pid: r.pid.as_raw(),
        bundle: r.bundle.map(Path::to_path_buf).unwrap_or_default(),
        annotations: r
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        kennel: Private {
            start_time: r.start_time,
            rootfs: r.spec.root().as_ref().map(|root| root.path().clone()),
            command: process.args().clone().unwrap_or_default(),
            created: now(),
            process,
            cgroup: r.cgroup.clone(),
            cgroup_v1: r.cgroup_v1.clone(),
            kept: r.kept,
            hooks: crate::host::hooks::HookPlans {
                poststart: r.hooks.poststart.clone(),
                poststop: r.hooks.poststop.clone(),
                ..Default::default()
            },
            seccomp: r.spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            landlock: r.landlock.cloned(),
            init: r.init,
            own_pid_namespace: owns_pid_namespace(r.spec),
            network: match crate::net::bridge::plan(r.spec.annotations().as_ref()) {
                Ok(Some(plan)) => Some(Network {
                    mode: format!("bridge={}", plan.bridge),
                    address: r.bridge_address.map(std::net::IpAddr::V4),
                    publish: Vec::new(),
                }),
                _ => crate::net::publish::plan(r.spec.annotations().as_ref())
                    .ok()
                    .flatten()
                    .map(|plan| Network {
                        mode: "pasta".into(),
                        address: crate::net::pasta::container_address(),
                        publish: plan.publish.iter().map(|p| p.to_string()).collect(),
                    }),
            },
        },
    };
    let init = res.dir.join(INIT);
    if !init.exists() {
        std::fs::write(&init, format!("{} {}\n", r.pid, r.start_time))
            .with_context(|| format!("cannot write {}", init.display()))?;
    }
    write_record(&res.dir, &state)
}

/// Whether the spec has a pid namespace made for the container (listed,
/// with no path to join).
fn owns_pid_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none()
            })
        })
}

/// The container's first process as a line of its own (`pid start_time`),
/// written with its first record: `delete --force` finds the process by it
/// even when state.json cannot be read.
const INIT: &str = "init";

/// The container's first process from the `init` file of `dir`, while it
/// lives (same start time), as a pidfd known to refer to it.
pub fn recorded_init(dir: &Path) -> Option<OwnedFd> {
    let text = std::fs::read_to_string(dir.join(INIT)).ok()?;
    let mut f = text.split_whitespace();
    let pid: i32 = f.next()?.parse().ok()?;
    let since: u64 = f.next()?.parse().ok()?;
    let pidfd = sys::pidfd_open(Pid::from_raw(pid)).ok()?;
    (start_time(pid)? == since).then_some(pidfd)
}

/// The container's cgroups, one path a line (its leaf first, then its v1
/// cgroups), written as soon as they are made, before its first process
/// and record: `delete --force` removes them even when a creator killed
/// on the way left no record naming them.
const CGROUPS: &str = "cgroups";

/// Writes the `cgroups` file of a reserved container.
pub fn record_cgroups(res: &Reservation, leaf: &Path, v1: &[PathBuf]) -> Result<()> {
    let mut text = format!("{}\n", leaf.display());
    for d in v1.iter().filter(|d| d.as_path() != leaf) {
        text.push_str(&format!("{}\n", d.display()));
    }
    let path = res.dir.join(CGROUPS);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The cgroups the `cgroups` file of `dir` names: the leaf, then the v1
/// ones. Only paths under /sys/fs/cgroup are taken.
pub fn recorded_cgroups(dir: &Path) -> Option<(PathBuf, Vec<PathBuf>)> {
    let text = std::fs::read_to_string(dir.join(CGROUPS)).ok()?;
    let mut paths = text
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.starts_with("/sys/fs/cgroup") && !p.ends_with(".."));
    let leaf = paths.next()?;
    Some((leaf, paths.collect()))
}
