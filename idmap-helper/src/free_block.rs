//! Which subordinate ids to suggest to a user who has none.
//!
//! `useradd` gives a new user a free block of 65536 ids at or above 100000
//! (Debian's first user gets exactly `100000:65536`). Advice that hard-codes
//! a block hands the same ids to two users; [`free_block`] instead finds one
//! that no entry of `/etc/subuid` or `/etc/subgid` touches, so the one block
//! can go into both files. `packaging/ensure-subids.sh` follows the same rule.

use crate::subid::IdRange;

/// The size of a suggested block: what `useradd` gives each user.
pub const SUBID_BLOCK: u32 = 65536;
/// No block below this is suggested: `useradd`'s default SUB_UID_MIN and
/// SUB_GID_MIN, which keeps subordinate ids clear of ordinary users' ids.
pub const SUBID_BLOCK_MIN: u32 = 100000;

/// The host ranges `start..end` a subordinate id file's lines occupy, read
/// leniently: any line whose second and third fields are numbers counts,
/// with spaces or a sign around them, extra fields or a strange owner, even
/// though such a line grants nothing here. shadow's tools may still honour
/// it, and a suggestion must not land on it.
fn occupied(text: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':').skip(1);
            let start: u64 = fields.next()?.trim().parse().ok()?;
            let count: u64 = fields.next()?.trim().parse().ok()?;
            (count > 0).then(|| (start, start.saturating_add(count)))
        })
}

/// The first block of [`SUBID_BLOCK`] ids that starts at a multiple of
/// SUBID_BLOCK, at or above [`SUBID_BLOCK_MIN`], and overlaps no entry, of
/// anyone, in either file (`subuid` and `subgid` are the files' texts): a
/// gap between entries is taken if the block fits there. None when no such
/// block ends below the kernel's invalid id 4294967295.
pub fn free_block(subuid: &str, subgid: &str) -> Option<IdRange> {
    let size = u64::from(SUBID_BLOCK);
    let align_up = |id: u64| id.div_ceil(size) * size;
    let mut taken: Vec<(u64, u64)> = occupied(subuid).chain(occupied(subgid)).collect();
    taken.sort_unstable();
    let mut start = align_up(u64::from(SUBID_BLOCK_MIN));
    // In order of their starts, every entry either ends at or before the
    // candidate, begins after it (so does every later one: it is free), or
    // overlaps it and pushes it to the first aligned id past its end.
    for (first, end) in taken {
        if end <= start {
            continue;
        }
        if first >= start + size {
            break;
        }
        start = align_up(end);
    }
    let start = u32::try_from(start).ok()?;
    (u64::from(start) + size <= u64::from(u32::MAX)).then_some(IdRange {
        start,
        count: SUBID_BLOCK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(start: u32) -> Option<IdRange> {
        Some(IdRange {
            start,
            count: SUBID_BLOCK,
        })
    }

    #[test]
    fn empty_files_give_the_first_aligned_block_above_the_minimum() {
        assert_eq!(free_block("", ""), block(131072));
        assert_eq!(free_block("# only a comment\n\n", ""), block(131072));
    }

    #[test]
    fn debians_first_user_is_not_handed_out_again() {
        // useradd's first user: 100000..165535. The old fixed advice
        // (100000-165535) overlapped it entirely.
        let useradd = "alice:100000:65536\n";
        let b = free_block(useradd, useradd).unwrap();
        assert_eq!(b, block(196608).unwrap());
        assert!(u64::from(b.start) >= 165536);
    }

    #[test]
    fn an_entry_in_either_file_takes_the_block() {
        assert_eq!(free_block("a:131072:1\n", ""), block(196608));
        assert_eq!(free_block("", "a:196607:1\n"), block(196608));
        assert_eq!(free_block("a:131072:1\n", "b:196608:1\n"), block(262144));
    }

    #[test]
    fn gaps_between_entries_are_used() {
        // Free: 196608..262143 between two entries; the highest end is far above.
        let uids = "a:100000:96608\nb:262144:65536\nc:1000000000:65536\n";
        assert_eq!(free_block(uids, ""), block(196608));
        // The same spread over both files, out of order.
        assert_eq!(
            free_block("c:1000000000:65536\na:100000:96608\n", "b:262144:65536\n"),
            block(196608)
        );
        // A gap one id too small is skipped.
        let tight = "a:100000:96609\nb:262144:65536\n";
        assert_eq!(free_block(tight, ""), block(327680));
    }

    #[test]
    fn entries_below_the_minimum_or_touching_the_block_edges() {
        // Ends exactly where the block starts, starts exactly where it ends.
        assert_eq!(free_block("a:0:131072\nb:196608:10\n", ""), block(131072));
        // Low ranges (below 100000) do not matter unless they reach up.
        assert_eq!(free_block("a:1000:5000\n", ""), block(131072));
        // One entry covering several blocks, a nested and a duplicate one.
        let uids = "a:120000:200000\nb:150000:10\nb:150000:10\n";
        assert_eq!(free_block(uids, uids), block(327680));
    }

    #[test]
    fn lines_that_grant_nothing_still_occupy_ids() {
        for line in [
            "alice: 131072:10\n",
            "alice:+131072:10\n",
            "al ice:131072:10\n",
            "alice:131072:10:extra\n",
            "  alice:131072:10\r\n",
            "0100:131072:10\n",
        ] {
            assert_eq!(free_block(line, ""), block(196608), "{line:?}");
        }
        for line in [
            "alice:131072:0\n",
            "# alice:131072:10\n",
            "alice:x:10\n",
            "alice:131072\n",
        ] {
            assert_eq!(free_block(line, ""), block(131072), "{line:?}");
        }
    }

    #[test]
    fn the_top_of_the_id_space() {
        // The last block that ends below 4294967295 starts at 65534 * 65536.
        let last = 65534 * 65536;
        assert_eq!(
            free_block(&format!("a:131072:{}\n", last - 131072), ""),
            block(last)
        );
        assert_eq!(
            free_block(&format!("a:131072:{}\n", last - 131071), ""),
            None
        );
        assert_eq!(free_block("a:0:4294967295\n", ""), None);
        // A line reaching past the largest id at all is still read.
        assert_eq!(free_block("a:0:99999999999\n", ""), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Against brute force: the block overlaps no entry of either file,
        /// and no lower aligned block at or above the minimum is free.
        #[test]
        fn the_block_is_free_and_the_lowest_free_one(
            uids in proptest::collection::vec((0u64..1_500_000, 1u64..300_000), 0..8),
            gids in proptest::collection::vec((0u64..1_500_000, 1u64..300_000), 0..8),
        ) {
            let text = |entries: &[(u64, u64)]| {
                entries.iter().map(|(s, c)| format!("u:{s}:{c}\n")).collect::<String>()
            };
            let b = free_block(&text(&uids), &text(&gids)).unwrap();
            let free = |s: u64| uids.iter().chain(&gids).all(|&(a, c)| a + c <= s || a >= s + 65536);
            proptest::prop_assert!(free(u64::from(b.start)), "{} overlaps an entry", b);
            proptest::prop_assert_eq!(b.start % SUBID_BLOCK, 0);
            proptest::prop_assert_eq!(b.count, SUBID_BLOCK);
            for lower in (131072..u64::from(b.start)).step_by(65536) {
                proptest::prop_assert!(!free(lower), "{} was free but {} was chosen", lower, b);
            }
        }
    }
}
