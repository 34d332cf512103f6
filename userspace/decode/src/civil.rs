//! Proleptic Gregorian dates and day numbers since 1970-01-01, UTC: the calendar
//! arithmetic that the decoders reading dates (syslog timestamps, Lua's timestamp
//! tables) and the writers of RFC 3339 text (the formats, the daemon's own records) need,
//! written once. (`sluice-upload`'s partition names keep their own few lines: that crate
//! does not depend on the decoders.)
//!
//! Howard Hinnant's `days_from_civil` and `civil_from_days` (400-year eras of 146 097
//! days, years counted from March so that the leap day ends the year): exact for every
//! date, no tables, no date library.

/// Seconds in a day (no leap seconds: Unix time).
pub const SECONDS_PER_DAY: i64 = 86_400;

/// Days from 0000-03-01 to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;
/// Days in a 400-year era.
const DAYS_PER_ERA: i64 = 146_097;

/// Whether `year` has a 29 February.
pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1–12) of `year`; `None` for a month out of range.
pub fn days_in_month(year: i64, month: u32) -> Option<u32> {
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return None,
    })
}

/// Days since 1970-01-01 of `year`-`month`-`day`; `None` when the count does not fit
/// (years beyond about ±2.5·10¹⁶). The date is not checked: 30 February is 1 March; check
/// it with [`days_in_month`] first where that matters.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let month_from_march = if m > 2 { m - 3 } else { m + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era.checked_mul(DAYS_PER_ERA)?
        .checked_add(day_of_era - EPOCH_SHIFT)
}

/// The (year, month 1–12, day 1–31) of day `days` since 1970-01-01, for every day count
/// up to `i64::MAX - 719 468` (any reachable from `i64` seconds or microseconds).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(EPOCH_SHIFT);
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    // In range by construction: day 1..=31, month 1..=12.
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Splits Unix seconds into (year, month, day, hour, minute, second), UTC.
pub fn civil_from_unix_seconds(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (year, month, day) = civil_from_days(secs.div_euclid(SECONDS_PER_DAY));
    // 0..86 400: fits.
    let of_day = secs.rem_euclid(SECONDS_PER_DAY) as u32;
    (
        year,
        month,
        day,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_have_their_day_numbers() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2024, 3, 15), Some(19_797));
        assert_eq!(days_from_civil(0, 3, 1), Some(-EPOCH_SHIFT));
        assert_eq!(days_from_civil(i64::MIN, 1, 1), None);
        assert_eq!(days_from_civil(i64::MAX, 3, 1), None);
    }

    #[test]
    fn day_numbers_and_dates_round_trip_across_eras() {
        // Every day of 1599-03-01..2401-03-01 (two era boundaries, 1600 and 2000 leap,
        // 1700/1800/1900/2100 not), and a far past and future.
        let start = days_from_civil(1599, 3, 1).expect("fits");
        let end = days_from_civil(2401, 3, 1).expect("fits");
        let mut expected = (1599, 3, 1);
        for days in start..end {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (y, m, d) = expected;
            assert_eq!(days_from_civil(y, m, d), Some(days));
            expected = match days_in_month(y, m) {
                Some(last) if d < last => (y, m, d + 1),
                _ if m < 12 => (y, m + 1, 1),
                _ => (y + 1, 1, 1),
            };
        }
        for days in [
            -1_000_000_000,
            -719_469,
            1_000_000_000,
            i64::MAX / 1_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "day {days}");
        }
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        assert!(is_leap(2024) && is_leap(2000) && is_leap(1600) && is_leap(0));
        assert!(!is_leap(2023) && !is_leap(1900) && !is_leap(2100));
        assert_eq!(days_in_month(2024, 2), Some(29));
        assert_eq!(days_in_month(2023, 2), Some(28));
        assert_eq!(days_in_month(2023, 13), None);
        assert_eq!(days_in_month(2023, 0), None);
    }

    #[test]
    fn unix_seconds_split_into_utc_fields() {
        assert_eq!(civil_from_unix_seconds(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix_seconds(-1), (1969, 12, 31, 23, 59, 59));
        // 2024-02-29T12:34:56Z
        assert_eq!(
            civil_from_unix_seconds(1_709_210_096),
            (2024, 2, 29, 12, 34, 56)
        );
        let micros_max_secs = i64::MAX / 1_000_000;
        let (y, ..) = civil_from_unix_seconds(micros_max_secs);
        assert_eq!(y, 294_247);
    }
}
