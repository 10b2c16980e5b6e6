//! What the runner decides about a pasta network before the clone, which
//! the keeper then acts on: shared by `pasta` and its `keeper`.

use std::path::PathBuf;

/// What a pasta container needs before it is cloned: pasta's path, and
/// the name of the directory its keeper will make (0700) for pasta's pid
/// file and log and the container's resolv.conf. Nothing is on disk
/// until the keeper exists, and the keeper removes it all, so a runner
/// killed at any point leaves nothing behind.
pub struct Prepared {
    pub(super) program: PathBuf,
    pub(super) dir: PathBuf,
    /// What the keeper writes to `dir`/resolv.conf, when kennel provides it.
    pub(super) resolv_conf: Option<String>,
    /// The writable rootfs where the keeper holds (and may make) the
    /// mount point of that resolv.conf (see `resolv_point`).
    pub(super) resolv_point_in: Option<PathBuf>,
    /// Whether host ports are published: then the runner is told pasta
    /// is gone only once it is reaped, so they are free again when
    /// `kennel run` returns (see the keeper).
    pub(super) publishes: bool,
}
