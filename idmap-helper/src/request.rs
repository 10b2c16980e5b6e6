//! Validation of a requested uid or gid map against the caller's rights and
//! the kernel's rules for `/proc/PID/uid_map` and `gid_map`.

use std::fmt;

use crate::map_line::{render_map, MapLine};
use crate::subid::IdRange;

/// The kernel refuses a map with more lines than this (`UID_GID_MAP_MAX_EXTENTS`).
pub const MAX_MAP_LINES: usize = 340;
/// The kernel takes a map in one write shorter than a page; 4096 is the
/// smallest page size, so the limit holds on every architecture.
pub const MAX_MAP_BYTES: usize = 4095;
/// The largest id a map may reach; 4294967295 is the kernel's invalid id.
pub const MAX_ID: u32 = u32::MAX - 1;

/// Which of the two maps a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    /// `uid` or `gid`.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        }
    }

    /// The subordinate id file that grants this kind of id.
    pub fn subid_file(self) -> &'static str {
        match self {
            IdKind::Uid => "/etc/subuid",
            IdKind::Gid => "/etc/subgid",
        }
    }

    /// The file under `/proc/PID` the map is written to.
    pub fn map_file(self) -> &'static str {
        match self {
            IdKind::Uid => "uid_map",
            IdKind::Gid => "gid_map",
        }
    }
}

/// What the caller is entitled to for one kind of id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapPolicy {
    pub kind: IdKind,
    /// The caller's real uid (for a uid map) or real gid (for a gid map).
    pub own_id: u32,
    /// Whether the caller's real uid is 0; only root may map host id 0.
    pub caller_is_root: bool,
    /// The caller's joined ranges from the subordinate id file.
    pub allowed: Vec<IdRange>,
}

/// Why a requested map was refused. Display names the rule and the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Empty {
        kind: IdKind,
    },
    TooManyLines {
        kind: IdKind,
        lines: usize,
    },
    TooLong {
        kind: IdKind,
        bytes: usize,
    },
    ZeroCount {
        kind: IdKind,
        line: MapLine,
    },
    InnerOverflow {
        kind: IdKind,
        line: MapLine,
    },
    OuterOverflow {
        kind: IdKind,
        line: MapLine,
    },
    InnerOverlap {
        kind: IdKind,
        first: MapLine,
        second: MapLine,
    },
    OuterOverlap {
        kind: IdKind,
        first: MapLine,
        second: MapLine,
    },
    HostRoot {
        kind: IdKind,
        line: MapLine,
    },
    NotAllowed {
        kind: IdKind,
        line: MapLine,
        own_id: u32,
        allowed: Vec<IdRange>,
    },
}

struct Ranges<'a>(&'a [IdRange]);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Empty { kind } => write!(f, "refused: the {} map has no ranges", kind.name()),
            Refusal::TooManyLines { kind, lines } => write!(
                f,
                "refused: the {} map has {lines} ranges; the kernel accepts at most {MAX_MAP_LINES}",
                kind.name()
            ),
            Refusal::TooLong { kind, bytes } => write!(
                f,
                "refused: the {} map is {bytes} bytes of text; the kernel accepts at most {MAX_MAP_BYTES} in its single write",
                kind.name()
            ),
            Refusal::ZeroCount { kind, line } => write!(
                f,
                "refused: {} range {line} has count 0; a range maps at least one id",
                kind.name()
            ),
            Refusal::InnerOverflow { kind, line } => write!(
                f,
                "refused: {} range {line} goes past the largest id ({MAX_ID}) inside the namespace",
                kind.name()
            ),
            Refusal::OuterOverflow { kind, line } => write!(
                f,
                "refused: {} range {line} goes past the largest host id ({MAX_ID})",
                kind.name()
            ),
            Refusal::InnerOverlap { kind, first, second } => write!(
                f,
                "refused: {} ranges {first} and {second} overlap inside the namespace",
                kind.name()
            ),
            Refusal::OuterOverlap { kind, first, second } => write!(
                f,
                "refused: {} ranges {first} and {second} overlap on the host",
                kind.name()
            ),
            Refusal::HostRoot { kind, line } => write!(
                f,
                "refused: {} range {line} maps host {} 0, which only root may map",
                kind.name(),
                kind.name()
            ),
            Refusal::NotAllowed {
                kind,
                line,
                own_id,
                allowed,
            } => {
                write!(
                    f,
                    "refused: {k} range {line} is neither your own {k} ({own_id}) with count 1 nor inside your {file} ranges (",
                    k = kind.name(),
                    file = kind.subid_file()
                )?;
                if allowed.is_empty() {
                    write!(
                        f,
                        "you have none; an administrator can add some with `usermod --add-sub{}s`",
                        kind.name()
                    )?;
                } else {
                    write!(f, "{}", Ranges(allowed))?;
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for Refusal {}

fn overlap(a_start: u32, a_end: u64, b_start: u32, b_end: u64) -> bool {
    u64::from(a_start) < b_end && u64::from(b_start) < a_end
}

/// Checks a requested map against every rule; `Ok` means it may be written.
///
/// Rules, in the order they are checked: at least one and at most
/// [`MAX_MAP_LINES`] lines; for every line count >= 1 and no end past
/// [`MAX_ID`] inside or on the host; no two lines overlap inside or on the
/// host; the rendered text fits one write; host id 0 only for root; every
/// line is the caller's own id with count 1 or inside the allowed ranges.
pub fn validate_map(policy: &MapPolicy, lines: &[MapLine]) -> Result<(), Refusal> {
    let kind = policy.kind;
    if lines.is_empty() {
        return Err(Refusal::Empty { kind });
    }
    if lines.len() > MAX_MAP_LINES {
        return Err(Refusal::TooManyLines {
            kind,
            lines: lines.len(),
        });
    }
    for &line in lines {
        if line.count == 0 {
            return Err(Refusal::ZeroCount { kind, line });
        }
        if line.inner_end() > u64::from(MAX_ID) + 1 {
            return Err(Refusal::InnerOverflow { kind, line });
        }
        if line.outer_end() > u64::from(MAX_ID) + 1 {
            return Err(Refusal::OuterOverflow { kind, line });
        }
    }
    for (i, &first) in lines.iter().enumerate() {
        for &second in &lines[i + 1..] {
            if overlap(
                first.inner,
                first.inner_end(),
                second.inner,
                second.inner_end(),
            ) {
                return Err(Refusal::InnerOverlap {
                    kind,
                    first,
                    second,
                });
            }
            if overlap(
                first.outer,
                first.outer_end(),
                second.outer,
                second.outer_end(),
            ) {
                return Err(Refusal::OuterOverlap {
                    kind,
                    first,
                    second,
                });
            }
        }
    }
    let bytes = render_map(lines).len();
    if bytes > MAX_MAP_BYTES {
        return Err(Refusal::TooLong { kind, bytes });
    }
    for &line in lines {
        if line.outer == 0 && !policy.caller_is_root {
            return Err(Refusal::HostRoot { kind, line });
        }
        let own = line.count == 1 && line.outer == policy.own_id;
        if !own
            && !policy
                .allowed
                .iter()
                .any(|r| r.contains(line.outer, line.count))
        {
            return Err(Refusal::NotAllowed {
                kind,
                line,
                own_id: policy.own_id,
                allowed: policy.allowed.clone(),
            });
        }
    }
    Ok(())
}

/// Whether `deny` must be written to `/proc/PID/setgroups` before this gid
/// map: when the only gid mapped is the caller's own (CVE-2018-7169), so the
/// caller cannot use setgroups(2) to shed a group that restricts them.
pub fn setgroups_must_be_denied(gid_lines: &[MapLine], own_gid: u32) -> bool {
    matches!(gid_lines, [line] if line.count == 1 && line.outer == own_gid)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
