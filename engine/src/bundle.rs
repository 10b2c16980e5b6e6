//! Reading an OCI bundle: DIR/config.json, with the paths in it that are
//! relative to the bundle made absolute, as runc reads them.

use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::Spec;

/// The spec of the bundle in `dir`.
pub fn load(dir: &Path) -> Result<Spec> {
    let config = dir.join("config.json");
    let mut spec =
        Spec::load(&config).with_context(|| format!("cannot read {}", config.display()))?;
    spec.canonicalize_rootfs(dir)
        .with_context(|| format!("the rootfs named in {} does not exist", config.display()))?;
    // A relative bind source is relative to the bundle, as runc reads it.
    if let Some(mounts) = spec.mounts().clone() {
        let mounts = mounts
            .into_iter()
            .map(|mut m| {
                let bind = crate::is_bind(&m);
                if let Some(src) = m.source().clone().filter(|s| bind && s.is_relative()) {
                    m.set_source(Some(dir.join(src)));
                }
                m
            })
            .collect();
        spec.set_mounts(Some(mounts));
    }
    Ok(spec)
}
