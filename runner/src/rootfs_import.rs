//! `kennel rootfs import TARBALL DIR`: the README's recipe for a root
//! filesystem as one command. The tarball is unpacked by the host's `tar`
//! inside a container with the full subordinate map (`--userns=subids`),
//! so tar's chown to the image's owners goes through the user's map: the
//! image's root becomes the user, its uid N their subordinate id N-1.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};

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
    let (tarball, dir) = prepare(tarball, dir)?;
    let argv: Vec<String> = [
        "kennel",
        "run",
        // Anything less would give the image's other owners wrong ids.
        "--userns=subids",
        "--no-home",
        "--net=private",
        "-w",
        "/",
        "-v",
        &format!("{}:/import/image.tar:ro", tarball.display()),
        "-v",
        &format!("{}:/import/root", dir.display()),
        "--",
        "tar",
        "-xf",
        "/import/image.tar",
        "-C",
        "/import/root",
        "--numeric-owner",
        // Device nodes cannot be made in a user namespace; the container
        // gets its own /dev.
        "--exclude=./dev/*",
        "--exclude=dev/*",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    match Cli::try_parse_from(argv)?.command {
        Command::Run(args) => Ok(*args),
        _ => unreachable!("the argv above is a run command"),
    }
}
