//! `kennel ps` and `kennel kill`: small readers of the state records.

use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};

use crate::cli::{KillArgs, OutputFormat, PsArgs, StatsArgs};
use kennel_engine::{pidfd_send_signal, state};

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
    pidfd_send_signal(running.pidfd.as_fd(), sig).with_context(|| {
        format!(
            "cannot send signal {} to container {:?}",
            args.signal, args.name
        )
    })?;
    Ok(0)
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
    let s = cgroup_delegate::stats::read_stats(&leaf);
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
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(600), "10m");
        assert_eq!(format_age(7200), "2h");
    }
}
