//! Event-time parsing and formatting, in integer milliseconds since the unix epoch (UTC).
//!
//! RFC 3339 is parsed by hand: it runs once per event on the hot path, the grammar is tiny, and a
//! general date-time crate would cost more in build time and speed than these few lines.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

pub const MS_PER_SEC: i64 = 1000;
pub const MS_PER_DAY: i64 = 86_400_000;

/// Days since the epoch for a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. The fraction is truncated to milliseconds.
pub fn parse_rfc3339(s: &[u8]) -> Option<Millis> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    let y = digits(&s[0..4])? as i64;
    let mo = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    let h = digits(&s[11..13])?;
    let mi = digits(&s[14..16])?;
    let sec = digits(&s[17..19])?;
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut ms: i64 = 0;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + (s[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_min: i64 = match s.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = digits(&[*oh1, *oh2])? as i64;
            let om = digits(&[*om1, *om2])? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 60 + om;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    // A leap second (`:60`) is folded into the next second, as most systems do.
    let secs = days * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + sec as i64 - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Formats milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, for messages and the generator.
pub fn format_rfc3339(ms: Millis) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, f) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:03}Z")
}

/// Parses a duration such as `90s`, `1h`, `24h`, `1d` or `1h 30m` into milliseconds.
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. \"90s\", \"1h\", \"1d\"")
    })?;
    i64::try_from(d.as_millis()).map_err(|_| format!("`{s}` is too long a duration"))
}

/// Converts a JSON number of seconds or milliseconds to milliseconds, truncating towards −∞.
/// `None` when it does not fit (NaN, infinities, beyond ±2^62 ms).
pub fn float_to_ms(x: f64, scale: f64) -> Option<Millis> {
    let v = (x * scale).floor();
    if v.is_finite() && v.abs() < 4.6e18 {
        Some(v as i64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            10_957,
            19_723,
            2_932_896,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn rfc3339_values() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339(b"2024-01-01T00:00:00Z"),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_rfc3339(b"2024-01-01T00:00:00.5Z"),
            Some(1_704_067_200_500)
        );
        assert_eq!(
            parse_rfc3339(b"2024-01-01T00:00:00.123456789Z"),
            Some(1_704_067_200_123)
        );
        assert_eq!(
            parse_rfc3339(b"2024-01-01T02:00:00+02:00"),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_rfc3339(b"2023-12-31T19:00:00-05:00"),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_rfc3339(b"2024-02-29 12:00:00z"),
            Some(1_709_208_000_000)
        );
        for bad in [
            &b"2024-02-30T00:00:00Z"[..],
            b"2023-02-29T00:00:00Z",
            b"2024-01-01T00:00:00",
            b"2024-01-01T24:00:00Z",
            b"2024-13-01T00:00:00Z",
            b"2024-01-01T00:00:00.Z",
            b"2024-01-01T00:00:00+0200",
            b"2024-01-01T00:00:00Zjunk",
            b"20240101T000000Z",
            b"",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn format_round_trip() {
        for ms in [0i64, 1_704_067_200_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(format_rfc3339(ms).as_bytes()), Some(ms));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert!(parse_duration("an hour").is_err());
    }

    #[test]
    fn float_truncates_down() {
        assert_eq!(float_to_ms(1.5, 1000.0), Some(1500));
        assert_eq!(float_to_ms(-0.0005, 1000.0), Some(-1));
        assert_eq!(float_to_ms(f64::NAN, 1.0), None);
        assert_eq!(float_to_ms(1e300, 1.0), None);
    }
}
