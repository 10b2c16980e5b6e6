//! One line of a uid or gid map: its command-line spelling
//! (`INNER:OUTER:COUNT`) and the text written to `/proc/PID/uid_map` and
//! `gid_map`. Below both the request's checks and the command line.

use std::fmt;

/// One line of a map: ids `inner..inner+count` inside the namespace are
/// host ids `outer..outer+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MapLine {
    pub inner: u32,
    pub outer: u32,
    pub count: u32,
}

impl MapLine {
    pub(crate) fn inner_end(&self) -> u64 {
        u64::from(self.inner) + u64::from(self.count)
    }

    pub(crate) fn outer_end(&self) -> u64 {
        u64::from(self.outer) + u64::from(self.count)
    }
}

impl fmt::Display for MapLine {
    /// The command-line spelling, `INNER:OUTER:COUNT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.inner, self.outer, self.count)
    }
}

/// Parses `INNER:OUTER:COUNT`, three decimal u32 numbers.
pub fn parse_map_line(text: &str) -> Option<MapLine> {
    let mut fields = text.split(':');
    let inner = crate::subid::parse_decimal(fields.next()?)?;
    let outer = crate::subid::parse_decimal(fields.next()?)?;
    let count = crate::subid::parse_decimal(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    Some(MapLine {
        inner,
        outer,
        count,
    })
}

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
