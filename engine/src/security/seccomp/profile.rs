//! Profile files as people write them: OCI's `linux.seccomp`, or the shape
//! Docker and containers-common use (`archMap`, and rules that hold only
//! with or without a capability, on some architectures, or from a kernel
//! version on), made into the `linux.seccomp` of one container.
//!
//! kennel's own default profile (`default.json`) is in the second shape,
//! because which syscalls are safe depends on what the container may
//! already do: `mount` is harmless to a process with CAP_SYS_ADMIN in its
//! namespace and attack surface to one without.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

const DEFAULT: &str = include_str!("default.json");

/// Tells one text of the default profile from another, so a compiled
/// program is kept per text without hashing it at each start.
pub const DEFAULT_ID: u64 = super::program::fnv1a(DEFAULT.as_bytes());

// Unknown fields are errors: a misspelt condition must not silently widen
// a rule.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    /// Docker's name for the errno, kept with defaultErrnoRet.
    #[allow(dead_code)]
    default_errno: Option<String>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    syscalls: Vec<Rule>,
    listener_path: Option<std::path::PathBuf>,
    listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
    #[serde(default)]
    names: Vec<String>,
    /// Docker's older single name.
    name: Option<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno: Option<String>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// Go's name of an architecture, which the files use in `arches`.
fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn native_arch(rust: &str) -> Option<Arch> {
    match rust {
        "x86_64" => Some(Arch::ScmpArchX86_64),
        "aarch64" => Some(Arch::ScmpArchAarch64),
        _ => None,
    }
}

/// (major, minor) of a "5.8" or "6.1.0-13-amd64".
fn kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn running_kernel() -> Option<(u32, u32)> {
    let u = nix::sys::utsname::uname().ok()?;
    kernel_version(&u.release().to_string_lossy())
}

/// What a container with bounding set `caps` (`CAP_SYS_ADMIN`...) on
/// `arch` (Rust's name) gets from `text`, a profile file.
pub fn for_container(text: &str, caps: &[String], arch: &str) -> Result<LinuxSeccomp> {
    let file: File = serde_json::from_str(text)?;
    let kernel = running_kernel();
    let has = |cap: &String| caps.iter().any(|c| c == cap);
    let holds = |f: &Filter, all: bool| -> Result<bool> {
        let caps = if all {
            f.caps.iter().all(has)
        } else {
            f.caps.iter().any(has)
        };
        let arches = f.arches.iter().any(|a| a == go_arch(arch));
        let kernel_ok = match &f.min_kernel {
            None => None,
            Some(v) => {
                let want = kernel_version(v).with_context(|| format!("minKernel {v:?}"))?;
                Some(kernel.is_some_and(|k| k >= want))
            }
        };
        Ok(if all {
            caps && (f.arches.is_empty() || arches) && kernel_ok.unwrap_or(true)
        } else {
            (!f.caps.is_empty() && caps)
                || (!f.arches.is_empty() && arches)
                || kernel_ok.unwrap_or(false)
        })
    };
    let mut syscalls: Vec<LinuxSyscall> = Vec::new();
    for (i, rule) in file.syscalls.into_iter().enumerate() {
        if !holds(&rule.includes, true)? || holds(&rule.excludes, false)? {
            continue;
        }
        if rule.errno.is_some() && rule.errno_ret.is_none() {
            bail!(
                "syscalls[{i}]: errno {:?} needs its number in errnoRet",
                rule.errno
            );
        }
        let mut names = rule.names;
        names.extend(rule.name);
        let mut b = LinuxSyscallBuilder::default()
            .names(names)
            .action(rule.action);
        if let Some(e) = rule.errno_ret {
            b = b.errno_ret(e);
        }
        if let Some(args) = rule.args.filter(|a| !a.is_empty()) {
            b = b.args(args);
        }
        syscalls.push(b.build()?);
    }
    if !file.architectures.is_empty() && !file.arch_map.is_empty() {
        bail!("both architectures and archMap are set: keep one");
    }
    let architectures = if file.arch_map.is_empty() {
        file.architectures
    } else {
        let native = native_arch(arch);
        file.arch_map
            .into_iter()
            .filter(|m| Some(m.architecture) == native)
            .flat_map(|m| std::iter::once(m.architecture).chain(m.sub_architectures))
            .collect()
    };
    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(file.default_action)
        .set_default_errno_ret(file.default_errno_ret)
        .set_architectures((!architectures.is_empty()).then_some(architectures))
        .set_flags((!file.flags.is_empty()).then_some(file.flags))
        .set_listener_path(file.listener_path)
        .set_listener_metadata(file.listener_metadata)
        .set_syscalls(Some(syscalls));
    Ok(seccomp)
}

/// kennel's default profile for a container.
pub fn default_for_container(caps: &[String], arch: &str) -> Result<LinuxSeccomp> {
    for_container(DEFAULT, caps, arch).context("kennel's default seccomp profile")
}

/// The names a profile allows with no condition, by rule, for the tests.
#[cfg(test)]
fn allowed(s: &LinuxSeccomp) -> std::collections::HashMap<String, Vec<Option<usize>>> {
    let mut out: std::collections::HashMap<String, Vec<Option<usize>>> =
        std::collections::HashMap::new();
    for r in s.syscalls().iter().flatten() {
        if r.action() == LinuxSeccompAction::ScmpActAllow {
            for n in r.names() {
                out.entry(n.clone())
                    .or_default()
                    .push(r.args().as_ref().map(Vec::len));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_open_their_syscalls() {
        let plain = allowed(&default_for_container(&["CAP_CHOWN".into()], "x86_64").unwrap());
        let admin = allowed(&default_for_container(&["CAP_SYS_ADMIN".into()], "x86_64").unwrap());
        for name in ["mount", "unshare", "setns", "bpf", "clone3"] {
            assert!(!plain.contains_key(name), "{name} allowed without the cap");
            assert_eq!(admin[name], [None], "{name} with CAP_SYS_ADMIN");
        }
        // clone stays, without the namespace flags.
        assert_eq!(plain["clone"], [Some(1)]);
        assert!(!plain.contains_key("keyctl"));
        assert_eq!(plain["read"], [None]);
    }

    #[test]
    fn architectures_choose_their_rules() {
        let x86 = default_for_container(&[], "x86_64").unwrap();
        let arm = default_for_container(&[], "aarch64").unwrap();
        assert_eq!(allowed(&x86)["arch_prctl"], [None]);
        assert!(!allowed(&arm).contains_key("arch_prctl"));
        assert_eq!(
            x86.architectures().as_ref().unwrap(),
            &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        assert_eq!(allowed(&arm)["set_tls"], [None]);
    }

    #[test]
    fn the_default_profile_compiles() {
        let s = default_for_container(&[], std::env::consts::ARCH).unwrap();
        assert!(super::super::compile::compile(&s).unwrap().program.len() > 100);
    }

    #[test]
    fn min_kernel_and_misspelt_fields() {
        let p = |extra: &str| {
            format!("{{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\"{extra}}}]}}")
        };
        let old = for_container(
            &p(", \"includes\": {\"minKernel\": \"2.6\"}"),
            &[],
            "x86_64",
        );
        assert!(allowed(&old.unwrap()).contains_key("read"));
        let future = for_container(
            &p(", \"includes\": {\"minKernel\": \"99.0\"}"),
            &[],
            "x86_64",
        );
        assert!(!allowed(&future.unwrap()).contains_key("read"));
        let typo = for_container(
            &p(", \"include\": {\"caps\": [\"CAP_SYS_ADMIN\"]}"),
            &[],
            "x86_64",
        );
        assert!(typo.unwrap_err().to_string().contains("include"));
    }

    /// The allow list equals containers-common's (podman's default), but
    /// for what kennel keeps stricter on purpose. Needs that file.
    #[test]
    fn the_default_is_containers_commons_in_effect() {
        let Ok(theirs) = std::fs::read_to_string("/usr/share/containers/seccomp.json") else {
            eprintln!(
                "skipped: no /usr/share/containers/seccomp.json (golang-github-containers-common)"
            );
            return;
        };
        let caps: Vec<String> = ["CAP_CHOWN", "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_SETUID"]
            .map(String::from)
            .to_vec();
        let ours = allowed(&default_for_container(&caps, "x86_64").unwrap());
        let theirs = allowed(&for_container(&theirs, &caps, "x86_64").unwrap());
        let stricter = [
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "keyctl",
            "ptrace",
            "kcmp",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "bpf",
            "fanotify_init",
            "lookup_dcookie",
            "perf_event_open",
            "quotactl",
            "setdomainname",
            "sethostname",
        ];
        for (name, rules) in &theirs {
            if !stricter.contains(&name.as_str()) {
                assert_eq!(ours.get(name), Some(rules), "{name}");
            }
        }
        for name in ours.keys() {
            assert!(
                theirs.contains_key(name),
                "{name} is allowed by kennel only"
            );
        }
    }
}
