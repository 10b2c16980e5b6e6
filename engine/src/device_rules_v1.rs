//! linux.resources.devices on a pure cgroup v1 host, as root: the v1
//! devices controller's devices.allow and devices.deny, written into the
//! container's devices cgroup before it is moved there.
//!
//! The controller does not decide as the spec's rules do (the last
//! matching rule wins). It keeps a default and a list of exceptions: "a"
//! sets the default and clears the list, a rule of the default's kind
//! removes only an exception with exactly its type and numbers, and, with
//! a default of allow, an access that shares one bit with an exception is
//! denied. kennel writes the rules in order after a deny of everything,
//! then checks that the controller, fed those lines, decides every access
//! the rules tell apart as the rules do; a list it would decide
//! differently is an error, never a looser set of devices.
//! <https://docs.kernel.org/admin-guide/cgroup-v1/devices.html>

use anyhow::{bail, Result};

use crate::device_rules::{decide, Rule, BLOCK, CHAR, DEFAULTS, MKNOD, READ, WRITE};

/// The file a line goes to.
pub const ALLOW: &str = "devices.allow";
pub const DENY: &str = "devices.deny";

/// The lines for `rules` (a `device_rules::plan`) followed by the
/// defaults, each with its file, in the order they must be written.
pub fn lines(rules: &[Rule]) -> Result<Vec<(&'static str, String)>> {
    let mut out = vec![(DENY, "a".to_string())];
    for r in rules.iter().chain(DEFAULTS.iter()) {
        let file = if r.allow { ALLOW } else { DENY };
        if r.kind.is_none() && r.major.is_none() && r.minor.is_none() && r.access == ALL {
            out.push((file, "a".to_string()));
            continue;
        }
        let kinds: &[u32] = match r.kind {
            Some(k) => &[k][..],
            // The controller reads a lone "a" as a reset, never as a rule
            // of both types.
            None => &[BLOCK, CHAR],
        };
        for &kind in kinds {
            out.push((file, line(kind, r.major, r.minor, r.access)));
        }
    }
    let mut controller = Controller::default();
    for (file, l) in &out {
        controller.write(file, l);
    }
    if let Some((kind, major, minor, access)) = probes(rules)
        .find(|&(k, ma, mi, ac)| controller.allows(k, ma, mi, ac) != decide(rules, k, ma, mi, ac))
    {
        bail!(
            "linux.resources.devices cannot be kept on cgroup v1: its devices controller would {} {} access to {} {major}:{minor}, which the rules {}; write the rules so that a later rule never narrows an earlier one of the other verdict by type, number or access, or run on a cgroup v2 host",
            if decide(rules, kind, major, minor, access) { "refuse" } else { "allow" },
            access_text(access),
            if kind == BLOCK { "block" } else { "char" },
            if decide(rules, kind, major, minor, access) { "allow" } else { "refuse" },
        );
    }
    Ok(out)
}

const ALL: u32 = MKNOD | READ | WRITE;

fn line(kind: u32, major: Option<u32>, minor: Option<u32>, access: u32) -> String {
    let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {}",
        if kind == BLOCK { 'b' } else { 'c' },
        number(major),
        number(minor),
        access_text(access)
    )
}

fn access_text(access: u32) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

/// Every access the rules can tell apart: each type, each number they
/// name and one they do not (which stands for all the others), each
/// combination of access bits.
fn probes(rules: &[Rule]) -> impl Iterator<Item = (u32, u32, u32, u32)> {
    let named = |pick: fn(&Rule) -> Option<u32>| {
        let mut v: Vec<u32> = rules
            .iter()
            .chain(DEFAULTS.iter())
            .filter_map(pick)
            .collect();
        v.push(v.iter().max().map_or(0, |m| m + 1));
        v.sort_unstable();
        v.dedup();
        v
    };
    let majors = named(|r| r.major);
    let minors = named(|r| r.minor);
    [BLOCK, CHAR].into_iter().flat_map(move |kind| {
        let minors = minors.clone();
        majors.clone().into_iter().flat_map(move |major| {
            let minors = minors.clone();
            minors
                .into_iter()
                .flat_map(move |minor| (1..=ALL).map(move |access| (kind, major, minor, access)))
        })
    })
}

/// The kernel's v1 devices controller for one fresh cgroup, as
/// security/device_cgroup.c keeps it (its parent allowing everything).
#[derive(Default)]
struct Controller {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Exception {
    kind: u32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

impl Exception {
    fn covers(&self, kind: u32, major: u32, minor: u32) -> bool {
        self.kind == kind
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

impl Controller {
    fn write(&mut self, file: &str, line: &str) {
        let allow = file == ALLOW;
        if line == "a" {
            self.default_allow = allow;
            self.exceptions.clear();
            return;
        }
        let ex = parse(line);
        let same_key = |e: &Exception| (e.kind, e.major, e.minor) == (ex.kind, ex.major, ex.minor);
        if allow == self.default_allow {
            for e in self.exceptions.iter_mut().filter(|e| same_key(e)) {
                e.access &= !ex.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| same_key(e)) {
            e.access |= ex.access;
        } else {
            self.exceptions.push(ex);
        }
    }

    fn allows(&self, kind: u32, major: u32, minor: u32, access: u32) -> bool {
        let mut matching = self
            .exceptions
            .iter()
            .filter(|e| e.covers(kind, major, minor));
        if self.default_allow {
            !matching.any(|e| e.access & access != 0)
        } else {
            matching.any(|e| access & !e.access == 0)
        }
    }
}

fn parse(line: &str) -> Exception {
    let mut parts = line.split(' ');
    let kind = if parts.next() == Some("b") {
        BLOCK
    } else {
        CHAR
    };
    let (major, minor) = parts
        .next()
        .unwrap_or("*:*")
        .split_once(':')
        .unwrap_or(("*", "*"));
    let access = parts.next().unwrap_or("").chars().fold(0, |a, c| {
        a | match c {
            'r' => READ,
            'w' => WRITE,
            _ => MKNOD,
        }
    });
    Exception {
        kind,
        major: major.parse().ok(),
        minor: minor.parse().ok(),
        access,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<Rule> {
        let parsed: Vec<oci_spec::runtime::LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        crate::device_rules::plan(Some(&parsed)).unwrap()
    }

    #[test]
    fn a_deny_all_list_becomes_a_whitelist_of_its_allows_and_the_defaults() {
        let got = lines(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"}]"#,
        ))
        .unwrap();
        assert_eq!(
            got[..3],
            [
                (DENY, "a".to_string()),
                (DENY, "a".to_string()),
                (ALLOW, "c 10:200 rw".to_string()),
            ]
        );
        assert!(got.contains(&(ALLOW, "c 1:3 rwm".to_string())));
        assert!(got.contains(&(ALLOW, "b *:* m".to_string())));
        assert!(got.contains(&(ALLOW, "c 136:* rwm".to_string())));
    }

    #[test]
    fn allow_all_is_a_reset_to_allow() {
        let got = lines(&rules(r#"[{"allow": true, "access": "rwm"}]"#)).unwrap();
        assert_eq!(got[1], (ALLOW, "a".to_string()));
    }

    #[test]
    fn a_rule_of_any_type_is_written_for_both() {
        let got = lines(&rules(
            r#"[{"allow": false, "access": "rwm"}, {"allow": true, "major": 7, "access": "r"}]"#,
        ))
        .unwrap();
        assert!(got.contains(&(ALLOW, "b 7:* r".to_string())));
        assert!(got.contains(&(ALLOW, "c 7:* r".to_string())));
    }

    #[test]
    fn a_later_deny_narrower_than_an_allow_is_refused() {
        // The controller removes only an exception of exactly this number:
        // c 1:11 would stay open through c 1:*.
        let e = lines(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "access": "rw"},
                {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rw"}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot be kept on cgroup v1") && e.contains("char 1:11"),
            "{e}"
        );
        assert!(e.contains("cgroup v2 host"), "{e}");
    }

    #[test]
    fn a_deny_of_exactly_an_earlier_allow_is_kept() {
        let got = lines(&rules(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
                {"allow": false, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]"#,
        ))
        .unwrap();
        assert!(got.contains(&(DENY, "c 10:200 rwm".to_string())));
    }

    #[test]
    fn the_controller_model_decides_as_the_kernel_documents() {
        let mut c = Controller::default();
        c.write(DENY, "a");
        c.write(ALLOW, "c 1:3 rw");
        assert!(c.allows(CHAR, 1, 3, READ | WRITE));
        assert!(!c.allows(CHAR, 1, 3, MKNOD));
        assert!(!c.allows(CHAR, 1, 5, READ));
        c.write(ALLOW, "a");
        c.write(DENY, "c 1:3 w");
        // With a default of allow, one shared bit is enough to refuse.
        assert!(!c.allows(CHAR, 1, 3, READ | WRITE));
        assert!(c.allows(CHAR, 1, 3, READ));
    }
}
