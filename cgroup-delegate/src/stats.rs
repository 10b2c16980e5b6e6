//! `kennel stats`: what the container's cgroup says about it.

use std::path::Path;

use crate::tree::keyed_value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub memory_max: Option<String>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<String>,
    /// cpu.stat usage_usec.
    pub cpu_usage_usec: Option<u64>,
}

fn read(leaf: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(leaf.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

fn number(leaf: &Path, file: &str) -> Option<u64> {
    read(leaf, file)?.parse().ok()
}

/// Reads the leaf's counters; a controller that is not enabled gives None.
pub fn read_stats(leaf: &Path) -> Stats {
    Stats {
        memory_current: number(leaf, "memory.current"),
        memory_peak: number(leaf, "memory.peak"),
        memory_max: read(leaf, "memory.max"),
        pids_current: number(leaf, "pids.current"),
        pids_max: read(leaf, "pids.max"),
        cpu_usage_usec: read(leaf, "cpu.stat").and_then(|t| keyed_value(&t, "usage_usec")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fake_leaf() {
        let dir = std::env::temp_dir().join(format!("kennel-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1234\nuser_usec 1000\n").unwrap();
        let s = read_stats(&dir);
        assert_eq!(s.memory_current, Some(4096));
        assert_eq!(s.memory_peak, None);
        assert_eq!(s.memory_max.as_deref(), Some("max"));
        assert_eq!(s.pids_current, Some(3));
        assert_eq!(s.cpu_usage_usec, Some(1234));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
