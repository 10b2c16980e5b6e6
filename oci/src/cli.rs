//! runc's command-line grammar, so that podman (through conmon) and
//! containerd (through go-runc) can drive kennel-oci as if it were runc.
//!
//! Global flags go before the subcommand, as in runc; callers put them
//! there, and `spec --rootless` (a switch) would otherwise collide with the
//! global `--rootless auto|true|false`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::log::LogFormat;
use crate::values::{
    parse_go_bool, parse_go_duration, parse_ram_in_bytes, parse_rootless, parse_signal, Rootless,
};

/// The runtime-spec version kennel-oci reports in `--version`, `features`
/// and the configs `spec` writes. oci_spec::runtime::VERSION still says
/// 1.0.2, but the crate's types model 1.2 (features, idmapped mounts,
/// potentiallyUnsafeConfigAnnotations), which is what the engine reads.
pub const OCI_VERSION: &str = "1.2.0";

pub use kennel_engine::host::build_info::{GIT_COMMIT, VERSION};

/// The text of `kennel-oci --version`. The first three lines are runc's,
/// because callers (go-runc's parseVersion among them) read them line by
/// line; what was compiled in follows, as runc's own `libseccomp:` line.
pub fn version_text() -> String {
    format!(
        "kennel-oci version {VERSION}\ncommit: {GIT_COMMIT}\nspec: {OCI_VERSION}\n{}",
        kennel_engine::host::build_info::features()
    )
}

/// A parsed command line: global options and the subcommand.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "kennel-oci",
    about = "OCI runtime with runc's command line, backed by kennel",
    after_help = "Supported: every subcommand above but checkpoint, restore and events; \
hooks; namespaces (user, pid, network, ipc and uts also joined by path; without a pid \
namespace, the host's, as podman's --pid host); id maps from \
config.json or, under rootless podman, within the ids of its user namespace; \
mounts with their propagation, masked and read-only paths, sysctl, rlimits, \
capabilities, linux.seccomp (without a seccomp agent), oomScoreAdj, \
linux.devices (bound from the host in a user namespace), cgroup v2 limits \
and device rules (an eBPF program; skipped rootless, as runc), and as root \
cgroup v1 memory, pids and cpu limits. As runc, a capability this kernel or \
kennel does not know and a syscall libseccomp does not know are skipped, with \
a warning in the log. \
Refused by name, never ignored: mount and cgroup namespaces by path, \
and any other field kennel does not implement \
(`kennel-oci features` lists what it does).",
    disable_version_flag = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    // Handled by hand rather than by clap, whose output would not have
    // runc's three-line layout.
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that precede the subcommand.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalOpts {
    /// Enable debug logging.
    #[arg(long)]
    pub debug: bool,
    /// Append log lines to this file instead of writing them to stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    // Unset means the default; see `root_dir`.
    /// Root directory for container state (should be on tmpfs).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Use systemd to manage the container's cgroup; cgroupsPath is then
    /// "slice:prefix:name".
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Whether to tolerate cgroup permission errors: true, false or auto.
    #[arg(long, value_name = "BOOL|auto", default_value = "auto", value_parser = parse_rootless)]
    pub rootless: Rootless,
    // Old runc had this flag; it is accepted so such callers do not fail,
    // and ignored because kennel cannot checkpoint.
    #[arg(long, hide = true, value_name = "PATH")]
    pub criu: Option<PathBuf>,
}

impl GlobalOpts {
    /// The state directory: `--root` made absolute, else kennel's default
    /// (`$XDG_RUNTIME_DIR/kennel` or its fallback's, or `/run/kennel` for
    /// real root).
    pub fn root_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.root {
            Some(r) => {
                let abs = clean_absolute(r)?;
                // An empty, "." or ".." path can resolve to "/"; deleting
                // a container would then remove a top-level directory.
                if abs.parent().is_none() {
                    anyhow::bail!("Option --root argument should not be set to /");
                }
                Ok(abs)
            }
            // The same records as kennel's own: `kennel ps` lists them.
            None => kennel_engine::host::runtime_dir::records_dir(),
        }
    }
}

/// Go's filepath.Abs: joined to the working directory and cleaned
/// lexically, so "a/../.." becomes "/" and is caught above.
fn clean_absolute(p: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let joined = std::env::current_dir()?.join(p);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// The subcommands, with runc's names and flags.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Checkpoint a running container (not supported: no CRIU).
    Checkpoint(PassthroughArgs),
    /// Create a container.
    Create(CreateArgs),
    /// Delete any resources held by the container.
    Delete(DeleteArgs),
    /// Display container events and statistics (not supported yet).
    Events(EventsArgs),
    /// Execute a new process inside the container.
    Exec(ExecArgs),
    /// Show the enabled features as JSON.
    Features,
    /// Send a signal (default SIGTERM) to the container's init process.
    Kill(KillArgs),
    /// List containers under the root directory.
    List(ListArgs),
    /// Suspend all processes inside the container.
    Pause(IdArgs),
    /// Display the processes running inside a container.
    Ps(PsArgs),
    /// Restore a container from a checkpoint (not supported: no CRIU).
    Restore(PassthroughArgs),
    /// Resume all processes that have been previously paused.
    Resume(IdArgs),
    /// Create and run a container.
    Run(RunArgs),
    /// Create a new specification file.
    Spec(SpecArgs),
    /// Execute the user-defined process in a created container.
    Start(IdArgs),
    /// Output the state of a container.
    State(IdArgs),
    /// Update container resource constraints.
    Update(UpdateArgs),
}

impl Command {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Checkpoint(_) => "checkpoint",
            Command::Create(_) => "create",
            Command::Delete(_) => "delete",
            Command::Events(_) => "events",
            Command::Exec(_) => "exec",
            Command::Features => "features",
            Command::Kill(_) => "kill",
            Command::List(_) => "list",
            Command::Pause(_) => "pause",
            Command::Ps(_) => "ps",
            Command::Restore(_) => "restore",
            Command::Resume(_) => "resume",
            Command::Run(_) => "run",
            Command::Spec(_) => "spec",
            Command::Start(_) => "start",
            Command::State(_) => "state",
            Command::Update(_) => "update",
        }
    }
}

/// A subcommand whose only argument is the container ID.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct IdArgs {
    /// Container ID.
    pub id: String,
}

/// `create`. Also the common part of `run`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateArgs {
    /// Bundle directory; the current directory when unset.
    #[arg(short = 'b', long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// AF_UNIX socket that receives the pty master of a terminal process.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// AF_UNIX socket that receives a pidfd for the init process.
    #[arg(long = "pidfd-socket", value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
    /// File to write the init process's PID to.
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (accepted; kennel decides for itself).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N file descriptors beyond stdio (and $LISTEN_FDS) through.
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container ID.
    pub id: String,
}

/// `run`: `create` plus start, optionally waiting for the exit.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container has started instead of waiting for it.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
    /// Do not become a subreaper (accepted for compatibility).
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
}

/// `delete`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DeleteArgs {
    /// Kill the container (SIGKILL) if it is still running.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container ID.
    pub id: String,
}

/// `kill`. Flags stop at the container ID, as in runc, so a signal given
/// as "-9"-style text is not mistaken for a flag.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct KillArgs {
    // Obsolete in runc, where ignoring "not running" is all it still does.
    /// Do not fail when the container is not running.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Container ID, then an optional signal.
    #[arg(
        required = true,
        num_args = 1..=2,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ID [SIGNAL]"
    )]
    args: Vec<String>,
}

impl KillArgs {
    /// Container ID.
    pub fn id(&self) -> &str {
        &self.args[0]
    }

    /// The signal number: the second argument, or SIGTERM.
    pub fn signal(&self) -> anyhow::Result<i32> {
        match self.args.get(1) {
            Some(s) => parse_signal(s),
            None => Ok(libc::SIGTERM),
        }
    }
}

/// `exec`. Flags stop at the container ID (runc's StopOnNthArg), so the
/// command may carry its own flags: `exec ID sh -c ...`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecArgs {
    /// AF_UNIX socket that receives the pty master.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// AF_UNIX socket that receives a pidfd for the new process.
    #[arg(long = "pidfd-socket", value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Environment variables to add, KEY=VALUE.
    #[arg(short = 'e', long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// UID[:GID] to run as.
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional group IDs.
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// process.json to run instead of config.json's process and the flags.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the new process's PID to.
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// SELinux label for the process.
    #[arg(long = "process-label", value_name = "LABEL")]
    pub process_label: Option<String>,
    /// AppArmor profile for the process.
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    // Unset leaves config.json's value; runc lets `--no-new-privs=false`
    // override a true there, so the value is kept.
    /// Set the no_new_privs bit for the process.
    #[arg(
        long = "no-new-privs",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_go_bool
    )]
    pub no_new_privs: Option<bool>,
    /// Capabilities to add to the bounding, effective and permitted sets.
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    pub cap: Vec<String>,
    /// Pass N file descriptors beyond stdio through.
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Sub-cgroup to run in, [CONTROLLER:]PATH.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Vec<String>,
    /// Allow exec in a paused container.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Container ID, then the command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ID [COMMAND]..."
    )]
    args: Vec<String>,
}

impl ExecArgs {
    /// Container ID.
    pub fn id(&self) -> &str {
        &self.args[0]
    }

    /// The command and its arguments, empty when `--process` gives them.
    pub fn command(&self) -> &[String] {
        &self.args[1..]
    }

    /// Builds the argument struct from parts; for tests and for callers
    /// that construct an exec without a command line.
    pub fn with_target(mut self, id: &str, command: &[&str]) -> Self {
        self.args = std::iter::once(id)
            .chain(command.iter().copied())
            .map(String::from)
            .collect();
        self
    }
}

/// `--format` of `list` and `ps`.
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// `list`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Print only container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `ps`. Flags stop at the container ID so `ps ID -ef` passes -ef to ps(1).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct PsArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Container ID, then options for ps(1).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ID [PS-OPTION]..."
    )]
    args: Vec<String>,
}

impl PsArgs {
    /// Container ID.
    pub fn id(&self) -> &str {
        &self.args[0]
    }

    /// Options for ps(1); runc uses "-ef" when there are none.
    pub fn ps_args(&self) -> &[String] {
        &self.args[1..]
    }
}

/// `events`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct EventsArgs {
    /// Statistics interval, a Go duration such as "5s" or "1m30s".
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub interval: std::time::Duration,
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Container ID.
    pub id: String,
}

/// `update`. With `--resources`, the other flags are ignored, as in runc.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or "-" for stdin.
    #[arg(short = 'r', long, value_name = "FILE|-")]
    pub resources: Option<String>,
    /// Block IO weight, 10 to 1000.
    #[arg(long = "blkio-weight", value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// CFS period in microseconds.
    #[arg(long = "cpu-period", value_name = "USECS")]
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds.
    #[arg(long = "cpu-quota", value_name = "USECS", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CFS burst in microseconds.
    #[arg(long = "cpu-burst", value_name = "USECS")]
    pub cpu_burst: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share", value_name = "N")]
    pub cpu_share: Option<u64>,
    /// Realtime period in microseconds.
    #[arg(long = "cpu-rt-period", value_name = "USECS")]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds.
    #[arg(
        long = "cpu-rt-runtime",
        value_name = "USECS",
        allow_hyphen_values = true
    )]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use.
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// SCHED_IDLE for the cgroup: 1, or 0 for the default.
    #[arg(long = "cpu-idle", value_name = "0|1")]
    pub cpu_idle: Option<i64>,
    /// Memory limit: bytes, or a size such as "512m"; -1 for unlimited.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_ram_in_bytes)]
    pub memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_ram_in_bytes)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit; -1 for unlimited swap.
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_ram_in_bytes)]
    pub memory_swap: Option<i64>,
    // Obsolete in runc; accepted and ignored.
    #[arg(long = "kernel-memory", hide = true, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Maximum number of PIDs.
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema.
    #[arg(long = "l3-cache-schema", value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema.
    #[arg(long = "mem-bw-schema", value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
    /// Container ID.
    pub id: String,
}

/// `spec`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecArgs {
    /// Bundle directory to write config.json into.
    #[arg(short = 'b', long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Generate a configuration for a rootless container.
    #[arg(long)]
    pub rootless: bool,
}

/// `checkpoint` and `restore`: every argument is accepted unparsed, so the
/// error says "not supported" rather than "unknown flag --tcp-established".
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct PassthroughArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
