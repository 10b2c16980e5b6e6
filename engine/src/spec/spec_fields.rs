//! Which fields of a `Spec` kennel implements. Every other field that a
//! config.json sets is refused, named, before anything is created: a bundle
//! asking for a seccomp agent, hooks or a sysctl must never run without
//! them.

use oci_spec::runtime::Spec;
use serde_json::Value;

/// The fields kennel implements, as JSON paths (`[]` for every element of
/// an array, `*` for any key). A path covers everything below it.
const SUPPORTED: &[&str] = &[
    "ociVersion",
    "root.path",
    "root.readonly",
    "hostname",
    "annotations",
    "hooks",
    "mounts[].destination",
    "mounts[].type",
    "mounts[].source",
    "mounts[].options",
    "process.terminal",
    // The pty follows the caller's window size.
    "process.consoleSize",
    "process.user.uid",
    "process.user.gid",
    "process.user.additionalGids",
    "process.user.umask",
    "process.args",
    "process.env",
    "process.cwd",
    "process.capabilities",
    "process.rlimits",
    "process.noNewPrivileges",
    "process.oomScoreAdj",
    "linux.uidMappings",
    "linux.gidMappings",
    "linux.namespaces[].type",
    // Checked by the plan, which names what it cannot do with a path.
    "linux.namespaces[].path",
    "linux.maskedPaths",
    "linux.sysctl",
    // Where the container's cgroup goes: see `cgroup::place`.
    "linux.cgroupsPath",
    "linux.readonlyPaths",
    // Checked by `devices::plan`, which names the field and index at fault.
    "linux.devices",
    // Checked by the plan, which names a value that is no propagation.
    "linux.rootfsPropagation",
    // A seccomp agent (SCMP_ACT_NOTIFY, listenerPath) is not run: those
    // fields stay unsupported.
    "linux.seccomp.defaultAction",
    "linux.seccomp.defaultErrnoRet",
    "linux.seccomp.architectures",
    "linux.seccomp.flags",
    "linux.seccomp.syscalls",
    // An eBPF device program on the cgroup (see `device_rules`).
    "linux.resources.devices",
    "linux.resources.memory.limit",
    "linux.resources.memory.swap",
    "linux.resources.memory.reservation",
    // On cgroup v2 as a cpu.weight, converted as runc converts it.
    "linux.resources.cpu.shares",
    "linux.resources.cpu.quota",
    "linux.resources.cpu.period",
    "linux.resources.pids.limit",
    "linux.resources.unified",
];

/// Values that ask for nothing: absent, empty or false.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn supported(path: &str) -> bool {
    SUPPORTED.iter().any(|s| {
        path == *s
            || path
                .strip_prefix(s)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    })
}

/// Whether some supported field lies below `path`.
fn leads_to_supported(path: &str) -> bool {
    path.is_empty()
        || SUPPORTED.iter().any(|s| {
            s.strip_prefix(path)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
}

fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
    if is_unset(v) || supported(path) {
        return;
    }
    if !leads_to_supported(path) {
        out.push(path.to_string());
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, &p, out);
            }
        }
        Value::Array(a) => {
            let p = format!("{path}[]");
            for child in a {
                walk(child, &p, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// The fields `spec` sets that kennel does not implement, each once, in
/// the order they appear.
pub fn unsupported(spec: &Spec) -> Vec<String> {
    serde_json::to_value(spec)
        .map(|v| unsupported_in(&v))
        .unwrap_or_default()
}

/// The same for a spec as written (a bundle's config.json): it also names
/// the fields the spec types do not model, which their parse would drop.
pub fn unsupported_in(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(spec, "", &mut out);
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(f.clone()));
    out
}

/// The refusal of a spec that sets `fields`, none of which kennel does.
pub fn refusal(fields: &[String]) -> anyhow::Error {
    let them = if fields.len() == 1 { "it" } else { "them" };
    anyhow::anyhow!(
        "unsupported in config.json: {}; kennel does not implement {them}, and runs nothing rather than run without {them}",
        fields.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "user"}, {"type": "mount"}, {"type": "pid"}]"#;

    #[test]
    fn what_kennel_implements_passes() {
        let s = spec(&format!(
            "{BASE}, \"resources\": {{\"devices\": [{{\"allow\": false, \"access\": \"rwm\"}}], \"memory\": {{\"limit\": 1000000}}, \"pids\": {{\"limit\": 5}}}}, \"rootfsPropagation\": \"rprivate\", \"maskedPaths\": [\"/proc/kcore\"]}}}}"
        ));
        assert_eq!(unsupported(&s), Vec::<String>::new());
        assert_eq!(unsupported(&Spec::default()), Vec::<String>::new());
    }

    #[test]
    fn a_field_the_spec_types_drop_is_named() {
        let written: Value = serde_json::from_str(&format!(
            "{BASE}}}, \"mounts\": [{{\"destination\": \"/m\", \"type\": \"bind\", \"source\": \"/\", \"uidMappings\": [{{\"containerID\": 0, \"hostID\": 0, \"size\": 1}}]}}]}}"
        ))
        .unwrap();
        assert_eq!(unsupported_in(&written), vec!["mounts[].uidMappings"]);
        let parsed: Spec = serde_json::from_value(written).unwrap();
        assert_eq!(unsupported(&parsed), Vec::<String>::new());
    }

    #[test]
    fn every_root_propagation_passes() {
        for p in ["private", "rslave", "shared", "runbindable", "bogus"] {
            let s = spec(&format!("{BASE}, \"rootfsPropagation\": \"{p}\"}}}}"));
            assert_eq!(unsupported(&s), Vec::<String>::new(), "{p}");
        }
    }

    #[test]
    fn everything_else_is_named() {
        let s = spec(&format!(
            "{BASE}, \"seccomp\": {{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"listenerPath\": \"/run/agent.sock\"}}, \"sysctl\": {{\"net.ipv4.ip_forward\": \"1\"}}, \"resources\": {{\"cpu\": {{\"realtimeRuntime\": 512, \"quota\": 5000}}, \"memory\": {{\"disableOOMKiller\": false, \"swappiness\": 10}}}}}}, \"hooks\": {{\"prestart\": [{{\"path\": \"/bin/true\"}}]}}, \"domainname\": \"example.org\"}}"
        ));
        let found = unsupported(&s);
        for field in [
            "linux.seccomp.listenerPath",
            "linux.resources.cpu.realtimeRuntime",
            "linux.resources.memory.swappiness",
            "domainname",
        ] {
            assert!(found.iter().any(|f| f == field), "{field} not in {found:?}");
        }
        assert!(!found
            .iter()
            .any(|f| f.contains("quota") || f.contains("disableOOMKiller")));
    }
}
