//! `kennel-oci features`: the runtime-spec features document (features.md).
//!
//! Callers use it to decide what they may put in config.json, so it must
//! describe what the engine does, not what runc does: `Implemented` is the
//! engine's account of itself, and the document is derived from it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::{GIT_COMMIT, OCI_VERSION, VERSION};

/// Annotation carrying the kennel-oci version in the features document.
pub const ANNOTATION_VERSION: &str = "org.kennel.oci.version";
/// Annotation carrying the build commit in the features document.
pub const ANNOTATION_COMMIT: &str = "org.kennel.oci.commit";

/// What the engine implements. `Default` is kennel's current behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Implemented {
    /// Namespace types, as config.json spells them.
    pub namespaces: Vec<String>,
    /// Capability names, `CAP_` prefixed.
    pub capabilities: Vec<String>,
    /// Mount options the engine understands.
    pub mount_options: Vec<String>,
    /// Hook names the engine runs.
    pub hooks: Vec<String>,
    pub cgroup_v1: bool,
    pub cgroup_v2: bool,
    pub cgroup_systemd: bool,
    pub cgroup_systemd_user: bool,
    /// Whether linux.seccomp is applied.
    pub seccomp: bool,
    /// Whether process.apparmorProfile is applied.
    pub apparmor: bool,
    /// Whether process.selinuxLabel and mountLabel are applied.
    pub selinux: bool,
    /// Whether idmapped mounts (mounts[].uidMappings) are supported.
    pub idmap_mounts: bool,
}

impl Default for Implemented {
    fn default() -> Self {
        let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Implemented {
            namespaces: strs(kennel_engine::NAMESPACE_TYPES),
            capabilities: known_capabilities(),
            mount_options: strs(&kennel_engine::mount_option_names()),
            hooks: strs(&[
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop",
            ]),
            // As root: memory, pids and cpu limits (see cgroup_delegate::v1).
            cgroup_v1: true,
            cgroup_v2: true,
            cgroup_systemd: true,
            cgroup_systemd_user: true,
            seccomp: true,
            apparmor: false,
            selinux: false,
            idmap_mounts: false,
        }
    }
}

/// Every capability the caps crate knows, in kernel number order (the
/// order runc lists them in).
pub fn known_capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.into_iter().map(|c| c.to_string()).collect()
}

// The document's types. oci_spec has them too, but serializes absent
// fields as null, and readers such as go-runc expect them omitted.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Features<'a> {
    oci_version_min: &'a str,
    oci_version_max: &'a str,
    hooks: &'a [String],
    mount_options: Vec<&'a str>,
    linux: Linux<'a>,
    annotations: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Linux<'a> {
    namespaces: Vec<&'a str>,
    capabilities: &'a [String],
    cgroup: Cgroup,
    seccomp: Seccomp,
    apparmor: Enabled,
    selinux: Enabled,
    mount_extensions: MountExtensions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cgroup {
    v1: bool,
    v2: bool,
    systemd: bool,
    systemd_user: bool,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

/// What linux.seccomp may hold (SCMP_ACT_NOTIFY is refused: kennel runs
/// no seccomp agent).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Seccomp {
    enabled: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    actions: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    operators: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    archs: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    known_flags: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    supported_flags: &'static [&'static str],
}

const SECCOMP_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
];

impl Seccomp {
    fn new(enabled: bool) -> Seccomp {
        if !enabled {
            return Seccomp {
                enabled,
                actions: &[],
                operators: &[],
                archs: &[],
                known_flags: &[],
                supported_flags: &[],
            };
        }
        Seccomp {
            enabled,
            actions: &[
                "SCMP_ACT_ALLOW",
                "SCMP_ACT_ERRNO",
                "SCMP_ACT_KILL",
                "SCMP_ACT_KILL_PROCESS",
                "SCMP_ACT_KILL_THREAD",
                "SCMP_ACT_LOG",
                "SCMP_ACT_TRACE",
                "SCMP_ACT_TRAP",
            ],
            operators: &[
                "SCMP_CMP_EQ",
                "SCMP_CMP_GE",
                "SCMP_CMP_GT",
                "SCMP_CMP_LE",
                "SCMP_CMP_LT",
                "SCMP_CMP_MASKED_EQ",
                "SCMP_CMP_NE",
            ],
            archs: &[
                "SCMP_ARCH_AARCH64",
                "SCMP_ARCH_ARM",
                "SCMP_ARCH_X32",
                "SCMP_ARCH_X86",
                "SCMP_ARCH_X86_64",
            ],
            known_flags: SECCOMP_FLAGS,
            supported_flags: SECCOMP_FLAGS,
        }
    }
}

#[derive(Serialize)]
struct MountExtensions {
    idmap: Enabled,
}

fn sorted(v: &[String]) -> Vec<&str> {
    let mut s: Vec<&str> = v.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// The features document, formatted as runc formats it (4-space indent,
/// trailing newline). Namespaces and mount options are sorted, as runc
/// sorts them, so the output does not depend on the order given.
pub fn features_json(imp: &Implemented) -> String {
    let doc = Features {
        oci_version_min: "1.0.0",
        oci_version_max: OCI_VERSION,
        hooks: &imp.hooks,
        mount_options: sorted(&imp.mount_options),
        linux: Linux {
            namespaces: sorted(&imp.namespaces),
            capabilities: &imp.capabilities,
            cgroup: Cgroup {
                v1: imp.cgroup_v1,
                v2: imp.cgroup_v2,
                systemd: imp.cgroup_systemd,
                systemd_user: imp.cgroup_systemd_user,
            },
            seccomp: Seccomp::new(imp.seccomp),
            apparmor: Enabled {
                enabled: imp.apparmor,
            },
            selinux: Enabled {
                enabled: imp.selinux,
            },
            mount_extensions: MountExtensions {
                idmap: Enabled {
                    enabled: imp.idmap_mounts,
                },
            },
        },
        annotations: BTreeMap::from([
            (ANNOTATION_VERSION, VERSION),
            (ANNOTATION_COMMIT, GIT_COMMIT),
        ]),
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Plain structs of strings and bools always serialize.
    doc.serialize(&mut ser)
        .expect("features document serializes");
    let mut s = String::from_utf8(out).expect("serde_json writes UTF-8");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_oci_spec_features() {
        let json = features_json(&Implemented::default());
        let f: oci_spec::runtime::Features = serde_json::from_str(&json).unwrap();
        assert_eq!(f.oci_version_min(), "1.0.0");
        assert_eq!(f.oci_version_max(), OCI_VERSION);
        let linux = f.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        assert_eq!(ns.len(), 7);
        let caps = linux.capabilities().as_ref().unwrap();
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        let cg = linux.cgroup().as_ref().unwrap();
        assert_eq!(*cg.v1(), Some(true));
        assert_eq!(*cg.v2(), Some(true));
        assert_eq!(*cg.systemd_user(), Some(true));
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(*seccomp.enabled(), Some(true));
        assert!(seccomp
            .actions()
            .as_ref()
            .unwrap()
            .iter()
            .all(|a| *a != oci_spec::runtime::LinuxSeccompAction::ScmpActNotify));
        assert_eq!(f.hooks().as_ref().unwrap().len(), 6);
        let opts = f.mount_options().as_ref().unwrap();
        assert!(opts.windows(2).all(|w| w[0] < w[1]), "sorted: {opts:?}");
        let ann = f.annotations().as_ref().unwrap();
        assert_eq!(ann[ANNOTATION_VERSION], VERSION);
    }

    #[test]
    fn reflects_what_is_implemented() {
        let imp = Implemented {
            namespaces: vec!["user".into(), "mount".into()],
            seccomp: false,
            ..Implemented::default()
        };
        let v: serde_json::Value = serde_json::from_str(&features_json(&imp)).unwrap();
        assert_eq!(
            v["linux"]["namespaces"],
            serde_json::json!(["mount", "user"])
        );
        assert_eq!(v["linux"]["seccomp"], serde_json::json!({"enabled": false}));
        // Nothing is written as null: absent means unknown to readers.
        assert!(!features_json(&imp).contains("null"));
    }

    #[test]
    fn runc_layout() {
        let json = features_json(&Implemented::default());
        assert!(json.starts_with("{\n    \"ociVersionMin\": \"1.0.0\",\n"));
        assert!(json.ends_with("}\n"));
    }
}
