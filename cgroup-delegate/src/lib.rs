//! cgroup v2 placement for kennel containers.
//!
//! [`place`] picks the cgroup a container is born into (see
//! [`Manager`]): a subtree systemd already delegated to us (no D-Bus at
//! all), a transient scope asked of systemd over D-Bus, or a directory
//! written directly. The container's leaf gets its [`Limits`]; after the
//! container exits, [`Placement::finish`] reports an OOM kill, kills what is
//! left and removes the leaf.

mod error;
mod limits;
mod placement;
pub mod stats;
pub mod systemd;
mod tree;

pub use error::{cgroup2_fix, systemd_booted, CgroupError, DELEGATE_FIX};
pub use limits::{Limits, Swap};
pub use placement::{place, Finish, How, Manager, PlaceRequest, Placed, Placement};
pub use tree::{cgroup2_mounted, own_cgroup, CGROUP_ROOT};
