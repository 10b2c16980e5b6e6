//! What confines the container's process: its seccomp filter, compiled
//! from the bundle's profile or kennel's default (`seccomp`), Landlock
//! (`landlock`) and the cgroup's device rules (`device_rules`).
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec` and `host`.

pub(crate) mod device_rules;
pub(crate) mod landlock;
pub(crate) mod seccomp;
