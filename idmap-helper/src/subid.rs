//! `/etc/subuid` and `/etc/subgid`: parsing and the caller's allowed ranges.
//!
//! Each line is `OWNER:START:COUNT`, where OWNER is a user name or a numeric
//! uid. Anything that does not parse exactly is skipped, so a damaged line
//! can only take rights away, never grant them.

/// Who a subordinate id line belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubidOwner {
    /// A user name, compared with the caller's name byte for byte.
    Name(String),
    /// A numeric uid written in canonical decimal (no sign, no leading zero).
    Id(u32),
}

/// One well-formed line of a subordinate id file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubidEntry {
    pub owner: SubidOwner,
    pub start: u32,
    pub count: u32,
}

/// A range of host ids, `start..start + count` (computed in u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

impl IdRange {
    /// One past the last id of the range.
    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.count)
    }

    /// Whether `start..start + count` lies wholly inside this range.
    pub fn contains(&self, start: u32, count: u32) -> bool {
        start >= self.start && u64::from(start) + u64::from(count) <= self.end()
    }
}

impl std::fmt::Display for IdRange {
    /// Inclusive form, as people write id ranges: `300000-365535`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end() - 1)
    }
}

/// Parses a decimal u32 made only of ASCII digits.
pub(crate) fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_owner(text: &str) -> Option<SubidOwner> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    // Only the canonical spelling is a uid: "0100" is a (strange) name, so
    // it can never be mistaken for uid 100.
    match parse_decimal(text) {
        Some(id) if id.to_string() == text => Some(SubidOwner::Id(id)),
        _ => Some(SubidOwner::Name(text.to_owned())),
    }
}

fn parse_line(line: &str) -> Option<SubidEntry> {
    let mut fields = line.split(':');
    let owner = parse_owner(fields.next()?)?;
    let start = parse_decimal(fields.next()?)?;
    let count = parse_decimal(fields.next()?)?;
    if fields.next().is_some() || count == 0 {
        return None;
    }
    // Id 4294967295 is the kernel's "invalid id"; a line reaching it
    // describes ids that do not exist and is treated as malformed.
    if u64::from(start) + u64::from(count) > u64::from(u32::MAX) {
        return None;
    }
    Some(SubidEntry {
        owner,
        start,
        count,
    })
}

/// Parses the text of a subordinate id file. Blank lines, `#` comments and
/// malformed lines are skipped; CRLF line ends are accepted.
pub fn parse_subid_file(text: &str) -> Vec<SubidEntry> {
    text.lines()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// The host ranges the caller may map: entries naming `user_name` exactly
/// or the numeric `uid`, sorted, with overlapping and adjacent ranges joined.
pub fn allowed_ranges(entries: &[SubidEntry], user_name: &str, uid: u32) -> Vec<IdRange> {
    let mut mine: Vec<IdRange> = entries
        .iter()
        .filter(|e| match &e.owner {
            SubidOwner::Name(name) => !user_name.is_empty() && name == user_name,
            SubidOwner::Id(id) => *id == uid,
        })
        .map(|e| IdRange {
            start: e.start,
            count: e.count,
        })
        .collect();
    mine.sort();
    let mut joined: Vec<IdRange> = Vec::with_capacity(mine.len());
    for range in mine {
        match joined.last_mut() {
            Some(last) if u64::from(range.start) <= last.end() => {
                let end = last.end().max(range.end());
                // Entries end at or below u32::MAX, so the joined count fits.
                last.count = u32::try_from(end - u64::from(last.start)).unwrap_or(u32::MAX);
            }
            _ => joined.push(range),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, start: u32, count: u32) -> SubidEntry {
        SubidEntry {
            owner: SubidOwner::Name(name.into()),
            start,
            count,
        }
    }

    fn r(start: u32, count: u32) -> IdRange {
        IdRange { start, count }
    }

    #[test]
    fn parses_lines() {
        let table: &[(&str, Vec<SubidEntry>)] = &[
            ("alice:100000:65536\n", vec![named("alice", 100000, 65536)]),
            (
                "alice:1:2\r\nbob:3:4\r\n",
                vec![named("alice", 1, 2), named("bob", 3, 4)],
            ),
            ("# comment\n\n   \nalice:1:2", vec![named("alice", 1, 2)]),
            ("  alice:1:2  \n", vec![named("alice", 1, 2)]),
            (
                "1000:5:6\n",
                vec![SubidEntry {
                    owner: SubidOwner::Id(1000),
                    start: 5,
                    count: 6,
                }],
            ),
            ("0100:5:6\n", vec![named("0100", 5, 6)]),
            (
                "0:5:6\n",
                vec![SubidEntry {
                    owner: SubidOwner::Id(0),
                    start: 5,
                    count: 6,
                }],
            ),
            (
                "alice:1:2\nalice:1:2\n",
                vec![named("alice", 1, 2), named("alice", 1, 2)],
            ),
            ("alice:4294967294:1\n", vec![named("alice", 4294967294, 1)]),
            ("alice:0:4294967295\n", vec![named("alice", 0, 4294967295)]),
            // Malformed lines grant nothing.
            ("alice:4294967295:1\n", vec![]),
            ("alice:4294967296:1\n", vec![]),
            ("alice:1:4294967295\n", vec![]),
            ("alice:99999999999999999999:1\n", vec![]),
            ("alice:1:0\n", vec![]),
            ("alice:1\n", vec![]),
            ("alice:1:2:3\n", vec![]),
            (":1:2\n", vec![]),
            ("alice:-1:2\n", vec![]),
            ("alice:+1:2\n", vec![]),
            ("alice:0x10:2\n", vec![]),
            ("alice: 1:2\n", vec![]),
            ("al ice:1:2\n", vec![]),
            ("alice:1:2 # trailing\n", vec![]),
            ("alice:1::2\n", vec![]),
            ("\u{0}:1:2\n", vec![]),
        ];
        for (text, want) in table {
            assert_eq!(&parse_subid_file(text), want, "input {text:?}");
        }
    }

    #[test]
    fn matches_by_name_then_uid_and_joins() {
        let entries = parse_subid_file(
            "alice:300000:65536\n\
             alice2:1:5\n\
             ali:7:5\n\
             1000:365536:10\n\
             01000:900:1\n\
             bob:500000:65536\n\
             alice:100:10\n\
             alice:105:10\n\
             alice:50:5\n",
        );
        assert_eq!(
            allowed_ranges(&entries, "alice", 1000),
            vec![r(50, 5), r(100, 15), r(300000, 65546)]
        );
        // A name that is a prefix of another never matches it.
        assert_eq!(allowed_ranges(&entries, "al", 1), vec![]);
        assert_eq!(allowed_ranges(&entries, "alice2", 1), vec![r(1, 5)]);
        // Unknown name: only the numeric entries.
        assert_eq!(allowed_ranges(&entries, "", 1000), vec![r(365536, 10)]);
        assert_eq!(allowed_ranges(&entries, "carol", 4), vec![]);
    }

    #[test]
    fn joins_adjacent_overlapping_and_duplicate_ranges() {
        let entries = [
            named("a", 10, 10),
            named("a", 20, 5),
            named("a", 0, 12),
            named("a", 26, 1),
            named("a", 26, 1),
            named("a", 0, 4294967295),
        ];
        assert_eq!(
            allowed_ranges(&entries[..5], "a", 1),
            vec![r(0, 25), r(26, 1)]
        );
        assert_eq!(allowed_ranges(&entries, "a", 1), vec![r(0, 4294967295)]);
    }

    #[test]
    fn range_display_and_contains() {
        assert_eq!(r(300000, 65536).to_string(), "300000-365535");
        assert!(r(10, 5).contains(10, 5));
        assert!(r(10, 5).contains(14, 1));
        assert!(!r(10, 5).contains(14, 2));
        assert!(!r(10, 5).contains(9, 1));
        assert!(!r(10, 5).contains(4294967295, 4294967295));
    }
}
