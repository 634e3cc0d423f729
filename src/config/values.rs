//! Values of command-line options: sizes, octal modes, durations, buckets, prefixes, endpoints.

use std::time::Duration;

/// Parse a byte count: `8388608`, `8M`, `8MiB`, `1.5G`; K/M/G/T and KiB/… are powers of 1024,
/// KB/MB/GB/TB powers of 1000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size suffix '{other}' (use K, M, G, T, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    if number.is_empty() {
        return Err(format!("'{s}' is not a size (e.g. 8M, 8MiB, 8388608)"));
    }
    let bytes = if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{number}' is not a number"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("'{s}' is too large"));
        }
        bytes.round() as u64
    } else {
        let value: u64 = number
            .parse()
            .map_err(|_| format!("'{number}' is not a number"))?;
        value
            .checked_mul(multiplier)
            .ok_or_else(|| format!("'{s}' is too large"))?
    };
    Ok(bytes)
}

/// Parse permission bits in octal: `0644`, `644`, `0o644`.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let digits = s.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    let mode = u16::from_str_radix(digits, 8)
        .map_err(|_| format!("'{s}' is not an octal mode (e.g. 0644)"))?;
    if mode > 0o7777 {
        return Err(format!("'{s}' is larger than 07777"));
    }
    Ok(mode)
}

/// Parse a duration: `90s`, `30m`, `24h`, `7d`, `2w`, `1d12h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (e.g. 24h, 7d)".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{s}' is not a duration (e.g. 90m, 24h, 7d)"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{s}' is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            other => {
                return Err(format!(
                    "unknown duration unit '{other}' in '{s}' (use s, m, h, d, w)"
                ))
            }
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("'{s}' is too large"))?;
    }
    Ok(Duration::from_secs(total))
}

/// Split `my-bucket`, `s3://my-bucket/some/prefix`, `my-bucket/prefix` or s3fs's
/// `my-bucket:/prefix` into the bucket and a normalised prefix.
pub fn parse_bucket(source: &str) -> Result<(String, String), String> {
    let rest = source.strip_prefix("s3://").unwrap_or(source);
    let (bucket, prefix) = match rest.find(['/', ':']) {
        Some(i) => {
            let prefix = rest[i + 1..].trim_start_matches('/');
            (&rest[..i], prefix)
        }
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(format!(
            "'{source}' names no bucket (e.g. my-bucket or s3://my-bucket/prefix)"
        ));
    }
    if bucket.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{bucket}' is not a bucket name"));
    }
    Ok((bucket.to_string(), normalize_prefix(prefix)?))
}

/// A key prefix: no leading `/`, ending in `/` unless empty, no empty, `.` or `..` components.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "prefix '{prefix}' has an empty, '.' or '..' component"
        ));
    }
    Ok(format!("{trimmed}/"))
}

/// `http://host:port/` → `http://host:port`; a bare host gets `https://`.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err("--endpoint is empty".into());
    }
    let with_scheme = if e.contains("://") {
        e.to_string()
    } else {
        format!("https://{e}")
    };
    let lower = with_scheme.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "endpoint '{endpoint}' must be an http:// or https:// URL"
        ));
    }
    Ok(with_scheme)
}

/// The signing region an endpoint's host names, where the provider puts it there:
/// `s3.REGION.amazonaws.com` (also `s3-REGION.`, `s3.dualstack.REGION.`, with a bucket in front)
/// and `obs.REGION.myhuaweicloud.com`.
pub fn region_from_endpoint(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let host = rest.split(['/', ':']).next()?.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let looks_like_region =
        |r: &str| r.contains('-') && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn") {
        for (i, l) in labels.iter().enumerate() {
            let candidate = match *l {
                "s3" | "dualstack" => labels.get(i + 1).copied(),
                l if l.starts_with("s3-") => Some(&l[3..]),
                _ => None,
            };
            if let Some(r) = candidate.filter(|r| looks_like_region(r) && *r != "external-1") {
                return Some(r.to_string());
            }
        }
    } else if host.ends_with(".myhuaweicloud.com") {
        let i = labels.iter().position(|l| *l == "obs")?;
        return labels
            .get(i + 1)
            .filter(|r| looks_like_region(r))
            .map(|r| r.to_string());
    }
    None
}

#[cfg(test)]
mod region_tests {
    use super::region_from_endpoint as r;

    #[test]
    fn regions_named_by_endpoint_hosts() {
        assert_eq!(
            r("https://s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            r("https://s3-us-west-2.amazonaws.com/").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            r("https://bucket.s3.dualstack.ap-south-1.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(r("https://s3.amazonaws.com"), None);
        assert_eq!(
            r("https://obs.cn-north-4.myhuaweicloud.com").as_deref(),
            Some("cn-north-4")
        );
        assert_eq!(r("http://127.0.0.1:9000"), None);
    }
}
