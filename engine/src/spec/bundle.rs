//! Reading an OCI bundle: DIR/config.json, with the paths in it that are
//! relative to the bundle made absolute, as runc reads them.

use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{Process, Spec};
use serde_json::Value;

/// A bundle's spec, and what of it is skipped rather than applied.
pub struct Loaded {
    pub spec: Spec,
    /// One line per skipped item, for the runtime's log.
    pub warnings: Vec<String>,
}

/// The spec of the bundle in `dir`.
pub fn load(dir: &Path) -> Result<Loaded> {
    let config = dir.join("config.json");
    let text =
        std::fs::read(&config).with_context(|| format!("cannot read {}", config.display()))?;
    let mut value: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", config.display()))?;
    let warnings = match value.get_mut("process") {
        Some(process) => skip_unknown_capabilities(process, "process"),
        None => Vec::new(),
    };
    // Before the parse, which drops what the spec types do not model.
    let unsupported = crate::spec::spec_fields::unsupported_in(&value);
    if !unsupported.is_empty() {
        return Err(crate::spec::spec_fields::refusal(&unsupported));
    }
    crate::spec::devices::check_written(&value)
        .with_context(|| format!("in {}", config.display()))?;
    let mut spec: Spec = serde_json::from_value(value)
        .with_context(|| format!("{} is not an OCI runtime spec", config.display()))?;
    spec.canonicalize_rootfs(dir)
        .with_context(|| format!("the rootfs named in {} does not exist", config.display()))?;
    // A relative bind source is relative to the bundle, as runc reads it.
    if let Some(mounts) = spec.mounts().clone() {
        let mounts = mounts
            .into_iter()
            .map(|mut m| {
                let bind = crate::spec::mounts::is_bind(&m);
                if let Some(src) = m.source().clone().filter(|s| bind && s.is_relative()) {
                    m.set_source(Some(dir.join(src)));
                }
                m
            })
            .collect();
        spec.set_mounts(Some(mounts));
    }
    Ok(Loaded { spec, warnings })
}

/// An OCI process read from `text` (`kennel-oci exec --process FILE`), with
/// the warnings for what is skipped; `file` names it in errors.
pub fn process_from_json(text: &[u8], file: &Path) -> Result<(Process, Vec<String>)> {
    let mut value: Value =
        serde_json::from_slice(text).with_context(|| format!("{} is not JSON", file.display()))?;
    let warnings = skip_unknown_capabilities(&mut value, &file.display().to_string());
    let process = serde_json::from_value(value)
        .with_context(|| format!("{} is not an OCI process", file.display()))?;
    Ok((process, warnings))
}

/// The capability sets of an OCI process object.
const SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// Takes out of `process.capabilities` each name that kennel or the running
/// kernel does not know, as runc does (a spec written for a newer kernel
/// still runs, without that capability); one warning per name, naming the
/// sets it was in. `at` is where `process` is, for the warning.
fn skip_unknown_capabilities(process: &mut Value, at: &str) -> Vec<String> {
    let last = last_capability();
    let mut skipped: Vec<(String, Vec<&str>)> = Vec::new();
    let Some(caps) = process
        .get_mut("capabilities")
        .and_then(Value::as_object_mut)
    else {
        return Vec::new();
    };
    for set in SETS {
        let Some(names) = caps.get_mut(set).and_then(Value::as_array_mut) else {
            continue;
        };
        names.retain(|name| {
            let Some(name) = name.as_str() else {
                // Not a name: left for the spec's own parse to refuse.
                return true;
            };
            if known(name, last) {
                return true;
            }
            match skipped.iter_mut().find(|(n, _)| n == name) {
                Some((_, sets)) => sets.push(set),
                None => skipped.push((name.to_string(), vec![set])),
            }
            false
        });
    }
    skipped
        .into_iter()
        .map(|(name, sets)| {
            format!(
                "{at}.capabilities: {name} (in {}) is not a capability kennel or this kernel knows; skipped, as runc skips it",
                sets.join(", ")
            )
        })
        .collect()
}

/// Whether `name` is a capability the engine can apply: one oci-spec and
/// the caps crate parse, and the kernel has (its number at most `last`).
fn known(name: &str, last: Option<u8>) -> bool {
    let Ok(cap) = name.parse::<caps::Capability>() else {
        return false;
    };
    serde_json::from_value::<oci_spec::runtime::Capability>(Value::String(name.to_string())).is_ok()
        && last.is_none_or(|last| cap.index() <= last)
}

/// The running kernel's highest capability number; None when it cannot be
/// read (then every capability kennel knows is taken as known).
fn last_capability() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_capabilities_are_skipped_with_one_warning_each() {
        let mut process = serde_json::json!({
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_FROM_THE_FUTURE", "CAP_KILL"],
                "effective": ["CAP_FROM_THE_FUTURE"],
                "permitted": ["CAP_CHOWN"],
            }
        });
        let warnings = skip_unknown_capabilities(&mut process, "process");
        assert_eq!(
            process["capabilities"]["bounding"],
            serde_json::json!(["CAP_CHOWN", "CAP_KILL"])
        );
        assert_eq!(process["capabilities"]["effective"], serde_json::json!([]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("CAP_FROM_THE_FUTURE (in bounding, effective)"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_kernel_without_a_capability_skips_it() {
        // CAP_CHECKPOINT_RESTORE is 40, past a kernel whose last is 39.
        assert!(!known("CAP_CHECKPOINT_RESTORE", Some(39)));
        assert!(known("CAP_CHECKPOINT_RESTORE", Some(40)));
        assert!(known("CAP_CHOWN", None));
        assert!(!known("chown", None));
    }
}
