//! The text written to `/proc/PID/uid_map` and `gid_map`.

use crate::request::MapLine;

/// Renders a map as the kernel reads it: `inner outer count\n` per line.
pub fn render_map(lines: &[MapLine]) -> String {
    let mut text = String::with_capacity(lines.len() * 24);
    for line in lines {
        text.push_str(&format!("{} {} {}\n", line.inner, line.outer, line.count));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_range() {
        let table: &[(&[MapLine], &str)] = &[
            (&[], ""),
            (
                &[MapLine {
                    inner: 0,
                    outer: 1000,
                    count: 1,
                }],
                "0 1000 1\n",
            ),
            (
                &[
                    MapLine {
                        inner: 0,
                        outer: 1000,
                        count: 1,
                    },
                    MapLine {
                        inner: 1,
                        outer: 300000,
                        count: 65536,
                    },
                    MapLine {
                        inner: 4294967293,
                        outer: 4294967293,
                        count: 2,
                    },
                ],
                "0 1000 1\n1 300000 65536\n4294967293 4294967293 2\n",
            ),
        ];
        for (lines, want) in table {
            assert_eq!(render_map(lines), *want);
        }
    }
}
