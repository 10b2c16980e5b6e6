//! What confines the container's process: its seccomp filter, compiled in
//! the parent from the bundle's profile or kennel's default (`seccomp`),
//! Landlock (`landlock`), the cgroup's device rules (`device_rules`, and
//! `device_rules_v1` for a pure cgroup v1 host's devices controller), and
//! the child's steps that apply them with the capabilities, the user
//! switch and no_new_privs (`apply`).
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec` and `host`.

pub(crate) mod apply;
pub(crate) mod device_rules;
pub(crate) mod device_rules_v1;
pub(crate) mod landlock;
pub(crate) mod seccomp;
