//! `kennel run` flags -> an OCI runtime `Spec`. The engine only ever runs a
//! `Spec`; `--bundle` reads one from config.json instead of building it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

mod flag_values;
mod mounts;

use crate::cli::{CgroupManager, NetMode, RunArgs, UsernsMode};
use crate::idmap::IdPlan;
use flag_values::{capability_set, parse_ulimit, parse_volume};
use kennel_engine::host::ids::Caller;
use kennel_engine::lifecycle::exec::apply_env_entry;
use kennel_engine::net::annotation::NET_ANNOTATION;
use kennel_engine::net::publish::{Publish, PUBLISH_ANNOTATION};
use kennel_engine::{host::passwd, DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS};
use mounts::{bind, mount, place_sys_mounts, system_mounts, SANDBOX_HOST_DIRS};

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
    let sandbox = args.rootfs.is_none();
    let rootfs = match &args.rootfs {
        Some(dir) => {
            let abs = std::fs::canonicalize(dir)
                .with_context(|| format!("rootfs {} does not exist", dir.display()))?;
            if !abs.is_dir() {
                bail!("rootfs {} is not a directory", abs.display());
            }
            Some(abs)
        }
        None => None,
    };
    // Where /etc/passwd comes from for names and HOME.
    let etc_root = rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));

    // The user inside.
    let (uid, gid, home) = match &args.process.user {
        Some(u) => {
            let who = passwd::resolve_user(&etc_root, u)?;
            (who.uid, who.gid, who.home)
        }
        // keep-id: the caller's own uid is mapped onto itself; run as it.
        None if host.caller.uid != 0
            && ids
                .uid_map
                .iter()
                .any(|l| l.inner == host.caller.uid && l.outer == host.caller.uid) =>
        {
            (host.caller.uid, host.caller.gid, Some(host.home.clone()))
        }
        None => (0, 0, passwd::home_of(&etc_root, 0)?),
    };
    if !maps_contain(&ids.uid_map, uid) || !maps_contain(&ids.gid_map, gid) {
        bail!(
            "user {uid}:{gid} is not mapped in the container (maps: {}); use --userns=auto or --userns=keep-id with subordinate ids, or pick a mapped user",
            ids.reason
        );
    }
    let home = home.unwrap_or_else(|| PathBuf::from(if uid == 0 { "/root" } else { "/" }));

    let hostname = args
        .hostname
        .clone()
        .or_else(|| args.name.clone())
        .unwrap_or_else(|| "kennel".to_string());

    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOME={}", home.display()),
        format!(
            "TERM={}",
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
        ),
        format!("HOSTNAME={hostname}"),
        "container=kennel".to_string(),
    ];
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--env-file {} cannot be read", file.display()))?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                apply_env_entry(line, &mut env);
            }
        }
    }
    for e in &args.process.env {
        if e.is_empty() || e.starts_with('=') {
            bail!("--env {e:?} is malformed: expected KEY=VALUE or KEY");
        }
        apply_env_entry(e, &mut env);
    }

    let cwd = match &args.process.workdir {
        Some(w) if w.starts_with('/') => w.clone(),
        Some(w) => bail!("--workdir {w:?} must be an absolute path"),
        None if sandbox && !args.no_home => match &host.cwd {
            Some(c) if c.starts_with(&host.home) => c.display().to_string(),
            _ => host.home.display().to_string(),
        },
        None => "/".to_string(),
    };

    let caps = capability_set(&args.cap_add, &args.cap_drop)?;
    let seccomp = crate::security_opt::seccomp(&args.security_opt, &caps)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let rlimits = args
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;

    let process = ProcessBuilder::default()
        .terminal(args.process.tty)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .args(args.command.clone())
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(!args.allow_new_privs)
        .build()?;

    // Mounts, in the order they are made.
    let mut mounts = Vec::new();
    if sandbox {
        for dir in SANDBOX_HOST_DIRS {
            if Path::new(dir).exists() {
                mounts.push(bind(Path::new(dir), dir, true)?);
            }
        }
    }
    let (net, _) = choose_net(
        args,
        host.caller.uid,
        kennel_engine::net::pasta::find().is_some(),
    )?;
    let (first, sys) = system_mounts(&net, maps_contain(&ids.gid_map, 5))?;
    mounts.extend(first);
    let mut sys_mounts = vec![sys];
    if sandbox && !args.no_home {
        let home = std::fs::canonicalize(&host.home).with_context(|| {
            format!(
                "your home {} does not exist (use --no-home)",
                host.home.display()
            )
        })?;
        mounts.push(bind(&home, &home.to_string_lossy(), false)?);
    }
    for v in &args.volumes {
        let (src, dst, ro) = parse_volume(v, host.cwd.as_deref())?;
        mounts.push(bind(&src, &dst, ro)?);
    }
    for t in &args.tmpfs {
        if !t.starts_with('/') {
            bail!("--tmpfs {t:?} must be an absolute path");
        }
        mounts.push(mount(
            t,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777"],
        )?);
    }

    if args.cgroup.cgroup_manager != CgroupManager::Disabled && cgroup_delegate::cgroup2_mounted() {
        // The container's own cgroup namespace, rooted at its leaf. (On a
        // v1 or hybrid host there is no unified tree worth showing.)
        let mode = if args.cgroup.cgroup_rw { "rw" } else { "ro" };
        sys_mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup2",
            "cgroup2",
            &["nosuid", "noexec", "nodev", mode],
        )?);
    }
    place_sys_mounts(&mut mounts, sys_mounts);

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
        if typ == LinuxNamespaceType::Network && net == NetMode::Host {
            continue;
        }
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    let mut linux = LinuxBuilder::default();
    if let Some(r) = crate::resource_flags::resources(&args.cgroup)? {
        linux = linux.resources(r);
    }
    if let Some(profile) = seccomp.profile {
        linux = linux.seccomp(profile);
    }
    let linux = linux
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
        .build()?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(hostname))
        .set_process(Some(process))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux))
        .set_annotations(Some(
            [(
                kennel_engine::SECCOMP_ANNOTATION.to_string(),
                seccomp.annotation,
            )]
            .into(),
        ))
        .set_root(None);
    if let NetMode::Bridge(bridge) = &net {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(NET_ANNOTATION.to_string(), format!("bridge={bridge}"));
        spec.set_annotations(Some(annotations));
    }
    if net == NetMode::Pasta {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(NET_ANNOTATION.to_string(), "pasta".to_string());
        if !args.publish.is_empty() {
            annotations.insert(PUBLISH_ANNOTATION.to_string(), args.publish.join(","));
        }
        spec.set_annotations(Some(annotations));
    }
    if let Some(dir) = rootfs {
        // /proc inside a rootfs must be a real directory: a symlink would
        // send the fresh procfs somewhere the image chose.
        let proc_dir = dir.join("proc");
        if proc_dir.is_symlink() {
            bail!(
                "{} is a symlink; refusing to mount /proc through it",
                proc_dir.display()
            );
        }
        spec.set_root(Some(
            RootBuilder::default()
                .path(dir)
                .readonly(args.read_only)
                .build()?,
        ));
    } else if args.read_only {
        bail!("--read-only needs --rootfs (the host sandbox's system directories are already read-only)");
    }
    Ok(spec)
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
