//! Small UTC calendar helpers: SigV4 timestamps, ISO-8601 and HTTP (RFC 1123) dates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap {
                29
            } else {
                28
            }
        }
    }
}

/// Seconds since the epoch (negative before 1970).
fn to_unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn assemble(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 allows a leap second; it is folded into the next minute.
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(min) * 60
        + i64::from(sec);
    from_unix(secs, nanos)
}

/// `(YYYYMMDD'T'HHMMSS'Z', YYYYMMDD)` of a time, as SigV4 wants them.
pub fn amz_date(t: SystemTime) -> (String, String) {
    let secs = to_unix_seconds(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    (stamp, date)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601, UTC, whole seconds).
pub fn iso8601(t: SystemTime) -> String {
    let secs = to_unix_seconds(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `2009-10-12T17:50:30.000Z` (fraction optional; `Z`, `+hh:mm` or `-hh:mm`).
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut dp = date.splitn(3, '-');
    let year = i64::from(digits(dp.next()?)?);
    let month = digits(dp.next()?)?;
    let day = digits(dp.next()?)?;

    // Split off the zone designator.
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0i64)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (zh, zm) = match z.split_once(':') {
            Some((h, m)) => (digits(h)?, digits(m)?),
            None if z.len() == 4 => (digits(&z[..2])?, digits(&z[2..])?),
            None => (digits(z)?, 0),
        };
        (t, sign * (i64::from(zh) * 3600 + i64::from(zm) * 60))
    } else {
        (rest, 0)
    };

    let (hms, frac) = match time.split_once(['.', ',']) {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut tp = hms.splitn(3, ':');
    let hour = digits(tp.next()?)?;
    let min = digits(tp.next()?)?;
    let sec = digits(tp.next().unwrap_or("0"))?;
    let nanos = match frac {
        Some(f) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let mut digits9: String = f.chars().take(9).collect();
            while digits9.len() < 9 {
                digits9.push('0');
            }
            digits9.parse().ok()?
        }
        None => 0,
    };
    let t = assemble(year, month, day, hour, min, sec, nanos)?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
}

fn parse_hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut p = s.splitn(3, ':');
    Some((digits(p.next()?)?, digits(p.next()?)?, digits(p.next()?)?))
}

/// Parses an HTTP date: RFC 1123 (`Wed, 12 Oct 2009 17:50:00 GMT`), plus the obsolete
/// RFC 850 (`Wednesday, 12-Oct-09 17:50:00 GMT`) and asctime (`Wed Oct 12 17:50:00 2009`) forms.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    match parts.as_slice() {
        // RFC 1123: "Wed," "12" "Oct" "2009" "17:50:00" "GMT"
        [_, day, mon, year, hms, zone] if zone.eq_ignore_ascii_case("GMT") || *zone == "UTC" => {
            let (h, m, sec) = parse_hms(hms)?;
            assemble(
                i64::from(digits(year)?),
                month_number(mon)?,
                digits(day)?,
                h,
                m,
                sec,
                0,
            )
        }
        // RFC 850: "Wednesday," "12-Oct-09" "17:50:00" "GMT"
        [_, dmy, hms, zone] if zone.eq_ignore_ascii_case("GMT") => {
            let mut p = dmy.splitn(3, '-');
            let day = digits(p.next()?)?;
            let mon = month_number(p.next()?)?;
            let yy = i64::from(digits(p.next()?)?);
            let year = if yy < 100 {
                if yy < 70 {
                    2000 + yy
                } else {
                    1900 + yy
                }
            } else {
                yy
            };
            let (h, m, sec) = parse_hms(hms)?;
            assemble(year, mon, day, h, m, sec, 0)
        }
        // asctime: "Wed" "Oct" "12" "17:50:00" "2009"
        [_, mon, day, hms, year] => {
            let (h, m, sec) = parse_hms(hms)?;
            assemble(
                i64::from(digits(year)?),
                month_number(mon)?,
                digits(day)?,
                h,
                m,
                sec,
                0,
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn amz_date_formats() {
        // 2015-08-30T12:36:00Z is 1440938160 seconds after the epoch.
        let (stamp, date) = amz_date(at(1_440_938_160));
        assert_eq!(stamp, "20150830T123600Z");
        assert_eq!(date, "20150830");
        let (stamp, _) = amz_date(at(0));
        assert_eq!(stamp, "19700101T000000Z");
        // 2000-02-29 (leap day) 23:59:59
        let (stamp, _) = amz_date(at(951_868_799));
        assert_eq!(stamp, "20000229T235959Z");
    }

    #[test]
    fn civil_round_trip() {
        for days in [
            -800_000i64,
            -1,
            0,
            1,
            59,
            60,
            365,
            11_016,
            20_000,
            2_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn iso8601_forms() {
        let want = at(1_255_369_830); // 2009-10-12T17:50:30Z
        assert_eq!(parse_iso8601("2009-10-12T17:50:30.000Z"), Some(want));
        assert_eq!(parse_iso8601("2009-10-12T17:50:30Z"), Some(want));
        assert_eq!(parse_iso8601("2009-10-12T19:50:30+02:00"), Some(want));
        assert_eq!(parse_iso8601("2009-10-12T16:50:30-0100"), Some(want));
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30.5Z"),
            Some(want + Duration::from_millis(500))
        );
        assert_eq!(parse_iso8601("2009-13-12T17:50:30Z"), None);
        assert_eq!(parse_iso8601("2009-02-29T17:50:30Z"), None);
        assert_eq!(parse_iso8601("garbage"), None);
        assert_eq!(parse_iso8601(""), None);
    }

    #[test]
    fn http_date_forms() {
        let want = at(1_255_369_800); // 2009-10-12T17:50:00Z
        assert_eq!(parse_http_date("Mon, 12 Oct 2009 17:50:00 GMT"), Some(want));
        assert_eq!(
            parse_http_date("Monday, 12-Oct-09 17:50:00 GMT"),
            Some(want)
        );
        assert_eq!(parse_http_date("Mon Oct 12 17:50:00 2009"), Some(want));
        assert_eq!(parse_http_date("Mon, 12 Foo 2009 17:50:00 GMT"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
