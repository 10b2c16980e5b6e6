//! Choosing the container's uid/gid maps (`--userns`), and finding the
//! kennel-idmap helper that writes the ones we may not write ourselves.
//!
//! The plan is pure: it takes what was read from the host (caller, its
//! subordinate ranges, the helper's state) and returns the maps, or an error
//! that names the missing piece and its fix.

use std::path::PathBuf;

use kennel_idmap::{IdRange, MapLine};

use crate::cli::UsernsMode;
pub use kennel_engine::host::ids::*;

/// Container ids that keep-id fills (0..65535, like podman).
const KEEP_ID_SPAN: u32 = 65536;

/// Every id we have, mapped onto itself.
fn identity_of(ours: &[MapLine]) -> Vec<MapLine> {
    ours.iter()
        .map(|l| line(l.inner, l.inner, l.count))
        .collect()
}

/// The caller's subordinate ranges from /etc/subuid and /etc/subgid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubIds {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// When the caller lacks either, a block no entry of either file uses,
    /// for the fix to suggest (see `usermod_fix`).
    pub free: Option<IdRange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPlan {
    pub uid_map: Vec<MapLine>,
    pub gid_map: Vec<MapLine>,
    /// One line for `--verbose`: what was chosen and why.
    pub reason: String,
    /// The helper that will write these maps, when they need one.
    pub helper: Option<PathBuf>,
    /// Said on stderr whatever the verbosity: the mode wanted more ids
    /// than the container got, and what gives it more.
    pub one_id_warning: Option<String>,
}

/// Why a one-id container matters (the first `apt-get` fails with
/// `setgroups 0 failed`), then the cause and its fix from `err`.
fn one_id_warning(map: &str, err: &PlanError) -> String {
    // The user asked for no mode (auto and keep-id are the defaults), so
    // a missing range is said without naming one.
    let more = match err {
        PlanError::NoSubIds {
            user, file, fix, ..
        } => {
            format!("{user} has no subordinate ids (no entry in {file}); add a range with: {fix}")
        }
        other => other.to_string(),
    };
    format!(
        "the container has a single id ({map}), so programs that switch users or groups (apt-get, su) fail inside; for more ids: {more} (--userns=single asks for one id and says nothing)"
    )
}

pub fn mode_name(mode: UsernsMode) -> &'static str {
    match mode {
        UsernsMode::Auto => "auto",
        UsernsMode::KeepId => "keep-id",
        UsernsMode::Single => "single",
        UsernsMode::Subids => "subids",
    }
}

/// Decides the maps for `mode`. Real root always gets the identity map, so
/// kennel also works as a root runtime.
pub fn plan(
    mode: UsernsMode,
    caller: &Caller,
    subids: &SubIds,
    helper: &HelperState,
) -> Result<IdPlan, PlanError> {
    if caller.uid == 0 {
        return Ok(root_plan(caller));
    }
    let name = mode_name(mode);
    match mode {
        UsernsMode::Single => Ok(IdPlan {
            reason: format!("userns=single: {} -> 0 only", caller.uid),
            ..single_root(caller)
        }),
        UsernsMode::Auto | UsernsMode::Subids => {
            match subid_problem(name, caller, subids, helper) {
                None => {
                    let uid_map = all_ranges_map(caller.uid, &subids.uids);
                    let gid_map = all_ranges_map(caller.gid, &subids.gids);
                    Ok(IdPlan {
                        reason: format!(
                        "userns={name}: 0 -> {}, then {} (uids) and {} (gids) through kennel-idmap",
                        caller.uid,
                        describe_ranges(&uid_map[1..]),
                        describe_ranges(&gid_map[1..])
                    ),
                        uid_map,
                        gid_map,
                        helper: usable_helper(helper, "").ok(),
                        one_id_warning: None,
                    })
                }
                Some(err) if mode == UsernsMode::Subids => Err(err),
                Some(err) => Ok(IdPlan {
                    reason: format!("userns=auto: {} -> 0 only, because {err}", caller.uid),
                    one_id_warning: Some(one_id_warning(&format!("{} -> 0", caller.uid), &err)),
                    ..single_root(caller)
                }),
            }
        }
        UsernsMode::KeepId => Ok(keep_id_plan(caller, subids, helper)),
    }
}

/// Root's maps: the identity of all ids, or of the ids this (nested)
/// root has itself.
fn root_plan(caller: &Caller) -> IdPlan {
    if let Some(n) = &caller.nested {
        return IdPlan {
            uid_map: identity_of(&n.uids),
            gid_map: identity_of(&n.gids),
            reason: n.summary(),
            helper: None,
            one_id_warning: None,
        };
    }
    let all = vec![line(0, 0, u32::MAX)];
    IdPlan {
        uid_map: all.clone(),
        gid_map: all,
        reason: "running as root: identity map of all ids".into(),
        helper: None,
        one_id_warning: None,
    }
}

/// The caller as the container's root, and no other id.
fn single_root(caller: &Caller) -> IdPlan {
    IdPlan {
        uid_map: vec![line(0, caller.uid, 1)],
        gid_map: vec![line(0, caller.gid, 1)],
        reason: String::new(),
        helper: None,
        one_id_warning: None,
    }
}

/// Why `--userns=NAME` cannot map subordinate ids: none in /etc/subuid or
/// /etc/subgid, or no usable kennel-idmap.
fn subid_problem(
    name: &'static str,
    caller: &Caller,
    subids: &SubIds,
    helper: &HelperState,
) -> Option<PlanError> {
    for (ranges, file) in [(&subids.uids, "/etc/subuid"), (&subids.gids, "/etc/subgid")] {
        if ranges.is_empty() {
            return Some(PlanError::NoSubIds {
                mode: name,
                user: caller.name.clone(),
                file,
                fix: usermod_fix(&caller.name, subids),
            });
        }
    }
    usable_helper(helper, &format!("--userns={name}")).err()
}

/// keep-id: the caller's own ids onto themselves, the rest of the span
/// onto subordinate ids; only the own ids, with a warning, without them.
fn keep_id_plan(caller: &Caller, subids: &SubIds, helper: &HelperState) -> IdPlan {
    match subid_problem("keep-id", caller, subids, helper) {
        Some(err) => IdPlan {
            uid_map: vec![line(caller.uid, caller.uid, 1)],
            gid_map: vec![line(caller.gid, caller.gid, 1)],
            reason: format!("userns=keep-id: only {} -> {}, because {err}", caller.uid, caller.uid),
            helper: None,
            one_id_warning: Some(one_id_warning(&format!("{} -> {}", caller.uid, caller.uid), &err)),
        },
        None => IdPlan {
            uid_map: keep_id_map(caller.uid, &subids.uids),
            gid_map: keep_id_map(caller.gid, &subids.gids),
            reason: format!(
                "userns=keep-id: {} -> {}, the rest of 0..{} onto subordinate ids through kennel-idmap",
                caller.uid,
                caller.uid,
                KEEP_ID_SPAN - 1
            ),
            helper: usable_helper(helper, "").ok(),
            one_id_warning: None,
        },
    }
}

/// 0 is `own`; 1 onward are every subordinate range in turn, as podman
/// and rootlesskit map them, up to the kernel's limits on a map (lines,
/// bytes) and the last valid id.
fn all_ranges_map(own: u32, ranges: &[IdRange]) -> Vec<MapLine> {
    let mut lines = vec![line(0, own, 1)];
    let mut next: u64 = 1;
    for r in ranges.iter().take(kennel_idmap::MAX_MAP_LINES - 1) {
        let count = u64::from(r.count).min(u64::from(kennel_idmap::MAX_ID) + 1 - next);
        if count == 0 {
            break;
        }
        // Both fit in u32: next + count <= MAX_ID + 1.
        lines.push(line(next as u32, r.start, count as u32));
        if kennel_idmap::render_map(&lines).len() > kennel_idmap::MAX_MAP_BYTES {
            lines.pop();
            break;
        }
        next += count;
    }
    lines
}

/// `1..65536 -> 100000..` for each line, for --verbose.
fn describe_ranges(lines: &[MapLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{}..{} -> {}..",
                l.inner,
                u64::from(l.inner) + u64::from(l.count) - 1,
                l.outer
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The command that gives `user` the subordinate ids `subids` lacks: the
/// free block in whichever of /etc/subuid and /etc/subgid has no entry for
/// them, so it never overlaps another user's ids.
pub fn usermod_fix(user: &str, subids: &SubIds) -> String {
    let block = match subids.free {
        Some(free) => free.to_string(),
        None => "FIRST-LAST".into(),
    };
    let mut cmd = String::from("sudo usermod");
    if subids.uids.is_empty() {
        cmd += &format!(" --add-subuids {block}");
    }
    if subids.gids.is_empty() {
        cmd += &format!(" --add-subgids {block}");
    }
    cmd += &format!(" {user}");
    if subids.free.is_none() {
        cmd += &format!(
            ", where FIRST-LAST is a block of {} ids that no entry of /etc/subuid or /etc/subgid uses (none is left at or above {}, or the files could not be read)",
            kennel_idmap::SUBID_BLOCK,
            kennel_idmap::SUBID_BLOCK_MIN
        );
    }
    cmd
}

/// `own` maps to itself; the other container ids of 0..KEEP_ID_SPAN are
/// filled, in order, from the subordinate ranges until they run out.
fn keep_id_map(own: u32, ranges: &[IdRange]) -> Vec<MapLine> {
    let mut lines = vec![line(own, own, 1)];
    // Container id intervals to fill: [0, own) and (own, SPAN).
    let mut gaps: Vec<(u32, u32)> = Vec::new();
    if own < KEEP_ID_SPAN {
        if own > 0 {
            gaps.push((0, own));
        }
        if own + 1 < KEEP_ID_SPAN {
            gaps.push((own + 1, KEEP_ID_SPAN));
        }
    } else {
        gaps.push((0, KEEP_ID_SPAN));
    }
    let mut sources = ranges
        .iter()
        .map(|r| (r.start, r.count))
        .collect::<Vec<_>>();
    sources.reverse();
    for (mut lo, hi) in gaps {
        while lo < hi {
            let Some((start, count)) = sources.pop() else {
                return lines;
            };
            let take = count.min(hi - lo);
            lines.push(line(lo, start, take));
            lo += take;
            if take < count {
                sources.push((start + take, count - take));
            }
        }
    }
    lines
}

/// Reads the caller's subordinate ranges; a missing file means none. Only
/// when some are missing is a free block looked for, so a start with
/// ranges pays nothing for it.
pub fn read_subids(caller: &Caller) -> SubIds {
    // None: the file exists but cannot be read, so it cannot be checked
    // for a free block either.
    let read = |file: &str| match std::fs::read(file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(_) => None,
    };
    let (subuid, subgid) = (read("/etc/subuid"), read("/etc/subgid"));
    let ranges = |bytes: &Option<Vec<u8>>| {
        let text = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok());
        kennel_idmap::allowed_ranges(
            &kennel_idmap::parse_subid_file(text.unwrap_or_default()),
            &caller.name,
            caller.uid,
        )
    };
    let (uids, gids) = (ranges(&subuid), ranges(&subgid));
    // Every range counts as taken, even on a line that is not UTF-8.
    let free = match (&subuid, &subgid) {
        (Some(u), Some(g)) if uids.is_empty() || gids.is_empty() => {
            kennel_idmap::free_block(&String::from_utf8_lossy(u), &String::from_utf8_lossy(g))
        }
        _ => None,
    };
    SubIds { uids, gids, free }
}

#[cfg(test)]
#[path = "idmap_tests.rs"]
mod tests;
