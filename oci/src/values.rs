//! Value syntaxes runc inherits from Go and its libraries, parsed the way
//! they parse them, so values that work with runc work here.

use std::time::Duration;

/// `--rootless`: runc's tri-state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rootless {
    #[default]
    Auto,
    True,
    False,
}

/// Accepts what runc accepts: "" or "auto" (any case), else what Go's
/// strconv.ParseBool accepts.
pub fn parse_rootless(s: &str) -> Result<Rootless, String> {
    if s.is_empty() || s.eq_ignore_ascii_case("auto") {
        return Ok(Rootless::Auto);
    }
    parse_go_bool(s).map(|b| if b { Rootless::True } else { Rootless::False })
}

/// Go's strconv.ParseBool, which is what `--flag=value` means for runc's
/// boolean flags.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

pub use kennel_engine::lifecycle::parse_signal;

/// A Go time.Duration string: a sequence of decimal numbers with units
/// ns, us, µs, ms, s, m, h ("1m30s", "1.5s"); go-runc sends "--interval=5s".
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// A size as docker's go-units RAMInBytes reads it: a decimal number and
/// an optional binary unit (k, m, g, t, p, with optional "b" or "ib", any
/// case); "-1" means unlimited.
pub fn parse_ram_in_bytes(s: &str) -> Result<i64, String> {
    let err = || format!("invalid size: {s:?}");
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let value: f64 = t[..num_len].parse().map_err(|_| err())?;
    let unit = t[num_len..].trim_start().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(err()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_as_runc_reads_them() {
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGHUP").unwrap(), libc::SIGHUP);
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("-9").is_err());
        assert!(parse_signal("100000").is_err());
    }

    #[test]
    fn go_bools_and_rootless() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
        assert_eq!(parse_rootless("AUTO"), Ok(Rootless::Auto));
        assert_eq!(parse_rootless(""), Ok(Rootless::Auto));
        assert_eq!(parse_rootless("true"), Ok(Rootless::True));
        assert_eq!(parse_rootless("false"), Ok(Rootless::False));
        assert!(parse_rootless("maybe").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("5x").is_err());
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_in_bytes("-1"), Ok(-1));
        assert_eq!(parse_ram_in_bytes("1024"), Ok(1024));
        assert_eq!(parse_ram_in_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_ram_in_bytes("1GB"), Ok(1 << 30));
        assert_eq!(parse_ram_in_bytes("2KiB"), Ok(2048));
        assert_eq!(parse_ram_in_bytes("1.5k"), Ok(1536));
        assert!(parse_ram_in_bytes("12q").is_err());
        assert!(parse_ram_in_bytes("m").is_err());
        assert!(parse_ram_in_bytes("-2").is_err());
    }
}
