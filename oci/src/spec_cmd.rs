//! `kennel-oci spec`: writes a starter config.json, the same one runc
//! writes (its specconv.Example, and ToRootless for `--rootless`), so that
//! instructions written for runc work unchanged.
//!
//! The document is built from local types rather than oci_spec's so that
//! field order and omitted fields match runc's output; a test checks that
//! oci_spec reads it back.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{SpecArgs, OCI_VERSION};

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub linux: Linux,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub devices: Vec<DeviceRule>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub access: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        kind: kind.into(),
        source: source.into(),
        options: strs(options),
    }
}

/// runc's example spec. `cgroup_ns` adds a cgroup namespace, which runc
/// does only on a cgroup v2 host.
pub fn example(cgroup_ns: bool) -> Spec {
    let caps = strs(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut namespaces: Vec<Namespace> = ["pid", "network", "ipc", "uts", "mount"]
        .iter()
        .map(|k| Namespace {
            kind: k.to_string(),
        })
        .collect();
    if cgroup_ns {
        namespaces.push(Namespace {
            kind: "cgroup".into(),
        });
    }
    Spec {
        oci_version: OCI_VERSION.into(),
        process: Process {
            terminal: true,
            user: User { uid: 0, gid: 0 },
            args: strs(&["sh"]),
            env: strs(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ]),
            cwd: "/".into(),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
            },
            rlimits: vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: 1024,
                soft: 1024,
            }],
            no_new_privileges: true,
        },
        root: Root {
            path: "rootfs".into(),
            readonly: true,
        },
        hostname: "kennel".into(),
        mounts: vec![
            mount("/proc", "proc", "proc", &[]),
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            ),
            mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
            mount(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &["nosuid", "noexec", "nodev", "relatime", "ro"],
            ),
        ],
        linux: Linux {
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            resources: Some(Resources {
                devices: vec![DeviceRule {
                    allow: false,
                    access: "rwm".into(),
                }],
            }),
            namespaces,
            masked_paths: strs(&kennel_engine::MASKED_PATHS),
            readonly_paths: strs(&kennel_engine::READONLY_PATHS),
        },
    }
}

/// runc's ToRootless: a user namespace mapping the caller to root, no
/// network namespace (the caller could not configure one), /sys bound from
/// the host (a new sysfs needs a network namespace owned by the userns),
/// no uid=/gid= mount options (those ids may be unmapped), no cgroup
/// device rules.
pub fn to_rootless(spec: &mut Spec, euid: u32, egid: u32) {
    spec.linux
        .namespaces
        .retain(|n| n.kind != "network" && n.kind != "user");
    spec.linux.namespaces.push(Namespace {
        kind: "user".into(),
    });
    let map = |host_id| {
        vec![IdMapping {
            container_id: 0,
            host_id,
            size: 1,
        }]
    };
    spec.linux.uid_mappings = map(euid);
    spec.linux.gid_mappings = map(egid);
    for m in &mut spec.mounts {
        if Path::new(&m.destination) == Path::new("/sys") {
            *m = mount(
                "/sys",
                "none",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            );
            continue;
        }
        m.options
            .retain(|o| !o.starts_with("uid=") && !o.starts_with("gid="));
    }
    spec.linux.resources = None;
}

/// The spec as runc writes it: tab-indented, no trailing newline.
pub fn to_json(spec: &Spec) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Plain structs of strings, numbers and bools always serialize.
    spec.serialize(&mut ser).expect("spec serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Whether the host's /sys/fs/cgroup is cgroup v2, runc's condition for
/// adding a cgroup namespace.
fn cgroup2_unified() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// Runs `spec`: writes BUNDLE/config.json, refusing to replace one.
pub fn run(args: &SpecArgs) -> anyhow::Result<()> {
    let mut spec = example(cgroup2_unified());
    if args.rootless {
        to_rootless(
            &mut spec,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
    }
    let dir = args.bundle.as_deref().unwrap_or(Path::new("."));
    write_new(&dir.join("config.json"), &to_json(&spec))
}

/// Creates `path` with `text`, failing if anything (even a dangling
/// symlink) is there already, so an edited config is never overwritten.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("File config.json exists. Remove it first")
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
    };
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &Spec) -> oci_spec::runtime::Spec {
        serde_json::from_str(&to_json(spec)).unwrap()
    }

    #[test]
    fn example_parses_as_oci_spec() {
        let s = parse(&example(true));
        assert_eq!(s.version(), OCI_VERSION);
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.args().as_ref().unwrap(), &["sh".to_string()]);
        assert_eq!(s.root().as_ref().unwrap().path().to_str(), Some("rootfs"));
        assert_eq!(s.mounts().as_ref().unwrap().len(), 7);
        let ns = s.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert_eq!(ns.len(), 6);
    }

    #[test]
    fn rootless_follows_runc() {
        let mut spec = example(true);
        to_rootless(&mut spec, 1000, 1001);
        let s = parse(&spec);
        let linux = s.linux().as_ref().unwrap();
        let kinds: Vec<String> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| format!("{:?}", n.typ()))
            .collect();
        assert_eq!(kinds, ["Pid", "Ipc", "Uts", "Mount", "Cgroup", "User"]);
        let uid = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!(
            (uid.host_id(), uid.container_id(), uid.size()),
            (1000, 0, 1)
        );
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].host_id(), 1001);
        assert!(linux.resources().is_none());
        let sys = spec
            .mounts
            .iter()
            .find(|m| m.destination == "/sys")
            .unwrap();
        assert_eq!((sys.kind.as_str(), sys.source.as_str()), ("none", "/sys"));
        assert!(sys.options.contains(&"rbind".to_string()));
        let pts = spec
            .mounts
            .iter()
            .find(|m| m.destination == "/dev/pts")
            .unwrap();
        assert!(!pts.options.iter().any(|o| o.starts_with("gid=")));
        // runc keeps the cgroup mount in a rootless spec.
        assert!(spec
            .mounts
            .iter()
            .any(|m| m.destination == "/sys/fs/cgroup"));
    }

    #[test]
    fn layout_is_runcs() {
        let json = to_json(&example(false));
        assert!(json.starts_with("{\n\t\"ociVersion\": \""));
        assert!(json.contains("\n\t\"process\": {\n\t\t\"terminal\": true,"));
        assert!(!json.ends_with('\n'));
        // /proc has no options, and runc omits the key.
        assert!(json.contains("\"source\": \"proc\"\n\t\t},"));
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("kennel-oci-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("config.json"));
        let args = SpecArgs {
            bundle: Some(dir.clone()),
            rootless: true,
        };
        run(&args).unwrap();
        let err = run(&args).unwrap_err();
        assert_eq!(err.to_string(), "File config.json exists. Remove it first");
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        serde_json::from_str::<oci_spec::runtime::Spec>(&text).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
