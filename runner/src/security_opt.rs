//! `--security-opt`, as podman spells it.
//!
//! - `seccomp=unconfined`: no seccomp profile (kennel's small filter that
//!   keeps the caller's keyrings and terminal out of reach stays).
//! - `seccomp=PATH`: the profile in PATH, in OCI's `linux.seccomp` shape or
//!   Docker's and containers-common's (capability and architecture
//!   conditions are resolved for this container).
//! - `no-new-privileges`: kennel's default already (see
//!   `--allow-new-privs`).
//!
//! Without `seccomp=`, the container gets kennel's default profile, which
//! the engine resolves and keeps compiled (the annotation asks for it).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capability, LinuxSeccomp};

/// What the container's seccomp is: linux.seccomp, and the annotation
/// value that says which (`default`, `unconfined`, or the profile's path).
pub struct SeccompChoice {
    pub profile: Option<LinuxSeccomp>,
    pub annotation: String,
}

pub fn seccomp(options: &[String], caps: &HashSet<Capability>) -> Result<SeccompChoice> {
    let mut choice = SeccompChoice {
        profile: None,
        annotation: "default".into(),
    };
    for opt in options {
        let (key, value) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
        match (key, value) {
            ("no-new-privileges", "" | "true") => {}
            ("seccomp", "unconfined") => {
                choice = SeccompChoice {
                    profile: None,
                    annotation: "unconfined".into(),
                }
            }
            ("seccomp", "") => bail!("--security-opt seccomp= needs unconfined or a profile's path"),
            ("seccomp", path) => {
                let path = std::path::absolute(Path::new(path))
                    .with_context(|| format!("--security-opt seccomp={path}"))?;
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("--security-opt seccomp: cannot read {}", path.display())
                })?;
                let names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
                let profile = kennel_engine::seccomp_profile_for(&text, &names, std::env::consts::ARCH)
                    .with_context(|| format!("--security-opt seccomp: {}", path.display()))?;
                choice = SeccompChoice {
                    profile: Some(profile),
                    annotation: path.display().to_string(),
                };
            }
            _ => bail!(
                "--security-opt {opt:?} is not supported: kennel knows seccomp=unconfined, seccomp=PATH and no-new-privileges (no SELinux or AppArmor labels)"
            ),
        }
    }
    Ok(choice)
}
