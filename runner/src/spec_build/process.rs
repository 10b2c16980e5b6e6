//! The process a spec built from flags runs: who it runs as, its
//! environment, where it starts, and what it may do (capabilities,
//! rlimits, no_new_privs).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, Process, ProcessBuilder, UserBuilder,
};

use super::flag_values::parse_ulimit;
use super::{maps_contain, Host};
use crate::cli::RunArgs;
use crate::idmap::IdPlan;
use kennel_engine::lifecycle::exec::apply_env_entry;
use kennel_engine::{host::passwd, DEFAULT_PATH};

/// The process for `args`, holding `caps`. `etc_root` is where
/// /etc/passwd is read for user names and HOME.
pub(super) fn process(
    args: &RunArgs,
    host: &Host,
    ids: &IdPlan,
    etc_root: &Path,
    hostname: &str,
    caps: HashSet<Capability>,
) -> Result<Process> {
    let (uid, gid, home) = user(args, host, ids, etc_root)?;
    let env = env(args, &home, hostname)?;
    let cwd = cwd(args, host)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let rlimits = args
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    Ok(ProcessBuilder::default()
        .terminal(args.process.tty)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .args(args.command.clone())
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(!args.allow_new_privs)
        .build()?)
}

/// The user inside, and their home: `--user`, else the caller where
/// keep-id maps them onto themselves, else root.
fn user(args: &RunArgs, host: &Host, ids: &IdPlan, etc_root: &Path) -> Result<(u32, u32, PathBuf)> {
    let (uid, gid, home) = match &args.process.user {
        Some(u) => {
            let who = passwd::resolve_user(etc_root, u)?;
            (who.uid, who.gid, who.home)
        }
        None if host.caller.uid != 0
            && ids
                .uid_map
                .iter()
                .any(|l| l.inner == host.caller.uid && l.outer == host.caller.uid) =>
        {
            (host.caller.uid, host.caller.gid, Some(host.home.clone()))
        }
        None => (0, 0, passwd::home_of(etc_root, 0)?),
    };
    if !maps_contain(&ids.uid_map, uid) || !maps_contain(&ids.gid_map, gid) {
        bail!(
            "user {uid}:{gid} is not mapped in the container (maps: {}); use --userns=auto or --userns=keep-id with subordinate ids, or pick a mapped user",
            ids.reason
        );
    }
    let home = home.unwrap_or_else(|| PathBuf::from(if uid == 0 { "/root" } else { "/" }));
    Ok((uid, gid, home))
}

/// The base environment, then `--env-file`s, then `--env`s, each later
/// entry replacing an earlier one of the same name.
fn env(args: &RunArgs, home: &Path, hostname: &str) -> Result<Vec<String>> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOME={}", home.display()),
        format!(
            "TERM={}",
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
        ),
        format!("HOSTNAME={hostname}"),
        "container=kennel".to_string(),
    ];
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--env-file {} cannot be read", file.display()))?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                apply_env_entry(line, &mut env);
            }
        }
    }
    for e in &args.process.env {
        if e.is_empty() || e.starts_with('=') {
            bail!("--env {e:?} is malformed: expected KEY=VALUE or KEY");
        }
        apply_env_entry(e, &mut env);
    }
    Ok(env)
}

/// `--workdir`; by default the host sandbox starts where the caller is
/// when that is under their home (else at home), a rootfs at /.
fn cwd(args: &RunArgs, host: &Host) -> Result<String> {
    let sandbox = args.rootfs.is_none();
    Ok(match &args.process.workdir {
        Some(w) if w.starts_with('/') => w.clone(),
        Some(w) => bail!("--workdir {w:?} must be an absolute path"),
        None if sandbox && !args.no_home => match &host.cwd {
            Some(c) if c.starts_with(&host.home) => c.display().to_string(),
            _ => host.home.display().to_string(),
        },
        None => "/".to_string(),
    })
}
