//! cgroup placement for kennel containers.
//!
//! [`place`] picks the cgroup a container is born into (see
//! [`Manager`]): a subtree systemd already delegated to us (no D-Bus at
//! all), a transient scope asked of systemd over D-Bus, or a directory
//! written directly. The container's leaf gets its [`Limits`]; after the
//! container exits, [`Placement::finish`] reports an OOM kill, kills what is
//! left and removes the leaf.
//!
//! On a cgroup v1 or hybrid host, as root, [`v1`] makes the container's
//! cgroup in each v1 hierarchy its limits need instead.

mod error;
mod limits;
mod placement;
pub mod stats;
pub mod systemd;
mod tree;
pub mod v1;

pub use error::{cgroup2_fix, systemd_booted, CgroupError, DELEGATE_FIX};
pub use limits::{Limits, Swap};
pub use placement::{place, Finish, How, Manager, PlaceRequest, Placed, Placement};
pub use tree::{cgroup2_mounted, own_cgroup, CGROUP_ROOT};
