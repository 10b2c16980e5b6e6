//! Command-line definitions. Flags only describe what the user asked for;
//! `spec_build` turns `run` flags into an OCI `Spec`, the one thing the
//! engine runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kennel",
    version,
    about = "Rootless containers: fresh namespaces, a pivoted root, no setuid binary.",
    propagate_version = true
)]
pub struct Cli {
    /// Say what kennel decided and why (id mapping, helper, rootfs).
    #[arg(long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Each subcommand's flags are built only when it is the one used: building
// them all cost ~40 us at every start.
#[command(defer = true)]
pub enum Command {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// Run a command inside a running named container.
    Exec(ExecArgs),
    /// List running named containers.
    Ps(PsArgs),
    /// Send a signal to a running named container (default SIGKILL).
    Kill(KillArgs),
    /// Resource usage of a running named container, from its cgroup.
    Stats(StatsArgs),
    /// Check that an ordinary user can run containers on this machine.
    Doctor,
    /// Make root filesystems.
    #[command(subcommand)]
    Rootfs(RootfsCommand),
    /// Long-lived developer containers: your user, your home, another distribution.
    #[command(subcommand)]
    Box(BoxCommand),
}

#[derive(Debug, Subcommand)]
pub enum BoxCommand {
    /// Make a box from an image: its root under ~/.local/share/kennel/boxes,
    /// you inside with your uid, name and shell, passwordless sudo when the
    /// image has sudo (root in the box is your mapped root, never the host's).
    Create(BoxCreateArgs),
    /// A shell (or CMD) in the box, as you, in the same directory when it is
    /// shared; starts the box on first use.
    Enter(BoxEnterArgs),
    /// Start the box's init without entering it (detached, as the first
    /// enter does); with --foreground it stays until the box stops, which
    /// is what the unit of `create --unit` runs.
    Start {
        /// The box.
        name: String,
        /// Stay in the foreground until the box stops (its init's exit code
        /// is this command's; READY=1 to systemd once it runs).
        #[arg(long)]
        foreground: bool,
    },
    /// The boxes: name, image, status, home, shared items.
    List,
    /// Stop a running box (every process in it).
    Stop {
        /// The box.
        name: String,
    },
    /// Stop and delete a box (and the unit `create --unit` wrote); asks
    /// before deleting a home the box made.
    Rm {
        /// The box.
        name: String,
        /// Delete the box's own home without asking.
        #[arg(short = 'f', long, visible_short_alias = 'y')]
        force: bool,
    },
    /// Write a launcher on your PATH that runs BIN in the box.
    Export(BoxExportArgs),
}

/// `kennel box unpack-layers ROOT KIND:BLOB...`: applies an OCI image's
/// layers to ROOT, bottom first. It is kennel's own plumbing, which `box
/// create` runs inside its unpacking container, so it is parsed apart
/// from `Cli`: no help page or shell completion offers it.
#[derive(Debug, Parser)]
#[command(name = "kennel box unpack-layers", no_binary_name = true)]
pub struct UnpackLayersArgs {
    pub root: PathBuf,
    /// Each KIND:BLOB, KIND one of tar, gzip, zstd.
    pub layers: Vec<String>,
}

/// The words that start `UnpackLayersArgs`, after the program's name.
pub const UNPACK_LAYERS: [&str; 2] = ["box", "unpack-layers"];

/// What a box may share with the host, each a named item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareItem {
    /// The Wayland socket ($XDG_RUNTIME_DIR/$WAYLAND_DISPLAY).
    Wayland,
    /// X11: /tmp/.X11-unix and $DISPLAY.
    X11,
    /// The PipeWire socket ($XDG_RUNTIME_DIR/pipewire-0).
    Pipewire,
    /// The PulseAudio socket ($PULSE_SERVER, or $XDG_RUNTIME_DIR/pulse/native).
    Pulseaudio,
    /// The session D-Bus ($DBUS_SESSION_BUS_ADDRESS, a unix:path= socket).
    Dbus,
    /// The ssh agent ($SSH_AUTH_SOCK).
    SshAgent,
    /// The GPU: /dev/dri.
    Gpu,
}

#[derive(Debug, Args)]
pub struct BoxCreateArgs {
    /// The box's name.
    pub name: String,
    /// An image tarball (podman export, mmdebstrap; compressed or not), a
    /// root filesystem directory (copied into the box), or an OCI image
    /// layout directory (skopeo's oci:DIR, podman save --format oci-dir),
    /// whose layers are unpacked; DIR:REF picks one of several images by
    /// its ref name.
    #[arg(long, value_name = "TAR|DIR|LAYOUT[:REF]")]
    pub image: PathBuf,
    /// An isolated home: DIR (made if missing, then the box's own) is your
    /// home in the box, in place of your real one [default: your $HOME, shared].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Share a host item with the box (repeat, or comma-separated); an item
    /// whose host socket or device is missing is an error.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ITEM")]
    pub share: Vec<ShareItem>,
    /// The host's root filesystem at /run/host, read-only.
    #[arg(long)]
    pub host_root: bool,
    /// Also write the systemd user unit kennel-box-NAME.service (in
    /// ~/.config/systemd/user), which starts the box's init and stops it;
    /// `kennel box rm` removes it.
    #[arg(long)]
    pub unit: bool,
}

#[derive(Debug, Args)]
pub struct BoxEnterArgs {
    /// The box.
    pub name: String,
    /// The command and its arguments [default: your shell in the box, as a login shell].
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BoxExportArgs {
    /// The box.
    pub name: String,
    /// The program in the box (a name on its PATH or an absolute path).
    pub bin: String,
    /// Where the launcher goes [default: ~/.local/bin].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also write a .desktop entry in ~/.local/share/applications.
    #[arg(long)]
    pub app: bool,
}

#[derive(Debug, Subcommand)]
pub enum RootfsCommand {
    /// Unpack an image tarball (podman export, docker export, mmdebstrap's
    /// tar output; compressed or not) into DIR, each file's owner going
    /// through your id map, so the tree runs with the owners the image
    /// meant. Layered images (podman save, an OCI layout) are not read:
    /// export a container of the image instead.
    Import {
        /// The tarball.
        tarball: std::path::PathBuf,
        /// A new directory (or an empty one of yours) to unpack into.
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsernsMode {
    /// Full subordinate range through kennel-idmap when available, else caller -> 0 only.
    Auto,
    /// The caller keeps its uid and gid inside; subordinate ids fill the rest of 0..65535.
    KeepId,
    /// Caller -> 0 only; no helper.
    Single,
    /// The full subordinate range, or an error naming the missing piece.
    Subids,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace with only `lo`, up.
    Private,
    /// Keep the host's network namespace.
    Host,
    /// A new network namespace connected by pasta (user-mode networking).
    Pasta,
    /// A new network namespace with a veth on this bridge, from kennel-net.
    Bridge(String),
}

/// `--net`'s value.
pub fn parse_net(value: &str) -> Result<NetMode, String> {
    if let Some(bridge) = kennel_engine::net::annotation::bridge_of(value) {
        return bridge.map(NetMode::Bridge).map_err(|e| {
            format!("{e:#}").replace(kennel_engine::net::annotation::NET_ANNOTATION, "--net")
        });
    }
    match value {
        "private" => Ok(NetMode::Private),
        "host" => Ok(NetMode::Host),
        "pasta" => Ok(NetMode::Pasta),
        other => Err(format!(
            "unknown network mode {other:?}: private, host, pasta or bridge[=NAME]"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Root filesystem directory. Without it (and without --bundle), the
    /// container is a sandbox built from the host's /usr, /etc and your home.
    #[arg(long, value_name = "DIR", conflicts_with = "bundle")]
    pub rootfs: Option<PathBuf>,

    /// An OCI bundle: DIR/config.json is run as it is.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,

    /// How container ids map to host ids [default: auto, or keep-id for the host sandbox].
    #[arg(long, value_enum, value_name = "MODE")]
    pub userns: Option<UsernsMode>,

    /// Network: private (lo only), host, pasta (user-mode, with a route
    /// out), or bridge[=NAME] (a veth on bridge NAME, default kennel0,
    /// through kennel-net) [default: pasta for a rootless --rootfs when pasta is installed,
    /// else private].
    #[arg(long, value_parser = parse_net, value_name = "MODE", conflicts_with = "bundle")]
    pub net: Option<NetMode>,

    /// Publish a container port on the host (needs --net pasta).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]",
        conflicts_with = "bundle"
    )]
    pub publish: Vec<String>,

    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,

    /// Bind mount SRC at DST; add `:ro` for read-only.
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,

    /// Mount a fresh tmpfs at DST.
    #[arg(long, value_name = "DST")]
    pub tmpfs: Vec<String>,

    /// Host sandbox only: do not bind your home directory.
    #[arg(long)]
    pub no_home: bool,

    #[command(flatten)]
    pub process: ProcessArgs,

    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Hostname inside the container [default: the name, or "kennel"].
    #[arg(long)]
    pub hostname: Option<String>,

    /// Resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:4096.
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,

    /// Add a capability (or ALL) to the default set.
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,

    /// Drop a capability (or ALL) from the default set.
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,

    /// Do not set no_new_privs (setuid binaries and file capabilities work).
    #[arg(long)]
    pub allow_new_privs: bool,

    /// seccomp=unconfined (no seccomp profile), seccomp=PATH (an OCI or
    /// Docker-style profile) or no-new-privileges, as podman spells them
    /// [default: kennel's profile, podman's with namespace and mount calls
    /// kept for CAP_SYS_ADMIN].
    #[arg(long, value_name = "OPT", conflicts_with = "bundle")]
    pub security_opt: Vec<String>,

    /// Landlock: writes only to the volumes and the container's own
    /// filesystems (/tmp, /dev, /run...), never to the root even where it
    /// is mounted writable [default: on for the host sandbox]; =false
    /// turns it off.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub landlock: Option<bool>,

    /// Run a tiny init as PID 1 that forwards signals and reaps orphans.
    #[arg(long)]
    pub init: bool,

    /// Record the container under this name (for exec, ps, kill).
    #[arg(long)]
    pub name: Option<String>,

    /// Pass N extra file descriptors (3 .. 3+N-1) to the command.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,

    #[command(flatten)]
    pub cgroup: CgroupArgs,

    /// With NOTIFY_SOCKET set: who says READY=1 to systemd.
    #[arg(long, value_enum, default_value = "exec", value_name = "MODE")]
    pub sdnotify: SdNotifyMode,

    /// The command and its arguments.
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CgroupManager {
    /// A delegated cgroup kennel already runs in, else a systemd scope; with
    /// neither, no cgroup of its own (an error if a limit was asked for).
    Auto,
    /// A transient scope from systemd (the user manager, or the system one as root).
    Systemd,
    /// Write the cgroup tree directly (root, or --cgroup-parent).
    Cgroupfs,
    /// No cgroup; limit flags are then an error.
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SdNotifyMode {
    /// READY=1 once the container's command has been executed.
    Exec,
    /// The container says READY=1 itself, through /run/notify/notify.sock.
    Container,
    /// Say nothing to systemd.
    Ignore,
}

// cgroup placement and resource limits. (A plain comment: a doc comment on a
// flattened struct would become the subcommand's about, since subcommands
// are built lazily, after their own attributes.)
#[derive(Debug, Args)]
pub struct CgroupArgs {
    /// How the container's cgroup is made.
    #[arg(long, value_enum, default_value = "auto", value_name = "MANAGER")]
    pub cgroup_manager: CgroupManager,

    /// cgroupfs: the delegated cgroup directory to create the container under.
    #[arg(long, value_name = "DIR")]
    pub cgroup_parent: Option<PathBuf>,

    /// Memory limit (memory.max), e.g. 64M, 1G.
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,

    /// Memory plus swap (Docker's meaning), or -1 for unlimited swap.
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,

    /// Maximum number of processes (pids.max).
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,

    /// CPUs the container may use (cpu.max), e.g. 0.5 or 2.
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<f64>,

    /// Relative CPU weight, 1-10000 (cpu.weight).
    #[arg(long, value_name = "WEIGHT")]
    pub cpu_weight: Option<u64>,

    /// Relative IO weight, 1-10000 (io.weight).
    #[arg(long, value_name = "WEIGHT")]
    pub io_weight: Option<u64>,

    /// Mount /sys/fs/cgroup read-write in the container.
    #[arg(long)]
    pub cgroup_rw: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The running container's name.
    pub name: String,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

// How the command runs: the flags `run` and `exec` share. (Plain comment:
// see CgroupArgs.)
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,

    /// Working directory inside the container.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// User to run as: UID[:GID] or a name from the container's /etc/passwd.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Allocate a terminal inside the container.
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Accepted for Docker compatibility: stdin is always passed through.
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    pub name: String,
    /// Signal name or number (KILL, SIGTERM, 15, ...).
    #[arg(default_value = "KILL")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    pub name: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_subcommand_keeps_its_own_description() {
        let mut cli = Cli::command();
        cli.build();
        for (name, about) in [
            ("run", "Run a command in a new container"),
            ("exec", "Run a command inside a running named container"),
            ("ps", "List running named containers"),
        ] {
            let sub = cli.find_subcommand_mut(name).unwrap();
            sub.build();
            assert_eq!(
                sub.get_about().map(|a| a.to_string()).as_deref(),
                Some(about)
            );
        }
    }
}
