//! The host's side of a container: who the caller is and which ids it may
//! map (`ids`, `maps`), the user databases (`passwd`), the helper programs
//! and how kennel was installed (`install_kind`, `build_info`), the runtime
//! directory (`runtime_dir`), the sockets systemd passed
//! (`socket_activation`) and the OCI hooks, which run as host programs
//! (`hooks`).
//!
//! May import: `sys`, `protocol`, `inroot`, `stop_at` and `spec`.

pub mod build_info;
pub(crate) mod hooks;
pub mod ids;
pub mod install_kind;
pub(crate) mod maps;
pub mod passwd;
pub mod runtime_dir;
pub mod socket_activation;
