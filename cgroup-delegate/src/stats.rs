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

/// The same, for a container with cgroups in v1 hierarchies (`v1`): its
/// memory and pids counters are there, not in the (unified) leaf.
pub fn read_stats_v1(leaf: &Path, v1: &[std::path::PathBuf]) -> Stats {
    let mut s = read_stats(leaf);
    for d in v1 {
        if let Some(current) = number(d, "memory.usage_in_bytes") {
            s.memory_current = Some(current);
            s.memory_peak = number(d, "memory.max_usage_in_bytes");
            // v1's "unlimited" is the largest page-aligned value: say max.
            s.memory_max = read(d, "memory.limit_in_bytes").map(|v| match v.parse::<u64>() {
                Ok(n) if n >= i64::MAX as u64 / 2 => "max".into(),
                _ => v,
            });
        }
        if let Some(current) = number(d, "pids.current") {
            s.pids_current = Some(current);
            s.pids_max = read(d, "pids.max");
        }
    }
    s
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

    #[test]
    fn reads_fake_v1_cgroups() {
        let base = std::env::temp_dir().join(format!("kennel-stats-v1-{}", std::process::id()));
        let (leaf, mem, pids) = (base.join("u"), base.join("m"), base.join("p"));
        for d in [&leaf, &mem, &pids] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(leaf.join("cpu.stat"), "usage_usec 7\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "8192\n").unwrap();
        std::fs::write(mem.join("memory.max_usage_in_bytes"), "9000\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(pids.join("pids.current"), "2\n").unwrap();
        std::fs::write(pids.join("pids.max"), "9\n").unwrap();
        let s = read_stats_v1(&leaf, &[mem, pids]);
        assert_eq!(s.memory_current, Some(8192));
        assert_eq!(s.memory_peak, Some(9000));
        assert_eq!(s.memory_max.as_deref(), Some("max"));
        assert_eq!(
            (s.pids_current, s.pids_max.as_deref()),
            (Some(2), Some("9"))
        );
        assert_eq!(s.cpu_usage_usec, Some(7));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
