//! kennel: a rootless container runner.
//!
//! `main` parses flags and hands each subcommand to its module. Every
//! failure of kennel's own ends here as one `kennel: ...` line and exit
//! code 125; the container's command keeps its own exit codes.
#![cfg_attr(not(test), no_main)]

mod cli;
mod commands;
mod doctor;
mod engine;
mod exec;
mod idmap;
mod passwd;
mod resource_flags;
mod sdnotify;
mod spec_build;
mod state;
mod sys;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command, RunArgs};
use engine::EXIT_KENNEL;
use spec_build::{Host, RunOptions};

fn run(args: &RunArgs, verbose: bool) -> Result<i32> {
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
    if verbose {
        eprintln!("kennel: {}", plan.reason);
    }
    let notify = sdnotify::Notify::from_env(args.sdnotify)?;
    let mut spec = match &args.bundle {
        Some(dir) => spec_build::load_bundle(dir, &plan)?,
        None => spec_build::build(args, &host, &plan)?,
    };
    let opts = RunOptions {
        name: args.name.clone(),
        init: args.init,
        preserve_fds: args.preserve_fds,
        verbose,
        helper: plan.helper.clone(),
        cgroup_manager: args.cgroup.cgroup_manager,
        cgroup_parent: args.cgroup.cgroup_parent.clone(),
        notify,
    };
    if let Some(socket) = opts.notify.as_ref().and_then(|n| n.container_socket()) {
        spec_build::add_notify_socket(&mut spec, socket)?;
    }
    engine::run(&spec, &opts, &host.caller)
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

/// Called by `sys::main`, the process entry point.
fn kennel_main() -> ! {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
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
        Command::Exec(args) => exec::exec(args),
        Command::Ps(args) => commands::ps(args),
        Command::Kill(args) => commands::kill(args),
        Command::Stats(args) => commands::stats(args),
        Command::Doctor => doctor::doctor(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kennel: {e:#}");
            std::process::exit(EXIT_KENNEL);
        }
    }
}
