//! The `regex` crate's API, served by `regex-lite`.
//!
//! oci-spec, the only crate here that uses `regex`, needs it for one
//! ASCII pattern (the execCPUAffinity list, `0-3,7`). The full crate brings
//! Unicode tables that are relocated at every start of the static-pie
//! `kennel`: ~140 KiB of pointers, about 35 copy-on-write page faults, a
//! tenth of a millisecond of each container start (measured with `make
//! bench`). regex-lite, by the same authors, implements the same syntax
//! without Unicode classes; its `\d` is ASCII digits only, which for a CPU
//! list is the stricter and right reading.
//!
//! A dependency needing more of `regex` than regex-lite offers fails to
//! build: nothing changes behind anyone's back.

pub use regex_lite::*;
