//! cgroup v2 placement for kennel containers: systemd delegation over D-Bus
//! or an already delegated subtree. Built in its own issue; the crate exists
//! so the workspace has its final shape.
