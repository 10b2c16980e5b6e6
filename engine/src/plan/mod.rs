//! The spec turned into one checked plan (`config::Config`), made in the
//! parent before the clone: every refusal about the spec itself comes from
//! here, before anything exists. It asks `security` and `net` to plan
//! their parts.
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec`, `host`,
//! `security` and `net`.

pub(crate) mod config;
