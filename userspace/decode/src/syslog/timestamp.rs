//! Syslog timestamps: RFC 3339 (RFC 5424 and modern RFC 3164 senders), BSD `Mmm dd
//! hh:mm:ss` with its vendor variants, and the calendar arithmetic to turn them into UTC
//! microseconds.
//!
//! The decode crate has no date library and needs none: a timestamp is a civil date, a
//! clock reading and an offset, and the proleptic Gregorian day count is
//! [`crate::civil`]'s. Parsers here read a [`Stamp`] (what the message
//! says); [`Stamp::resolve`] applies the zone — the one written, or the configured default
//! — and, for BSD timestamps that carry no year, picks the year that puts the instant
//! nearest to the receive time (so a December message received on 1 January lands in the
//! previous year).

use super::cursor::Cursor;
use crate::civil::{SECONDS_PER_DAY, civil_from_days, days_from_civil, days_in_month};

const MICROS_PER_SECOND: i64 = 1_000_000;
/// 182 days.
const HALF_YEAR_MICROS: u64 = 182 * 86_400 * 1_000_000;

/// A timestamp as written: the wall clock and, if the message says, its UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Year, `None` for BSD timestamps that do not carry one.
    pub year: Option<i64>,
    /// 1..=12.
    pub month: u32,
    /// 1..=31 (checked against the month when resolved).
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=60 (a leap second counts as the first second of the next minute).
    pub second: u32,
    /// Fraction of the second in microseconds (digits past the sixth are dropped).
    pub micros: u32,
    /// Seconds east of UTC; `None` when not written (or not resolvable, like `CET`).
    pub offset: Option<i32>,
}

impl Stamp {
    /// The instant in microseconds since the Unix epoch, using `default_offset` (seconds
    /// east of UTC) when the message gave none, and `received_at` to choose a missing year.
    /// `None` for dates that do not exist (30 February, 29 February of a common year).
    pub(crate) fn resolve(&self, default_offset: i32, received_at: i64) -> Option<i64> {
        let offset = self.offset.unwrap_or(default_offset);
        match self.year {
            Some(year) => self.to_micros(year, offset),
            None => {
                let year = year_of(received_at);
                // Within 182 days of the receive time, the receive year is the nearest: the
                // neighbours are at least 365 - 182 = 183 days away. Only timestamps near
                // the turn of the year (and 29 February) need all three candidates.
                match self.to_micros(year, offset) {
                    Some(t) if t.abs_diff(received_at) <= HALF_YEAR_MICROS => Some(t),
                    _ => [year - 1, year, year + 1]
                        .into_iter()
                        .filter_map(|y| self.to_micros(y, offset))
                        .min_by_key(|t| t.abs_diff(received_at)),
                }
            }
        }
    }

    fn to_micros(self, year: i64, offset: i32) -> Option<i64> {
        if self.day == 0 || self.day > days_in_month(year, self.month)? {
            return None;
        }
        let days = days_from_civil(year, self.month, self.day)?;
        let clock =
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        let seconds = days
            .checked_mul(SECONDS_PER_DAY)?
            .checked_add(clock)?
            .checked_sub(i64::from(offset))?;
        seconds
            .checked_mul(MICROS_PER_SECOND)?
            .checked_add(i64::from(self.micros))
    }
}

/// The UTC year of an instant in microseconds since the epoch.
fn year_of(micros: i64) -> i64 {
    civil_from_days(micros.div_euclid(MICROS_PER_SECOND * SECONDS_PER_DAY)).0
}

/// Parses a UTC offset as written in configuration and messages: `Z`, `UTC`, `GMT`,
/// `±HH:MM`, `±HHMM` or `±HH`. Returns seconds east of UTC.
pub(crate) fn parse_offset(text: &[u8]) -> Option<i32> {
    if text.eq_ignore_ascii_case(b"z")
        || text.eq_ignore_ascii_case(b"utc")
        || text.eq_ignore_ascii_case(b"gmt")
    {
        return Some(0);
    }
    let mut c = Cursor::new(text, 0);
    let offset = numeric_offset(&mut c)?;
    c.at_end().then_some(offset)
}

/// Reads `±HH:MM`, `±HHMM` or `±HH` (not followed by a digit).
pub(crate) fn numeric_offset(c: &mut Cursor<'_>) -> Option<i32> {
    let start = c.pos();
    let result = (|| {
        let sign = match c.next_byte()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours = c.fixed_digits(2)?;
        let minutes = if c.eat(b':') {
            c.fixed_digits(2)?
        } else {
            c.fixed_digits(2).unwrap_or(0)
        };
        if hours > 23 || minutes > 59 || c.peek().is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        // Both factors are bounded above, so this cannot overflow.
        Some(sign * i32::try_from(hours * 3600 + minutes * 60).ok()?)
    })();
    if result.is_none() {
        c.set_pos(start);
    }
    result
}

/// Reads an RFC 3339 timestamp `YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]` (`t`/`z` in either
/// case; also `±HHMM` and no offset at all, which some senders write). With
/// `space_separator`, a space may stand for the `T` (seen in RFC 3164 messages). The
/// cursor moves only on success.
pub(crate) fn rfc3339(c: &mut Cursor<'_>, space_separator: bool) -> Option<Stamp> {
    let start = c.pos();
    let stamp = (|| {
        let year = c.fixed_digits(4)?;
        let month = c.eat(b'-').then(|| c.fixed_digits(2))??;
        let day = c.eat(b'-').then(|| c.fixed_digits(2))??;
        match c.next_byte()? {
            b'T' | b't' => {}
            b' ' if space_separator => {}
            _ => return None,
        }
        let mut stamp = clock(c)?;
        stamp.year = Some(i64::from(year));
        stamp.month = month;
        stamp.day = day;
        if c.eat(b'Z') || c.eat(b'z') {
            stamp.offset = Some(0);
        } else if matches!(c.peek(), Some(b'+' | b'-')) {
            stamp.offset = Some(numeric_offset(c)?);
        }
        valid_date(&stamp).then_some(stamp)
    })();
    if stamp.is_none() {
        c.set_pos(start);
    }
    stamp
}

/// Reads a BSD timestamp: `Mmm dd hh:mm:ss`, the day padded with a space, a zero or not
/// at all, optionally with a year after the day (`Mmm dd yyyy hh:mm:ss`, Cisco `year`,
/// ASA) and a fraction (`.123`, Cisco `msec`). The cursor moves only on success.
pub(crate) fn bsd(c: &mut Cursor<'_>) -> Option<Stamp> {
    let start = c.pos();
    let stamp = (|| {
        let month = month_name(c)?;
        if c.skip_spaces() == 0 {
            return None;
        }
        let day = c.digits(1, 2)?;
        if c.skip_spaces() == 0 {
            return None;
        }
        let year = year_then_space(c);
        let mut stamp = clock(c)?;
        stamp.year = year;
        stamp.month = month;
        stamp.day = day;
        valid_date(&stamp).then_some(stamp)
    })();
    if stamp.is_none() {
        c.set_pos(start);
    }
    stamp
}

/// Reads a year-first BSD timestamp, `yyyy Mmm dd hh:mm:ss` (Cisco NX-OS). The cursor
/// moves only on success.
pub(crate) fn year_first(c: &mut Cursor<'_>) -> Option<Stamp> {
    let start = c.pos();
    let stamp = (|| {
        let year = year_then_space(c)?;
        let mut stamp = bsd(c)?;
        if stamp.year.is_some() {
            return None;
        }
        stamp.year = Some(year);
        Some(stamp)
    })();
    if stamp.is_none() {
        c.set_pos(start);
    }
    stamp
}

/// `yyyy` followed by spaces, consumed only if both are there.
fn year_then_space(c: &mut Cursor<'_>) -> Option<i64> {
    let start = c.pos();
    match c.fixed_digits(4) {
        Some(year) if c.skip_spaces() > 0 => Some(i64::from(year)),
        _ => {
            c.set_pos(start);
            None
        }
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

fn month_name(c: &mut Cursor<'_>) -> Option<u32> {
    let name = [c.next_byte()?, c.next_byte()?, c.next_byte()?];
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(&name))?;
    u32::try_from(index + 1).ok()
}

/// `hh:mm:ss[.frac]`; the hour may have one digit.
fn clock(c: &mut Cursor<'_>) -> Option<Stamp> {
    let hour = c.digits(1, 2)?;
    let minute = c.eat(b':').then(|| c.fixed_digits(2))??;
    let second = c.eat(b':').then(|| c.fixed_digits(2))??;
    let micros = if c.peek() == Some(b'.') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        c.eat(b'.');
        fraction_micros(c)
    } else {
        0
    };
    (hour <= 23 && minute <= 59 && second <= 60).then_some(Stamp {
        year: None,
        month: 1,
        day: 1,
        hour,
        minute,
        second,
        micros,
        offset: None,
    })
}

/// All the digits of a fraction, as microseconds (truncated past the sixth digit).
fn fraction_micros(c: &mut Cursor<'_>) -> u32 {
    let digits = c.take_while(|b| b.is_ascii_digit()).slice(c.buf());
    let mut micros = 0;
    for i in 0..6 {
        micros = micros * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    micros
}

fn valid_date(stamp: &Stamp) -> bool {
    (1..=12).contains(&stamp.month) && (1..=31).contains(&stamp.day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-15T10:20:30Z.
    const MAR_15_2024: i64 = 1_710_498_030_000_000;

    fn at(text: &str, f: fn(&mut Cursor<'_>) -> Option<Stamp>) -> (Option<Stamp>, usize) {
        let mut c = Cursor::new(text.as_bytes(), 0);
        let stamp = f(&mut c);
        (stamp, c.pos())
    }

    fn rfc3339_strict(c: &mut Cursor<'_>) -> Option<Stamp> {
        rfc3339(c, false)
    }

    #[test]
    fn year_of_handles_year_boundaries() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(-1), 1969);
        assert_eq!(year_of(MAR_15_2024), 2024);
        // 2024-12-31T23:59:59.999999Z and the microsecond after it.
        assert_eq!(year_of(1_735_689_599_999_999), 2024);
        assert_eq!(year_of(1_735_689_600_000_000), 2025);
        // 2025-01-01 and 2025-02-28.
        assert_eq!(year_of(1_740_700_800_000_000), 2025);
    }

    #[test]
    fn rfc3339_with_fraction_and_offset() {
        let (stamp, pos) = at("2024-03-15T12:20:30.123456+02:00 host", rfc3339_strict);
        assert_eq!(pos, 32);
        assert_eq!(
            stamp.and_then(|s| s.resolve(0, 0)),
            Some(MAR_15_2024 + 123_456)
        );
    }

    #[test]
    fn rfc3339_variants() {
        let resolve = |t: &str| at(t, rfc3339_strict).0.and_then(|s| s.resolve(3600, 0));
        assert_eq!(resolve("2024-03-15T10:20:30Z"), Some(MAR_15_2024));
        assert_eq!(resolve("2024-03-15t10:20:30z"), Some(MAR_15_2024));
        assert_eq!(
            resolve("2024-03-15T10:20:30.1Z"),
            Some(MAR_15_2024 + 100_000)
        );
        assert_eq!(
            resolve("2024-03-15T10:20:30.123456789Z"),
            Some(MAR_15_2024 + 123_456)
        );
        assert_eq!(resolve("2024-03-15T05:20:30-0500"), Some(MAR_15_2024));
        assert_eq!(resolve("2024-03-15T11:20:30"), Some(MAR_15_2024));
        assert_eq!(resolve("2024-02-30T10:20:30Z"), None);
        assert_eq!(resolve("2024-13-15T10:20:30Z"), None);
        assert_eq!(resolve("2024-03-15T24:00:00Z"), None);
        assert_eq!(resolve("2024-03-15 10:20:30Z"), None);
        assert_eq!(resolve("2024-03-15T10:20:30+25:00"), None);
        // A leap second is the first second of the next minute.
        assert_eq!(resolve("2016-12-31T23:59:60Z"), Some(1_483_228_800_000_000));
    }

    #[test]
    fn rfc3339_failure_does_not_move() {
        let (stamp, pos) = at("2024-03-15T10:20", rfc3339_strict);
        assert_eq!((stamp, pos), (None, 0));
    }

    #[test]
    fn bsd_variants() {
        let resolve = |t: &str| at(t, bsd).0.and_then(|s| s.resolve(0, MAR_15_2024));
        assert_eq!(resolve("Mar 15 10:20:30"), Some(MAR_15_2024));
        assert_eq!(resolve("MAR 15 10:20:30"), Some(MAR_15_2024));
        assert_eq!(resolve("Mar 15 2024 10:20:30"), Some(MAR_15_2024));
        assert_eq!(resolve("Mar 15 10:20:30.5"), Some(MAR_15_2024 + 500_000));
        assert_eq!(
            resolve("Mar  5 10:20:30"),
            Some(MAR_15_2024 - 10 * 86_400_000_000)
        );
        assert_eq!(
            resolve("Mar 5 10:20:30"),
            Some(MAR_15_2024 - 10 * 86_400_000_000)
        );
        assert_eq!(
            resolve("Mar 05 10:20:30"),
            Some(MAR_15_2024 - 10 * 86_400_000_000)
        );
        assert_eq!(resolve("Mar 32 10:20:30"), None);
        assert_eq!(resolve("Mar 15 10:20"), None);
        assert_eq!(resolve("Foo 15 10:20:30"), None);
    }

    #[test]
    fn year_first_reads_nxos_form() {
        let (stamp, pos) = at("2024 Mar 15 10:20:30 UTC:", year_first);
        assert_eq!(pos, 20);
        assert_eq!(stamp.and_then(|s| s.resolve(0, 0)), Some(MAR_15_2024));
        assert_eq!(at("2024 Mar 15 2023 10:20:30", year_first).0, None);
    }

    #[test]
    fn missing_year_is_the_one_nearest_the_receive_time() {
        // 2025-01-01T00:00:10Z: a message from 31 December is from 2024.
        let received = 1_735_689_610_000_000;
        let dec31 = at("Dec 31 23:59:50", bsd)
            .0
            .and_then(|s| s.resolve(0, received));
        assert_eq!(dec31, Some(received - 20_000_000));
        // 2024-12-31T23:59:50Z: a message from 1 January is from 2025.
        let received = 1_735_689_590_000_000;
        let jan1 = at("Jan  1 00:00:10", bsd)
            .0
            .and_then(|s| s.resolve(0, received));
        assert_eq!(jan1, Some(received + 20_000_000));
    }

    #[test]
    fn nearest_year_shortcut_agrees_with_trying_every_candidate() {
        let stamps: Vec<Stamp> = [
            "Jan  1 00:00:00",
            "Feb 29 12:00:00",
            "Jun 30 23:59:59",
            "Jul  2 00:00:00",
            "Dec 31 23:59:59",
        ]
        .iter()
        .filter_map(|t| at(t, bsd).0)
        .collect();
        assert_eq!(stamps.len(), 5);
        let mut checked = 0;
        // Every 25 hours from 2023-01-01 to 2027-01-01.
        let mut received = 1_672_531_200_000_000_i64;
        while received < 1_798_761_600_000_000 {
            for stamp in &stamps {
                let year = year_of(received);
                let exhaustive = [year - 1, year, year + 1]
                    .into_iter()
                    .filter_map(|y| stamp.to_micros(y, 0))
                    .min_by_key(|t| t.abs_diff(received));
                assert_eq!(
                    stamp.resolve(0, received),
                    exhaustive,
                    "{stamp:?} at {received}"
                );
                checked += 1;
            }
            received += 25 * 3_600_000_000;
        }
        assert_eq!(checked, 5 * 1403);
    }

    #[test]
    fn feb_29_without_year_needs_a_leap_year_nearby() {
        let stamp = at("Feb 29 12:00:00", bsd).0;
        // Received 2024-03-15: 2024 is a leap year.
        assert_eq!(
            stamp.and_then(|s| s.resolve(0, MAR_15_2024)),
            Some(1_709_208_000_000_000)
        );
        // Received 2026-07-01: no leap year among 2025..=2027.
        assert_eq!(
            stamp.and_then(|s| s.resolve(0, 1_782_864_000_000_000)),
            None
        );
    }

    #[test]
    fn extreme_receive_times_do_not_overflow() {
        const YEAR: u64 = 366 * 86_400_000_000;
        let stamp = at("Mar 15 10:20:30", bsd).0;
        // Near both ends of i64 only the candidate years that fit are kept.
        for received in [i64::MIN, i64::MAX] {
            let resolved = stamp.and_then(|s| s.resolve(0, received));
            assert!(
                resolved.is_some_and(|t| t.abs_diff(received) < YEAR),
                "{resolved:?}"
            );
        }
        let resolved = stamp.and_then(|s| s.resolve(i32::MAX, 0));
        // 1971-03-15T10:20:30 minus 68 years of offset: the latest candidate is nearest.
        assert_eq!(
            resolved,
            Some((37_880_430 - i64::from(i32::MAX)) * 1_000_000)
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset(b"UTC"), Some(0));
        assert_eq!(parse_offset(b"Z"), Some(0));
        assert_eq!(parse_offset(b"+02:00"), Some(7200));
        assert_eq!(parse_offset(b"-0530"), Some(-19_800));
        assert_eq!(parse_offset(b"+05"), Some(18_000));
        assert_eq!(parse_offset(b"+24:00"), None);
        assert_eq!(parse_offset(b"+02:00x"), None);
        assert_eq!(parse_offset(b"CET"), None);
        assert_eq!(parse_offset(b""), None);
    }
}
