//! The resource limit flags (`--memory`, `--cpus`, ...) as the spec's
//! `linux.resources`.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use crate::cli::{CgroupArgs, CgroupManager};

/// Parses a size: plain bytes, or with a k, m, g or t suffix (binary, as
/// Docker reads them; a trailing b or ib is accepted).
pub fn parse_bytes(flag: &str, text: &str) -> Result<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().with_context(|| {
        format!("{flag} {text:?} is malformed: expected a size such as 512k, 64M or 1G")
    })?;
    n.checked_mul(1u64 << shift)
        .filter(|b| *b > 0)
        .with_context(|| format!("{flag} {text:?} is out of range"))
}

/// `--cpus N` as cpu.max: N periods' worth of quota per 100 ms period.
pub fn cpu_quota(cpus: f64) -> Result<(i64, u64)> {
    const PERIOD: u64 = 100_000;
    if !(cpus.is_finite() && cpus > 0.0) {
        bail!("--cpus {cpus} must be a positive number of CPUs, e.g. 0.5 or 2");
    }
    let quota = (cpus * PERIOD as f64).round() as i64;
    if quota < 1000 {
        bail!("--cpus {cpus} is below the kernel's minimum of 0.01 CPU");
    }
    Ok((quota, PERIOD))
}

fn weight(flag: &str, w: u64) -> Result<String> {
    if !(1..=10000).contains(&w) {
        bail!("{flag} {w} is out of range: weights are 1 to 10000 (100 is the default)");
    }
    Ok(w.to_string())
}

/// The limit flags as the spec's linux.resources; None when none was given.
pub fn resources(c: &CgroupArgs) -> Result<Option<LinuxResources>> {
    let mut r = LinuxResourcesBuilder::default();
    let mut any = false;
    let memory = c
        .memory
        .as_deref()
        .map(|m| parse_bytes("--memory", m))
        .transpose()?;
    let swap = match c.memory_swap.as_deref() {
        None => None,
        Some("-1") => Some(-1i64),
        Some(s) => Some(parse_bytes("--memory-swap", s)? as i64),
    };
    if memory.is_some() || swap.is_some() {
        let mut m = LinuxMemoryBuilder::default();
        if let Some(limit) = memory {
            m = m.limit(limit as i64);
        }
        if let Some(swap) = swap {
            m = m.swap(swap);
        }
        r = r.memory(m.build()?);
        any = true;
    }
    if let Some(p) = c.pids_limit {
        if p == 0 {
            bail!("--pids-limit 0 would let nothing start; give at least 1");
        }
        r = r.pids(LinuxPidsBuilder::default().limit(p as i64).build()?);
        any = true;
    }
    if let Some(cpus) = c.cpus {
        let (quota, period) = cpu_quota(cpus)?;
        r = r.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(period)
                .build()?,
        );
        any = true;
    }
    let mut unified = std::collections::HashMap::new();
    if let Some(w) = c.cpu_weight {
        unified.insert("cpu.weight".to_string(), weight("--cpu-weight", w)?);
    }
    if let Some(w) = c.io_weight {
        unified.insert("io.weight".to_string(), weight("--io-weight", w)?);
    }
    if !unified.is_empty() {
        r = r.unified(unified);
        any = true;
    }
    if any && c.cgroup_manager == CgroupManager::Disabled {
        bail!("resource limits need a cgroup, but --cgroup-manager=disabled was given; drop the limit flags or use --cgroup-manager=auto");
    }
    Ok(if any { Some(r.build()?) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("-m", "64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("-m", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("-m", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("-m", "512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("-m", "1024").unwrap(), 1024);
        assert!(parse_bytes("-m", "lots").is_err());
        assert!(parse_bytes("-m", "0").is_err());
        assert!(parse_bytes("-m", "99999999999t").is_err());
        assert_eq!(cpu_quota(1.5).unwrap(), (150000, 100000));
        assert!(cpu_quota(0.0).is_err());
        assert!(cpu_quota(0.001).is_err());
        assert!(cpu_quota(f64::NAN).is_err());
        assert!(weight("--cpu-weight", 0).is_err());
        assert!(weight("--cpu-weight", 10001).is_err());
    }
}
