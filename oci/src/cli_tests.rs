//! Command lines exactly as podman (through conmon) and containerd
//! (through go-runc) build them, and what they must parse to.

use super::*;
use crate::argv::normalize_args;
use clap::Parser;

fn parse(argv: &[&str]) -> Cli {
    let mut full = vec!["kennel-oci"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(normalize_args(full)) {
        Ok(c) => c,
        Err(e) => panic!("{argv:?}: {e}"),
    }
}

fn command(argv: &[&str]) -> Command {
    parse(argv).command.expect("a subcommand")
}

fn p(s: &str) -> Option<PathBuf> {
    Some(PathBuf::from(s))
}

#[test]
fn podman_create_through_conmon() {
    // conmon: runtime, --systemd-cgroup, podman's --runtime-arg values,
    // then create with its own flags, --console-socket, the ID last.
    let cli = parse(&[
        "--systemd-cgroup",
        "--log-format=json",
        "--log",
        "/run/user/1000/containers/overlay-containers/c1/userdata/oci-log",
        "create",
        "--bundle",
        "/home/u/.local/share/containers/storage/overlay-containers/c1/userdata",
        "--pid-file",
        "/run/user/1000/containers/overlay-containers/c1/userdata/pidfile",
        "--no-new-keyring",
        "--preserve-fds",
        "2",
        "--console-socket",
        "/run/user/1000/libpod/tmp/socket/c1/console.sock",
        "c1",
    ]);
    assert!(cli.global.systemd_cgroup);
    assert_eq!(cli.global.log_format, LogFormat::Json);
    assert_eq!(
        cli.global.log,
        p("/run/user/1000/containers/overlay-containers/c1/userdata/oci-log")
    );
    assert_eq!(cli.global.root, None);
    assert_eq!(cli.global.rootless, Rootless::Auto);
    assert_eq!(
        cli.command,
        Some(Command::Create(CreateArgs {
            bundle: p("/home/u/.local/share/containers/storage/overlay-containers/c1/userdata"),
            console_socket: p("/run/user/1000/libpod/tmp/socket/c1/console.sock"),
            pid_file: p("/run/user/1000/containers/overlay-containers/c1/userdata/pidfile"),
            no_new_keyring: true,
            preserve_fds: 2,
            id: "c1".into(),
            ..CreateArgs::default()
        }))
    );
}

#[test]
fn create_with_root_and_separate_log_format() {
    let cli = parse(&[
        "--root",
        "/run/user/1000/runc",
        "--systemd-cgroup",
        "--log",
        "/x/log.json",
        "--log-format",
        "json",
        "create",
        "--bundle",
        "/b",
        "--pid-file",
        "/p",
        "--no-new-keyring",
        "--no-pivot",
        "id1",
    ]);
    assert_eq!(cli.global.root, p("/run/user/1000/runc"));
    assert_eq!(cli.global.log, p("/x/log.json"));
    assert_eq!(cli.global.log_format, LogFormat::Json);
    assert_eq!(
        cli.command,
        Some(Command::Create(CreateArgs {
            bundle: p("/b"),
            pid_file: p("/p"),
            no_new_keyring: true,
            no_pivot: true,
            id: "id1".into(),
            ..CreateArgs::default()
        }))
    );
}

#[test]
fn podman_exec_through_conmon() {
    // conmon leaves out --systemd-cgroup for exec.
    let c = command(&[
        "--log-format=json",
        "--log",
        "/run/user/1000/c1/exec-oci-log",
        "exec",
        "--pid-file",
        "/run/user/1000/c1/exec_pid",
        "--process",
        "/tmp/exec-process-123",
        "--detach",
        "--preserve-fds",
        "1",
        "--console-socket",
        "/tmp/cs.sock",
        "c1",
    ]);
    let want = ExecArgs {
        pid_file: p("/run/user/1000/c1/exec_pid"),
        process: p("/tmp/exec-process-123"),
        detach: true,
        preserve_fds: 1,
        console_socket: p("/tmp/cs.sock"),
        ..ExecArgs::default()
    }
    .with_target("c1", &[]);
    assert_eq!(c, Command::Exec(want));
}

#[test]
fn exec_short_form_from_the_brief() {
    let Command::Exec(e) = command(&[
        "exec",
        "--process",
        "/tmp/p.json",
        "--detach",
        "--pid-file",
        "P",
        "ID",
    ]) else {
        panic!("not exec");
    };
    assert_eq!(e.id(), "ID");
    assert!(e.command().is_empty());
    assert_eq!(e.process, p("/tmp/p.json"));
    assert_eq!(e.pid_file, p("P"));
    assert!(e.detach);
}

#[test]
fn containerd_create_through_go_runc() {
    let cli = parse(&[
        "--root",
        "/run/containerd/runc/k8s.io",
        "--log",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2/log.json",
        "--log-format",
        "json",
        "--systemd-cgroup",
        "--rootless=true",
        "create",
        "--bundle",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2",
        "--pid-file",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2/init.pid",
        "--console-socket",
        "/tmp/pty123/pty.sock",
        "--pidfd-socket",
        "/tmp/pidfd.sock",
        "--no-pivot",
        "--preserve-fds",
        "3",
        "c2",
    ]);
    assert_eq!(cli.global.root, p("/run/containerd/runc/k8s.io"));
    assert_eq!(cli.global.rootless, Rootless::True);
    assert_eq!(
        cli.command,
        Some(Command::Create(CreateArgs {
            bundle: p("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2"),
            pid_file: p("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2/init.pid"),
            console_socket: p("/tmp/pty123/pty.sock"),
            pidfd_socket: p("/tmp/pidfd.sock"),
            no_pivot: true,
            preserve_fds: 3,
            id: "c2".into(),
            ..CreateArgs::default()
        }))
    );
}

#[test]
fn containerd_exec_through_go_runc() {
    let c = command(&[
        "--root",
        "/run/containerd/runc/default",
        "--log",
        "/run/containerd/c3/log.json",
        "--log-format",
        "json",
        "exec",
        "--process",
        "/run/user/1000/runc-process4242",
        "--console-socket",
        "/tmp/pty9/pty.sock",
        "--detach",
        "--pid-file",
        "/run/containerd/c3/exec1.pid",
        "c3",
    ]);
    let want = ExecArgs {
        process: p("/run/user/1000/runc-process4242"),
        console_socket: p("/tmp/pty9/pty.sock"),
        detach: true,
        pid_file: p("/run/containerd/c3/exec1.pid"),
        ..ExecArgs::default()
    }
    .with_target("c3", &[]);
    assert_eq!(c, Command::Exec(want));
}

#[test]
fn go_runc_run_and_the_simple_verbs() {
    let Command::Run(r) = command(&[
        "run",
        "--bundle",
        "/b",
        "--detach",
        "--pid-file",
        "/p",
        "r1",
    ]) else {
        panic!("not run");
    };
    assert!(r.detach && !r.keep);
    assert_eq!(r.create.bundle, p("/b"));
    assert_eq!(r.create.id, "r1");
    let id = |s: &str| IdArgs { id: s.into() };
    assert_eq!(command(&["start", "c"]), Command::Start(id("c")));
    assert_eq!(command(&["state", "c"]), Command::State(id("c")));
    assert_eq!(command(&["pause", "c"]), Command::Pause(id("c")));
    assert_eq!(command(&["resume", "c"]), Command::Resume(id("c")));
    assert_eq!(command(&["features"]), Command::Features);
    assert_eq!(
        command(&["delete", "--force", "c"]),
        Command::Delete(DeleteArgs {
            force: true,
            id: "c".into()
        })
    );
    // urfave/cli v3 lets flags follow the ID for commands without
    // StopOnNthArg.
    assert_eq!(
        command(&["delete", "c", "-f"]),
        Command::Delete(DeleteArgs {
            force: true,
            id: "c".into()
        })
    );
}

#[test]
fn kill_as_podman_and_go_runc_send_it() {
    let Command::Kill(k) = command(&["kill", "--all", "c1", "9"]) else {
        panic!("not kill");
    };
    assert!(k.all);
    assert_eq!((k.id(), k.signal().unwrap()), ("c1", libc::SIGKILL));
    let Command::Kill(k) = command(&["kill", "c1", "15"]) else {
        panic!("not kill");
    };
    assert_eq!(k.signal().unwrap(), libc::SIGTERM);
    let Command::Kill(k) = command(&["kill", "c1"]) else {
        panic!("not kill");
    };
    assert_eq!(k.signal().unwrap(), libc::SIGTERM);
    let Command::Kill(k) = command(&["kill", "-a", "c1", "SIGUSR1"]) else {
        panic!("not kill");
    };
    assert_eq!(k.signal().unwrap(), libc::SIGUSR1);
}

#[test]
fn exec_flags_stop_at_the_id() {
    let Command::Exec(e) = command(&[
        "exec",
        "-t",
        "-e",
        "A=1",
        "--env",
        "B=2",
        "-u",
        "1000:1000",
        "-g",
        "10",
        "-g",
        "20",
        "--cap",
        "CAP_NET_RAW",
        "--cwd",
        "/w",
        "--no-new-privs=false",
        "--ignore-paused",
        "c",
        "sh",
        "-c",
        "echo --tty",
    ]) else {
        panic!("not exec");
    };
    assert!(e.tty && e.ignore_paused);
    assert_eq!(e.env, ["A=1", "B=2"]);
    assert_eq!(e.user.as_deref(), Some("1000:1000"));
    assert_eq!(e.additional_gids, [10, 20]);
    assert_eq!(e.cap, ["CAP_NET_RAW"]);
    assert_eq!(e.cwd.as_deref(), Some("/w"));
    assert_eq!(e.no_new_privs, Some(false));
    assert_eq!(e.id(), "c");
    assert_eq!(e.command(), ["sh", "-c", "echo --tty"]);
    // After the ID, what looks like a flag belongs to the command.
    let Command::Exec(e) = command(&["exec", "c", "ls", "--tty"]) else {
        panic!("not exec");
    };
    assert!(!e.tty);
    assert_eq!(e.command(), ["ls", "--tty"]);
    let Command::Exec(e) = command(&["exec", "--no-new-privs", "c", "true"]) else {
        panic!("not exec");
    };
    assert_eq!(e.no_new_privs, Some(true));
}

#[test]
fn list_ps_update_events_as_go_runc_sends_them() {
    assert_eq!(
        command(&["list", "--format=json"]),
        Command::List(ListArgs {
            format: OutputFormat::Json,
            quiet: false
        })
    );
    assert_eq!(
        command(&["list", "-q"]),
        Command::List(ListArgs {
            format: OutputFormat::Table,
            quiet: true
        })
    );
    let Command::Ps(ps) = command(&["ps", "--format", "json", "c"]) else {
        panic!("not ps");
    };
    assert_eq!((ps.format, ps.id()), (OutputFormat::Json, "c"));
    assert!(ps.ps_args().is_empty());
    let Command::Ps(ps) = command(&["ps", "--format", "table", "c", "-ef"]) else {
        panic!("not ps");
    };
    assert_eq!(ps.ps_args(), ["-ef"]);

    let Command::Update(u) = command(&["update", "--resources=-", "c"]) else {
        panic!("not update");
    };
    assert_eq!((u.resources.as_deref(), u.id.as_str()), (Some("-"), "c"));
    // podman writes the resources to a file.
    let Command::Update(u) = command(&["update", "--resources=/tmp/podman123", "c"]) else {
        panic!("not update");
    };
    assert_eq!(u.resources.as_deref(), Some("/tmp/podman123"));
    let Command::Update(u) = command(&[
        "update",
        "--memory",
        "512m",
        "--memory-swap",
        "-1",
        "--pids-limit",
        "100",
        "--cpu-quota",
        "-1",
        "--cpu-period",
        "100000",
        "--cpuset-cpus",
        "0-3",
        "c",
    ]) else {
        panic!("not update");
    };
    assert_eq!(u.memory, Some(512 << 20));
    assert_eq!(u.memory_swap, Some(-1));
    assert_eq!(u.pids_limit, Some(100));
    assert_eq!((u.cpu_quota, u.cpu_period), (Some(-1), Some(100_000)));
    assert_eq!(u.cpuset_cpus.as_deref(), Some("0-3"));

    let Command::Events(ev) = command(&["events", "--stats", "c"]) else {
        panic!("not events");
    };
    assert!(ev.stats);
    assert_eq!(ev.interval, std::time::Duration::from_secs(5));
    let Command::Events(ev) = command(&["events", "--interval=10s", "c"]) else {
        panic!("not events");
    };
    assert_eq!(ev.interval, std::time::Duration::from_secs(10));
}

#[test]
fn spec_checkpoint_restore() {
    assert_eq!(
        command(&["spec", "--rootless", "-b", "/b"]),
        Command::Spec(SpecArgs {
            bundle: p("/b"),
            rootless: true
        })
    );
    // podman's checkpoint and conmon's restore: anything goes, the
    // command then fails with "not supported".
    let Command::Checkpoint(c) = command(&[
        "checkpoint",
        "--image-path",
        "/i",
        "--work-path",
        "/w",
        "--leave-running",
        "--tcp-established",
        "c",
    ]) else {
        panic!("not checkpoint");
    };
    assert_eq!(c.args.last().map(String::as_str), Some("c"));
    let Command::Restore(_) = command(&[
        "restore",
        "--bundle",
        "/b",
        "--pid-file",
        "/p",
        "--detach",
        "--image-path",
        "/i",
        "--work-path",
        "/b",
        "-no-subreaper",
        "c",
    ]) else {
        panic!("not restore");
    };
}

#[test]
fn single_dash_globals_and_criu() {
    let cli = parse(&[
        "-root",
        "/r",
        "-log-format",
        "json",
        "-criu",
        "/usr/sbin/criu",
        "state",
        "c",
    ]);
    assert_eq!(cli.global.root, p("/r"));
    assert_eq!(cli.global.log_format, LogFormat::Json);
    assert_eq!(cli.global.criu, p("/usr/sbin/criu"));
}

#[test]
fn usage_errors() {
    let bad = |argv: &[&str]| {
        let mut full = vec!["kennel-oci"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(normalize_args(full)).is_err()
    };
    assert!(bad(&["start"]));
    assert!(bad(&["start", "a", "b"]));
    assert!(bad(&["kill", "c", "9", "extra"]));
    assert!(bad(&["create", "--bogus", "c"]));
    assert!(bad(&["--log-format", "xml", "state", "c"]));
    assert!(bad(&["--rootless", "maybe", "state", "c"]));
    assert!(bad(&["list", "--format", "yaml"]));
    // Global flags go before the subcommand, as in runc.
    assert!(bad(&["state", "--root", "/r", "c"]));
}

#[test]
fn version_text_has_runcs_layout() {
    let v = version_text();
    let lines: Vec<&str> = v.lines().collect();
    assert_eq!(
        lines[0],
        format!("kennel-oci version {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(lines[1].starts_with("commit: ") && lines[1].len() > "commit: ".len());
    assert_eq!(lines[2], format!("spec: {OCI_VERSION}"));
    assert!(lines[3..]
        .iter()
        .any(|l| l.starts_with("seccomp: libseccomp ")));
    assert!(parse(&["--version"]).version);
    assert!(parse(&["-v"]).version);
}

#[test]
fn root_dir_defaults_and_checks() {
    let with_root = |r: &str| GlobalOpts {
        root: p(r),
        ..GlobalOpts::default()
    };
    assert_eq!(
        with_root("/a/./b/../c").root_dir().unwrap(),
        PathBuf::from("/a/c")
    );
    assert!(with_root("/").root_dir().is_err());
    assert!(with_root("/a/../..").root_dir().is_err());
}
