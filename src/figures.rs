//! The mount's figures as typed values (name, help, counter or gauge, value): the one list
//! that `.bucketfs/stats` is written from, `bucketfs stats` reads back, and `/metrics` exports.
//!
//! The stats file stays `name value` / `name{label="value"} value` lines (scripts read it);
//! [`to_text`] writes them and [`parse_line`] is the only parser of them.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a figure only grows from mount start (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One figure at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// `s3_requests`, `inodes`: lower case and `_`, without the `bucketfs_` namespace.
    pub name: &'static str,
    /// One line saying what is counted (the Prometheus `# HELP`).
    pub help: &'static str,
    pub kind: Kind,
    /// At most one label, `(label name, value)`: `("op", "get")`.
    pub label: Option<(&'static str, String)>,
    pub value: u64,
}

impl Figure {
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Figure {
        Figure {
            name,
            help,
            kind: Kind::Counter,
            label: None,
            value,
        }
    }

    pub fn gauge(name: &'static str, help: &'static str, value: u64) -> Figure {
        Figure {
            kind: Kind::Gauge,
            ..Figure::counter(name, help, value)
        }
    }

    /// The same figure for one value of a label (`s3_requests{op="get"}`).
    pub fn with_label(mut self, label: &'static str, value: impl Into<String>) -> Figure {
        self.label = Some((label, value.into()));
        self
    }
}

/// The stats file's lines: `name value`, or `name{label="value"} value` with `\`, `"` and
/// newlines in the value escaped as in Prometheus text.
pub fn to_text(figures: &[Figure]) -> String {
    let mut out = String::new();
    for f in figures {
        match &f.label {
            Some((label, value)) => {
                let _ = writeln!(
                    out,
                    "{}{{{label}=\"{}\"}} {}",
                    f.name,
                    escape(value),
                    f.value
                );
            }
            None => {
                let _ = writeln!(out, "{} {}", f.name, f.value);
            }
        }
    }
    out
}

fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// One line of the stats file read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub name: &'a str,
    /// The label's value (unescaped), if the line has a label.
    pub label: Option<Cow<'a, str>>,
    pub value: u64,
}

/// Parse one line written by [`to_text`]; `None` for anything else (blank lines, comments).
pub fn parse_line(raw: &str) -> Option<Line<'_>> {
    let (key, value) = raw.trim().rsplit_once(' ')?;
    let value = value.trim().parse().ok()?;
    let (name, label) = match key.split_once('{') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            let (_, quoted) = inner.split_once('=')?;
            let quoted = quoted.strip_prefix('"')?.strip_suffix('"')?;
            (name, Some(unescape(quoted)))
        }
        None => (key, None),
    };
    if name.is_empty() || name.starts_with('#') {
        return None;
    }
    Some(Line { name, label, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_back() {
        let figures = vec![
            Figure::gauge("inodes", "inodes known", 3),
            Figure::counter("s3_requests", "requests", 7).with_label("op", "get"),
            Figure::gauge("unsaved_file", "a file", 1).with_label("key", "a \"b\"\\c\nd e"),
        ];
        let text = to_text(&figures);
        assert_eq!(
            text,
            "inodes 3\ns3_requests{op=\"get\"} 7\nunsaved_file{key=\"a \\\"b\\\"\\\\c\\nd e\"} 1\n"
        );
        let back: Vec<Line> = text.lines().filter_map(parse_line).collect();
        assert_eq!(back.len(), figures.len());
        for (line, f) in back.iter().zip(&figures) {
            assert_eq!(line.name, f.name);
            assert_eq!(line.value, f.value);
            assert_eq!(
                line.label.as_deref(),
                f.label.as_ref().map(|l| l.1.as_str())
            );
        }
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("# comment 1"), None);
        assert_eq!(parse_line("name notanumber"), None);
    }
}
