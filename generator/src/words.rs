//! Splitting a value into words, and writing words back for systemd.
//!
//! A `.container` file's `Exec=` and `Environment=` values are split the
//! way a shell splits a command line, without any expansion: what the user
//! wrote is what the container gets. systemd reads `ExecStart=` with rules
//! of its own (systemd.service(5), "Command lines"), which `exec_word`
//! answers so that each word arrives unchanged.

/// Splits `text` into words: blanks separate them, 'single quotes' keep
/// everything literally, "double quotes" too except that a backslash
/// before `"`, `\\`, `$` or a backquote is dropped (as in a shell), and a
/// backslash outside quotes keeps the next character. No `$`, `~` or glob
/// is expanded.
pub fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a 'single quote' is not closed".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a \"double quote\" is not closed".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a \"double quote\" is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a backslash ends the value: it escapes nothing".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// One argument as an `ExecStart=` word that systemd turns back into
/// exactly `arg`: `%` doubled (specifiers), `$` doubled (environment
/// expansion), and anything beyond a plain word double-quoted with C
/// escapes (quotes, backslashes, blanks, control characters, and a lone
/// `;`, which would otherwise separate two commands).
pub fn exec_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%$".contains(c));
    let mut out = String::with_capacity(arg.len() + 2);
    if !plain {
        out.push('"');
    }
    for c in arg.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    if !plain {
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split(text).unwrap()
    }

    #[test]
    fn splits_like_a_shell_without_expanding() {
        assert_eq!(words("  httpd -f  -p 8080 "), ["httpd", "-f", "-p", "8080"]);
        assert_eq!(
            words(r#"sh -c 'echo "$HOME" 100%' x"#),
            ["sh", "-c", r#"echo "$HOME" 100%"#, "x"]
        );
        assert_eq!(
            words(r#""a b" "say \"hi\"" "c:\\d" "keep\n" "\$5""#),
            ["a b", r#"say "hi""#, r"c:\d", r"keep\n", "$5"]
        );
        assert_eq!(words(r"one\ word it\'s"), ["one word", "it's"]);
        assert_eq!(
            words(r#"GREETING="hello world" ''"#),
            ["GREETING=hello world", ""]
        );
        assert_eq!(words("~/x $PATH *"), ["~/x", "$PATH", "*"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn unclosed_quotes_and_trailing_backslash_are_errors() {
        for bad in ["'open", "\"open", "\"open\\", "end\\"] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exec_words_escape_what_systemd_would_interpret() {
        assert_eq!(exec_word("/usr/local/bin/kennel"), "/usr/local/bin/kennel");
        assert_eq!(exec_word("--memory=64M"), "--memory=64M");
        assert_eq!(exec_word("a b"), r#""a b""#);
        assert_eq!(exec_word("100%"), "100%%");
        assert_eq!(exec_word("%h/x"), "%%h/x");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("${HOME} 5%"), r#""$${HOME} 5%%""#);
        assert_eq!(exec_word(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(exec_word("it's"), r#""it's""#);
        assert_eq!(exec_word(r"back\slash"), r#""back\\slash""#);
        assert_eq!(exec_word(";"), r#"";""#);
        assert_eq!(exec_word(""), r#""""#);
        assert_eq!(
            exec_word("line\nnext\ttab\u{1}"),
            r#""line\nnext\ttab\u0001""#
        );
        assert_eq!(exec_word("grüße"), r#""grüße""#);
    }
}
