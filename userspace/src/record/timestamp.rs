//! RFC 3339 UTC timestamps with microseconds, and the date/hour partition of a time,
//! formatted without allocation (one record = one timestamp, so this is on the hot path).

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
    /// Splits whole seconds since the epoch into date and time (days-to-civil conversion
    /// over 400-year eras, valid for any i64 day count in range).
    pub fn from_unix_seconds(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: tod / 3600,
            minute: tod / 60 % 60,
            second: tod % 60,
        }
    }
}

fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut v = value;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
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

/// Formats RFC 3339 timestamps, caching the part that only changes once a second.
#[derive(Debug, Default)]
pub struct TimestampFormatter {
    cached_second: Option<i64>,
    prefix: Vec<u8>,
}

impl TimestampFormatter {
    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ` for `micros`.
    pub fn push(&mut self, out: &mut Vec<u8>, micros: UnixMicros) {
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000) as u64;
        if self.cached_second != Some(secs) {
            let c = Civil::from_unix_seconds(secs);
            self.prefix.clear();
            push_date(&mut self.prefix, &c);
            self.prefix.push(b'T');
            push_two_digits(&mut self.prefix, c.hour);
            self.prefix.push(b':');
            push_two_digits(&mut self.prefix, c.minute);
            self.prefix.push(b':');
            push_two_digits(&mut self.prefix, c.second);
            self.prefix.push(b'.');
            self.cached_second = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        push_digits(out, frac, 6);
        out.push(b'Z');
    }
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
