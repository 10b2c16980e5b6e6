//! Pure policy of `kennel-idmap`, the helper that writes `/proc/PID/uid_map`
//! and `gid_map` for unprivileged users.
//!
//! Nothing here does I/O: the binary reads `/etc/subuid`, `/etc/subgid` and
//! the command line, and this library decides. The rules are those of
//! shadow's `newuidmap`, stated once and tested:
//!
//! * [`parse_subid_file`]: malformed lines are skipped and never grant.
//! * [`allowed_ranges`]: the caller's entries, by exact name or numeric uid,
//!   sorted and joined.
//! * [`validate_map`]: own id with count 1, or inside the allowed ranges;
//!   bounds, overlaps, line and byte limits; host id 0 only for root.
//! * [`render_map`]: the text given to the kernel in one write.
//! * [`free_block`]: the block of ids to suggest to a user who has none,
//!   free in both files.
//! * [`entry_for_uid`]: the caller's name from /etc/passwd, without NSS.
//! * [`parse_args`]: the native and the `newuidmap`/`newgidmap` command lines.

mod args;
mod free_block;
mod map_line;
mod passwd;
mod request;
mod subid;

pub use args::{parse_args, usage, Command, Form, Request, Target, UsageError, USAGE};
pub use free_block::{free_block, SUBID_BLOCK, SUBID_BLOCK_MIN};
pub use map_line::{parse_map_line, render_map, MapLine};
pub use passwd::{entry_for_uid, parse_passwd, PasswdEntry};
pub use request::{
    setgroups_must_be_denied, validate_map, IdKind, MapPolicy, Refusal, MAX_ID, MAX_MAP_BYTES,
    MAX_MAP_LINES,
};
pub use subid::{allowed_ranges, parse_subid_file, IdRange, SubidEntry, SubidOwner};
