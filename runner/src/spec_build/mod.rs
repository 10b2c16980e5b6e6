//! `kennel run` flags -> an OCI runtime `Spec`. The engine only ever runs a
//! `Spec`; `--bundle` reads one from config.json instead of building it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Linux, LinuxBuilder, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxSeccomp, Root, RootBuilder, Spec,
};

mod flag_values;
mod mounts;
mod process;

use crate::cli::{NetMode, RunArgs, UsernsMode};
use crate::idmap::IdPlan;
use flag_values::capability_set;
use kennel_engine::host::ids::Caller;
use kennel_engine::net::annotation::NET_ANNOTATION;
use kennel_engine::net::publish::{Publish, PUBLISH_ANNOTATION};
use kennel_engine::{host::passwd, MASKED_PATHS, READONLY_PATHS};
use mounts::bind;

/// Gives the container the notify socket (`--sdnotify=container`).
pub fn add_notify_socket(spec: &mut Spec, host_socket: &Path) -> Result<()> {
    let dst = kennel_engine::lifecycle::sdnotify::CONTAINER_SOCKET;
    if let Some(mounts) = spec.mounts_mut() {
        mounts.push(bind(host_socket, dst, false)?);
    }
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={dst}"));
        process.set_env(Some(env));
    }
    Ok(())
}

/// What the builder reads from the host.
pub struct Host {
    pub caller: Caller,
    pub home: PathBuf,
    pub cwd: Option<PathBuf>,
}

impl Host {
    pub fn current() -> Result<Host> {
        let caller = Caller::current();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| passwd::host_user(caller.uid).map(|u| u.1))
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(Host {
            caller,
            home,
            cwd: std::env::current_dir().ok(),
        })
    }
}

fn id_mappings(lines: &[kennel_idmap::MapLine]) -> Result<Vec<LinuxIdMapping>> {
    lines
        .iter()
        .map(|l| {
            Ok(LinuxIdMappingBuilder::default()
                .container_id(l.inner)
                .host_id(l.outer)
                .size(l.count)
                .build()?)
        })
        .collect()
}

pub fn maps_contain(lines: &[kennel_idmap::MapLine], inner: u32) -> bool {
    lines
        .iter()
        .any(|l| inner >= l.inner && (inner as u64) < l.inner as u64 + l.count as u64)
}

/// Builds the spec for `kennel run` flags.
pub fn build(args: &RunArgs, host: &Host, ids: &IdPlan) -> Result<Spec> {
    if args.command.is_empty() {
        bail!("no command given: usage is kennel run [OPTIONS] -- CMD [ARGS...]");
    }
    let rootfs = rootfs_dir(args)?;
    // Where /etc/passwd comes from for names and HOME.
    let etc_root = rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
    let hostname = args
        .hostname
        .clone()
        .or_else(|| args.name.clone())
        .unwrap_or_else(|| "kennel".to_string());

    let caps = capability_set(&args.cap_add, &args.cap_drop)?;
    let seccomp = crate::security_opt::seccomp(&args.security_opt, &caps)?;
    let process = process::process(args, host, ids, &etc_root, &hostname, caps)?;
    let (net, _) = choose_net(
        args,
        host.caller.uid,
        kennel_engine::net::pasta::find().is_some(),
    )?;
    let mounts = mounts::mounts(args, host, ids, &net)?;
    let linux = linux(args, ids, &net, seccomp.profile)?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(hostname))
        .set_process(Some(process))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux))
        .set_annotations(Some(annotations(args, &net, seccomp.annotation)))
        .set_root(root(args, rootfs)?);
    Ok(spec)
}

/// `--rootfs`, resolved; None for the host sandbox.
fn rootfs_dir(args: &RunArgs) -> Result<Option<PathBuf>> {
    let Some(dir) = &args.rootfs else {
        return Ok(None);
    };
    let abs = std::fs::canonicalize(dir)
        .with_context(|| format!("rootfs {} does not exist", dir.display()))?;
    if !abs.is_dir() {
        bail!("rootfs {} is not a directory", abs.display());
    }
    Ok(Some(abs))
}

/// The spec's root: `rootfs`, read-only with `--read-only`.
fn root(args: &RunArgs, rootfs: Option<PathBuf>) -> Result<Option<Root>> {
    let Some(dir) = rootfs else {
        if args.read_only {
            bail!("--read-only needs --rootfs (the host sandbox's system directories are already read-only)");
        }
        return Ok(None);
    };
    // /proc inside a rootfs must be a real directory: a symlink would
    // send the fresh procfs somewhere the image chose.
    let proc_dir = dir.join("proc");
    if proc_dir.is_symlink() {
        bail!(
            "{} is a symlink; refusing to mount /proc through it",
            proc_dir.display()
        );
    }
    Ok(Some(
        RootBuilder::default()
            .path(dir)
            .readonly(args.read_only)
            .build()?,
    ))
}

/// The namespaces (all but the network one on `--net host`), the id
/// maps, the cgroup limits, the seccomp profile and the masked paths.
fn linux(
    args: &RunArgs,
    ids: &IdPlan,
    net: &NetMode,
    seccomp: Option<LinuxSeccomp>,
) -> Result<Linux> {
    let mut namespaces: Vec<LinuxNamespace> = Vec::new();
    for typ in [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Network,
    ] {
        if typ == LinuxNamespaceType::Network && *net == NetMode::Host {
            continue;
        }
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    let mut linux = LinuxBuilder::default();
    if let Some(r) = crate::resource_flags::resources(&args.cgroup)? {
        linux = linux.resources(r);
    }
    if let Some(profile) = seccomp {
        linux = linux.seccomp(profile);
    }
    Ok(linux
        .uid_mappings(id_mappings(&ids.uid_map)?)
        .gid_mappings(id_mappings(&ids.gid_map)?)
        .namespaces(namespaces)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()?)
}

/// The annotations that carry what the spec has no field for: the
/// seccomp choice, and the network (bridge or pasta, with `-p`).
fn annotations(args: &RunArgs, net: &NetMode, seccomp: String) -> HashMap<String, String> {
    let mut annotations = HashMap::from([(kennel_engine::SECCOMP_ANNOTATION.to_string(), seccomp)]);
    match net {
        NetMode::Bridge(bridge) => {
            annotations.insert(NET_ANNOTATION.to_string(), format!("bridge={bridge}"));
        }
        NetMode::Pasta => {
            annotations.insert(NET_ANNOTATION.to_string(), "pasta".to_string());
            if !args.publish.is_empty() {
                annotations.insert(PUBLISH_ANNOTATION.to_string(), args.publish.join(","));
            }
        }
        NetMode::Host | NetMode::Private => {}
    }
    annotations
}

/// Sets the annotation that asks the engine for Landlock: `--landlock`
/// asks for it (an error where the kernel lacks it), `--landlock=false`
/// turns it off; by default the host sandbox, which shares the host's
/// files, has it where the kernel does, and a bundle keeps its own.
pub fn set_landlock(spec: &mut Spec, args: &RunArgs) -> Result<()> {
    use kennel_engine::LANDLOCK_ANNOTATION;
    let sandbox = args.rootfs.is_none() && args.bundle.is_none();
    let value = match args.landlock {
        Some(true) if args.allow_new_privs => bail!(
            "--landlock needs no_new_privs, which --allow-new-privs turns off: the kernel lets a process confine itself with Landlock only under no_new_privs; drop one of them"
        ),
        Some(true) => "true",
        Some(false) => "false",
        None if sandbox => "auto",
        None => return Ok(()),
    };
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(LANDLOCK_ANNOTATION.to_string(), value.to_string());
    spec.set_annotations(Some(annotations));
    Ok(())
}

/// The network `args` ask for, and why: `--net`, or by default pasta for
/// a rootless container with a root filesystem when pasta is installed
/// (as podman 5 does), else private. `-p` needs pasta.
pub fn choose_net(args: &RunArgs, uid: u32, pasta_found: bool) -> Result<(NetMode, String)> {
    for p in &args.publish {
        p.parse::<Publish>()?;
    }
    let (net, why) = match &args.net {
        Some(net) => (net.clone(), "as --net asks".to_string()),
        None if args.rootfs.is_none() => (
            NetMode::Private,
            "the host sandbox's default (loopback only)".into(),
        ),
        None if uid == 0 => (
            NetMode::Private,
            "running as root: pasta is the rootless default only".into(),
        ),
        None if pasta_found => (
            NetMode::Pasta,
            "the default for a rootless --rootfs, and pasta is installed".into(),
        ),
        None if !args.publish.is_empty() => bail!(
            "-p needs pasta, which is not installed: {}",
            kennel_engine::net::pasta::INSTALL_HINT
        ),
        None => (
            NetMode::Private,
            "pasta is not installed (apt install passt), so loopback only".into(),
        ),
    };
    if net == NetMode::Pasta && !pasta_found {
        bail!(
            "--net pasta: pasta is not installed; {}",
            kennel_engine::net::pasta::INSTALL_HINT
        );
    }
    if net != NetMode::Pasta && !args.publish.is_empty() {
        bail!("-p publishes through pasta: use --net pasta (this container's network is not)");
    }
    Ok((net, why))
}

/// The default userns mode: keep-id for the host sandbox, auto otherwise.
pub fn default_userns(args: &RunArgs) -> UsernsMode {
    args.userns
        .unwrap_or(if args.rootfs.is_none() && args.bundle.is_none() {
            UsernsMode::KeepId
        } else {
            UsernsMode::Auto
        })
}

/// Reads an OCI bundle's config.json, resolving root.path against the
/// bundle. Without maps of its own it gets `ids`' (rootless needs some);
/// with them, the second value describes them: they are what runs.
pub fn load_bundle(dir: &Path, ids: &IdPlan) -> Result<(Spec, Option<String>)> {
    let loaded = kennel_engine::spec::bundle::load(dir)?;
    for warning in &loaded.warnings {
        eprintln!("kennel: {warning}");
    }
    let mut spec = loaded.spec;
    let mut own = None;
    if let Some(linux) = spec.linux_mut() {
        match linux.uid_mappings().as_ref().filter(|m| !m.is_empty()) {
            None => {
                linux.set_uid_mappings(Some(id_mappings(&ids.uid_map)?));
                linux.set_gid_mappings(Some(id_mappings(&ids.gid_map)?));
            }
            Some(uids) => {
                let gids = linux.gid_mappings().clone().unwrap_or_default();
                own = Some(format!(
                    "uid_map: {}; gid_map: {}",
                    describe_mappings(uids),
                    describe_mappings(&gids)
                ));
            }
        }
    }
    Ok((spec, own))
}

fn describe_mappings(maps: &[LinuxIdMapping]) -> String {
    match maps {
        [] => "none".into(),
        _ => maps
            .iter()
            .map(|m| format!("{} {} {}", m.container_id(), m.host_id(), m.size()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kennel_engine::lifecycle::exec::apply_env_entry;

    /// oci-spec checks execCPUAffinity with the regex API, which regex-lite
    /// serves here (shims/regex): a bundle using it still loads, and a bad
    /// list is still refused (an Arabic-Indic digit too: ASCII only).
    #[test]
    fn bundle_cpu_affinity_is_checked() {
        let spec = |list: &str| {
            let json = format!(
                r#"{{"ociVersion": "1.0.2", "process": {{"cwd": "/", "args": ["true"],
                    "user": {{"uid": 0, "gid": 0}}, "execCPUAffinity": {{"initial": "{list}"}}}}}}"#
            );
            serde_json::from_str::<Spec>(&json)
        };
        for good in ["0", "0-3,7", "1,2,4-6"] {
            assert!(spec(good).is_ok(), "{good}: {:?}", spec(good).err());
        }
        for bad in ["", "a", "0-", "1,,2", "0-3;7", "\u{0663}"] {
            assert!(spec(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn env_overrides_and_copies() {
        let mut env = vec!["PATH=/bin".to_string(), "HOME=/root".to_string()];
        apply_env_entry("HOME=/home/x", &mut env);
        apply_env_entry("A=b=c", &mut env);
        assert_eq!(env, vec!["PATH=/bin", "HOME=/home/x", "A=b=c"]);
    }

    #[test]
    fn map_membership() {
        let m = [kennel_idmap::MapLine {
            inner: 0,
            outer: 1000,
            count: 1,
        }];
        assert!(maps_contain(&m, 0));
        assert!(!maps_contain(&m, 1));
    }
}
