//! seccomp: the small filter every container process gets (`keys`), and the
//! profile the spec asks for, compiled in the parent (or taken from the
//! cache) and installed by the child as the last step before exec.

mod cache;
mod compile;
#[cfg(test)]
mod emulate;
#[cfg(test)]
mod equivalence;
mod keys;
mod layout;
mod profile;
mod program;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::LinuxSeccomp;

use crate::spec::process::Filter;
use program::FLAG_LOG;

pub use compile::{compile, unknown_name_warnings};
pub use keys::program as keys_program;
pub use profile::{default_for_container as default_profile, for_container as profile_for};

/// The annotation that asks for kennel's default profile (value
/// `default`) where linux.seccomp is absent. `kennel run` sets it, with
/// `unconfined` or a profile's path as other values, which only describe.
pub const ANNOTATION: &str = "run.kennel.seccomp";

/// Which profile a container has, in a few words (for `--verbose` and
/// `kennel ps`).
pub fn describe(annotations: Option<&HashMap<String, String>>, has_profile: bool) -> String {
    match (annotations.and_then(|a| a.get(ANNOTATION)), has_profile) {
        (Some(v), _) if v == "default" => "kennel's default profile".into(),
        (Some(v), false) if v == "unconfined" => "unconfined".into(),
        (Some(path), true) => path.clone(),
        (_, true) => "linux.seccomp of the spec".into(),
        (_, false) => "none".into(),
    }
}

/// libseccomp's program for a profile, laid out again (see `layout`) with
/// the keys filter stacked in, so the process installs one short filter
/// instead of two (even where the one is a little longer than the two
/// together, as for a handful of rules: each filter costs the kernel a
/// fixed amount at install and the process one more run at every call). Left as it was, beside the keys filter, where the
/// layout cannot read it or the profile asks the kernel to log its
/// actions (the keys filter's refusals are not to be logged as the
/// profile's).
pub fn shorten(compiled: Filter) -> Filter {
    if compiled.flags & FLAG_LOG != 0 {
        return compiled;
    }
    let keys = keys::program();
    let laid_out = layout::read(&compiled.program)
        .and_then(|profile| layout::stack(&layout::read(&keys)?, &profile))
        .and_then(layout::Table::program);
    match laid_out {
        Ok(program) => Filter {
            program,
            flags: compiled.flags,
            includes_keys: true,
        },
        Err(_) => compiled,
    }
}

/// The filter for a process whose bounding set is `bounding`, in a
/// container whose spec has `annotations` and `profile`; None when it asks
/// for none.
pub fn resolve(
    annotations: Option<&HashMap<String, String>>,
    profile: Option<&LinuxSeccomp>,
    bounding: &[caps::Capability],
) -> Result<Option<Filter>> {
    let asked = annotations
        .and_then(|a| a.get(ANNOTATION))
        .map(String::as_str);
    let arch = std::env::consts::ARCH;
    let (key, profile) = match (asked, profile) {
        (Some("default"), Some(_)) => bail!(
            "the annotation {ANNOTATION}=default asks for kennel's default seccomp profile, and linux.seccomp for another: keep one"
        ),
        (Some("default"), None) => {
            let mask = bounding.iter().fold(0u64, |m, c| m | c.bitmask());
            (cache::default_key(profile::DEFAULT_ID, arch, mask), None)
        }
        (Some("unconfined"), Some(_)) => bail!(
            "the annotation {ANNOTATION}=unconfined says the container has no seccomp profile, and linux.seccomp has one: keep one"
        ),
        (_, Some(p)) => (cache::key(&[b"spec", &serde_json::to_vec(p)?]), Some(p)),
        (Some("unconfined") | None, None) => return Ok(None),
        // A misspelt "default" must not mean no profile.
        (Some(other), None) => bail!(
            "the annotation {ANNOTATION}={other:?} is not understood: use default (kennel's profile) or unconfined, or give the profile in linux.seccomp"
        ),
    };
    let dir = cache::dir();
    if let Some(kept) = dir.as_deref().and_then(|d| cache::load(d, &key)) {
        return Ok(Some(kept));
    }
    let filter = shorten(match profile {
        Some(p) => compile(p)?,
        None => {
            let caps: Vec<String> = bounding.iter().map(|c| c.to_string()).collect();
            compile(&default_profile(&caps, arch)?).context("kennel's default seccomp profile")?
        }
    });
    if let Some(d) = &dir {
        cache::store(d, &key, &filter);
    }
    Ok(Some(filter))
}
