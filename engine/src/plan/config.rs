//! A typed, checked view of the `Spec`, made once in the parent before the
//! clone, so the child works from plain data and every error about the spec
//! itself is reported before any namespace exists.

use std::path::PathBuf;

use crate::net::bridge::BridgePlan;
use crate::net::publish::PastaPlan;
use crate::spec::mounts::MountPlan;
use crate::spec::process::ProcessPlan;
use crate::spec::propagation::{self, Propagation};
use anyhow::{bail, Context, Result};
use kennel_idmap::MapLine;
use nix::sched::CloneFlags;
use oci_spec::runtime::{
    Linux, LinuxIdMapping, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Spec,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub clone_flags: CloneFlags,
    pub uid_map: Vec<MapLine>,
    pub gid_map: Vec<MapLine>,
    /// None: a fresh tmpfs root that the mounts fill (the host sandbox).
    pub root: Option<PathBuf>,
    pub readonly_root: bool,
    /// linux.rootfsPropagation; None: private, kennel's default.
    pub root_propagation: Option<Propagation>,
    pub mounts: Vec<MountPlan>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// linux.devices, checked: made in the new root (see `rootfs::nodes`).
    pub devices: Vec<crate::spec::devices::DevicePlan>,
    pub hostname: Option<String>,
    pub process: ProcessPlan,
    /// From linux.resources; written to the container's cgroup leaf.
    pub limits: cgroup_delegate::Limits,
    /// linux.cgroupsPath, which places the container on cgroup v1.
    pub cgroups_path: Option<PathBuf>,
    /// linux.resources.devices: an eBPF program on the leaf (see
    /// `device_rules`).
    pub device_rules: Vec<crate::security::device_rules::Rule>,
    /// Namespaces joined by path (linux.namespaces[].path): the runner
    /// enters them before the clone, so the child is born in them.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// linux.sysctl, checked to be namespaced and the container's own.
    pub sysctl: Vec<(String, String)>,
    pub hooks: crate::host::hooks::HookPlans,
    /// Landlock as the spec asks for it (annotation `run.kennel.landlock`);
    /// `landlock::decide` settles it into `process.landlock`.
    pub landlock: Option<crate::security::landlock::Wanted>,
    /// User-mode networking (`run.kennel.net=pasta`): started by the
    /// runner once the child is in its network namespace.
    pub pasta: Option<PastaPlan>,
    /// A veth on a bridge (`run.kennel.net=bridge[=NAME]`): made by
    /// kennel-net once the child is in its network namespace.
    pub bridge: Option<BridgePlan>,
    /// What the spec asks for that is applied only in part, as runc
    /// applies it: said once the container is being made.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn new_net(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWNET)
    }
}

/// The namespace types the engine makes, as config.json spells them: what
/// `kennel-oci features` reports.
pub const NAMESPACE_TYPES: &[&str] = &["cgroup", "ipc", "mount", "network", "pid", "user", "uts"];

/// The clone flag for a namespace type, or why there is none.
fn namespace_flag(typ: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match typ {
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => bail!("time namespaces are not supported yet"),
    })
}

fn map_lines(m: &Option<Vec<LinuxIdMapping>>) -> Vec<MapLine> {
    m.iter()
        .flatten()
        .map(|l| MapLine {
            inner: l.container_id(),
            outer: l.host_id(),
            count: l.size(),
        })
        .collect()
}

/// The namespaces the spec asks for: those to make (as clone flags) and
/// those to join by path, a user namespace first (the others joined
/// belong to it).
fn namespaces(linux: &Linux) -> Result<(CloneFlags, Vec<(CloneFlags, PathBuf)>)> {
    let mut clone_flags = CloneFlags::empty();
    let mut join = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let flag = namespace_flag(ns.typ())?;
        match ns.path() {
            None => clone_flags |= flag,
            Some(path) if flag == CloneFlags::CLONE_NEWNS => bail!(
                "joining an existing mount namespace by path ({}) is not supported: kennel builds the container's root in a mount namespace of its own, and would re-root the one named; drop the path to give the container a new one",
                path.display()
            ),
            Some(_) if flag == CloneFlags::CLONE_NEWCGROUP => bail!(
                "joining an existing cgroup namespace by path is not supported: drop the path to give the container a new one"
            ),
            Some(path) => join.push((flag, path.clone())),
        }
    }
    // A user namespace first: the others joined belong to it.
    join.sort_by_key(|(f, _)| *f != CloneFlags::CLONE_NEWUSER);
    Ok((clone_flags, join))
}

/// pasta or a bridge, from the spec's annotations; either needs a network
/// namespace of the container's own.
fn network(
    spec: &Spec,
    clone_flags: CloneFlags,
) -> Result<(Option<PastaPlan>, Option<BridgePlan>)> {
    let pasta = crate::net::publish::plan(spec.annotations().as_ref())?;
    let bridge = crate::net::bridge::plan(spec.annotations().as_ref())?;
    if (pasta.is_some() || bridge.is_some()) && !clone_flags.contains(CloneFlags::CLONE_NEWNET) {
        bail!(
            "{}={} needs a network namespace of the container's own: add {{\"type\": \"network\"}} to linux.namespaces",
            crate::net::annotation::NET_ANNOTATION,
            if pasta.is_some() { "pasta" } else { "bridge" }
        );
    }
    Ok((pasta, bridge))
}

impl Config {
    pub fn from_spec(spec: &Spec) -> Result<Config> {
        let unsupported = crate::spec::spec_fields::unsupported(spec);
        if !unsupported.is_empty() {
            return Err(crate::spec::spec_fields::refusal(&unsupported));
        }
        let process = spec
            .process()
            .as_ref()
            .context("the spec has no process to run")?;
        let linux = spec
            .linux()
            .as_ref()
            .context("the spec has no linux section")?;
        let (clone_flags, join) = namespaces(linux)?;
        if !clone_flags.contains(CloneFlags::CLONE_NEWNS) {
            bail!("the spec must ask for a new mount namespace");
        }
        let sysctl = sysctls(linux, &clone_flags, &join)?;
        let mounts = crate::spec::mounts::plan(spec, clone_flags)?;
        let process = ProcessPlan::from_process(process)?
            .with_seccomp(spec.annotations().as_ref(), linux.seccomp().as_ref())?;
        let landlock = crate::security::landlock::plan(
            spec.annotations()
                .as_ref()
                .and_then(|a| a.get(crate::security::landlock::ANNOTATION))
                .map(String::as_str),
            &mounts,
            &process,
        )?;
        let (pasta, bridge) = network(spec, clone_flags)?;
        Ok(Config {
            clone_flags,
            uid_map: map_lines(linux.uid_mappings()),
            gid_map: map_lines(linux.gid_mappings()),
            root: spec.root().as_ref().map(|r| r.path().clone()),
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            root_propagation: propagation::of_root(linux.rootfs_propagation().as_deref())?,
            mounts,
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
            devices: crate::spec::devices::plan(linux.devices().as_ref())?,
            hostname: spec.hostname().clone(),
            process,
            limits: limits(linux.resources().as_ref())?,
            cgroups_path: linux.cgroups_path().clone(),
            device_rules: crate::security::device_rules::plan(
                linux
                    .resources()
                    .as_ref()
                    .and_then(|r| r.devices().as_ref()),
            )?,
            join,
            sysctl,
            hooks: crate::host::hooks::HookPlans::from_spec(spec.hooks().as_ref())?,
            landlock,
            pasta,
            bridge,
            warnings: linux
                .seccomp()
                .as_ref()
                .map(crate::security::seccomp::unknown_name_warnings)
                .unwrap_or_default(),
        })
    }
}

/// linux.sysctl, each checked to belong to a namespace of the container's
/// own, as runc checks them: a sysctl of the host, or of a namespace the
/// container shares with the host, would change the host.
fn sysctls(
    linux: &oci_spec::runtime::Linux,
    own: &CloneFlags,
    joined: &[(CloneFlags, PathBuf)],
) -> Result<Vec<(String, String)>> {
    let has = |flag: CloneFlags| own.contains(flag) || joined.iter().any(|(f, _)| *f == flag);
    let mut out = Vec::new();
    for (key, value) in linux.sysctl().iter().flatten() {
        let ns = if key.starts_with("net.") {
            Some((CloneFlags::CLONE_NEWNET, "network"))
        } else if key.starts_with("fs.mqueue.")
            || key.starts_with("kernel.msg")
            || key.starts_with("kernel.shm")
            || key == "kernel.sem"
        {
            Some((CloneFlags::CLONE_NEWIPC, "ipc"))
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            Some((CloneFlags::CLONE_NEWUTS, "uts"))
        } else {
            None
        };
        match ns {
            None => bail!("linux.sysctl {key:?} is not namespaced: setting it would change the host; remove it from config.json"),
            Some((flag, name)) if !has(flag) => bail!(
                "linux.sysctl {key:?} belongs to the {name} namespace, which the container shares with the host; give the container its own {name} namespace or remove the sysctl"
            ),
            Some(_) => {}
        }
        if key.contains("..") || key.contains('/') {
            bail!("linux.sysctl {key:?} is not a sysctl name");
        }
        out.push((key.clone(), value.clone()));
    }
    out.sort();
    Ok(out)
}

/// linux.resources as cgroup v2 limits. OCI's memory.swap is memory plus
/// swap (Docker's meaning); -1 means unlimited swap.
pub fn limits(r: Option<&LinuxResources>) -> Result<cgroup_delegate::Limits> {
    use cgroup_delegate::{Limits, Swap};
    let Some(r) = r else {
        return Ok(Limits::default());
    };
    let positive = |what: &str, v: i64| -> Result<u64> {
        u64::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .with_context(|| format!("linux.resources {what} {v} must be positive"))
    };
    let mut l = Limits::default();
    if let Some(m) = r.memory() {
        l.memory = m.limit().map(|v| positive("memory.limit", v)).transpose()?;
        l.memory_reservation = m
            .reservation()
            .map(|v| positive("memory.reservation", v))
            .transpose()?;
        l.memory_swap = match m.swap() {
            None => None,
            Some(-1) => Some(Swap::Unlimited),
            Some(v) => Some(Swap::Total(positive("memory.swap", v)?)),
        };
    }
    if let Some(p) = r.pids() {
        l.pids = Some(positive("pids.limit", p.limit())?);
    }
    if let Some(c) = r.cpu() {
        // 1024 is cgroup v1's default weight, which containerd sends for
        // every container: it asks for nothing (see `spec_fields`).
        l.cpu_shares = c.shares().filter(|s| *s != 1024);
        if let Some(q) = c.quota() {
            l.cpu_max = Some((positive("cpu.quota", q)?, c.period().unwrap_or(100_000)));
        }
    }
    for (key, value) in r.unified().iter().flatten() {
        let parsed = value
            .trim()
            .parse::<u64>()
            .with_context(|| format!("linux.resources.unified {key}={value:?} is not a number"))?;
        match key.as_str() {
            "cpu.weight" => l.cpu_weight = Some(parsed),
            "io.weight" => l.io_weight = Some(parsed),
            other => bail!("linux.resources.unified {other} is not supported yet (cpu.weight and io.weight are)"),
        }
    }
    Ok(l)
}

// Here rather than beside `ProcessPlan`: it asks `security` to compile,
// and spec/ is the floor below security/.
impl ProcessPlan {
    /// The container's seccomp filter for this process.
    pub fn with_seccomp(
        mut self,
        annotations: Option<&std::collections::HashMap<String, String>>,
        profile: Option<&LinuxSeccomp>,
    ) -> Result<ProcessPlan> {
        self.seccomp = crate::security::seccomp::resolve(annotations, profile, &self.bounding)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::MsFlags;

    #[test]
    fn the_reported_namespace_types_are_the_ones_made() {
        for name in [
            "cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time",
        ] {
            let typ: LinuxNamespaceType = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(
                namespace_flag(typ).is_ok(),
                NAMESPACE_TYPES.contains(&name),
                "{name}"
            );
        }
    }

    fn spec_with_mount(mount: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [mount],
            "linux": {"namespaces": [{"type": "user"}, {"type": "mount"}, {"type": "pid"}]},
        }))
        .unwrap()
    }

    #[test]
    fn tmpcopyup_is_planned_for_a_tmpfs_and_refused_elsewhere() {
        let cfg = Config::from_spec(&spec_with_mount(serde_json::json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"],
        })))
        .unwrap();
        assert!(cfg.mounts[0].copy_up && cfg.mounts[0].data.is_empty());
        for (typ, extra) in [("bind", "rbind"), ("tmpfs", "bind"), ("proc", "nosuid")] {
            let err = Config::from_spec(&spec_with_mount(serde_json::json!({
                "destination": "/data", "type": typ, "source": "/srv",
                "options": [extra, "tmpcopyup"],
            })))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("/data") && err.contains("tmpcopyup") && err.contains("only a tmpfs"),
                "{err}"
            );
        }
    }

    #[test]
    fn propagation_is_planned_apart_from_the_mount_flags() {
        let mut spec = spec_with_mount(serde_json::json!({
            "destination": "/run/host", "type": "bind", "source": "/",
            "options": ["rbind", "rslave"],
        }));
        let cfg = Config::from_spec(&spec).unwrap();
        let m = &cfg.mounts[0];
        assert_eq!(m.propagation.map(Propagation::name), Some("rslave"));
        assert_eq!(m.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(m.data, "");
        assert_eq!(cfg.root_propagation, None);
        let mut linux = spec.linux().clone().unwrap();
        linux.set_rootfs_propagation(Some("rshared".into()));
        spec.set_linux(Some(linux.clone()));
        let cfg = Config::from_spec(&spec).unwrap();
        assert_eq!(cfg.root_propagation.map(Propagation::name), Some("rshared"));
        linux.set_rootfs_propagation(Some("master".into()));
        spec.set_linux(Some(linux));
        let err = Config::from_spec(&spec).unwrap_err().to_string();
        assert!(
            err.contains("rootfsPropagation") && err.contains("\"master\""),
            "{err}"
        );
    }
}
