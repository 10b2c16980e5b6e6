//! `kennel box`: long-lived developer containers on kennel's own terms.
//!
//! A box is a directory under `$XDG_DATA_HOME/kennel/boxes/NAME`: `root/`
//! (the image, unpacked through the keep-id map, so the user's own uid is
//! the same inside and out and the image's root is the user's mapped
//! root) and `box.json` (what `create` was asked for). Running, it is the
//! named container `box.NAME`: kennel's --init as PID 1 with a `sleep` as
//! its command, started detached by the first `enter`; every later enter
//! is a `kennel exec` into it (one setns on a pidfd, no new namespaces).
//! Every container made here goes through `kennel run`'s one path.

mod create;
mod enter;
mod export;
mod layers;
mod layout;
mod shares;
mod unit;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::cli::{BoxCommand, Cli, Command, ShareItem};
use kennel_engine::lifecycle::state;

pub use enter::enter;

/// What `box.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxConfig {
    pub name: String,
    /// The image as it was given (absolute).
    pub image: PathBuf,
    /// The host directory that is the user's home in the box.
    pub home: PathBuf,
    /// The path of that home inside (the user's home path on the host).
    pub user_home: PathBuf,
    /// Whether `home` was made by `create --home` (then `rm` deletes it).
    pub home_owned: bool,
    /// Whether the real $HOME is shared (no --home).
    pub home_shared: bool,
    pub shell: String,
    pub shares: Vec<ShareItem>,
    pub host_root: bool,
    pub uid: u32,
    pub gid: u32,
    /// The systemd user unit `create --unit` wrote (then `rm` removes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<PathBuf>,
}

/// The container name of box `name`.
pub fn container_name(name: &str) -> String {
    format!("box.{name}")
}

/// `$XDG_DATA_HOME/kennel/boxes`.
fn boxes_dir() -> Result<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context(
            "box: neither XDG_DATA_HOME nor HOME is set, so there is no place for boxes; set HOME",
        )?;
    Ok(data.join("kennel/boxes"))
}

fn box_dir(name: &str) -> Result<PathBuf> {
    state::validate_name(name).map_err(|e| anyhow::anyhow!("box: {e:#}"))?;
    Ok(boxes_dir()?.join(name))
}

/// The box `name`'s directory and config: an error naming the fix for an
/// unknown box or one that belongs to another user.
pub fn load(name: &str) -> Result<(PathBuf, BoxConfig)> {
    let dir = box_dir(name)?;
    let meta = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("box: no box named {name:?} (see `kennel box list`; make one with `kennel box create {name} --image TAR`)")
        }
        Err(e) => bail!("box: cannot read {}: {e}", dir.display()),
    };
    let uid = nix::unistd::getuid().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&meta) != uid {
        bail!(
            "box: {} belongs to uid {}, not to you (uid {uid}): a box is entered only by its owner",
            dir.display(),
            std::os::unix::fs::MetadataExt::uid(&meta)
        );
    }
    let path = dir.join("box.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "box: cannot read {} (a box left half-made? remove it with `kennel box rm {name}`)",
            path.display()
        )
    })?;
    let config = serde_json::from_str(&text)
        .with_context(|| format!("box: {} is not a box record", path.display()))?;
    Ok((dir, config))
}

/// Runs `kennel run ARGV` in this process, as `kennel run` itself would.
fn run_argv(argv: &[String], verbose: bool) -> Result<i32> {
    let all = ["kennel", "run"]
        .into_iter()
        .map(String::from)
        .chain(argv.iter().cloned());
    match Cli::try_parse_from(all)?.command {
        Command::Run(args) => crate::run(&args, verbose),
        _ => unreachable!("a run command"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `kennel box unpack-layers` (see `cli::UnpackLayersArgs`).
pub fn unpack_layers(args: &crate::cli::UnpackLayersArgs) -> Result<i32> {
    layers::unpack(&args.root, &args.layers)
}

pub fn main(cmd: &BoxCommand, verbose: bool) -> Result<i32> {
    match cmd {
        BoxCommand::Create(args) => create::create(args, verbose),
        BoxCommand::Enter(args) => enter(args, verbose),
        BoxCommand::Start { name, foreground } => match foreground {
            true => run_box(name, verbose),
            false => enter::start_detached(name, verbose),
        },
        BoxCommand::List => list(),
        BoxCommand::Stop { name } => {
            load(name)?;
            stop(name)?;
            Ok(0)
        }
        BoxCommand::Rm { name, force } => rm(name, *force, verbose),
        BoxCommand::Export(args) => export::export(args),
    }
}

/// A container on the host's tools in which the box's tree, owned by the
/// user's mapped ids through keep-id, is root's to write.
fn as_mapped_root(volumes: &[String], command: &[&str]) -> Result<crate::cli::RunArgs> {
    crate::rootfs_import::host_tool("keep-id", Some("0:0"), volumes, command)
}

/// Deletes a box directory whose tree belongs to the user's mapped ids,
/// from a container where those ids are root's to remove.
fn remove_tree(dir: &Path, verbose: bool) -> Result<()> {
    if dir.join("root").exists() {
        let args = as_mapped_root(
            &[format!("{}:/box", dir.display())],
            &["rm", "-rf", "/box/root"],
        )?;
        let code = crate::run(&args, verbose)?;
        if code != 0 {
            bail!("box: removing {}/root failed (exit {code})", dir.display());
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("box: cannot remove {}", dir.display()))
}

fn list() -> Result<i32> {
    let dir = boxes_dir()?;
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => bail!("box list: cannot read {}: {e}", dir.display()),
    };
    names.sort();
    let store = state::Store::new(None)?;
    println!(
        "{:<16} {:<8} {:<32} {:<24} SHARES",
        "NAME", "STATUS", "IMAGE", "HOME"
    );
    for name in names {
        let Ok((_, c)) = load(&name) else { continue };
        let status = match state::find(&store, &container_name(&name))? {
            Some(_) => "running",
            None => "stopped",
        };
        let home = match c.home_shared {
            true => format!("{} (shared)", c.home.display()),
            false => c.home.display().to_string(),
        };
        let mut shares: Vec<String> = c
            .shares
            .iter()
            .map(|s| {
                clap::ValueEnum::to_possible_value(s)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            })
            .collect();
        if c.host_root {
            shares.push("host-root".into());
        }
        let shares = if shares.is_empty() {
            "-".to_string()
        } else {
            shares.join(",")
        };
        println!(
            "{name:<16} {status:<8} {:<32} {home:<24} {shares}",
            c.image.display()
        );
    }
    Ok(0)
}

/// Stops the box's container (SIGKILL to its init ends every process in
/// its pid namespace) and waits until its runner has removed the record.
fn stop(name: &str) -> Result<()> {
    let store = state::Store::new(None)?;
    let id = container_name(name);
    let Some(running) = state::find(&store, &id)? else {
        return Ok(());
    };
    kennel_engine::pidfd_send_signal(std::os::fd::AsFd::as_fd(&running.pidfd), libc::SIGKILL)
        .with_context(|| format!("box stop: cannot signal box {name:?}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if state::find(&store, &id)?.is_none() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!("box stop: box {name:?} was killed but its record is still there after 10 s (see `kennel ps`)")
}

fn rm(name: &str, force: bool, verbose: bool) -> Result<i32> {
    let (dir, c) = load(name)?;
    if c.home_owned && c.home.exists() && !force {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!(
                "box rm: box {name:?} has its own home {}, which rm deletes; say so with --force (or -y), or move what you keep out of it first",
                c.home.display()
            );
        }
        eprint!(
            "kennel: delete box {name:?} and its home {}? [y/N] ",
            c.home.display()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("kennel: nothing removed");
            return Ok(1);
        }
    }
    stop(name)?;
    remove_tree(&dir, verbose)?;
    if c.home_owned {
        std::fs::remove_dir_all(&c.home)
            .with_context(|| format!("box rm: cannot remove the home {}", c.home.display()))?;
    }
    if let Some(path) = &c.unit {
        unit::remove(path)?;
        println!(
            "box {name}: removed {} (run `systemctl --user daemon-reload`)",
            path.display()
        );
    }
    println!("box {name}: removed");
    Ok(0)
}

/// `kennel box start NAME --foreground`: the box's init, in this process,
/// until the box stops. The one way a box starts: the first enter runs
/// this command detached, and the unit of `create --unit` runs it.
fn run_box(name: &str, verbose: bool) -> Result<i32> {
    let (dir, c) = load(name)?;
    let store = state::Store::new(None)?;
    if state::find(&store, &container_name(name))?.is_some() {
        bail!("box start: box {name:?} is running already; stop it first with `kennel box stop {name}`");
    }
    run_argv(&start_args(&c, &dir)?, verbose)
}

/// The `kennel run` that starts box `c`.
fn start_args(c: &BoxConfig, dir: &Path) -> Result<Vec<String>> {
    let plan = shares::resolve(&c.shares, c.host_root)?;
    let mut argv = strings(&[
        "--name",
        &container_name(&c.name),
        "--init",
        "--rootfs",
        &dir.join("root").to_string_lossy(),
        "--userns=keep-id",
        "-u",
        "0:0",
        // sudo is setuid: the box's root is the user's mapped root.
        "--allow-new-privs",
        "--net=host",
        "--hostname",
        &c.name,
        "-v",
        &format!("{}:{}", c.home.display(), c.user_home.display()),
    ]);
    for (src, dst) in &plan.binds {
        argv.push("-v".into());
        argv.push(format!("{}:{dst}", src.display()));
    }
    for e in &plan.env {
        argv.push("-e".into());
        argv.push(e.clone());
    }
    argv.extend(strings(&["--", "sleep", "infinity"]));
    Ok(argv)
}
