//! The two command lines: kennel's native form and shadow's drop-in form.
//!
//! ```text
//! kennel-idmap TARGET [--uid INNER:OUTER:COUNT]... [--gid INNER:OUTER:COUNT]...
//! newuidmap TARGET UID LOWERUID COUNT [UID LOWERUID COUNT]...
//! newgidmap TARGET GID LOWERGID COUNT [GID LOWERGID COUNT]...
//! ```
//! TARGET is a pid, `fd:N` (a pidfd or an open `/proc/PID` directory), or
//! `sock:N` (a unix socket on which such an fd arrives later, so a caller
//! can start the helper before the process exists; once both maps are
//! written, one byte `k` goes back on it).

use std::fmt;

use crate::map_line::{parse_map_line, MapLine};
use crate::subid::parse_decimal;

/// The process whose maps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A pid in the caller's pid namespace (never 0).
    Pid(u32),
    /// An inherited file descriptor: a pidfd or a `/proc/PID` directory.
    Fd(i32),
    /// An inherited unix socket; the pidfd (or `/proc/PID` directory) comes
    /// on it as SCM_RIGHTS.
    Socket(i32),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pid(pid) => write!(f, "process {pid}"),
            Target::Fd(fd) => write!(f, "the process at fd:{fd}"),
            Target::Socket(fd) => write!(f, "the process sent on fd:{fd}"),
        }
    }
}

/// A parsed request: the target and the maps to write (either may be empty,
/// not both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub target: Target,
    pub uid_map: Vec<MapLine>,
    pub gid_map: Vec<MapLine>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Write(Request),
}

/// How the program was called, from the base name of argv[0].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Native,
    NewUidMap,
    NewGidMap,
}

impl Form {
    pub fn from_argv0(argv0: &str) -> Form {
        match argv0.rsplit('/').next().unwrap_or(argv0) {
            "newuidmap" => Form::NewUidMap,
            "newgidmap" => Form::NewGidMap,
            _ => Form::Native,
        }
    }
}

/// A command line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    MissingTarget,
    BadTarget(String),
    ExtraArgument(String),
    UnknownOption(String),
    MissingValue(&'static str),
    BadRange { option: &'static str, value: String },
    BadNumber(String),
    NoMaps,
    DropInArity { form: &'static str, given: usize },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::MissingTarget => {
                f.write_str("usage: no TARGET given (a pid, fd:N or sock:N)")
            }
            UsageError::BadTarget(t) => {
                write!(f, "usage: TARGET {t:?} is neither a pid, fd:N nor sock:N")
            }
            UsageError::ExtraArgument(a) => write!(f, "usage: unexpected argument {a:?}"),
            UsageError::UnknownOption(o) => write!(f, "usage: unknown option {o:?}"),
            UsageError::MissingValue(o) => write!(f, "usage: {o} needs INNER:OUTER:COUNT"),
            UsageError::BadRange { option, value } => write!(
                f,
                "usage: {option} {value:?} is not INNER:OUTER:COUNT (three decimal numbers below 4294967296)"
            ),
            UsageError::BadNumber(n) => {
                write!(f, "usage: {n:?} is not a decimal number below 4294967296")
            }
            UsageError::NoMaps => f.write_str("usage: give at least one --uid or --gid range"),
            UsageError::DropInArity { form, given } => write!(
                f,
                "usage: {form} <pid> <id> <lowerid> <count> [<id> <lowerid> <count>]... ({given} arguments given)"
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// The help text of the native form (which also lists the drop-in forms).
pub const USAGE: &str = "\
usage: kennel-idmap TARGET [--uid INNER:OUTER:COUNT]... [--gid INNER:OUTER:COUNT]...
       newuidmap TARGET UID LOWERUID COUNT [UID LOWERUID COUNT]...
       newgidmap TARGET GID LOWERGID COUNT [GID LOWERGID COUNT]...
TARGET is a pid, fd:N (a pidfd or an open /proc/PID directory), or sock:N
(a unix socket on which such an fd arrives later; once both maps are
written, the byte 'k' is sent back on it).
Each range must be your own id with count 1 or lie inside your
/etc/subuid or /etc/subgid ranges.
";

/// The help text for the name the program was called by: a program
/// that calls `newuidmap --help` expects shadow's usage, not kennel's.
pub fn usage(form: Form) -> String {
    let (name, id) = match form {
        Form::Native => return USAGE.to_string(),
        Form::NewUidMap => ("newuidmap", "uid"),
        Form::NewGidMap => ("newgidmap", "gid"),
    };
    let file = format!("/etc/sub{id}");
    format!(
        "\
usage: {name} <pid> <{id}> <lower{id}> <count> [<{id}> <lower{id}> <count>]...
Writes /proc/<pid>/{id}_map: container {id} <{id}> onward maps to host {id}s
<lower{id}> onward, <count> of them, per triple. <pid> may also be fd:N (a
pidfd or an open /proc/PID directory). Each range must be your own {id}
with count 1 or lie inside your {file} ranges.
This is kennel-idmap called as {name}, with file capabilities instead
of the setuid bit; `kennel-idmap --help` shows its own form.
"
    )
}

fn parse_target(text: &str) -> Result<Target, UsageError> {
    let bad = || UsageError::BadTarget(text.to_owned());
    if let Some(fd) = text.strip_prefix("fd:") {
        let fd = parse_decimal(fd).ok_or_else(bad)?;
        return i32::try_from(fd).map(Target::Fd).map_err(|_| bad());
    }
    if let Some(fd) = text.strip_prefix("sock:") {
        let fd = parse_decimal(fd).ok_or_else(bad)?;
        return i32::try_from(fd).map(Target::Socket).map_err(|_| bad());
    }
    match parse_decimal(text) {
        Some(pid) if pid > 0 && pid <= i32::MAX as u32 => Ok(Target::Pid(pid)),
        _ => Err(bad()),
    }
}

/// Parses the arguments after argv[0] for the given form.
pub fn parse_args(form: Form, args: &[&str]) -> Result<Command, UsageError> {
    match form {
        Form::Native => parse_native(args),
        // shadow's forms take no options but these, and a pid never
        // starts with '-'.
        Form::NewUidMap | Form::NewGidMap if matches!(args, ["-h" | "--help", ..]) => {
            Ok(Command::Help)
        }
        Form::NewUidMap => parse_drop_in("newuidmap", args).map(|(target, lines)| {
            Command::Write(Request {
                target,
                uid_map: lines,
                gid_map: Vec::new(),
            })
        }),
        Form::NewGidMap => parse_drop_in("newgidmap", args).map(|(target, lines)| {
            Command::Write(Request {
                target,
                uid_map: Vec::new(),
                gid_map: lines,
            })
        }),
    }
}

fn parse_native(args: &[&str]) -> Result<Command, UsageError> {
    let mut target = None;
    let mut uid_map = Vec::new();
    let mut gid_map = Vec::new();
    let mut iter = args.iter();
    while let Some(&arg) = iter.next() {
        let (option, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v)),
            _ => (arg, None),
        };
        let (name, map) = match option {
            "-h" | "--help" => return Ok(Command::Help),
            "--uid" => ("--uid", &mut uid_map),
            "--gid" => ("--gid", &mut gid_map),
            _ if arg.starts_with('-') => return Err(UsageError::UnknownOption(arg.to_owned())),
            _ if target.is_some() => return Err(UsageError::ExtraArgument(arg.to_owned())),
            _ => {
                target = Some(parse_target(arg)?);
                continue;
            }
        };
        let value = match inline {
            Some(v) => v,
            None => iter.next().copied().ok_or(UsageError::MissingValue(name))?,
        };
        let line = parse_map_line(value).ok_or_else(|| UsageError::BadRange {
            option: name,
            value: value.to_owned(),
        })?;
        map.push(line);
    }
    let target = target.ok_or(UsageError::MissingTarget)?;
    if uid_map.is_empty() && gid_map.is_empty() {
        return Err(UsageError::NoMaps);
    }
    Ok(Command::Write(Request {
        target,
        uid_map,
        gid_map,
    }))
}

fn parse_drop_in(form: &'static str, args: &[&str]) -> Result<(Target, Vec<MapLine>), UsageError> {
    if args.len() < 4 || (args.len() - 1) % 3 != 0 {
        return Err(UsageError::DropInArity {
            form,
            given: args.len(),
        });
    }
    let target = parse_target(args[0])?;
    let number = |s: &str| parse_decimal(s).ok_or_else(|| UsageError::BadNumber(s.to_owned()));
    let lines = args[1..]
        .chunks_exact(3)
        .map(|c| {
            Ok(MapLine {
                inner: number(c[0])?,
                outer: number(c[1])?,
                count: number(c[2])?,
            })
        })
        .collect::<Result<Vec<_>, UsageError>>()?;
    Ok((target, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(inner: u32, outer: u32, count: u32) -> MapLine {
        MapLine {
            inner,
            outer,
            count,
        }
    }

    fn write(target: Target, uid_map: Vec<MapLine>, gid_map: Vec<MapLine>) -> Command {
        Command::Write(Request {
            target,
            uid_map,
            gid_map,
        })
    }

    #[test]
    fn forms_from_argv0() {
        assert_eq!(Form::from_argv0("/usr/bin/newuidmap"), Form::NewUidMap);
        assert_eq!(Form::from_argv0("newgidmap"), Form::NewGidMap);
        assert_eq!(Form::from_argv0("/x/kennel-idmap"), Form::Native);
        assert_eq!(Form::from_argv0("newuidmap2"), Form::Native);
        assert_eq!(Form::from_argv0(""), Form::Native);
    }

    #[test]
    fn native_form() {
        let runner = "fd:3 --uid 0:1000:1 --uid 1:300000:65536 --gid 0:1000:1 --gid 1:300000:65536";
        let args: Vec<&str> = runner.split(' ').collect();
        assert_eq!(
            parse_args(Form::Native, &args),
            Ok(write(
                Target::Fd(3),
                vec![l(0, 1000, 1), l(1, 300000, 65536)],
                vec![l(0, 1000, 1), l(1, 300000, 65536)]
            ))
        );
        let table: &[(&[&str], Result<Command, UsageError>)] = &[
            (
                &["42", "--uid=0:1:2"],
                Ok(write(Target::Pid(42), vec![l(0, 1, 2)], vec![])),
            ),
            (
                &["--gid", "0:1:2", "42"],
                Ok(write(Target::Pid(42), vec![], vec![l(0, 1, 2)])),
            ),
            (&["--help"], Ok(Command::Help)),
            (&["42"], Err(UsageError::NoMaps)),
            (&["--uid", "0:1:2"], Err(UsageError::MissingTarget)),
            (&["42", "--uid"], Err(UsageError::MissingValue("--uid"))),
            (
                &["42", "43", "--uid", "0:1:1"],
                Err(UsageError::ExtraArgument("43".into())),
            ),
            (
                &["42", "--map", "0:1:1"],
                Err(UsageError::UnknownOption("--map".into())),
            ),
            (
                &["0", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("0".into())),
            ),
            (
                &["-5", "--uid", "0:1:1"],
                Err(UsageError::UnknownOption("-5".into())),
            ),
            (
                &["2147483648", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("2147483648".into())),
            ),
            (
                &["fd:", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("fd:".into())),
            ),
            (
                &["fd:x", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("fd:x".into())),
            ),
            (
                &["sock:4", "--uid", "0:1:1"],
                Ok(write(Target::Socket(4), vec![l(0, 1, 1)], vec![])),
            ),
            (
                &["sock:", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("sock:".into())),
            ),
            (
                &["sock:-1", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("sock:-1".into())),
            ),
            (
                &["pid", "--uid", "0:1:1"],
                Err(UsageError::BadTarget("pid".into())),
            ),
            (
                &["42", "--uid", "0:1"],
                Err(UsageError::BadRange {
                    option: "--uid",
                    value: "0:1".into(),
                }),
            ),
            (
                &["42", "--gid", "0:1:4294967296"],
                Err(UsageError::BadRange {
                    option: "--gid",
                    value: "0:1:4294967296".into(),
                }),
            ),
        ];
        for (args, want) in table {
            assert_eq!(&parse_args(Form::Native, args), want, "{args:?}");
        }
    }

    #[test]
    fn drop_in_form() {
        assert_eq!(
            parse_args(
                Form::NewUidMap,
                &["42", "0", "1000", "1", "1", "300000", "65536"]
            ),
            Ok(write(
                Target::Pid(42),
                vec![l(0, 1000, 1), l(1, 300000, 65536)],
                vec![]
            ))
        );
        assert_eq!(
            parse_args(Form::NewGidMap, &["fd:4", "0", "1000", "1"]),
            Ok(write(Target::Fd(4), vec![], vec![l(0, 1000, 1)]))
        );
        let arity = |given| {
            Err(UsageError::DropInArity {
                form: "newuidmap",
                given,
            })
        };
        assert_eq!(parse_args(Form::NewUidMap, &["42"]), arity(1));
        assert_eq!(parse_args(Form::NewUidMap, &["42", "0", "1"]), arity(3));
        assert_eq!(
            parse_args(Form::NewUidMap, &["42", "0", "1", "1", "2"]),
            arity(5)
        );
        assert_eq!(
            parse_args(Form::NewUidMap, &["42", "0", "0x10", "1"]),
            Err(UsageError::BadNumber("0x10".into()))
        );
        assert_eq!(
            parse_args(Form::NewUidMap, &["--uid", "0", "1", "1"]),
            Err(UsageError::BadTarget("--uid".into()))
        );
    }

    #[test]
    fn help_through_a_shadow_name_is_that_names_usage() {
        for (form, name) in [
            (Form::NewUidMap, "newuidmap"),
            (Form::NewGidMap, "newgidmap"),
        ] {
            for flag in ["--help", "-h"] {
                assert_eq!(parse_args(form, &[flag]), Ok(Command::Help));
            }
            let text = usage(form);
            assert!(text.starts_with(&format!("usage: {name} <pid> ")), "{text}");
            assert!(!text.contains("(see --help)"), "{text}");
        }
        assert_eq!(usage(Form::Native), USAGE);
    }
}
