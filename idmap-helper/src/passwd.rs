//! `/etc/passwd` lines, for finding a user's name (subordinate id entries
//! are matched by name first) without going through NSS. Both binaries
//! read the local file first and fall back to NSS only for users it does
//! not list: loading NSS modules costs more than the whole map write, and a
//! privileged process is better off not loading them for local users.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Parses passwd(5) text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
            if f.len() != 7 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// The first entry with this uid, as getpwuid(3) would find in the file.
pub fn entry_for_uid(text: &str, uid: u32) -> Option<PasswdEntry> {
    parse_passwd(text).into_iter().find(|e| e.uid == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_finds() {
        let text = "root:x:0:0:root:/root:/bin/sh\r\n# comment\nbad:x:nope:0::/:/bin/sh\nshort:x:1\n:x:5:5::/:/bin/sh\nalice:x:1000:100:A:/home/alice:/bin/bash\nalice2:x:1000:1:dup:/x:/bin/sh\n";
        let all = parse_passwd(text);
        assert_eq!(all.len(), 3);
        let a = entry_for_uid(text, 1000).unwrap();
        assert_eq!(
            (a.name.as_str(), a.gid, a.home.as_str()),
            ("alice", 100, "/home/alice")
        );
        assert_eq!(entry_for_uid(text, 0).unwrap().home, "/root");
        assert_eq!(entry_for_uid(text, 5), None);
        assert_eq!(entry_for_uid(text, 42), None);
    }
}
