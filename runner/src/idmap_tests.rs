//! Tests of the id-map plans `kennel run` makes for each --userns mode.

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
    assert!(u64::from(last.inner) + u64::from(last.count) - 1 <= u64::from(kennel_idmap::MAX_ID));
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
        err.to_string()
            .ends_with("/etc/subgid; add one with: sudo usermod --add-subgids 196608-262143 alice"),
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
