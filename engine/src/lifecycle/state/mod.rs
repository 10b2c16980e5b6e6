//! Container records: `ROOT/ID/state.json`, ROOT being `--root`, else
//! `kennel` in the runtime directory (`runtime_dir`: `$XDG_RUNTIME_DIR` or
//! its fallback; as real root `/run`). A record is in
//! OCI's shape (`ociVersion`, `id`, `status`, `pid`, `bundle`,
//! `annotations`) plus what kennel keeps for itself under `kennel`. A
//! record is trusted only while its pid is alive with the same start time.
//! `kennel run`'s records go with their runner; those of an OCI container
//! stay, stopped, until `delete`.
//!
//! The parts: `json` (the record's shape, and state.json read and
//! written whole), `store` (the root directory, the owner file, and
//! finding, looking up and listing records, cleaning stale ones on the
//! way), `claim` (a name reserved atomically) and `write` (a reserved
//! container's record, with its `init` and `cgroups` files). They import
//! each other by name, never this file, which only re-exports.
//!
//! May import: `sys`, `spec`, `host`, `net` (a record names the
//! container's network).

mod claim;
mod json;
mod store;
mod write;

pub use claim::{reserve, Reservation};
pub use json::{load, write_record, Network, Private, Running, State, Status};
pub use store::{
    creator_alive, find, list, lookup, remove_stale_claims, start_time, validate_name, Store,
    START_FIFO,
};
pub use write::{record, record_cgroups, recorded_cgroups, recorded_init, Recorded};
