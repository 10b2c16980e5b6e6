//! kennel-oci's front end: runc's command line, logging and the
//! subcommands that need no container engine. The lifecycle operations go
//! through `lifecycle::Lifecycle`, which the engine implements.

pub mod argv;
pub mod cli;
pub mod engine_ops;
pub mod exe_guard;
pub mod features;
pub mod lifecycle;
pub mod log;
pub mod spec_cmd;
pub mod update;
pub mod values;

use std::ffi::OsString;
use std::io::Write;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::lifecycle::{Context, Lifecycle};
use crate::log::Logger;

/// Runs the command line `args` (argv\[0\] first) and returns the exit
/// status, as runc would: 0, the container's status for `run`/`exec`, 1 on
/// an error (255 for `exec`, whose other statuses are the process's).
pub fn run<I, T>(args: I, lifecycle: &dyn Lifecycle) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv = argv::normalize_args(args);
    let parsed = match Cli::try_parse_from(&argv) {
        Ok(p) => p,
        Err(e) => return usage_error(&argv, e),
    };
    if parsed.version {
        print_stdout(&cli::version_text());
        return 0;
    }
    let Some(command) = parsed.command else {
        // Global flags and no subcommand: runc shows its help.
        print_stdout(&format!("{}\n", Cli::command().render_help()));
        return 0;
    };
    let global = parsed.global;
    let log = match Logger::new(global.log.as_deref(), global.log_format, global.debug) {
        Ok(l) => l,
        Err(e) => {
            let err = anyhow::Error::new(e).context(format!(
                "open log file {}",
                global
                    .log
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ));
            Logger::stderr().fatal(&err);
            return 1;
        }
    };
    let ctx = Context {
        global: &global,
        log: &log,
    };
    log.debug(&format!("kennel-oci {}: {command:?}", command.name()));
    match dispatch(&ctx, &command, lifecycle) {
        Ok(code) => code,
        Err(err) => {
            // runc's wording, so messages podman matches on still match.
            let (err, code) = match &command {
                Command::Create(_) => (err.context("kennel-oci create failed"), 1),
                Command::Run(_) => (err.context("kennel-oci run failed"), 1),
                Command::Exec(_) => (err.context("exec failed"), 255),
                _ => (err, 1),
            };
            log.fatal(&err);
            code
        }
    }
}

fn dispatch(ctx: &Context, command: &Command, lc: &dyn Lifecycle) -> anyhow::Result<i32> {
    match command {
        Command::Create(a) => lc.create(ctx, a),
        Command::Run(a) => lc.run(ctx, a),
        Command::Start(a) => lc.start(ctx, a),
        Command::State(a) => lc.state(ctx, a),
        Command::Kill(a) => {
            // Checked here so a bad signal fails the same way whatever
            // implements kill.
            a.signal()?;
            lc.kill(ctx, a)
        }
        Command::Delete(a) => lc.delete(ctx, a),
        Command::Exec(a) => lc.exec(ctx, a),
        Command::List(a) => lc.list(ctx, a),
        Command::Ps(a) => lc.ps(ctx, a),
        Command::Pause(a) => lc.pause(ctx, a),
        Command::Resume(a) => lc.resume(ctx, a),
        Command::Update(a) => lc.update(ctx, a),
        Command::Events(a) => lc.events(ctx, a),
        Command::Features => {
            print_stdout(&features::features_json(&lc.implemented()));
            Ok(0)
        }
        Command::Spec(a) => spec_cmd::run(a).map(|()| 0),
        Command::Checkpoint(_) | Command::Restore(_) => anyhow::bail!(
            "{} is not supported by kennel-oci (no CRIU support)",
            command.name()
        ),
    }
}

/// A parse failure. Help and version requests print and succeed; a real
/// usage error becomes one log line where the caller reads errors (the
/// `--log` file, if one can be found in argv), and status 1 as in runc.
fn usage_error(argv: &[OsString], e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print_stdout(&e.render().to_string());
            return 0;
        }
        _ => {}
    }
    let (path, format) = argv::sniff_log_opts(argv);
    let log = Logger::new(path.as_deref(), format, false).unwrap_or_else(|_| Logger::stderr());
    log.fatal(&anyhow::anyhow!(first_error_line(&e)));
    1
}

/// clap's message as one line: without its "error: " prefix and the usage
/// and tips after the first blank line, the rest joined by spaces.
fn first_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let msg: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let msg = msg.join(" ");
    match msg.strip_prefix("error: ") {
        Some(m) => m.to_string(),
        None if msg.is_empty() => "invalid usage".to_string(),
        None => msg,
    }
}

/// Writes to stdout, ignoring EPIPE (`kennel-oci features | head`).
fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{IdArgs, RunArgs};
    use crate::lifecycle::Unimplemented;
    use std::path::PathBuf;

    /// A log file of its own for each test, read back as JSON lines.
    struct TempLog(PathBuf);

    impl TempLog {
        fn new(name: &str) -> TempLog {
            let p =
                std::env::temp_dir().join(format!("kennel-oci-{}-{name}.json", std::process::id()));
            let _ = std::fs::remove_file(&p);
            TempLog(p)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }

        fn lines(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(&self.0)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    impl Drop for TempLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn run_logged(log: &TempLog, argv: &[&str], lc: &dyn Lifecycle) -> i32 {
        let mut full = vec!["kennel-oci", "--log", log.path(), "--log-format=json"];
        full.extend_from_slice(argv);
        run(full, lc)
    }

    #[test]
    fn unimplemented_operation_is_one_error_line_and_status_1() {
        let log = TempLog::new("unimpl");
        assert_eq!(run_logged(&log, &["state", "c"], &Unimplemented), 1);
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["level"], "error");
        assert_eq!(lines[0]["msg"], "state is not implemented yet");
    }

    #[test]
    fn create_and_exec_failures_carry_runcs_wording_and_status() {
        let log = TempLog::new("wording");
        assert_eq!(run_logged(&log, &["create", "c"], &Unimplemented), 1);
        assert_eq!(
            run_logged(&log, &["exec", "c", "true"], &Unimplemented),
            255
        );
        let lines = log.lines();
        assert_eq!(
            lines[0]["msg"],
            "kennel-oci create failed: create is not implemented yet"
        );
        assert_eq!(lines[1]["msg"], "exec failed: exec is not implemented yet");
    }

    #[test]
    fn usage_error_goes_to_the_log_file() {
        let log = TempLog::new("usage");
        assert_eq!(run_logged(&log, &["start"], &Unimplemented), 1);
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]["msg"].as_str().unwrap().contains("<ID>"),
            "{:?}",
            lines[0]
        );
    }

    #[test]
    fn checkpoint_and_bad_signal_fail_before_the_engine() {
        let log = TempLog::new("ckpt");
        assert_eq!(
            run_logged(
                &log,
                &["checkpoint", "--leave-running", "c"],
                &Unimplemented
            ),
            1
        );
        assert_eq!(
            run_logged(&log, &["kill", "c", "SIGNOPE"], &Unimplemented),
            1
        );
        let lines = log.lines();
        assert_eq!(
            lines[0]["msg"],
            "checkpoint is not supported by kennel-oci (no CRIU support)"
        );
        assert!(lines[1]["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("unknown signal \"SIGNOPE\"")));
    }

    #[test]
    fn version_and_help_succeed() {
        assert_eq!(run(["kennel-oci", "--version"], &Unimplemented), 0);
        assert_eq!(run(["kennel-oci", "--help"], &Unimplemented), 0);
        assert_eq!(run(["kennel-oci", "state", "--help"], &Unimplemented), 0);
    }

    /// Passes the operation's status through, as `run` and `exec` need.
    struct Exits(i32);

    impl Lifecycle for Exits {
        fn create(&self, _: &Context, _: &cli::CreateArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn run(&self, ctx: &Context, a: &RunArgs) -> anyhow::Result<i32> {
            assert!(ctx.global.systemd_cgroup);
            assert_eq!(a.create.id, "c");
            Ok(self.0)
        }
        fn start(&self, _: &Context, a: &IdArgs) -> anyhow::Result<i32> {
            anyhow::bail!("cannot start {}: stopped", a.id)
        }
        fn state(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn kill(&self, _: &Context, _: &cli::KillArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn delete(&self, _: &Context, _: &cli::DeleteArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn exec(&self, _: &Context, _: &cli::ExecArgs) -> anyhow::Result<i32> {
            Ok(self.0)
        }
        fn list(&self, _: &Context, _: &cli::ListArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn ps(&self, _: &Context, _: &cli::PsArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn pause(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn resume(&self, _: &Context, _: &IdArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn update(&self, _: &Context, _: &cli::UpdateArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
        fn events(&self, _: &Context, _: &cli::EventsArgs) -> anyhow::Result<i32> {
            Ok(0)
        }
    }

    #[test]
    fn statuses_pass_through_and_errors_are_logged() {
        let log = TempLog::new("exits");
        let lc = Exits(42);
        assert_eq!(
            run(
                [
                    "kennel-oci",
                    "--systemd-cgroup",
                    "run",
                    "--bundle",
                    "/b",
                    "c"
                ],
                &lc
            ),
            42
        );
        assert_eq!(run_logged(&log, &["exec", "c", "false"], &lc), 42);
        assert_eq!(run_logged(&log, &["start", "c"], &lc), 1);
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["msg"], "cannot start c: stopped");
    }

    #[test]
    fn debug_lines_only_with_debug() {
        let log = TempLog::new("debug");
        let lc = Exits(0);
        assert_eq!(run_logged(&log, &["state", "c"], &lc), 0);
        assert!(log.lines().is_empty());
        assert_eq!(run_logged(&log, &["--debug", "state", "c"], &lc), 0);
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["level"], "debug");
    }
}
