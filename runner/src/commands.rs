//! `kennel ps` and `kennel kill`: small readers of the state records.

use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};

use crate::cli::{KillArgs, OutputFormat, PsArgs, StatsArgs};
use kennel_engine::{lifecycle::state, pidfd_send_signal};

pub fn ps(args: &PsArgs) -> Result<i32> {
    let list: Vec<_> = state::list(&state::Store::new(None)?)?
        .into_iter()
        .filter(|s| s.status != state::Status::Stopped)
        .collect();
    match args.format {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.id,
                        "pid": s.pid,
                        "rootfs": s.kennel.rootfs,
                        "command": s.kennel.command,
                        "created": s.kennel.created,
                        "cgroup": s.kennel.cgroup,
                        "status": s.status.to_string(),
                        "seccomp": seccomp(s),
                        "network": s.kennel.network.as_ref().map(|n| n.mode.clone()),
                        "address": s.kennel.network.as_ref().and_then(|n| n.address),
                        "ports": s.kennel.network.as_ref().map(|n| n.publish.clone()).unwrap_or_default(),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Table => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let rows: Vec<Vec<String>> = list.iter().map(|s| ps_row(s, now)).collect();
            print!("{}", table(&PS_COLUMNS, &rows));
        }
    }
    Ok(0)
}

const PS_COLUMNS: [&str; 9] = [
    "NAME", "PID", "UP", "ROOTFS", "CGROUP", "SECCOMP", "ADDRESS", "PORTS", "COMMAND",
];

/// One container's cells, in `PS_COLUMNS` order; "-" for what it lacks.
fn ps_row(s: &state::State, now: u64) -> Vec<String> {
    let dash = || "-".to_string();
    let rootfs = s
        .kennel
        .rootfs
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(host sandbox)".into());
    let cgroup = s
        .kennel
        .cgroup
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(dash);
    let (address, ports) = match &s.kennel.network {
        Some(n) => (
            n.address.map(|a| a.to_string()).unwrap_or_else(dash),
            match n.publish.is_empty() {
                true => dash(),
                false => n.publish.join(","),
            },
        ),
        None => (dash(), dash()),
    };
    let command = s.kennel.command.join(" ");
    vec![
        s.id.clone(),
        s.pid.to_string(),
        format_age(now.saturating_sub(s.kennel.created)),
        rootfs,
        cgroup,
        seccomp(s),
        address,
        ports,
        if command.is_empty() { dash() } else { command },
    ]
}

/// The header and rows with each column as wide as its widest cell, two
/// spaces apart, so long paths never push a column out of line; the last
/// column is not padded. Control characters in a cell (a line break in a
/// command) are shown escaped: they would break the table too.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |cell: &str| {
        cell.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect::<String>()
    };
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()))
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

fn seccomp(s: &state::State) -> String {
    let annotations = s.annotations.clone().into_iter().collect();
    kennel_engine::describe_seccomp(Some(&annotations), s.kennel.seccomp.is_some())
}

fn format_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

pub fn kill(args: &KillArgs) -> Result<i32> {
    let sig = kennel_engine::lifecycle::parse_signal(&args.signal)?;
    let Some(running) = state::find(&state::Store::new(None)?, &args.name)? else {
        bail!(
            "no running container named {:?} (see `kennel ps`)",
            args.name
        );
    };
    // Read before sending: a signal that ends the process would take its
    // status with it.
    // kennel's --init waits for what it forwards (nothing in /proc shows
    // that), so only another PID 1 is looked at.
    let status = match running.state.kennel.init {
        true => None,
        false => std::fs::read_to_string(format!("/proc/{}/status", running.state.pid)).ok(),
    };
    pidfd_send_signal(running.pidfd.as_fd(), sig).with_context(|| {
        format!(
            "cannot send signal {} to container {:?}",
            args.signal, args.name
        )
    })?;
    if let Some(why) = status.and_then(|s| dropped_by_pid1(&s, sig)) {
        let name = &args.name;
        let short = signal_name(sig).trim_start_matches("SIG").to_string();
        bail!(
            "{} had no effect on container {name:?}: its PID 1 {why}, and the kernel gives a namespace's PID 1 only the signals it handles; stop it with `kennel kill {name} KILL`, or start it with --init (kennel's PID 1 forwards {short} to the command)",
            signal_name(sig)
        );
    }
    Ok(0)
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Why the process whose /proc/PID/status is `status` drops `sig`, when it
/// is PID 1 of its pid namespace: the kernel discards a signal such a
/// process neither blocks nor catches (only SIGKILL and SIGSTOP are forced
/// on it from outside), and one it ignores.
fn dropped_by_pid1(status: &str, sig: i32) -> Option<String> {
    if sig == 0 || sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return None;
    }
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("NSpid")?.split_whitespace().last()? != "1" {
        return None;
    }
    let has = |key: &str| {
        u64::from_str_radix(field(key).unwrap_or("0"), 16)
            .is_ok_and(|mask| sig <= 64 && mask & (1u64 << (sig - 1)) != 0)
    };
    let name = field("Name").unwrap_or("?");
    // A blocked signal is queued whatever its handler (a signalfd reader,
    // as kennel's --init is, takes it from there).
    if has("SigBlk") {
        return None;
    }
    if has("SigIgn") {
        Some(format!("({name}) ignores it"))
    } else if has("SigCgt") {
        None
    } else {
        Some(format!("({name}) has no handler for it"))
    }
}

pub fn stats(args: &StatsArgs) -> Result<i32> {
    let Some(running) = state::find(&state::Store::new(None)?, &args.name)? else {
        bail!(
            "no running container named {:?} (see `kennel ps`)",
            args.name
        );
    };
    let Some(leaf) = running.state.kennel.cgroup else {
        bail!(
            "container {:?} has no cgroup of its own, so there is nothing to read; start it under systemd or with --cgroup-manager=cgroupfs (kennel run --verbose says why it got none)",
            args.name
        );
    };
    let s = cgroup_delegate::stats::read_stats_v1(&leaf, &running.state.kennel.cgroup_v1);
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "name": args.name,
                "cgroup": leaf,
                "memory_current": s.memory_current,
                "memory_peak": s.memory_peak,
                "memory_max": s.memory_max,
                "pids_current": s.pids_current,
                "pids_max": s.pids_max,
                "cpu_usage_usec": s.cpu_usage_usec,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        OutputFormat::Table => {
            let show = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            println!("cgroup          {}", leaf.display());
            println!("memory.current  {}", show(s.memory_current));
            println!("memory.peak     {}", show(s.memory_peak));
            println!("memory.max      {}", s.memory_max.as_deref().unwrap_or("-"));
            println!("pids.current    {}", show(s.pids_current));
            println!("pids.max        {}", s.pids_max.as_deref().unwrap_or("-"));
            println!("cpu usage_usec  {}", show(s.cpu_usage_usec));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_starts_where_its_label_does() {
        let rows = vec![
            vec![
                "a".into(),
                "/a/very/long/path/to/a/rootfs/that/is/wide".into(),
                "x".into(),
            ],
            vec!["longer-name".into(), "-".into(), "two\nlines".into()],
        ];
        let text = table(&["NAME", "ROOTFS", "COMMAND"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let starts = |l: &str| {
            l.char_indices()
                .filter(|&(i, c)| c != ' ' && (i == 0 || l.as_bytes()[i - 1] == b' '))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        for line in &lines {
            assert_eq!(starts(line), starts(lines[0]), "{text}");
        }
        assert!(lines[2].ends_with("two\\nlines"), "{text}");
    }

    #[test]
    fn a_pid_1_drops_what_it_does_not_handle() {
        // SigCgt has SIGTERM (15) and SIGINT (2); SigIgn has SIGHUP (1).
        let status = |nspid: &str| {
            format!("Name:\tsleep\nNSpid:\t{nspid}\nSigIgn:\t0000000000000001\nSigCgt:\t0000000000004002\n")
        };
        let pid1 = status("4242\t1");
        assert_eq!(dropped_by_pid1(&pid1, libc::SIGTERM), None);
        assert_eq!(dropped_by_pid1(&pid1, libc::SIGKILL), None);
        assert_eq!(
            dropped_by_pid1(&pid1, libc::SIGUSR1).as_deref(),
            Some("(sleep) has no handler for it")
        );
        assert_eq!(
            dropped_by_pid1(&pid1, libc::SIGHUP).as_deref(),
            Some("(sleep) ignores it")
        );
        // Blocked: queued for a signalfd.
        let blocked = pid1.replace("SigIgn:", "SigBlk:\t0000000000000200\nSigIgn:");
        assert_eq!(dropped_by_pid1(&blocked, libc::SIGUSR1), None);
        // Not a PID 1 (the host's pid namespace, or a nested one).
        assert_eq!(dropped_by_pid1(&status("4242"), libc::SIGUSR1), None);
        assert_eq!(dropped_by_pid1(&status("4242\t7"), libc::SIGUSR1), None);
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(600), "10m");
        assert_eq!(format_age(7200), "2h");
    }
}
