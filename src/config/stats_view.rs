//! `bucketfs stats`: the `name value` lines of `.bucketfs/stats` laid out for people.
//!
//! The lines are read back with [`crate::figures::parse_line`], the parser of the format
//! that [`crate::figures::to_text`] writes the file in.
//!
//! Unknown lines (counters added later) are kept, under "Other", so nothing is hidden.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::figures::{parse_line, Line};
use crate::s3::stats::Op;

/// `1.5 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `3d 04h 05m`, `1h 02m 03s`, `42s`.
fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h {m:02}m")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `12 hits, 3 misses (80% hits)`.
fn hit_ratio(hits: u64, misses: u64, unit: &str) -> String {
    let total = hits + misses;
    if total == 0 {
        return "none yet".to_string();
    }
    let pct = hits as f64 * 100.0 / total as f64;
    let show = |n: u64| {
        if unit == "bytes" {
            human_bytes(n)
        } else {
            n.to_string()
        }
    };
    format!(
        "{} hit, {} missed ({pct:.0}% hits)",
        show(hits),
        show(misses)
    )
}

/// The AWS name of a request type's short label (`get` → `GetObject`).
fn aws_name(short: &str) -> String {
    Op::ALL
        .iter()
        .find(|op| op.name() == short)
        .map_or_else(|| short.to_string(), |op| op.aws_name().to_string())
}

/// Lay out the stats file of the mount at `mountpoint`.
pub fn render(text: &str, mountpoint: &str) -> String {
    let mut values: BTreeMap<&str, u64> = BTreeMap::new();
    let mut requests: Vec<(String, u64)> = Vec::new();
    let mut errors: Vec<(String, u64)> = Vec::new();
    let mut other: Vec<&str> = Vec::new();
    let mut unsaved: Vec<String> = Vec::new();
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some(Line { name, label, value }) = parse_line(raw) else {
            other.push(raw.trim());
            continue;
        };
        match (name, label) {
            ("unsaved_file", Some(key)) => unsaved.push(key.into_owned()),
            ("s3_requests", Some(op)) => requests.push((aws_name(&op), value)),
            ("s3_errors", Some(code)) => errors.push((code.into_owned(), value)),
            (name, None) if KNOWN.contains(&name) => {
                values.insert(name, value);
            }
            _ => other.push(raw.trim()),
        }
    }
    let get = |name: &str| values.get(name).copied().unwrap_or(0);

    let mut out = String::new();
    let _ = write!(out, "bucketfs mounted at {mountpoint}");
    if let Some(up) = values.get("s3_uptime_seconds") {
        let _ = write!(out, ", for {}", human_duration(*up));
    }
    out.push_str("\n\n");

    let total: u64 = requests.iter().map(|(_, n)| n).sum();
    let _ = writeln!(out, "S3 requests {total:>27}");
    for (op, n) in requests.iter().filter(|(_, n)| *n > 0) {
        let _ = writeln!(out, "  {op:<26} {n:>10}");
    }
    let _ = writeln!(out, "  {:<26} {:>10}", "retries", get("s3_retries"));
    let _ = writeln!(out, "  {:<26} {:>10}", "in flight now", get("s3_inflight"));

    let sent = get("s3_bytes_sent");
    let received = get("s3_bytes_received");
    out.push_str("\nTransfer\n");
    let _ = writeln!(
        out,
        "  {:<26} {:>10}  ({sent} bytes)",
        "up (sent)",
        human_bytes(sent)
    );
    let _ = writeln!(
        out,
        "  {:<26} {:>10}  ({received} bytes)",
        "down (received)",
        human_bytes(received)
    );

    let failed: u64 = errors.iter().map(|(_, n)| n).sum();
    let _ = writeln!(out, "\nErrors (after retries) {failed:>16}");
    for (code, n) in &errors {
        let note = match code.as_str() {
            "NoSuchKey" => "  (normal: lookups of names that do not exist)",
            _ => "",
        };
        let _ = writeln!(out, "  {code:<26} {n:>10}{note}");
    }

    out.push_str("\nCache\n");
    let caches = [
        ("lookups", "cache_lookup_hits", "cache_lookup_misses", ""),
        (
            "directory listings",
            "cache_readdir_hits",
            "cache_readdir_misses",
            "",
        ),
        (
            "read bytes",
            "cache_read_hit_bytes",
            "cache_read_miss_bytes",
            "bytes",
        ),
    ];
    for (label, hits, misses, unit) in caches {
        if values.contains_key(hits) || values.contains_key(misses) {
            let _ = writeln!(
                out,
                "  {label:<26} {}",
                hit_ratio(get(hits), get(misses), unit)
            );
        }
    }
    // "LABEL   USED  of TOTAL (WHAT)"
    let in_use = |out: &mut String, label: &str, used: &str, total: &str, what: &str| {
        let (used, total) = (human_bytes(get(used)), human_bytes(get(total)));
        let _ = writeln!(out, "  {label:<26} {used:>10}  of {total} ({what})");
    };
    in_use(
        &mut out,
        "part cache in use",
        "memory_in_use_bytes",
        "memory_budget_bytes",
        "write parts and read-ahead",
    );
    let _ = writeln!(out, "  {:<26} {:>10}", "inodes known", get("inodes"));
    let _ = writeln!(
        out,
        "  {:<26} {:>10}",
        "listing entries cached",
        get("listed_entries")
    );
    if values.contains_key("staging_limit_bytes") {
        in_use(
            &mut out,
            "staging area in use",
            "staging_bytes",
            "staging_limit_bytes",
            "files being written, on disk",
        );
    }

    if values.contains_key("pending_upload_files") {
        let files = get("pending_upload_files");
        let bytes = get("pending_upload_bytes");
        out.push_str("\nPending uploads\n");
        let _ = writeln!(out, "  {:<26} {files:>10}", "files");
        let _ = writeln!(
            out,
            "  {:<26} {:>10}  ({bytes} bytes)",
            "bytes",
            human_bytes(bytes)
        );
    }

    if get("unsaved_files") > 0 {
        out.push_str("\nUnsaved files (upload failed; kept here, sent again at close or fsync)\n");
        for key in &unsaved {
            let _ = writeln!(out, "  {key}");
        }
    }

    if !other.is_empty() {
        out.push_str("\nOther\n");
        for line in other {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Counters [`render`] places in its sections.
const KNOWN: &[&str] = &[
    "s3_uptime_seconds",
    "s3_bytes_sent",
    "s3_bytes_received",
    "s3_retries",
    "s3_inflight",
    "memory_budget_bytes",
    "memory_in_use_bytes",
    "inodes",
    "listed_entries",
    "cache_lookup_hits",
    "cache_lookup_misses",
    "cache_readdir_hits",
    "cache_readdir_misses",
    "cache_read_hit_bytes",
    "cache_read_miss_bytes",
    "pending_upload_files",
    "pending_upload_bytes",
    "unsaved_files",
    "staging_bytes",
    "staging_limit_bytes",
];

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "s3_uptime_seconds 3723\n\
        s3_requests{op=\"list\"} 3\n\
        s3_requests{op=\"head\"} 0\n\
        s3_requests{op=\"put\"} 10\n\
        s3_bytes_sent 1572864\n\
        s3_bytes_received 2048\n\
        s3_retries 1\n\
        s3_inflight 0\n\
        s3_errors{code=\"AccessDenied\"} 2\n\
        memory_budget_bytes 100663296\n\
        memory_in_use_bytes 8388608\n\
        inodes 12\n\
        cache_lookup_hits 8\n\
        cache_lookup_misses 2\n\
        something_new 7\n\
        pending_upload_files 1\n\
        pending_upload_bytes 4096\n";

    #[test]
    fn renders_every_section() {
        let out = render(SAMPLE, "/mnt/b");
        assert!(
            out.starts_with("bucketfs mounted at /mnt/b, for 1h 02m 03s\n"),
            "{out}"
        );
        assert!(out.contains("S3 requests"), "{out}");
        assert!(out.contains("  ListObjectsV2"), "{out}");
        assert!(out.contains("  PutObject"), "{out}");
        assert!(
            !out.contains("HeadObject"),
            "zero counts are left out: {out}"
        );
        assert!(out.contains("1.5 MiB  (1572864 bytes)"), "{out}");
        assert!(out.contains("  AccessDenied"), "{out}");
        assert!(out.contains("8 hit, 2 missed (80% hits)"), "{out}");
        assert!(out.contains("8.0 MiB  of 96.0 MiB"), "{out}");
        assert!(out.contains("Pending uploads"), "{out}");
        assert!(out.contains("Other\n  something_new 7"), "{out}");
        let total = out.lines().find(|l| l.starts_with("S3 requests")).unwrap();
        assert!(total.trim_end().ends_with(" 13"), "{total}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(200 * 1024 * 1024), "200 MiB");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(90), "1m 30s");
        assert_eq!(human_duration(2 * 86_400 + 3600), "2d 01h 00m");
    }
}
