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

use crate::cli::{BoxCommand, BoxCreateArgs, Cli, Command, ShareItem};
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

pub fn main(cmd: &BoxCommand, verbose: bool) -> Result<i32> {
    match cmd {
        BoxCommand::Create(args) => create(args, verbose),
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
        BoxCommand::UnpackLayers { root, layers } => layers::unpack(root, layers),
    }
}

/// The host user's login shell and primary group name, from /etc/passwd
/// and /etc/group.
fn host_shell_and_group(uid: u32, gid: u32) -> (String, String) {
    let field = |file: &str, id: u32, n: usize| {
        std::fs::read_to_string(file).ok().and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > n && f[2].parse() == Ok(id)).then(|| f[n].to_string())
            })
        })
    };
    let shell = field("/etc/passwd", uid, 6).unwrap_or_else(|| "/bin/sh".into());
    let group = field("/etc/group", gid, 0).unwrap_or_else(|| format!("g{gid}"));
    (shell, group)
}

fn create(args: &BoxCreateArgs, verbose: bool) -> Result<i32> {
    let name = &args.name;
    let dir = box_dir(name)?;
    let (given, tag) = match layout::split_tag(&args.image) {
        Some((dir, tag)) => (dir, Some(tag)),
        None => (args.image.clone(), None),
    };
    let image = std::fs::canonicalize(&given)
        .with_context(|| format!("box create: cannot read the image {}", args.image.display()))?;
    // Read and checked before anything is made.
    let layers = match layout::is_layout(&image) {
        true => Some(
            layout::layers(&image, tag.as_deref())
                .map_err(|e| anyhow::anyhow!("box create: {e:#}"))?,
        ),
        false => None,
    };
    if !image.is_file() && !image.is_dir() {
        bail!(
            "box create: the image {} is neither a tarball nor a directory",
            image.display()
        );
    }
    if image.to_string_lossy().contains([':', ',']) {
        bail!("box create: {} contains ':' or ',', which a volume cannot name; move or link it to a plain path", image.display());
    }
    let host = crate::spec_build::Host::current()?;
    let (uid, gid) = (host.caller.uid, host.caller.gid);
    if uid == 0 {
        bail!("box create: a box is for an ordinary user (root's box would be the host's root); run it as yourself");
    }
    let name_of_user = host.caller.name.clone();
    // Checked before anything is made: nothing is left behind on a refusal.
    shares::resolve(&args.share, args.host_root)?;
    let unit_path = match args.unit {
        true => Some(unit::check_free(name)?),
        false => None,
    };
    let (home, home_owned, home_shared) = match &args.home {
        None => (host.home.clone(), false, true),
        Some(h) => {
            let abs = std::path::absolute(h)?;
            (abs.clone(), !abs.exists(), false)
        }
    };
    if home.to_string_lossy().contains([':', ',']) {
        bail!(
            "box create: the home {} contains ':' or ',', which a volume cannot name",
            home.display()
        );
    }
    if !home_owned && !home.is_dir() {
        bail!("box create: the home {} is not a directory", home.display());
    }
    std::fs::create_dir_all(boxes_dir()?).with_context(|| {
        format!(
            "box create: cannot create {}",
            boxes_dir().unwrap_or_default().display()
        )
    })?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "box create: a box named {name:?} exists already ({}); pick another name, or remove it with `kennel box rm {name}`",
            dir.display()
        ),
        Err(e) => bail!("box create: cannot create {}: {e}", dir.display()),
    }
    let (shell, group) = host_shell_and_group(uid, gid);
    let config = BoxConfig {
        name: name.clone(),
        image: match &tag {
            Some(t) => PathBuf::from(format!("{}:{t}", image.display())),
            None => image.clone(),
        },
        home: home.clone(),
        user_home: host.home.clone(),
        home_owned,
        home_shared,
        shell,
        shares: args.share.clone(),
        host_root: args.host_root,
        uid,
        gid,
        unit: unit_path.clone(),
    };
    let made = (|| -> Result<()> {
        if home_owned {
            std::fs::create_dir_all(&home).with_context(|| {
                format!("box create: cannot create the home {}", home.display())
            })?;
        }
        match &layers {
            Some(layers) => unpack_layers(&image, layers, &dir.join("root"), verbose)?,
            None => unpack(&image, &dir.join("root"), verbose)?,
        }
        set_up_user(&dir.join("root"), &config, &name_of_user, &group, verbose)?;
        let text = serde_json::to_string_pretty(&config)?;
        std::fs::write(dir.join("box.json"), text + "\n")
            .with_context(|| format!("box create: cannot write {}/box.json", dir.display()))?;
        if let Some(path) = &unit_path {
            let kennel = std::env::current_exe()
                .context("box create --unit: cannot find kennel's own binary")?;
            let data = dir.parent().and_then(Path::parent).and_then(Path::parent);
            let data = data.expect("a box directory is DATA/kennel/boxes/NAME");
            unit::write(path, &unit::text(name, &kennel, data))?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        // A failed create leaves nothing behind.
        if let Some(path) = &unit_path {
            let _ = unit::remove(path);
        }
        let _ = remove_tree(&dir, verbose);
        if home_owned {
            let _ = std::fs::remove_dir_all(&home);
        }
        return Err(e);
    }
    println!(
        "box {name}: created from {} (enter it with `kennel box enter {name}`)",
        image.display()
    );
    if let Some(path) = &unit_path {
        println!(
            "box {name}: wrote {}; start it with `systemctl --user daemon-reload && systemctl --user start {}` (`enable` for every login)",
            path.display(),
            unit::unit_name(name)
        );
    }
    Ok(0)
}

/// A container on the host's tools in which the box's tree, owned by the
/// user's mapped ids through keep-id, is root's to write.
fn as_mapped_root(volumes: &[String], command: &[&str]) -> Result<crate::cli::RunArgs> {
    crate::rootfs_import::host_tool("keep-id", Some("0:0"), volumes, command)
}

/// Applies an OCI layout's `layers` to `root` through the keep-id map,
/// by kennel's own `box unpack-layers` in the container (no host tool
/// knows whiteouts, nor keeps a layer's paths inside the root).
fn unpack_layers(image: &Path, layers: &[layout::Layer], root: &Path, verbose: bool) -> Result<()> {
    std::fs::create_dir(root)
        .with_context(|| format!("box create: cannot create {}", root.display()))?;
    let exe = std::env::current_exe().context("box create: cannot find kennel's own binary")?;
    let (Some(bin), Some(exe_name)) = (exe.parent(), exe.file_name()) else {
        bail!(
            "box create: kennel's binary {} has no directory",
            exe.display()
        );
    };
    if bin.to_string_lossy().contains([':', ',']) {
        bail!("box create: kennel's directory {} contains ':' or ',', which a volume cannot name; install kennel in a plain path", bin.display());
    }
    let inside_exe = format!("/import/bin/{}", exe_name.to_string_lossy());
    let mut command = vec![
        inside_exe,
        "box".into(),
        "unpack-layers".into(),
        "/import/root".into(),
    ];
    command.extend(
        layers
            .iter()
            .map(|l| format!("{}:/import/blobs/{}", l.compression.name(), l.hex)),
    );
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let args = as_mapped_root(
        &[
            format!("{}:/import/blobs:ro", image.join("blobs/sha256").display()),
            format!("{}:/import/root", root.display()),
            format!("{}:/import/bin:ro", bin.display()),
        ],
        &command,
    )?;
    let code = crate::run(&args, verbose)?;
    if code != 0 {
        bail!(
            "box create: unpacking the layers of {} failed (exit {code}; its messages are above)",
            image.display()
        );
    }
    Ok(())
}

/// Unpacks (a tarball) or copies (a directory) the image into `root`,
/// through the keep-id map: the image's root is the user's mapped root,
/// the user's own uid stays itself.
fn unpack(image: &Path, root: &Path, verbose: bool) -> Result<()> {
    let code = if image.is_file() {
        let args = crate::rootfs_import::run_args_with(image, root, "keep-id", Some("0:0"))?;
        crate::run(&args, verbose)?
    } else {
        std::fs::create_dir(root)?;
        let args = as_mapped_root(
            &[
                format!("{}:/import/image:ro", image.display()),
                format!("{}:/import/root", root.display()),
            ],
            &[
                "sh",
                "-c",
                "tar -C /import/image -cf - . | tar -C /import/root -xf - --numeric-owner",
            ],
        )?;
        crate::run(&args, verbose)?
    };
    if code != 0 {
        bail!(
            "box create: unpacking {} failed (exit {code}; its messages are above)",
            image.display()
        );
    }
    Ok(())
}

/// The user's entries in the box's /etc/passwd, group and shadow (same
/// uid, gid, name, shell when the image has it, else /bin/sh), the home's
/// mount point, and passwordless sudo when the image has sudo.
const SET_UP_USER: &str = r#"set -e
u=$1 uid=$2 gid=$3 home=$4 shell=$5 group=$6 host=$7
[ -x "$shell" ] || shell=/bin/sh
sed -i -e "/^$u:/d" -e "/^[^:]*:[^:]*:$uid:/d" /etc/passwd
echo "$u:x:$uid:$gid::$home:$shell" >> /etc/passwd
sed -i -e "/^$group:/d" -e "/^[^:]*:[^:]*:$gid:/d" /etc/group
echo "$group:x:$gid:" >> /etc/group
if [ -f /etc/shadow ]; then sed -i "/^$u:/d" /etc/shadow; echo "$u:*:19000:0:99999:7:::" >> /etc/shadow; fi
mkdir -p "$home"
chown "$uid:$gid" "$home"
if [ -e /usr/bin/sudo ]; then
  mkdir -p /etc/sudoers.d
  echo "$u ALL=(ALL) NOPASSWD: ALL" > /etc/sudoers.d/kennel-box
  chmod 0440 /etc/sudoers.d/kennel-box
fi
grep -q "[[:space:]]$host\$" /etc/hosts 2>/dev/null || echo "127.0.1.1 $host" >> /etc/hosts
"#;

fn set_up_user(root: &Path, c: &BoxConfig, user: &str, group: &str, verbose: bool) -> Result<()> {
    let sh = root.join("bin/sh");
    if std::fs::symlink_metadata(&sh).is_err() {
        bail!("box create: the image has no /bin/sh, which kennel needs to add you to its /etc/passwd; use an image of a distribution");
    }
    let code = run_argv(
        &[
            "--rootfs",
            &root.to_string_lossy(),
            "--userns=keep-id",
            "-u",
            "0:0",
            "--net=private",
            "--",
            "/bin/sh",
            "-c",
            SET_UP_USER,
            "sh",
            user,
            &c.uid.to_string(),
            &c.gid.to_string(),
            &c.user_home.to_string_lossy(),
            &c.shell,
            group,
            &c.name,
        ]
        .map(String::from),
        verbose,
    )?;
    if code != 0 {
        bail!("box create: adding {user} to the box's /etc/passwd failed (exit {code}; its messages are above)");
    }
    Ok(())
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
