//! runc-compatible logging.
//!
//! Callers parse what runc writes: containerd's shim reads the last error
//! line of `--log` as JSON, and podman unmarshals the whole `--log` file as
//! one JSON object. So a failing command writes exactly one error line to
//! the log and, when the log is not stderr, one plain line to stderr, as
//! runc's fatal() does. Debug lines appear only with `--debug`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use serde::Serialize;

/// `--log-format`.
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// logrus's text form: `time="..." level=error msg="..."`.
    #[default]
    Text,
    /// One JSON object a line: `{"level":..,"msg":..,"time":..}`.
    Json,
}

/// Severity, named as logrus names them in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

/// Where log lines go, in which format, from which level.
#[derive(Debug)]
pub struct Logger {
    format: LogFormat,
    file: Option<File>,
    debug: bool,
}

impl Logger {
    /// Logs to `path` (appended, created 0644, as runc opens it) or to
    /// stderr when `path` is None.
    pub fn new(path: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<Logger> {
        let file = match path {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Logger {
            format,
            file,
            debug,
        })
    }

    /// A logger writing text to stderr: the fallback when `--log` cannot
    /// be opened, so that the reason still reaches someone.
    pub fn stderr() -> Logger {
        Logger {
            format: LogFormat::Text,
            file: None,
            debug: false,
        }
    }

    /// Whether debug lines are written.
    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.log(Level::Debug, msg);
        }
    }

    pub fn info(&self, msg: &str) {
        self.log(Level::Info, msg);
    }

    pub fn warn(&self, msg: &str) {
        self.log(Level::Warn, msg);
    }

    pub fn error(&self, msg: &str) {
        self.log(Level::Error, msg);
    }

    /// Reports the error that ends the command: one line to the log, and
    /// when the log is a file, the bare message to stderr as well.
    pub fn fatal(&self, err: &anyhow::Error) {
        let msg = one_line(&format!("{err:#}"));
        self.error(&msg);
        if self.file.is_some() {
            let _ = writeln!(std::io::stderr().lock(), "{msg}");
        }
    }

    /// Writes one line. Errors writing the log are dropped: there is
    /// nowhere better to report them.
    pub fn log(&self, level: Level, msg: &str) {
        let line = format_line(self.format, level, msg, SystemTime::now());
        match &self.file {
            // One write per line, so concurrent writers (conmon runs
            // several runtime commands against one container) do not
            // interleave within a line of the O_APPEND file.
            Some(f) => {
                let _ = (&*f).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }
}

/// Keeps a message on one line: the log is read line by line.
fn one_line(msg: &str) -> String {
    msg.replace('\n', " ")
}

#[derive(Serialize)]
struct JsonLine<'a> {
    // Field order is logrus's (keys sorted), which readers do not need
    // but diffs against runc's output are easier with.
    level: &'a str,
    msg: &'a str,
    time: &'a str,
}

/// One complete log line, newline included.
pub fn format_line(format: LogFormat, level: Level, msg: &str, at: SystemTime) -> String {
    let time = rfc3339(at);
    match format {
        LogFormat::Json => {
            let line = JsonLine {
                level: level.as_str(),
                msg,
                time: &time,
            };
            // Serializing three strings cannot fail.
            let mut s = serde_json::to_string(&line).unwrap_or_default();
            s.push('\n');
            s
        }
        LogFormat::Text => format!(
            "time={} level={} msg={}\n",
            logfmt_value(&time),
            level.as_str(),
            logfmt_value(msg)
        ),
    }
}

/// A value as logrus's text formatter writes it: bare when it is only
/// letters, digits and `-._/@^+`, else double-quoted with Go escapes.
fn logfmt_value(v: &str) -> String {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 3339 UTC with second precision, `2006-01-02T15:04:05Z`: the form
/// logrus writes (it uses local time; UTC avoids reading the zone database).
pub fn rfc3339(t: SystemTime) -> String {
    // A clock before 1970 is a broken clock; print the epoch.
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date, by Howard
/// Hinnant's civil_from_days: shift the year to start in March so the leap
/// day is last, then split into 400-year eras.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(at(1_735_689_600)), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        // Sub-second parts are dropped, not rounded.
        assert_eq!(
            rfc3339(at(59) + Duration::from_millis(999)),
            "1970-01-01T00:00:59Z"
        );
    }

    #[test]
    fn json_line_shape() {
        let line = format_line(
            LogFormat::Json,
            Level::Error,
            "open \"x\": no such file",
            at(0),
        );
        assert_eq!(
            line,
            "{\"level\":\"error\",\"msg\":\"open \\\"x\\\": no such file\",\"time\":\"1970-01-01T00:00:00Z\"}\n"
        );
        // What podman does with the file: unmarshal it whole.
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "open \"x\": no such file");
    }

    #[test]
    fn text_line_shape() {
        assert_eq!(
            format_line(LogFormat::Text, Level::Warn, "a \"b\"\n", at(0)),
            "time=\"1970-01-01T00:00:00Z\" level=warning msg=\"a \\\"b\\\"\\n\"\n"
        );
        assert_eq!(
            format_line(LogFormat::Text, Level::Debug, "plain-word", at(0)),
            "time=\"1970-01-01T00:00:00Z\" level=debug msg=plain-word\n"
        );
    }

    #[test]
    fn file_gets_one_json_line_per_fatal_and_no_debug() {
        let dir = std::env::temp_dir().join(format!("kennel-oci-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.json");
        let _ = std::fs::remove_file(&path);
        let log = Logger::new(Some(&path), LogFormat::Json, false).unwrap();
        log.debug("not written");
        log.fatal(&anyhow::anyhow!("inner").context("outer"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["msg"], "outer: inner");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
