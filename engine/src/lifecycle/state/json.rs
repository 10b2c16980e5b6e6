//! A container's record as state.json holds it: OCI's shape (`ociVersion`,
//! `id`, `status`, `pid`, `bundle`, `annotations`) plus what kennel keeps
//! for itself under `kennel`, read and written whole.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

/// A container's status, as the runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    /// As recorded; `Store::status` says what it is now.
    pub status: Status,
    pub pid: i32,
    /// The bundle directory (empty for a container built from flags).
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub kennel: Private,
}

/// What kennel keeps for itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Private {
    /// Field 22 of /proc/PID/stat: tells a recycled pid from ours.
    pub start_time: u64,
    pub rootfs: Option<PathBuf>,
    pub command: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// The container's process, for `exec` to inherit env, user and caps.
    pub process: Process,
    /// The container's cgroup leaf, when it has one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Its cgroups in the cgroup v1 hierarchies (a v1 or hybrid host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_v1: Vec<PathBuf>,
    /// The record stays after the container stops, until `delete` (the
    /// OCI lifecycle); otherwise it goes with the runner.
    #[serde(default)]
    pub kept: bool,
    /// poststart and poststop, for `start` and `delete` to run.
    #[serde(default)]
    pub hooks: crate::host::hooks::HookPlans,
    /// linux.seccomp, which `exec` installs in its process too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The container's Landlock rules, for `exec` to confine its command
    /// the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<crate::spec::process::Rules>,
    /// The container's network (pasta, or a bridge), for `ps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// PID 1 is kennel's --init, which takes every signal it forwards
    /// with sigwait: /proc shows no handler for them.
    #[serde(default)]
    pub init: bool,
    /// The container has a pid namespace of its own, made for it: its
    /// processes are that namespace's, and go with its first process.
    /// Otherwise (the host's, or one joined by path) they are told by
    /// their mount namespace, which is always the container's own.
    #[serde(default = "own_pid_namespace_before_it_was_recorded")]
    pub own_pid_namespace: bool,
}

/// Records written before the field were all of containers with a pid
/// namespace made for them.
fn own_pid_namespace_before_it_was_recorded() -> bool {
    true
}

/// A pasta or bridged container's network as `ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub mode: String,
    /// The container's IPv4 address (pasta copies the host's).
    pub address: Option<std::net::IpAddr>,
    /// `[IP:]HOSTPORT:CONTAINERPORT/PROTO` each.
    pub publish: Vec<String>,
}

/// A live container, with a pidfd that is known to refer to it.
pub struct Running {
    pub state: State,
    pub pidfd: OwnedFd,
}

/// Replaces the record in `dir` with `state`, atomically.
pub fn write_record(dir: &Path, state: &State) -> Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("state.json")).context("cannot record the container's state")?;
    Ok(())
}

/// The record in `dir`, whatever the state of its container.
pub fn load(dir: &Path) -> Option<State> {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()
}
