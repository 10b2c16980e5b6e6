//! Table tests for every validation rule, at and one past each boundary, and
//! a property test: every accepted map obeys the kernel's rules.

use super::*;
use crate::map_line::parse_map_line;
use proptest::prelude::*;

fn l(inner: u32, outer: u32, count: u32) -> MapLine {
    MapLine {
        inner,
        outer,
        count,
    }
}

fn policy() -> MapPolicy {
    MapPolicy {
        kind: IdKind::Uid,
        own_id: 1000,
        caller_is_root: false,
        allowed: vec![
            IdRange {
                start: 300000,
                count: 65536,
            },
            IdRange {
                start: 4294901759,
                count: 65536,
            },
        ],
    }
}

#[test]
fn accepts_valid_maps() {
    let table: &[&[MapLine]] = &[
        &[l(0, 1000, 1)],
        &[l(0, 1000, 1), l(1, 300000, 65536)],
        &[l(1, 300000, 65536), l(0, 1000, 1)],
        &[l(0, 300000, 65536)],
        &[l(0, 300000, 1), l(1, 365535, 1)],
        &[l(5, 1000, 1), l(0, 300000, 5), l(6, 300005, 10)],
        // Largest ids on both sides: inner and outer end at MAX_ID.
        &[l(4294967294, 4294967294, 1)],
        &[l(4294967293, 4294967293, 2)],
        &[l(0, 4294901759, 65536)],
    ];
    for lines in table {
        assert_eq!(validate_map(&policy(), lines), Ok(()), "{lines:?}");
    }
}

#[test]
fn refuses_each_rule_at_the_boundary() {
    let uid = IdKind::Uid;
    let table: Vec<(Vec<MapLine>, Refusal)> = vec![
        (vec![], Refusal::Empty { kind: uid }),
        (
            vec![l(0, 1000, 0)],
            Refusal::ZeroCount {
                kind: uid,
                line: l(0, 1000, 0),
            },
        ),
        (
            vec![l(4294967295, 300000, 1)],
            Refusal::InnerOverflow {
                kind: uid,
                line: l(4294967295, 300000, 1),
            },
        ),
        (
            vec![l(4294967294, 300000, 2)],
            Refusal::InnerOverflow {
                kind: uid,
                line: l(4294967294, 300000, 2),
            },
        ),
        (
            vec![l(1, 4294967295, 1)],
            Refusal::OuterOverflow {
                kind: uid,
                line: l(1, 4294967295, 1),
            },
        ),
        (
            vec![l(0, 4294901759, 65537)],
            Refusal::OuterOverflow {
                kind: uid,
                line: l(0, 4294901759, 65537),
            },
        ),
        (
            vec![l(0, 1, u32::MAX)],
            Refusal::OuterOverflow {
                kind: uid,
                line: l(0, 1, u32::MAX),
            },
        ),
        (
            vec![l(0, 300000, 10), l(9, 300100, 1)],
            Refusal::InnerOverlap {
                kind: uid,
                first: l(0, 300000, 10),
                second: l(9, 300100, 1),
            },
        ),
        (
            vec![l(9, 300100, 1), l(0, 300000, 10)],
            Refusal::InnerOverlap {
                kind: uid,
                first: l(9, 300100, 1),
                second: l(0, 300000, 10),
            },
        ),
        (
            vec![l(0, 300000, 10), l(100, 300009, 1)],
            Refusal::OuterOverlap {
                kind: uid,
                first: l(0, 300000, 10),
                second: l(100, 300009, 1),
            },
        ),
        (
            vec![l(0, 1000, 1), l(0, 1000, 1)],
            Refusal::InnerOverlap {
                kind: uid,
                first: l(0, 1000, 1),
                second: l(0, 1000, 1),
            },
        ),
        (
            vec![l(0, 0, 1)],
            Refusal::HostRoot {
                kind: uid,
                line: l(0, 0, 1),
            },
        ),
        (
            vec![l(0, 1000, 2)],
            Refusal::NotAllowed {
                kind: uid,
                line: l(0, 1000, 2),
                own_id: 1000,
                allowed: policy().allowed,
            },
        ),
        (
            vec![l(0, 1001, 1)],
            Refusal::NotAllowed {
                kind: uid,
                line: l(0, 1001, 1),
                own_id: 1000,
                allowed: policy().allowed,
            },
        ),
        (
            vec![l(0, 300000, 65537)],
            Refusal::NotAllowed {
                kind: uid,
                line: l(0, 300000, 65537),
                own_id: 1000,
                allowed: policy().allowed,
            },
        ),
        (
            vec![l(0, 299999, 2)],
            Refusal::NotAllowed {
                kind: uid,
                line: l(0, 299999, 2),
                own_id: 1000,
                allowed: policy().allowed,
            },
        ),
        (
            vec![l(0, 365536, 1)],
            Refusal::NotAllowed {
                kind: uid,
                line: l(0, 365536, 1),
                own_id: 1000,
                allowed: policy().allowed,
            },
        ),
    ];
    for (lines, want) in table {
        assert_eq!(validate_map(&policy(), &lines), Err(want), "{lines:?}");
    }
}

#[test]
fn line_count_limit() {
    // Own uid, 339 single ids inside the range: 340 lines, short enough.
    let mut p = policy();
    p.allowed = vec![IdRange {
        start: 1,
        count: 999,
    }];
    let mut lines: Vec<MapLine> = (0..339).map(|i| l(i, 1 + i, 1)).collect();
    lines.push(l(339, 1000, 1));
    assert_eq!(lines.len(), MAX_MAP_LINES);
    assert!(render_map(&lines).len() <= MAX_MAP_BYTES);
    assert_eq!(validate_map(&p, &lines), Ok(()));
    lines.push(l(340, 500, 1));
    assert_eq!(
        validate_map(&p, &lines),
        Err(Refusal::TooManyLines {
            kind: IdKind::Uid,
            lines: 341
        })
    );
}

#[test]
fn text_length_limit() {
    let mut p = policy();
    p.allowed = vec![IdRange {
        start: 1_000_000_000,
        count: 40_000_000,
    }];
    // "4000000000 1000000000 1\n" is 24 bytes: 170 such lines are 4080.
    let mut lines: Vec<MapLine> = (0..170)
        .map(|i| l(4_000_000_000 + i * 200_000, 1_000_000_000 + i * 200_000, 1))
        .collect();
    assert_eq!(render_map(&lines).len(), 4080);
    // Three six-digit counts add 15 bytes: exactly the limit.
    for line in &mut lines[..3] {
        line.count = 100_000;
    }
    assert_eq!(render_map(&lines).len(), MAX_MAP_BYTES);
    assert_eq!(validate_map(&p, &lines), Ok(()));
    // One byte more is refused.
    lines[3].count = 10;
    assert_eq!(
        validate_map(&p, &lines),
        Err(Refusal::TooLong {
            kind: IdKind::Uid,
            bytes: 4096
        })
    );
}

#[test]
fn host_root_only_for_root() {
    let mut p = policy();
    p.allowed = vec![IdRange {
        start: 0,
        count: 10,
    }];
    assert_eq!(
        validate_map(&p, &[l(0, 0, 10)]),
        Err(Refusal::HostRoot {
            kind: IdKind::Uid,
            line: l(0, 0, 10)
        })
    );
    assert_eq!(validate_map(&p, &[l(0, 1, 9)]), Ok(()));
    p.caller_is_root = true;
    p.own_id = 0;
    p.allowed = vec![];
    assert_eq!(validate_map(&p, &[l(0, 0, 1)]), Ok(()));
}

#[test]
fn refusal_messages_name_the_rule_and_range() {
    let table: &[(Refusal, &str)] = &[
        (
            Refusal::NotAllowed {
                kind: IdKind::Uid,
                line: l(0, 1000, 2),
                own_id: 1000,
                allowed: vec![IdRange { start: 300000, count: 65536 }],
            },
            "refused: uid range 0:1000:2 is neither your own uid (1000) with count 1 nor inside your /etc/subuid ranges (300000-365535)",
        ),
        (
            Refusal::NotAllowed {
                kind: IdKind::Gid,
                line: l(0, 7, 1),
                own_id: 1000,
                allowed: vec![],
            },
            "refused: gid range 0:7:1 is neither your own gid (1000) with count 1 nor inside your /etc/subgid ranges (you have none; an administrator can add some with `usermod --add-subgids`)",
        ),
        (
            Refusal::OuterOverlap { kind: IdKind::Gid, first: l(0, 5, 2), second: l(9, 6, 1) },
            "refused: gid ranges 0:5:2 and 9:6:1 overlap on the host",
        ),
        (
            Refusal::TooManyLines { kind: IdKind::Uid, lines: 341 },
            "refused: the uid map has 341 ranges; the kernel accepts at most 340",
        ),
        (
            Refusal::HostRoot { kind: IdKind::Uid, line: l(0, 0, 1) },
            "refused: uid range 0:0:1 maps host uid 0, which only root may map",
        ),
    ];
    for (refusal, want) in table {
        assert_eq!(refusal.to_string(), *want);
    }
}

#[test]
fn setgroups_denied_only_for_own_gid_alone() {
    assert!(setgroups_must_be_denied(&[l(0, 1000, 1)], 1000));
    assert!(setgroups_must_be_denied(&[l(5, 1000, 1)], 1000));
    assert!(!setgroups_must_be_denied(
        &[l(0, 1000, 1), l(1, 300000, 10)],
        1000
    ));
    assert!(!setgroups_must_be_denied(&[l(0, 300000, 1)], 1000));
    assert!(!setgroups_must_be_denied(&[], 1000));
}

#[test]
fn parses_map_lines() {
    assert_eq!(parse_map_line("0:1000:1"), Some(l(0, 1000, 1)));
    assert_eq!(
        parse_map_line("4294967295:0:4294967295"),
        Some(l(u32::MAX, 0, u32::MAX))
    );
    for bad in [
        "",
        "0:1",
        "0:1:2:3",
        "0:1:",
        "a:1:2",
        "-1:1:1",
        "+1:1:1",
        "0x1:1:1",
        "1 :1:1",
        "0:4294967296:1",
    ] {
        assert_eq!(parse_map_line(bad), None, "{bad:?}");
    }
}

/// The kernel's acceptance rules for a written map (kernel/user_namespace.c).
fn kernel_accepts(lines: &[MapLine]) -> bool {
    let text = render_map(lines);
    if lines.is_empty() || lines.len() > MAX_MAP_LINES || text.len() >= 4096 {
        return false;
    }
    for line in lines {
        if line.inner == u32::MAX || line.outer == u32::MAX || line.count == 0 {
            return false;
        }
        if line.inner.wrapping_add(line.count) <= line.inner {
            return false;
        }
        if line.outer.wrapping_add(line.count) <= line.outer {
            return false;
        }
    }
    for (i, a) in lines.iter().enumerate() {
        for b in &lines[i + 1..] {
            let inside = a.inner <= b.inner + (b.count - 1) && b.inner <= a.inner + (a.count - 1);
            let outside = a.outer <= b.outer + (b.count - 1) && b.outer <= a.outer + (a.count - 1);
            if inside || outside {
                return false;
            }
        }
    }
    true
}

fn arb_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..20,
        999u32..1002,
        299_990u32..300_020,
        365_530u32..365_540,
        u32::MAX - 3..=u32::MAX,
        any::<u32>()
    ]
}

fn arb_line() -> impl Strategy<Value = MapLine> {
    (
        arb_id(),
        arb_id(),
        prop_oneof![0u32..4, 1u32..70000, any::<u32>()],
    )
        .prop_map(|(inner, outer, count)| l(inner, outer, count))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn accepted_maps_obey_kernel_rules(
        lines in prop::collection::vec(arb_line(), 0..6),
        allowed in prop::collection::vec((arb_id(), 1u32..100000), 0..3),
        own_id in arb_id(),
        caller_is_root in any::<bool>(),
    ) {
        let entries: Vec<crate::SubidEntry> = allowed
            .iter()
            .map(|&(start, count)| crate::SubidEntry { owner: crate::SubidOwner::Id(7), start, count })
            .filter(|e| u64::from(e.start) + u64::from(e.count) <= u64::from(u32::MAX))
            .collect();
        let allowed = crate::allowed_ranges(&entries, "", 7);
        let policy = MapPolicy { kind: IdKind::Gid, own_id, caller_is_root, allowed: allowed.clone() };
        if validate_map(&policy, &lines).is_ok() {
            prop_assert!(kernel_accepts(&lines), "accepted but the kernel would refuse: {lines:?}");
            for line in &lines {
                prop_assert!(caller_is_root || line.outer != 0);
                let own = line.count == 1 && line.outer == own_id;
                // Independent of the joined ranges: every id is in some entry.
                let covered = (0..u64::from(line.count).min(200)).all(|k| {
                    let id = u64::from(line.outer) + k;
                    entries.iter().any(|e| u64::from(e.start) <= id && id < u64::from(e.start) + u64::from(e.count))
                });
                prop_assert!(own || covered, "{line:?} granted outside {entries:?}");
            }
        }
    }

    #[test]
    fn ranges_inside_the_allowed_union_with_no_overlap_are_accepted(
        start in 1u32..1_000_000, count in 1u32..100_000, picks in prop::collection::vec((0u32..100_000, 1u32..100), 1..8),
    ) {
        let policy = MapPolicy {
            kind: IdKind::Uid, own_id: 0, caller_is_root: false,
            allowed: vec![IdRange { start, count }],
        };
        // Non-overlapping slices of the allowed range, mapped in order.
        let mut lines = Vec::new();
        let mut next = 0u32;
        for (gap, len) in picks {
            let offset = next.saturating_add(gap % 50);
            if u64::from(offset) + u64::from(len) > u64::from(count) { break; }
            lines.push(l(offset, start + offset, len));
            next = offset + len;
        }
        prop_assume!(!lines.is_empty());
        prop_assert_eq!(validate_map(&policy, &lines), Ok(()));
    }

    #[test]
    fn render_round_trips(lines in prop::collection::vec(arb_line(), 0..10)) {
        let text = render_map(&lines);
        let back: Vec<MapLine> = text.lines().map(|t| {
            let f: Vec<u32> = t.split(' ').map(|n| n.parse().unwrap()).collect();
            l(f[0], f[1], f[2])
        }).collect();
        prop_assert_eq!(back, lines);
    }
}
