//! Time in the daemon: microseconds since the epoch, the clock, and the date/hour
//! partition of a time. The calendar arithmetic is `sluice_decode::civil` and the RFC 3339
//! formatter the output formats' (`sluice_formats::timestamp`), so every file format writes
//! time the same way.

use sluice_decode::civil::civil_from_unix_seconds;
pub use sluice_formats::timestamp::TimestampFormatter;
use sluice_formats::timestamp::push_digits;

/// Microseconds since the Unix epoch.
pub type UnixMicros = i64;

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> UnixMicros {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// A civil UTC date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–59.
    pub second: u32,
}

impl Civil {
    /// Splits whole seconds since the epoch into date and time (UTC).
    pub fn from_unix_seconds(secs: i64) -> Self {
        let (year, month, day, hour, minute, second) = civil_from_unix_seconds(secs);
        Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }
}

/// Formats `YYYY-MM-DD` (years outside 0–9999 are clamped: not reachable from a clock).
pub fn push_date(out: &mut Vec<u8>, c: &Civil) {
    push_digits(out, c.year.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_digits(out, u64::from(c.month), 2);
    out.push(b'-');
    push_digits(out, u64::from(c.day), 2);
}

/// Formats two-digit numbers such as the hour partition.
pub fn push_two_digits(out: &mut Vec<u8>, v: u32) {
    push_digits(out, u64::from(v), 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(micros: i64) -> String {
        let mut out = Vec::new();
        TimestampFormatter::default().push(&mut out, micros);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(fmt(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(fmt(1_795_328_725_123_456), "2026-11-22T06:25:25.123456Z");
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(fmt(4_102_444_799_999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn cache_follows_second_changes() {
        let mut f = TimestampFormatter::default();
        let mut out = Vec::new();
        f.push(&mut out, 1_000_000);
        out.push(b' ');
        f.push(&mut out, 1_999_999);
        out.push(b' ');
        f.push(&mut out, 2_000_000);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "1970-01-01T00:00:01.000000Z 1970-01-01T00:00:01.999999Z 1970-01-01T00:00:02.000000Z"
        );
    }
}
