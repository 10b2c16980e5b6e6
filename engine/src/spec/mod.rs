//! The parts of a spec every concern shares, read into plain data: the
//! mounts and their options (`mounts`), the process and what confines it
//! (`process`), mount propagation
//! (`propagation`), device nodes (`devices`), which fields kennel refuses
//! (`spec_fields`) and a bundle's config.json (`bundle`).
//!
//! May import: `sys`, `protocol`, `inroot` and `stop_at`.

/// The runtime-spec version kennel implements.
pub const OCI_VERSION: &str = "1.2.0";

pub mod bundle;
pub(crate) mod devices;
pub(crate) mod mounts;
pub(crate) mod process;
pub(crate) mod propagation;
pub(crate) mod spec_fields;
