//! kennel: a rootless container runner.
//!
//! `main` parses flags and hands each subcommand to its module. Every
//! failure of kennel's own ends here as one `kennel: ...` line and exit
//! code 125; the container's command keeps its own exit codes.
#![cfg_attr(not(test), no_main)]

mod boxes;
mod commands;
mod doctor;
mod doctor_check;
mod doctor_net;
mod rootfs_import;
mod sys;

use kennel::{cli, idmap, spec_build};

use anyhow::Result;
use clap::Parser;
use kennel_engine::lifecycle::sdnotify::Notify;
use kennel_engine::{CgroupManager, Event, Options, Stage, StopPoint};
use nix::errno::Errno;

use cli::{Cli, Command, RunArgs};
use spec_build::Host;

/// Exit code for kennel's own failures (Docker's convention).
const EXIT_KENNEL: i32 = 125;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// The engine's events as kennel shows them: decisions with --verbose,
/// warnings always.
fn events(verbose: bool) -> Box<dyn Fn(&Event)> {
    Box::new(move |e| match e {
        Event::Decided(text) if verbose => eprintln!("kennel: {text}"),
        Event::Decided(_) => {}
        Event::Warning(text) => eprintln!("kennel: {text}"),
    })
}

/// The exit code for an engine error: 126 or 127 when the command itself
/// cannot run (as a shell says), 125 for everything else.
fn exit_code(e: &kennel_engine::Error) -> i32 {
    match e {
        kennel_engine::Error::Container(f) if f.stage == Stage::Exec => match f.errno() {
            Errno::ENOENT => EXIT_NOT_FOUND,
            Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM | Errno::ELOOP => {
                EXIT_CANNOT_EXECUTE
            }
            _ => EXIT_KENNEL,
        },
        _ => EXIT_KENNEL,
    }
}

/// The engine's result as kennel's exit: the container's code, or one line
/// and the code for kennel's failure.
fn finish(result: kennel_engine::Result<kennel_engine::Exit>) -> Result<i32> {
    match result {
        Ok(exit) => {
            if let Some(limit) = &exit.oom_killed {
                eprintln!("kennel: container killed by the OOM killer ({limit})");
            }
            Ok(exit.code)
        }
        Err(kennel_engine::Error::Setup(e)) => Err(e),
        Err(e) => {
            eprintln!("kennel: {e}");
            Ok(exit_code(&e))
        }
    }
}

fn run(args: &RunArgs, verbose: bool) -> Result<i32> {
    let stop_at = StopPoint::from_env()?;
    let host = Host::current()?;
    let mode = spec_build::default_userns(args);
    // Single mode and real root never use the helper or subordinate ids.
    let wanted = mode != cli::UsernsMode::Single && host.caller.uid != 0;
    let subids = if wanted {
        idmap::read_subids(&host.caller)
    } else {
        Default::default()
    };
    let helper = if wanted {
        idmap::helper_state()
    } else {
        idmap::HelperState::NotFound
    };
    let plan = idmap::plan(mode, &host.caller, &subids, &helper)?;
    let notify = Notify::from_env(match args.sdnotify {
        cli::SdNotifyMode::Exec => kennel_engine::lifecycle::sdnotify::SdNotifyMode::Exec,
        cli::SdNotifyMode::Container => kennel_engine::lifecycle::sdnotify::SdNotifyMode::Container,
        cli::SdNotifyMode::Ignore => kennel_engine::lifecycle::sdnotify::SdNotifyMode::Ignore,
    })?;
    if verbose && args.bundle.is_none() {
        let (net, why) = spec_build::choose_net(
            args,
            host.caller.uid,
            kennel_engine::net::pasta::find().is_some(),
        )?;
        eprintln!("kennel: network: {net:?} ({why})");
    }
    let (mut spec, bundle_maps) = match &args.bundle {
        Some(dir) => spec_build::load_bundle(dir, &plan)?,
        None => (spec_build::build(args, &host, &plan)?, None),
    };
    // Say what runs: the bundle's own maps, when it has them, else the plan.
    match (&bundle_maps, args.userns) {
        (Some(_), Some(mode)) => anyhow::bail!(
            "--userns={} does not apply: the bundle's config.json has its own linux.uidMappings, which are what would run; drop --userns, or remove the bundle's maps to use it",
            idmap::mode_name(mode)
        ),
        (Some(maps), None) if verbose => {
            eprintln!("kennel: id maps: the bundle's own ({maps})")
        }
        (Some(_), None) => {}
        (None, _) => {
            if verbose {
                eprintln!("kennel: {}", plan.reason);
            }
            if let Some(warning) = &plan.one_id_warning {
                eprintln!("kennel: {warning}");
            }
        }
    }
    spec_build::set_landlock(&mut spec, args)?;
    if let Some(socket) = notify.as_ref().and_then(|n| n.container_socket()) {
        spec_build::add_notify_socket(&mut spec, socket)?;
    }
    let opts = Options {
        id: args.name.clone(),
        init: args.init,
        preserve_fds: args.preserve_fds,
        activation: kennel_engine::host::socket_activation::inherited()?,
        helper: plan.helper.clone(),
        cgroup_manager: match args.cgroup.cgroup_manager {
            cli::CgroupManager::Auto => CgroupManager::Auto,
            cli::CgroupManager::Systemd => CgroupManager::Systemd,
            cli::CgroupManager::Cgroupfs => CgroupManager::Cgroupfs,
            cli::CgroupManager::Disabled => CgroupManager::Disabled,
        },
        cgroup_parent: args.cgroup.cgroup_parent.clone(),
        notify,
        events: events(verbose),
        stop_at,
        ..Options::new(host.caller)
    };
    // create + start + wait, in this one process.
    finish(kennel_engine::prepare(spec).and_then(|plan| {
        let mut container = plan.create(opts)?;
        container.start()?;
        kennel_engine::stop_at::stop_if(stop_at, StopPoint::Started);
        Ok(container.wait())
    }))
}

fn exec(args: &cli::ExecArgs, verbose: bool) -> Result<i32> {
    let req = kennel_engine::lifecycle::exec::ExecRequest {
        id: args.name.clone(),
        command: args.command.clone(),
        tty: args.process.tty,
        env: args.process.env.clone(),
        workdir: args.process.workdir.clone(),
        user: args.process.user.clone(),
        ..Default::default()
    };
    let opts = Options {
        events: events(verbose),
        ..Options::new(Host::current()?.caller)
    };
    finish(kennel_engine::lifecycle::exec::exec(&req, &opts))
}

/// Folds clap's multi-line error into kennel's one-line form, keeping the
/// list of accepted values or the tip where clap gives one.
fn one_line_usage_error(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for l in lines {
        if l.starts_with("[possible values") || l.starts_with("tip:") {
            out.push_str("; ");
            out.push_str(l.trim_start_matches('[').trim_end_matches(']'));
        }
    }
    out.push_str(" (see kennel --help)");
    out
}

/// `kennel --version`: clap's one line, then the commit and what was
/// compiled in, so a bug report says which build it came from.
fn version_text() -> String {
    use kennel_engine::host::build_info::{features, GIT_COMMIT, VERSION};
    format!("kennel {VERSION}\ncommit: {GIT_COMMIT}\n{}", features())
}

/// Called by `sys::main`, the process entry point.
fn kennel_main() -> ! {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() > cli::UNPACK_LAYERS.len()
        && argv[1..=cli::UNPACK_LAYERS.len()] == cli::UNPACK_LAYERS
    {
        let result = cli::UnpackLayersArgs::try_parse_from(&argv[1 + cli::UNPACK_LAYERS.len()..])
            .map_err(anyhow::Error::from)
            .and_then(|args| boxes::unpack_layers(&args));
        exit_with(result);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            print!("{}", version_text());
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::process::exit(0);
        }
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(EXIT_KENNEL);
        }
        Err(e) => {
            eprintln!("kennel: {}", one_line_usage_error(&e.render().to_string()));
            std::process::exit(EXIT_KENNEL);
        }
    };
    let result = match &cli.command {
        Command::Run(args) => run(args, cli.verbose),
        Command::Exec(args) => exec(args, cli.verbose),
        Command::Ps(args) => commands::ps(args),
        Command::Kill(args) => commands::kill(args),
        Command::Stats(args) => commands::stats(args),
        Command::Doctor => doctor::doctor(),
        Command::Box(cmd) => boxes::main(cmd, cli.verbose),
        Command::Rootfs(cli::RootfsCommand::Import { tarball, dir }) => {
            rootfs_import::run_args(tarball, dir).and_then(|args| match run(&args, cli.verbose)? {
                0 => Ok(0),
                code => anyhow::bail!(
                    "rootfs import: tar failed unpacking {} (exit {code}; its messages are above); {} holds what was unpacked",
                    tarball.display(),
                    dir.display()
                ),
            })
        }
    };
    exit_with(result)
}

fn exit_with(result: anyhow::Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kennel: {e:#}");
            std::process::exit(EXIT_KENNEL);
        }
    }
}
