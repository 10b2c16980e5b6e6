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
        if let Some(n) = &caller.nested {
            return Ok(IdPlan {
                uid_map: identity_of(&n.uids),
                gid_map: identity_of(&n.gids),
                reason: n.summary(),
                helper: None,
                one_id_warning: None,
            });
        }
        let all = vec![line(0, 0, u32::MAX)];
        return Ok(IdPlan {
            uid_map: all.clone(),
            gid_map: all,
            reason: "running as root: identity map of all ids".into(),
            helper: None,
            one_id_warning: None,
        });
    }
    let name = mode_name(mode);
    let single_root = || IdPlan {
        uid_map: vec![line(0, caller.uid, 1)],
        gid_map: vec![line(0, caller.gid, 1)],
        reason: String::new(),
        helper: None,
        one_id_warning: None,
    };
    let subid_problem = || -> Option<PlanError> {
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
    };
    match mode {
        UsernsMode::Single => Ok(IdPlan {
            reason: format!("userns=single: {} -> 0 only", caller.uid),
            ..single_root()
        }),
        UsernsMode::Auto | UsernsMode::Subids => match subid_problem() {
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
                ..single_root()
            }),
        },
        UsernsMode::KeepId => {
            let own_only = IdPlan {
                uid_map: vec![line(caller.uid, caller.uid, 1)],
                gid_map: vec![line(caller.gid, caller.gid, 1)],
                reason: String::new(),
                helper: None,
                one_id_warning: None,
            };
            match subid_problem() {
                Some(err) => Ok(IdPlan {
                    reason: format!("userns=keep-id: only {} -> {}, because {err}", caller.uid, caller.uid),
                    one_id_warning: Some(one_id_warning(&format!("{} -> {}", caller.uid, caller.uid), &err)),
                    ..own_only
                }),
                None => Ok(IdPlan {
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
                }),
            }
        }
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
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            uid: 1000,
            gid: 1000,
            name: "alice".into(),
            nested: None,
        }
    }

    fn subids() -> SubIds {
        SubIds {
            uids: vec![IdRange {
                start: 100000,
                count: 65536,
            }],
            gids: vec![IdRange {
                start: 200000,
                count: 65536,
            }],
            free: None,
        }
    }

    /// A block no entry of either file uses, for the fix to suggest.
    fn free_block() -> Option<IdRange> {
        Some(IdRange {
            start: 196608,
            count: 65536,
        })
    }

    /// A caller with no entry in either file.
    fn no_entries() -> SubIds {
        SubIds {
            free: free_block(),
            ..SubIds::default()
        }
    }

    /// A caller with an /etc/subuid entry and none in /etc/subgid.
    fn no_gid_entry() -> SubIds {
        SubIds {
            gids: vec![],
            free: free_block(),
            ..subids()
        }
    }

    fn usable() -> HelperState {
        HelperState::Usable("/x/kennel-idmap".into())
    }

    #[test]
    fn auto_with_everything_maps_full_range() {
        let p = plan(UsernsMode::Auto, &caller(), &subids(), &usable()).unwrap();
        assert_eq!(p.uid_map, vec![line(0, 1000, 1), line(1, 100000, 65536)]);
        assert_eq!(p.gid_map, vec![line(0, 1000, 1), line(1, 200000, 65536)]);
    }

    #[test]
    fn auto_maps_every_range_in_turn_uids_and_gids_apart() {
        let r = |start, count| IdRange { start, count };
        let two = SubIds {
            uids: vec![r(100000, 65536), r(300000, 1000)],
            gids: vec![r(200000, 10)],
            free: None,
        };
        let p = plan(UsernsMode::Auto, &caller(), &two, &usable()).unwrap();
        assert_eq!(
            p.uid_map,
            vec![
                line(0, 1000, 1),
                line(1, 100000, 65536),
                line(65537, 300000, 1000)
            ]
        );
        assert_eq!(p.gid_map, vec![line(0, 1000, 1), line(1, 200000, 10)]);
        assert!(
            p.reason.contains("65537..66536 -> 300000.."),
            "{}",
            p.reason
        );
        // The kernel's limit of lines, and the last valid container id.
        let many: Vec<IdRange> = (0..400).map(|i| r(100 + i * 10, 5)).collect();
        assert_eq!(
            all_ranges_map(1000, &many).len(),
            kennel_idmap::MAX_MAP_LINES
        );
        let wide: Vec<IdRange> = (0..400)
            .map(|i| r(1_000_000_000 + i * 100_000, 65536))
            .collect();
        let map = all_ranges_map(1000, &wide);
        assert!(kennel_idmap::render_map(&map).len() <= kennel_idmap::MAX_MAP_BYTES);
        assert!(map.len() > 100, "{}", map.len());
        let huge = all_ranges_map(1000, &[r(1 << 20, u32::MAX - (1 << 20)), r(5, 5)]);
        let last = huge.last().unwrap();
        assert!(
            u64::from(last.inner) + u64::from(last.count) - 1 <= u64::from(kennel_idmap::MAX_ID)
        );
    }

    #[test]
    fn auto_without_helper_maps_caller_to_root_and_says_why() {
        let p = plan(
            UsernsMode::Auto,
            &caller(),
            &subids(),
            &HelperState::NotFound,
        )
        .unwrap();
        assert_eq!(p.uid_map, vec![line(0, 1000, 1)]);
        assert!(p.reason.contains("not found"), "{}", p.reason);
    }

    #[test]
    fn auto_without_subids_maps_caller_to_root() {
        let p = plan(UsernsMode::Auto, &caller(), &SubIds::default(), &usable()).unwrap();
        assert_eq!(p.gid_map, vec![line(0, 1000, 1)]);
        assert!(p.reason.contains("/etc/subuid"));
    }

    #[test]
    fn subids_mode_names_each_missing_piece() {
        let err = plan(UsernsMode::Subids, &caller(), &no_gid_entry(), &usable()).unwrap_err();
        assert!(err.to_string().contains("/etc/subgid"));
        let err = plan(
            UsernsMode::Subids,
            &caller(),
            &subids(),
            &HelperState::NoCapabilities("/h".into()),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("setcap cap_setuid,cap_setgid=ep /h"));
        let err = plan(
            UsernsMode::Subids,
            &caller(),
            &subids(),
            &HelperState::CallerHasNoNewPrivs("/h".into()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no_new_privs"));
        let err = plan(
            UsernsMode::Subids,
            &caller(),
            &subids(),
            &HelperState::OnNosuidMount("/h".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/h is on a file system mounted nosuid"),
            "{err}"
        );
        assert!(!err.contains("setcap"), "{err}");
    }

    #[test]
    fn the_subids_fix_suggests_the_free_block_for_what_is_missing() {
        let none = no_entries();
        let err = plan(UsernsMode::Subids, &caller(), &none, &usable()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--userns=subids needs subordinate ids, but alice has no entry in /etc/subuid; \
             add one with: sudo usermod --add-subuids 196608-262143 --add-subgids 196608-262143 alice"
        );
        // Only the file without an entry gets one.
        let err = plan(UsernsMode::Subids, &caller(), &no_gid_entry(), &usable()).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "/etc/subgid; add one with: sudo usermod --add-subgids 196608-262143 alice"
            ),
            "{err}"
        );
        // auto says the same in its reason.
        let p = plan(UsernsMode::Auto, &caller(), &none, &usable()).unwrap();
        assert!(
            p.reason.contains("--add-subuids 196608-262143"),
            "{}",
            p.reason
        );
        // No free block: no numbers that could be someone else's.
        let fix = usermod_fix("alice", &SubIds::default());
        assert!(
            fix.starts_with("sudo usermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST alice, where FIRST-LAST is a block of 65536 ids"),
            "{fix}"
        );
    }

    #[test]
    fn helper_errors_read_right_for_a_mode_and_for_plural_maps() {
        let states = [
            HelperState::NotFound,
            HelperState::NoCapabilities("/h".into()),
            HelperState::CallerHasNoNewPrivs("/h".into()),
            HelperState::OnNosuidMount("/h".into()),
        ];
        for what in ["--userns=subids", "these id maps"] {
            for state in &states {
                let text = usable_helper(state, what).unwrap_err().to_string();
                assert!(text.contains(&format!("needed for {what}, but ")), "{text}");
                assert!(!text.contains(&format!("{what} need")), "{text}");
            }
        }
    }

    #[test]
    fn only_a_fallback_to_one_id_warns_and_it_names_the_fix() {
        let none = no_entries();
        for mode in [UsernsMode::Auto, UsernsMode::KeepId] {
            let w = plan(mode, &caller(), &none, &usable())
                .unwrap()
                .one_id_warning
                .unwrap();
            assert!(w.contains("single id"), "{w}");
            assert!(
                w.contains("for more ids: alice has no subordinate ids (no entry in /etc/subuid)"),
                "{w}"
            );
            assert!(
                !w.contains("--userns=auto") && !w.contains("--userns=keep-id"),
                "{w}"
            );
            assert!(
                w.contains("sudo usermod --add-subuids 196608-262143"),
                "{w}"
            );
            let w = plan(mode, &caller(), &subids(), &HelperState::NotFound)
                .unwrap()
                .one_id_warning
                .unwrap();
            assert!(w.contains("sudo make install"), "{w}");
            let full = plan(mode, &caller(), &subids(), &usable()).unwrap();
            assert_eq!(full.one_id_warning, None);
        }
        let single = plan(UsernsMode::Single, &caller(), &none, &usable()).unwrap();
        assert_eq!(single.one_id_warning, None);
    }

    #[test]
    fn single_never_uses_subids() {
        let p = plan(UsernsMode::Single, &caller(), &subids(), &usable()).unwrap();
        assert!(writable_without_helper(&caller(), &p.uid_map, &p.gid_map));
    }

    #[test]
    fn root_gets_identity() {
        let root = Caller {
            uid: 0,
            gid: 0,
            name: "root".into(),
            nested: None,
        };
        let p = plan(
            UsernsMode::KeepId,
            &root,
            &SubIds::default(),
            &HelperState::NotFound,
        )
        .unwrap();
        assert_eq!(p.uid_map, vec![line(0, 0, u32::MAX)]);
    }

    #[test]
    fn root_of_a_nested_namespace_maps_the_ids_it_has() {
        let root = Caller {
            uid: 0,
            gid: 0,
            name: "root".into(),
            nested: Some(NestedIds {
                uids: vec![line(0, 1000, 1), line(1, 100000, 65536)],
                gids: vec![line(0, 1000, 1)],
            }),
        };
        let p = plan(
            UsernsMode::Auto,
            &root,
            &SubIds::default(),
            &HelperState::NotFound,
        )
        .unwrap();
        assert_eq!(p.uid_map, vec![line(0, 0, 1), line(1, 1, 65536)]);
        assert_eq!(p.gid_map, vec![line(0, 0, 1)]);
        assert!(p.reason.contains("0 1000 1"), "{}", p.reason);
    }

    #[test]
    fn keep_id_fills_around_own_uid() {
        let p = plan(UsernsMode::KeepId, &caller(), &subids(), &usable()).unwrap();
        assert_eq!(
            p.uid_map,
            vec![
                line(1000, 1000, 1),
                line(0, 100000, 1000),
                line(1001, 101000, 64535)
            ]
        );
        assert!(!writable_without_helper(&caller(), &p.uid_map, &p.gid_map));
    }

    #[test]
    fn keep_id_with_small_ranges_maps_what_fits() {
        let ranges = [
            IdRange {
                start: 5000,
                count: 10,
            },
            IdRange {
                start: 9000,
                count: 995,
            },
        ];
        let lines = keep_id_map(1000, &ranges);
        assert_eq!(
            lines,
            vec![
                line(1000, 1000, 1),
                line(0, 5000, 10),
                line(10, 9000, 990),
                line(1001, 9990, 5)
            ]
        );
    }

    #[test]
    fn keep_id_without_subids_maps_only_self() {
        let p = plan(UsernsMode::KeepId, &caller(), &SubIds::default(), &usable()).unwrap();
        assert_eq!(p.uid_map, vec![line(1000, 1000, 1)]);
        assert!(writable_without_helper(&caller(), &p.uid_map, &p.gid_map));
    }
}
