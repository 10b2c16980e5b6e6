//! Resource limits, as cgroup v2 interface files of the container's leaf.

use std::path::Path;

use crate::error::{CgroupError, Result};

/// `--memory-swap`, Docker's meaning: memory plus swap in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Unlimited,
    /// Memory plus swap, bytes.
    Total(u64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// memory.max, bytes.
    pub memory: Option<u64>,
    pub memory_swap: Option<Swap>,
    /// memory.low (v1: memory.soft_limit_in_bytes), bytes.
    pub memory_reservation: Option<u64>,
    /// pids.max.
    pub pids: Option<u64>,
    /// cpu.max as (quota, period) in microseconds.
    pub cpu_max: Option<(u64, u64)>,
    /// cpu.weight, 1..=10000.
    pub cpu_weight: Option<u64>,
    /// cgroup v1's cpu.shares, 2..=262144; on v2 a cpu.weight, converted
    /// as runc converts it.
    pub cpu_shares: Option<u64>,
    /// io.weight, 1..=10000.
    pub io_weight: Option<u64>,
}

/// One interface file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitFile {
    pub file: &'static str,
    pub value: String,
    pub controller: &'static str,
    /// The flag that asked for it, for error messages.
    pub flag: &'static str,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The files to write, in order; memory.max before memory.swap.max.
    pub fn files(&self) -> Result<Vec<LimitFile>> {
        let mut out = Vec::new();
        let mut push = |file, value: String, controller, flag| {
            out.push(LimitFile {
                file,
                value,
                controller,
                flag,
            })
        };
        if let Some(m) = self.memory {
            push("memory.max", m.to_string(), "memory", "--memory");
        }
        if let Some(s) = self.memory_swap {
            let value =
                match (s, self.memory) {
                    (Swap::Unlimited, _) => "max".to_string(),
                    (Swap::Total(total), Some(m)) if total >= m => (total - m).to_string(),
                    (Swap::Total(_), Some(_)) => return Err(CgroupError::LimitRefused {
                        file: "memory.swap.max",
                        value: "less than --memory".into(),
                        cause: std::io::Error::from_raw_os_error(libc::EINVAL),
                        hint:
                            " (--memory-swap is memory plus swap, so it must be at least --memory)",
                    }),
                    (Swap::Total(_), None) => {
                        return Err(CgroupError::LimitRefused {
                            file: "memory.swap.max",
                            value: "without --memory".into(),
                            cause: std::io::Error::from_raw_os_error(libc::EINVAL),
                            hint: " (--memory-swap counts memory plus swap: give --memory too)",
                        })
                    }
                };
            push("memory.swap.max", value, "memory", "--memory-swap");
        }
        if let Some(r) = self.memory_reservation {
            push("memory.low", r.to_string(), "memory", "memory.reservation");
        }
        if let Some(p) = self.pids {
            push("pids.max", p.to_string(), "pids", "--pids-limit");
        }
        if let Some((quota, period)) = self.cpu_max {
            push("cpu.max", format!("{quota} {period}"), "cpu", "--cpus");
        }
        // An explicit weight wins over one converted from shares, as
        // linux.resources.unified wins in runc.
        if let Some(w) = self.cpu_weight.or(self.cpu_shares.map(shares_to_weight)) {
            push("cpu.weight", w.to_string(), "cpu", "--cpu-weight");
        }
        if let Some(w) = self.io_weight {
            push("io.weight", format!("default {w}"), "io", "--io-weight");
        }
        Ok(out)
    }

    /// The same limits as cgroup v1 files, as runc's cgroupfs driver
    /// writes them: OCI's memory.swap is v1's memsw (memory plus swap) as
    /// it is, and each limit before the one the kernel checks against it
    /// (memory before memsw, the period before the quota).
    pub fn files_v1(&self) -> Result<Vec<LimitFile>> {
        // The same checks as on v2 (swap at least memory, and so on).
        self.files()?;
        let mut out = Vec::new();
        let mut push = |file, value: String, controller, flag| {
            out.push(LimitFile {
                file,
                value,
                controller,
                flag,
            })
        };
        if let Some(m) = self.memory {
            push("memory.limit_in_bytes", m.to_string(), "memory", "--memory");
        }
        match self.memory_swap {
            Some(Swap::Unlimited) => push(
                "memory.memsw.limit_in_bytes",
                "-1".into(),
                "memory",
                "--memory-swap",
            ),
            Some(Swap::Total(t)) => push(
                "memory.memsw.limit_in_bytes",
                t.to_string(),
                "memory",
                "--memory-swap",
            ),
            None => {}
        }
        if let Some(r) = self.memory_reservation {
            push(
                "memory.soft_limit_in_bytes",
                r.to_string(),
                "memory",
                "memory.reservation",
            );
        }
        if let Some(p) = self.pids {
            push("pids.max", p.to_string(), "pids", "--pids-limit");
        }
        if let Some((quota, period)) = self.cpu_max {
            push("cpu.cfs_period_us", period.to_string(), "cpu", "--cpus");
            push("cpu.cfs_quota_us", quota.to_string(), "cpu", "--cpus");
        }
        if let Some(s) = self.cpu_shares {
            push("cpu.shares", s.to_string(), "cpu", "cpu.shares");
        }
        if self.cpu_weight.is_some() {
            return Err(CgroupError::V2Only {
                what: "cpu.weight",
                instead: "give linux.resources.cpu.shares instead",
            });
        }
        if self.io_weight.is_some() {
            return Err(CgroupError::V2Only {
                what: "io.weight",
                instead: "kennel does not implement blkio.weight; drop it",
            });
        }
        Ok(out)
    }

    /// The controllers these limits need.
    pub fn controllers(&self) -> Result<Vec<&'static str>> {
        let mut c: Vec<&'static str> = self.files()?.iter().map(|f| f.controller).collect();
        c.dedup();
        c.sort();
        c.dedup();
        Ok(c)
    }

    /// Writes every limit into `leaf`. A value the kernel refuses is an
    /// error that names the file, the value and the valid range.
    pub fn apply(&self, leaf: &Path) -> Result<()> {
        for f in self.files()? {
            std::fs::write(leaf.join(f.file), &f.value).map_err(|cause| {
                let hint = match f.file {
                    "cpu.weight" | "io.weight" => " (valid weights are 1 to 10000)",
                    "cpu.max" => " (the period must be 1000 to 1000000 microseconds)",
                    "memory.max" | "memory.swap.max" => {
                        " (is it below what the container already uses?)"
                    }
                    _ => "",
                };
                CgroupError::LimitRefused {
                    file: f.file,
                    value: f.value.clone(),
                    cause,
                    hint,
                }
            })?;
        }
        Ok(())
    }

    /// `memory.max=64M`, for the OOM message.
    pub fn memory_description(&self) -> String {
        match self.memory {
            Some(m) => format!("memory.max={}", human_bytes(m)),
            None => "no memory limit set".into(),
        }
    }
}

/// cgroup v1's cpu.shares (2..=262144) as a cgroup v2 cpu.weight
/// (1..=10000): the linear map runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// Bytes in the largest unit that divides them exactly (64M, 1536K, 1G).
pub fn human_bytes(b: u64) -> String {
    for (unit, size) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if b >= size && b % size == 0 {
            return format!("{}{unit}", b / size);
        }
    }
    b.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Asserts that `files` are `want`: (file, value) pairs, in order.
    #[track_caller]
    pub(crate) fn assert_files(files: Result<Vec<LimitFile>>, want: &[(&str, &str)]) {
        let got: Vec<(&str, String)> = files
            .unwrap()
            .into_iter()
            .map(|f| (f.file, f.value))
            .collect();
        let want: Vec<(&str, String)> = want.iter().map(|&(f, v)| (f, v.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn files_and_controllers() {
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(Swap::Total(96 << 20)),
            pids: Some(50),
            cpu_max: Some((150000, 100000)),
            cpu_weight: Some(200),
            io_weight: Some(300),
            ..Default::default()
        };
        assert_files(
            l.files(),
            &[
                ("memory.max", "67108864"),
                ("memory.swap.max", "33554432"),
                ("pids.max", "50"),
                ("cpu.max", "150000 100000"),
                ("cpu.weight", "200"),
                ("io.weight", "default 300"),
            ],
        );
        assert_eq!(
            l.controllers().unwrap(),
            vec!["cpu", "io", "memory", "pids"]
        );
        assert!(Limits::default().is_empty());
        assert!(Limits::default().controllers().unwrap().is_empty());
    }

    #[test]
    fn swap_rules() {
        let l = Limits {
            memory: Some(100),
            memory_swap: Some(Swap::Total(50)),
            ..Default::default()
        };
        assert!(l
            .files()
            .unwrap_err()
            .to_string()
            .contains("at least --memory"));
        let l = Limits {
            memory_swap: Some(Swap::Total(50)),
            ..Default::default()
        };
        assert!(l.files().is_err());
        let l = Limits {
            memory: Some(100),
            memory_swap: Some(Swap::Unlimited),
            ..Default::default()
        };
        assert_eq!(l.files().unwrap()[1].value, "max");
    }

    #[test]
    fn shares_become_weights_and_reservation_memory_low() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        let l = Limits {
            cpu_shares: Some(512),
            memory_reservation: Some(1 << 20),
            ..Default::default()
        };
        assert_files(
            l.files(),
            &[("memory.low", "1048576"), ("cpu.weight", "20")],
        );
        let explicit = Limits {
            cpu_weight: Some(300),
            ..l
        };
        assert_eq!(explicit.files().unwrap()[1].value, "300");
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(64 << 20), "64M");
        assert_eq!(human_bytes(1 << 30), "1G");
        assert_eq!(human_bytes(1536 << 10), "1536K");
        assert_eq!(human_bytes(1000), "1000");
        assert_eq!(
            Limits {
                memory: Some(64 << 20),
                ..Default::default()
            }
            .memory_description(),
            "memory.max=64M"
        );
    }
}
