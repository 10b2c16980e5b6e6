//! The syntax of a `.container` file: systemd's unit-file syntax
//! (systemd.syntax(7)), read line by line so that every value keeps the
//! line it came from for error messages.

use crate::Error;

/// One `Key=Value` line, with the section it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based; for a value continued over several lines, its first line.
    pub line: usize,
}

/// Reads `text` into its entries, in file order. Comments (`#`, `;`) and
/// blank lines are skipped; a line ending in a backslash continues on the
/// next, the backslash becoming a space, as systemd reads unit files.
pub fn parse(text: &str) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    let mut section: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (start, joined) = match pending.take() {
            Some((start, mut so_far)) => {
                so_far.push_str(line);
                (start, so_far)
            }
            None => (number, line.to_string()),
        };
        if let Some(head) = joined.strip_suffix('\\') {
            pending = Some((start, format!("{head} ")));
            continue;
        }
        let line = joined.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err(Error::at(start, None, "a section header must end with ']'"));
            };
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(Error::at(
                    start,
                    None,
                    format!("malformed section header {line:?}"),
                ));
            }
            section = Some(name.to_string());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::at(
                start,
                None,
                format!("expected Key=Value, found {line:?}"),
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::at(start, None, format!("malformed key {key:?}")));
        }
        let Some(section) = &section else {
            return Err(Error::at(
                start,
                Some(key),
                "comes before any section: start the file with [Container]",
            ));
        };
        entries.push(Entry {
            section: section.clone(),
            key: key.to_string(),
            value: value.trim().to_string(),
            line: start,
        });
    }
    if let Some((start, _)) = pending {
        return Err(Error::at(
            start,
            None,
            "the file ends in a continued line (a trailing backslash)",
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(section: &str, key: &str, value: &str, line: usize) -> Entry {
        Entry {
            section: section.into(),
            key: key.into(),
            value: value.into(),
            line,
        }
    }

    #[test]
    fn sections_keys_comments_and_continuations() {
        let text = "# a comment\n[Unit]\nDescription = web server \n\n; another\n[Container]\nExec=sh -c \\\n  'echo hi' \\\n# skipped\n  x\nMemory=64M\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                entry("Unit", "Description", "web server", 3),
                entry("Container", "Exec", "sh -c  'echo hi'  x", 7),
                entry("Container", "Memory", "64M", 11),
            ]
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        for (text, line, what) in [
            ("Exec=true\n", 1, "before any section"),
            ("[Container]\nExec true\n", 2, "expected Key=Value"),
            ("[Container\n", 1, "must end with ']'"),
            ("[Container]\n\nbad key=1\n", 3, "malformed key"),
            ("[Container]\nExec=a \\\n", 2, "continued line"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text:?}");
            assert!(e.message.contains(what), "{text:?}: {}", e.message);
        }
    }
}
