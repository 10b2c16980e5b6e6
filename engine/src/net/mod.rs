//! The container's network: user-mode networking with pasta, started once
//! the child is in its namespace (`pasta`, with its routes in
//! `default_routes` and its resolver in `resolv_point`), a veth on a
//! bridge made by kennel-net (`bridge`), published ports (`publish`) and
//! the network namespace itself (`netns`); `annotation` reads the
//! `run.kennel.net` annotation they share.
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at`, `spec` and `host`.

pub mod annotation;
pub mod bridge;
pub(crate) mod default_routes;
pub(crate) mod netns;
pub mod pasta;
pub mod publish;
pub(crate) mod resolv_point;
