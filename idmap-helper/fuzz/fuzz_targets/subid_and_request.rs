//! Fuzzes the /etc/subuid parser and the request validator together.
//!
//! The input is split at the first NUL: before it, the text of a subordinate
//! id file; after it, a command line (arguments separated by spaces). Every
//! map the validator accepts must obey the kernel's rules and lie inside the
//! caller's own id or the parsed entries.
#![no_main]

use kennel_idmap::{
    allowed_ranges, parse_args, parse_subid_file, render_map, validate_map, Command, Form, IdKind,
    MapPolicy, SubidOwner,
};
use libfuzzer_sys::fuzz_target;

const USER: &str = "alice";
const UID: u32 = 1000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (subid, argv) = text.split_once('\0').unwrap_or((text, ""));
    let entries = parse_subid_file(subid);
    for e in &entries {
        assert!(e.count > 0 && u64::from(e.start) + u64::from(e.count) < 1 << 32);
        if let SubidOwner::Name(name) = &e.owner {
            assert!(!name.is_empty() && !name.contains(':'));
        }
    }
    let allowed = allowed_ranges(&entries, USER, UID);
    for pair in allowed.windows(2) {
        assert!(
            pair[0].end() < u64::from(pair[1].start),
            "not joined: {pair:?}"
        );
    }

    let args: Vec<&str> = argv.split(' ').filter(|a| !a.is_empty()).collect();
    let Ok(Command::Write(request)) = parse_args(Form::Native, &args) else {
        return;
    };
    for (kind, lines) in [
        (IdKind::Uid, &request.uid_map),
        (IdKind::Gid, &request.gid_map),
    ] {
        let policy = MapPolicy {
            kind,
            own_id: UID,
            caller_is_root: false,
            allowed: allowed.clone(),
        };
        if validate_map(&policy, lines).is_err() {
            continue;
        }
        assert!(!lines.is_empty() && lines.len() <= 340 && render_map(lines).len() < 4096);
        for (i, a) in lines.iter().enumerate() {
            assert!(a.count > 0 && a.outer != 0);
            let (ai, ao) = (u64::from(a.inner), u64::from(a.outer));
            let n = u64::from(a.count);
            assert!(ai + n < 1 << 32 && ao + n < 1 << 32);
            let own = a.count == 1 && a.outer == UID;
            assert!(own || allowed.iter().any(|r| r.contains(a.outer, a.count)));
            for b in &lines[i + 1..] {
                let (bi, bo, m) = (u64::from(b.inner), u64::from(b.outer), u64::from(b.count));
                assert!(ai + n <= bi || bi + m <= ai, "inner overlap");
                assert!(ao + n <= bo || bo + m <= ao, "outer overlap");
            }
        }
    }
});
