//! `update`'s resources: what the caller asked to change, as the
//! runtime-spec LinuxResources the engine applies. Reading them needs no
//! engine, and doing it here keeps runc's rule in one place: with
//! `--resources`, the JSON is the whole request and the flags are ignored.

use std::fs::File;
use std::io::Read;

use anyhow::Context as _;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cli::UpdateArgs;

impl UpdateArgs {
    /// The requested resources. `stdin` is read for `--resources -` (go-runc
    /// pipes the JSON that way). Sections no flag touched are None, so the
    /// engine can tell "leave alone" from "set to zero".
    pub fn requested_resources(&self, stdin: impl Read) -> anyhow::Result<LinuxResources> {
        match self.resources.as_deref() {
            Some("-") => serde_json::from_reader(stdin).context("decode resources from stdin"),
            Some(path) => {
                let f = File::open(path).with_context(|| format!("open {path}"))?;
                serde_json::from_reader(std::io::BufReader::new(f))
                    .with_context(|| format!("decode resources from {path}"))
            }
            None => Ok(self.resources_from_flags()),
        }
    }

    fn resources_from_flags(&self) -> LinuxResources {
        let mut r = LinuxResources::default();

        let mut mem = LinuxMemory::default();
        mem.set_limit(self.memory);
        mem.set_reservation(self.memory_reservation);
        mem.set_swap(self.memory_swap);
        if mem != LinuxMemory::default() {
            r.set_memory(Some(mem));
        }

        let mut cpu = LinuxCpu::default();
        cpu.set_shares(self.cpu_share);
        cpu.set_quota(self.cpu_quota);
        cpu.set_burst(self.cpu_burst);
        cpu.set_period(self.cpu_period);
        cpu.set_realtime_runtime(self.cpu_rt_runtime);
        cpu.set_realtime_period(self.cpu_rt_period);
        cpu.set_cpus(self.cpuset_cpus.clone());
        cpu.set_mems(self.cpuset_mems.clone());
        cpu.set_idle(self.cpu_idle);
        if cpu != LinuxCpu::default() {
            r.set_cpu(Some(cpu));
        }

        // runc treats a zero weight as "not given".
        if let Some(w) = self.blkio_weight.filter(|w| *w != 0) {
            let mut bio = LinuxBlockIo::default();
            bio.set_weight(Some(w));
            r.set_block_io(Some(bio));
        }

        if let Some(limit) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            r.set_pids(Some(pids));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> UpdateArgs {
        UpdateArgs {
            id: "c".into(),
            ..UpdateArgs::default()
        }
    }

    #[test]
    fn flags_fill_only_their_sections() {
        let a = UpdateArgs {
            memory: Some(1 << 30),
            memory_swap: Some(-1),
            pids_limit: Some(64),
            ..args()
        };
        let r = a.requested_resources(std::io::empty()).unwrap();
        let mem = r.memory().as_ref().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(1 << 30), Some(-1)));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 64);
        assert!(r.cpu().is_none() && r.block_io().is_none());

        let none = args().requested_resources(std::io::empty()).unwrap();
        assert_eq!(none, LinuxResources::default());
    }

    #[test]
    fn json_from_stdin_wins_over_flags() {
        let a = UpdateArgs {
            resources: Some("-".into()),
            memory: Some(1),
            ..args()
        };
        let json = br#"{"cpu":{"quota":50000,"period":100000},"pids":{"limit":10}}"#;
        let r = a.requested_resources(&json[..]).unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        assert!(r.memory().is_none());
        assert_eq!(r.pids().as_ref().unwrap().limit(), 10);
    }

    #[test]
    fn json_from_a_file_as_podman_writes_it() {
        let path = std::env::temp_dir().join(format!("kennel-oci-upd-{}", std::process::id()));
        std::fs::write(&path, br#"{"memory":{"limit":268435456}}"#).unwrap();
        let a = UpdateArgs {
            resources: Some(path.to_str().unwrap().into()),
            ..args()
        };
        let r = a.requested_resources(std::io::empty()).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(268_435_456));
        std::fs::remove_file(&path).unwrap();
        assert!(a.requested_resources(std::io::empty()).is_err());
    }
}
