//! The values of `kennel run`'s flags that need parsing beyond clap's:
//! `--volume`, `--cap-add`/`--cap-drop` and `--ulimit`, each refused with
//! the flag and the form it expects.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capability, PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub(super) fn parse_volume(spec: &str, cwd: Option<&Path>) -> Result<(PathBuf, String, bool)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => bail!("--volume {spec:?} is malformed: expected SRC:DST or SRC:DST:ro"),
    };
    if src.is_empty() || !dst.starts_with('/') {
        bail!("--volume {spec:?} is malformed: SRC must be given and DST must be an absolute path");
    }
    let src = match cwd {
        Some(cwd) if !src.starts_with('/') => cwd.join(src),
        _ => PathBuf::from(src),
    };
    let src = std::fs::canonicalize(&src)
        .with_context(|| format!("--volume source {} does not exist", src.display()))?;
    Ok((src, dst.to_string(), ro))
}

fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") || upper == "ALL" {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn capability(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// `name` (already `CAP_`-prefixed) as a capability; `flag` names where it
/// came from. Only the name is said: the parser's own words
/// ("no variant for ...") mean nothing to the user.
fn parse_cap(flag: &str, raw: &str, name: &str) -> Result<Capability> {
    capability(name).ok_or_else(|| {
        anyhow::anyhow!(
            "{flag} {raw}: unknown capability {name}; see capabilities(7) for the names (NET_ADMIN, SYS_PTRACE, ...; the CAP_ prefix is optional), or ALL"
        )
    })
}

/// The capability set after `--cap-add` and `--cap-drop`, in Docker's order:
/// drops apply to the defaults, then adds.
pub fn capability_set(add: &[String], drop: &[String]) -> Result<HashSet<Capability>> {
    let mut names: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    for raw in drop {
        let d = cap_name(raw);
        if d == "ALL" {
            names.clear();
        } else {
            parse_cap("--cap-drop", raw, &d)?;
            names.retain(|n| *n != d);
        }
    }
    for raw in add {
        let a = cap_name(raw);
        if a == "ALL" {
            names.extend(caps::all().iter().map(|c| c.to_string()));
        } else {
            parse_cap("--cap-add", raw, &a)?;
            names.push(a);
        }
    }
    // Capabilities newer than oci-spec knows are skipped only for ALL.
    let mut set = HashSet::new();
    for n in names {
        if let Some(c) = capability(&n) {
            set.insert(c);
        }
    }
    Ok(set)
}

pub(super) fn parse_ulimit(spec: &str) -> Result<PosixRlimit> {
    let err = || {
        format!("--ulimit {spec:?} is malformed: expected NAME=SOFT[:HARD], e.g. nofile=1024:4096")
    };
    let (name, values) = spec.split_once('=').with_context(err)?;
    let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(format!(
        "RLIMIT_{}",
        name.to_ascii_uppercase()
    )))
    .with_context(|| {
        format!("--ulimit: unknown limit {name:?} (nofile, nproc, core, memlock, stack, ...)")
    })?;
    let parse = |v: &str| -> Result<u64> {
        if v == "unlimited" || v == "-1" {
            Ok(u64::MAX)
        } else {
            v.parse().with_context(err)
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (parse(s)?, parse(h)?),
        None => (parse(values)?, parse(values)?),
    };
    if soft > hard {
        bail!("--ulimit {spec:?}: the soft limit is above the hard limit");
    }
    Ok(PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_default_add_drop() {
        let set = capability_set(&[], &[]).unwrap();
        assert_eq!(set.len(), 14);
        let set = capability_set(
            &["sys_admin".into()],
            &["CAP_CHOWN".into(), "net_raw".into()],
        )
        .unwrap();
        assert_eq!(set.len(), 13);
        assert!(set.contains(&Capability::SysAdmin));
        assert!(!set.contains(&Capability::Chown));
        let set = capability_set(&["kill".into()], &["ALL".into()]).unwrap();
        assert_eq!(set, HashSet::from([Capability::Kill]));
        let err = capability_set(&["bogus".into()], &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--cap-add bogus: unknown capability CAP_BOGUS; see capabilities(7) for the names (NET_ADMIN, SYS_PTRACE, ...; the CAP_ prefix is optional), or ALL"
        );
        let err = capability_set(&[], &["CAP_NOPE".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--cap-drop CAP_NOPE: unknown capability CAP_NOPE;"),
            "{err}"
        );
        assert!(capability_set(&["ALL".into()], &[]).unwrap().len() > 30);
    }

    #[test]
    fn ulimits() {
        let r = parse_ulimit("nofile=1024:4096").unwrap();
        assert_eq!((r.soft(), r.hard()), (1024, 4096));
        assert_eq!(r.typ(), PosixRlimitType::RlimitNofile);
        let r = parse_ulimit("core=0").unwrap();
        assert_eq!((r.soft(), r.hard()), (0, 0));
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("nofile=x").is_err());
    }

    #[test]
    fn volumes() {
        assert!(parse_volume("/tmp:/data", None).is_ok());
        assert!(parse_volume("/tmp:/data:ro", None).unwrap().2);
        assert!(parse_volume("/tmp", None).is_err());
        assert!(parse_volume("/tmp:rel", None).is_err());
        assert!(parse_volume("/tmp:/a:bogus", None).is_err());
        let err = parse_volume("/no/such/dir:/x", None).unwrap_err();
        assert!(format!("{err:#}").contains("/no/such/dir does not exist"));
    }
}
