//! RFC 3339 UTC timestamps with microseconds (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), formatted
//! without allocation. Every record has at least one timestamp, so this is on the hot
//! path: the date-and-time part is cached and recomputed only when the second changes —
//! for the last two seconds seen, since a record often has two timestamps a few seconds
//! or years apart (a device's clock and the receive time), which would otherwise replace
//! each other's cache on every record. The last two timestamps used are also kept whole:
//! the records of one packet share its receive time (and often the device's), and copying
//! the text is cheaper than writing the microseconds again. A new one replaces the one
//! used less recently, so that a device's time read by every packet survives the receive
//! times that change with each (replacing them in turn lost it every other packet).
//!
//! BigQuery reads this form as TIMESTAMP in both JSON and CSV files (its loaders accept a
//! `T` or a space between date and time, and `Z` for UTC).

use sluice_decode::civil::civil_from_unix_seconds;

use crate::textout::TextOut;

/// Appends `value` as exactly `width` decimal digits (zero-padded, high digits dropped).
pub fn push_digits<O: TextOut>(out: &mut O, value: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let digits = buf.get_mut(..width).unwrap_or_default();
    write_digits(digits, value);
    out.extend_from_slice(digits);
}

/// Fills `digits` with `value` in decimal, zero-padded, high digits dropped.
#[inline]
fn write_digits(digits: &mut [u8], mut value: u64) {
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.`: the part of a timestamp that changes once a second.
const PREFIX_LEN: usize = 20;

/// Length of a whole timestamp (`…SS.ffffffZ`).
const TEXT_LEN: usize = PREFIX_LEN + 7;
/// A whole timestamp's buffer: the text and room for a fixed-size copy of 32 bytes.
const TEXT_ROOM: usize = 32;

/// Formats RFC 3339 timestamps, caching the part that only changes once a second for the
/// last two seconds formatted, and the last two timestamps whole.
#[derive(Debug, Default)]
pub struct TimestampFormatter {
    /// The most recently used second first.
    cache: [Option<(i64, [u8; PREFIX_LEN])>; 2],
    /// The last two timestamps used (microseconds, text padded to [`TEXT_ROOM`]).
    whole: [Option<(i64, [u8; TEXT_ROOM])>; 2],
    /// The entry of `whole` used less recently: the one a new timestamp replaces.
    next_whole: usize,
}

impl TimestampFormatter {
    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ` for `micros` since the Unix epoch (years
    /// outside 0–9999 are clamped: not reachable from a clock or a 32-bit export time).
    #[inline(always)]
    pub fn push<O: TextOut>(&mut self, out: &mut O, micros: i64) {
        // Built whole (returned, not written through `out`: a call given a row's `Line`
        // would keep its length in memory), then appended in one fixed-size copy.
        let text = self.text(micros);
        out.push_prefix(&text, TEXT_LEN);
    }

    /// The text of `micros`, padded to [`TEXT_ROOM`].
    fn text(&mut self, micros: i64) -> [u8; TEXT_ROOM] {
        for (index, entry) in self.whole.iter().enumerate() {
            if let Some((seen, text)) = entry
                && *seen == micros
            {
                self.next_whole = index ^ 1;
                return *text;
            }
        }
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000) as u64;
        let prefix = match self.cache {
            [Some((second, prefix)), _] if second == secs => prefix,
            [first, Some((second, prefix))] if second == secs => {
                self.cache = [Some((second, prefix)), first];
                prefix
            }
            [first, _] => {
                let prefix = prefix_of(secs);
                self.cache = [Some((secs, prefix)), first];
                prefix
            }
        };
        let mut text = [0u8; TEXT_ROOM];
        text[..PREFIX_LEN].copy_from_slice(&prefix);
        write_digits(&mut text[PREFIX_LEN..PREFIX_LEN + 6], frac);
        text[PREFIX_LEN + 6] = b'Z';
        if let Some(entry) = self.whole.get_mut(self.next_whole) {
            *entry = Some((micros, text));
        }
        self.next_whole ^= 1;
        text
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` since the Unix epoch.
fn prefix_of(secs: i64) -> [u8; PREFIX_LEN] {
    let (year, month, day, hour, minute, second) = civil_from_unix_seconds(secs);
    let mut prefix = *b"0000-00-00T00:00:00.";
    let fields = [
        (0..4, year.clamp(0, 9999) as u64),
        (5..7, u64::from(month)),
        (8..10, u64::from(day)),
        (11..13, u64::from(hour)),
        (14..16, u64::from(minute)),
        (17..19, u64::from(second)),
    ];
    for (range, value) in fields {
        if let Some(digits) = prefix.get_mut(range) {
            write_digits(digits, value);
        }
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &mut TimestampFormatter, micros: i64) -> String {
        let mut out = Vec::new();
        f.push(&mut out, micros);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn formats_known_instants_and_follows_second_changes() {
        let mut f = TimestampFormatter::default();
        assert_eq!(fmt(&mut f, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            fmt(&mut f, 951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            fmt(&mut f, 1_795_328_725_123_456),
            "2026-11-22T06:25:25.123456Z"
        );
        assert_eq!(
            fmt(&mut f, 1_795_328_725_999_999),
            "2026-11-22T06:25:25.999999Z"
        );
        assert_eq!(
            fmt(&mut f, 1_795_328_726_000_000),
            "2026-11-22T06:25:26.000000Z"
        );
        assert_eq!(fmt(&mut f, -1), "1969-12-31T23:59:59.999999Z");
        // Two seconds taking turns (a device's clock and the receive time) both stay cached.
        for _ in 0..3 {
            assert_eq!(fmt(&mut f, 1_000_000), "1970-01-01T00:00:01.000000Z");
            assert_eq!(
                fmt(&mut f, 1_795_328_725_000_007),
                "2026-11-22T06:25:25.000007Z"
            );
        }
        assert_eq!(
            fmt(&mut f, 4_102_444_799_999_999),
            "2099-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn a_timestamp_every_record_reads_survives_receive_times_that_change() {
        // A packet's two records: its receive time, then the device's time, twice.
        let device = 1_795_328_700_000_000;
        let mut f = TimestampFormatter::default();
        for packet in 0..8 {
            let received = 1_795_328_725_000_000 + packet * 3;
            for _ in 0..2 {
                fmt(&mut f, received);
                fmt(&mut f, device);
            }
            let next = received + 3;
            fmt(&mut f, next);
            assert!(
                f.whole.iter().flatten().any(|(seen, _)| *seen == device),
                "packet {packet}: the device's time was replaced by the next receive time"
            );
            assert_eq!(fmt(&mut f, device), "2026-11-22T06:25:00.000000Z");
        }
    }

    #[test]
    fn repeated_timestamps_read_the_same_as_new_ones() {
        // A packet's records repeating the receive time and the device's time, values
        // seen two and three back, and the same second with other microseconds.
        let sequence = [
            5_000_001, 7_000_000, 5_000_001, 7_000_000, 5_000_002, 7_000_000, 5_000_002, 9_999_999,
            5_000_002, 7_000_000, 5_000_001, -1, -1, 0, 5_000_001,
        ];
        let mut reused = TimestampFormatter::default();
        for micros in sequence {
            let expected = fmt(&mut TimestampFormatter::default(), micros);
            assert_eq!(fmt(&mut reused, micros), expected, "{micros}");
        }
    }
}
