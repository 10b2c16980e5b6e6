//! `kennel rootfs import TARBALL DIR`: docs/run.md's recipe for a root
//! filesystem as one command. The tarball is unpacked by the host's `tar`
//! inside a container with the full subordinate map (`--userns=subids`),
//! so tar's chown to the image's owners goes through the user's map: the
//! image's root becomes the user, its uid N their subordinate id N-1.
//! Without subordinate ids there is no such map: the import stops before
//! touching DIR and names both the fix and the plain unpack that suits a
//! one-id container.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};
use crate::idmap::{self, Caller, SubIds};

/// Why the import cannot keep the image's owners for `user`, and the two
/// ways on: subordinate ids, or a plain unpack for one-id containers.
/// Checked before DIR is made, so a refusal leaves nothing behind.
fn missing_subids(user: &str, subids: &SubIds, tarball: &Path, dir: &Path) -> Option<String> {
    let file = if subids.uids.is_empty() {
        "/etc/subuid"
    } else if subids.gids.is_empty() {
        "/etc/subgid"
    } else {
        return None;
    };
    Some(format!(
        "rootfs import: {user} has no subordinate ids (no entry in {file}), so the image's owners other than root cannot be kept; \
         add a range with: {}, and run this again; or, for containers with a single id (every file yours, root inside), \
         unpack it as yourself: mkdir {dir} && tar -xf {tarball} -C {dir} --anchored --exclude='./dev/*' --exclude='dev/*'",
        idmap::usermod_fix(user, subids),
        dir = dir.display(),
        tarball = tarball.display(),
    ))
}

/// The checked, absolute paths, and DIR made if it does not exist.
fn prepare(tarball: &Path, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let tarball = std::fs::canonicalize(tarball).with_context(|| {
        format!(
            "rootfs import: cannot read the tarball {}",
            tarball.display()
        )
    })?;
    if !tarball.is_file() {
        bail!("rootfs import: {} is not a file", tarball.display());
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "rootfs import: {} is not empty; name a new directory (kennel never unpacks over a tree)",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(dir)
            .with_context(|| format!("rootfs import: cannot create {}", dir.display()))?,
        Err(e) => bail!("rootfs import: cannot read {}: {e}", dir.display()),
    }
    let dir = std::fs::canonicalize(dir)?;
    // `-v SRC:DST` cannot carry them.
    for p in [&tarball, &dir] {
        if p.to_string_lossy().contains([':', ',']) {
            bail!(
                "rootfs import: {} contains ':' or ',', which a volume cannot name; move or link it to a plain path",
                p.display()
            );
        }
    }
    Ok((tarball, dir))
}

/// The `kennel run` that unpacks `tarball` into `dir`.
pub fn run_args(tarball: &Path, dir: &Path) -> Result<RunArgs> {
    // Anything less would give the image's other owners wrong ids.
    run_args_with(tarball, dir, "subids", None)
}

/// The same with another id map (`kennel box` unpacks through keep-id,
/// as root inside: `user` 0:0).
pub fn run_args_with(
    tarball: &Path,
    dir: &Path,
    userns: &str,
    user: Option<&str>,
) -> Result<RunArgs> {
    let caller = Caller::current();
    // Root's map is the identity (or the ids of the namespace it is in).
    if caller.uid != 0 {
        if let Some(why) = missing_subids(&caller.name, &idmap::read_subids(&caller), tarball, dir)
        {
            bail!(why);
        }
    }
    let (tarball, dir) = prepare(tarball, dir)?;
    host_tool(
        userns,
        user,
        &[
            format!("{}:/import/image.tar:ro", tarball.display()),
            format!("{}:/import/root", dir.display()),
        ],
        &[
            "tar",
            "-xf",
            "/import/image.tar",
            "-C",
            "/import/root",
            "--numeric-owner",
            // Device nodes cannot be made in a user namespace; the container
            // gets its own /dev. Anchored: tar's default would also drop every
            // other directory named dev (usr/lib/x/dev/...).
            "--anchored",
            "--exclude=./dev/*",
            "--exclude=dev/*",
        ],
    )
}

/// The `kennel run` of a throwaway container on the host's own tools
/// (no --rootfs): `userns`'s map, as `user` when given, no home, no
/// network, in `/`, with `volumes` (each `SRC:DST[:ro]`) and `command`.
/// What the user's mapped ids own is made, copied or deleted only here.
pub fn host_tool(
    userns: &str,
    user: Option<&str>,
    volumes: &[String],
    command: &[&str],
) -> Result<RunArgs> {
    let mut argv: Vec<String> = ["kennel", "run", &format!("--userns={userns}")]
        .map(String::from)
        .to_vec();
    if let Some(user) = user {
        argv.extend(["-u".to_string(), user.to_string()]);
    }
    argv.extend(["--no-home", "--net=private", "-w", "/"].map(String::from));
    for v in volumes {
        argv.extend(["-v".to_string(), v.clone()]);
    }
    argv.push("--".into());
    argv.extend(command.iter().map(|c| c.to_string()));
    match Cli::try_parse_from(argv)?.command {
        Command::Run(args) => Ok(*args),
        _ => unreachable!("the argv above is a run command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kennel_idmap::IdRange;

    #[test]
    fn without_subordinate_ids_both_ways_on_are_named() {
        let none = SubIds::default();
        let why = missing_subids("alice", &none, Path::new("/t/a.tar"), Path::new("/t/a")).unwrap();
        assert!(why.contains("no entry in /etc/subuid"), "{why}");
        assert!(why.contains("sudo usermod --add-subuids"), "{why}");
        assert!(
            why.contains("mkdir /t/a && tar -xf /t/a.tar -C /t/a"),
            "{why}"
        );
        assert!(!why.contains("--userns"), "{why}");
    }

    #[test]
    fn with_both_ranges_nothing_is_refused() {
        let range = IdRange {
            start: 100000,
            count: 65536,
        };
        let both = SubIds {
            uids: vec![range],
            gids: vec![range],
            free: None,
        };
        assert_eq!(
            missing_subids("alice", &both, Path::new("/a.tar"), Path::new("/a")),
            None
        );
        let uids_only = SubIds {
            uids: vec![range],
            ..SubIds::default()
        };
        let why =
            missing_subids("alice", &uids_only, Path::new("/a.tar"), Path::new("/a")).unwrap();
        assert!(why.contains("no entry in /etc/subgid"), "{why}");
    }
}
