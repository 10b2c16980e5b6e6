//! Socket activation (sd_listen_fds(3)): the sockets systemd passed to
//! kennel as fds 3 to 3+N-1, with `LISTEN_FDS=N` and `LISTEN_PID` naming
//! kennel's pid, go on to the container's command with the same numbers,
//! as runc does, so a socket-activated unit can run a container whose
//! server accepts on them.
//!
//! Only fds meant for this process are taken: `LISTEN_PID` must be ours,
//! or the variables were left for someone else and nothing passes. The
//! command gets `LISTEN_FDS`, `LISTEN_FDNAMES` when systemd named them, and
//! `LISTEN_PID` set to its own pid as it execs (1, or 2 under `--init`),
//! which is what sd_listen_fds checks.

use std::ffi::CString;

use anyhow::{bail, Result};

/// The sockets passed to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// Fds 3 to 3+count-1.
    pub count: u32,
    /// `LISTEN_FDNAMES`, as systemd gave it (colon-separated).
    pub names: Option<String>,
}

const VARIABLES: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The activation this process was given, from its environment.
pub fn inherited() -> Result<Option<Activation>> {
    from_variables(|name| std::env::var(name).ok(), std::process::id())
}

fn from_variables(
    var: impl Fn(&str) -> Option<String>,
    own_pid: u32,
) -> Result<Option<Activation>> {
    let (Some(pid), Some(fds)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(own_pid) {
        return Ok(None);
    }
    let Ok(count) = fds.trim().parse::<u32>() else {
        bail!("LISTEN_FDS={fds:?} is not a number of sockets: the process that started kennel set it wrong; unset LISTEN_FDS and LISTEN_PID");
    };
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(Activation {
        count,
        names: var("LISTEN_FDNAMES"),
    }))
}

/// `envp` for the command about to exec as this process: the `LISTEN_*`
/// variables of the activation (or none of them, without one), with
/// `LISTEN_PID` this process's pid.
pub fn environment(envp: &[CString], activation: Option<&Activation>) -> Vec<CString> {
    let Some(a) = activation else {
        return envp.to_vec();
    };
    let mut out: Vec<CString> = envp
        .iter()
        .filter(|e| {
            let bytes = e.as_bytes();
            !VARIABLES
                .iter()
                .any(|v| bytes.starts_with(v.as_bytes()) && bytes.get(v.len()) == Some(&b'='))
        })
        .cloned()
        .collect();
    let mut add = |s: String| {
        if let Ok(c) = CString::new(s) {
            out.push(c);
        }
    };
    add(format!("LISTEN_FDS={}", a.count));
    add(format!("LISTEN_PID={}", std::process::id()));
    if let Some(names) = &a.names {
        add(format!("LISTEN_FDNAMES={names}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn fds_meant_for_this_process_are_taken() {
        let got = from_variables(
            vars(&[
                ("LISTEN_PID", "42"),
                ("LISTEN_FDS", "2"),
                ("LISTEN_FDNAMES", "web:admin"),
            ]),
            42,
        )
        .unwrap();
        assert_eq!(
            got,
            Some(Activation {
                count: 2,
                names: Some("web:admin".into())
            })
        );
    }

    #[test]
    fn fds_meant_for_another_process_or_none_are_left() {
        for pairs in [
            &[("LISTEN_PID", "41"), ("LISTEN_FDS", "2")][..],
            &[("LISTEN_FDS", "2")][..],
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "0")][..],
            &[][..],
        ] {
            assert_eq!(from_variables(vars(pairs), 42).unwrap(), None, "{pairs:?}");
        }
    }

    #[test]
    fn a_count_that_is_not_a_number_is_an_error() {
        let err = from_variables(vars(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "two")]), 42)
            .unwrap_err()
            .to_string();
        assert!(err.contains("LISTEN_FDS=\"two\""), "{err}");
    }

    #[test]
    fn the_command_gets_its_own_pid_and_no_stale_variables() {
        let envp: Vec<CString> = ["PATH=/bin", "LISTEN_PID=7", "LISTEN_FDS=9", "LISTEN_FDSX=1"]
            .iter()
            .map(|s| CString::new(*s).unwrap())
            .collect();
        let a = Activation {
            count: 1,
            names: None,
        };
        let out: Vec<String> = environment(&envp, Some(&a))
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert_eq!(
            out,
            vec![
                "PATH=/bin".to_string(),
                "LISTEN_FDSX=1".into(),
                "LISTEN_FDS=1".into(),
                format!("LISTEN_PID={}", std::process::id()),
            ]
        );
        assert_eq!(environment(&envp, None), envp);
    }
}
