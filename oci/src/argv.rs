//! Argument-vector handling that has to happen around clap: Go-style
//! single-dash flags, and finding `--log` when clap has refused the line.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::log::LogFormat;

/// Global flags that take a value, for `normalize_args`.
const GLOBAL_VALUE_FLAGS: &[&str] = &["log", "log-format", "root", "rootless", "criu"];
/// Global switches, for `normalize_args`.
const GLOBAL_SWITCHES: &[&str] = &["debug", "systemd-cgroup", "version", "help"];

/// Rewrites Go-style single-dash long global flags (`-root DIR`) to the
/// double-dash form clap understands. Go's flag parsing accepted both, and
/// old callers of runc used the short form. Only the global flags before
/// the subcommand are rewritten: later arguments may belong to a command
/// run inside the container.
pub fn normalize_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out: Vec<OsString> = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    if let Some(argv0) = it.next() {
        out.push(argv0);
    }
    let mut in_globals = true;
    let mut takes_value = false;
    for arg in it {
        if !in_globals || takes_value {
            takes_value = false;
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let (body, has_eq) = match s.strip_prefix("--").or_else(|| s.strip_prefix('-')) {
            Some(b) => match b.split_once('=') {
                Some((name, _)) => (name, true),
                None => (b, false),
            },
            None => {
                // The first bare word is the subcommand.
                in_globals = false;
                out.push(arg);
                continue;
            }
        };
        let known_value = GLOBAL_VALUE_FLAGS.contains(&body);
        if known_value || GLOBAL_SWITCHES.contains(&body) {
            takes_value = known_value && !has_eq;
            if !s.starts_with("--") && body.len() > 1 {
                out.push(format!("-{s}").into());
                continue;
            }
        }
        out.push(arg);
    }
    out
}

/// The global logging flags, found without a full parse, so that a usage
/// error can still be logged where the caller will look for it.
pub fn sniff_log_opts(args: &[OsString]) -> (Option<PathBuf>, LogFormat) {
    let mut log = None;
    let mut format = LogFormat::Text;
    let mut it = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if !a.starts_with('-') {
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a, None),
        };
        let value = |it: &mut dyn Iterator<Item = &str>| {
            inline.clone().or_else(|| it.next().map(String::from))
        };
        match name {
            "--log" => log = value(&mut it).map(PathBuf::from),
            "--log-format" => {
                format = match value(&mut it).as_deref() {
                    Some("json") => LogFormat::Json,
                    _ => LogFormat::Text,
                }
            }
            "--root" | "--rootless" | "--criu" if inline.is_none() => {
                it.next();
            }
            _ => {}
        }
    }
    (log, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn single_dash_globals_become_double() {
        let out = normalize_args([
            "kennel-oci",
            "-root",
            "/r",
            "-log-format=json",
            "--debug",
            "exec",
            "-t",
            "id",
            "sh",
            "-root",
        ]);
        assert_eq!(
            strs(&out),
            [
                "kennel-oci",
                "--root",
                "/r",
                "--log-format=json",
                "--debug",
                "exec",
                "-t",
                "id",
                "sh",
                "-root"
            ]
        );
    }

    #[test]
    fn a_global_value_is_not_mistaken_for_the_subcommand() {
        let out = normalize_args(["kennel-oci", "-log", "state", "-root", "/r", "list"]);
        assert_eq!(
            strs(&out),
            ["kennel-oci", "--log", "state", "--root", "/r", "list"]
        );
    }

    #[test]
    fn sniffs_log_options_before_the_subcommand() {
        let argv: Vec<OsString> = [
            "kennel-oci",
            "--root",
            "/r",
            "--log-format=json",
            "--log",
            "/l.json",
            "create",
            "--log",
            "/other",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            sniff_log_opts(&argv),
            (Some(PathBuf::from("/l.json")), LogFormat::Json)
        );
        let plain: Vec<OsString> = ["kennel-oci", "state", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(sniff_log_opts(&plain), (None, LogFormat::Text));
    }
}
