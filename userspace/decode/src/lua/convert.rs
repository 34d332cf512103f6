//! From an emitted Lua value to a column's value: the conversions a column `type` accepts,
//! and the message when a value does not fit. Strings are copied into the call's
//! [`Strings`] (reused from payload to payload); everything else is held inline in a
//! [`Cell`].

use std::{
    borrow::Cow,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::config::{Accept, IpFamily};
use crate::{Value, civil, layout::TimeUnit};

/// One emitted value, held until the call has ended well.
///
/// Every payload is one or two aligned 64-bit words (an address or a MAC packed into
/// them): a cell written field by field and then copied whole is read back with the same
/// widths it was stored with (odd-sized payloads, an `IpAddr`'s 17 bytes, made the copy
/// of every cell wait on the stores before it — most of `emit`'s time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cell {
    /// No value.
    Null,
    /// Bool.
    Bool(bool),
    /// UInt64.
    U64(u64),
    /// Int64.
    I64(i64),
    /// Float64.
    F64(f64),
    /// String: a range of [`Strings`]' text.
    Text { start: usize, end: usize },
    /// Bytes: a range of [`Strings`]' bytes.
    Bytes { start: usize, end: usize },
    /// IpAddr, IPv4: the address's bits.
    Ip4(u64),
    /// IpAddr, IPv6: the address's high and low 64 bits.
    Ip6(u64, u64),
    /// MacAddr: the six bytes, big-endian, in the low 48 bits.
    Mac(u64),
    /// Timestamp, microseconds since the Unix epoch.
    Timestamp(i64),
}

impl Cell {
    /// Writes the value into `slot`, borrowing strings from `strings`.
    ///
    /// Each variant is stored by its own arm. Returned as a value (or collected through
    /// `map`), the arms were merged into one copy of a stack temporary, read back a byte
    /// at a time where the variants' fields differ (a `Mac`'s six bytes, an `IpAddr`'s
    /// seventeen), which waited on the stores that made it: 5% of `decode_lua`.
    #[inline(always)]
    pub(crate) fn write_value<'a>(&self, strings: &'a Strings, slot: &mut MaybeUninit<Value<'a>>) {
        match *self {
            Self::Null => {
                slot.write(Value::Null);
            }
            Self::Bool(b) => {
                slot.write(Value::Bool(b));
            }
            Self::U64(n) => {
                slot.write(Value::U64(n));
            }
            Self::I64(n) => {
                slot.write(Value::I64(n));
            }
            Self::F64(n) => {
                slot.write(Value::F64(n));
            }
            // Text was UTF-8 when it was copied, and a cell's range ends at character
            // boundaries; an empty string were it not.
            Self::Text { start, end } => {
                let text = strings.text.get(start..end).unwrap_or("");
                slot.write(Value::Str(Cow::Borrowed(text)));
            }
            Self::Bytes { start, end } => {
                let bytes = strings.bytes.get(start..end).unwrap_or_default();
                slot.write(Value::Bytes(Cow::Borrowed(bytes)));
            }
            Self::Ip4(bits) => {
                slot.write(Value::Ip(IpAddr::V4(Ipv4Addr::from(bits as u32))));
            }
            Self::Ip6(hi, lo) => {
                let bits = (u128::from(hi) << 64) | u128::from(lo);
                slot.write(Value::Ip(IpAddr::V6(Ipv6Addr::from(bits))));
            }
            Self::Mac(bits) => {
                let b = bits.to_be_bytes();
                slot.write(Value::Mac([b[2], b[3], b[4], b[5], b[6], b[7]]));
            }
            Self::Timestamp(t) => {
                slot.write(Value::Timestamp(t));
            }
        }
    }
}

/// The strings of a call's cells: text (checked to be UTF-8 once, when copied) apart from
/// bytes, so that reading a cell back checks nothing more.
#[derive(Debug, Default)]
pub(crate) struct Strings {
    text: String,
    bytes: Vec<u8>,
}

impl Strings {
    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.text.len() + self.bytes.len()
    }

    /// Where the strings end now, for [`Self::truncate`].
    pub(crate) fn mark(&self) -> (usize, usize) {
        (self.text.len(), self.bytes.len())
    }

    /// Back to a [`Self::mark`].
    pub(crate) fn truncate(&mut self, (text, bytes): (usize, usize)) {
        self.text.truncate(text);
        self.bytes.truncate(bytes);
    }

    /// Empty, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.bytes.clear();
    }
}

/// An emitted value as read from Lua, borrowing a string's bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(&'a [u8]),
    /// Anything else (a table is converted by the caller when a timestamp may be one).
    Other(&'static str),
}

/// Why a value does not fit its column (`Display` is the decode error's detail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Mismatch {
    /// The Lua type is not one the column accepts.
    #[error("expected {expected}, got {got}")]
    Type {
        /// What the column accepts.
        expected: &'static str,
        /// The Lua type given, with its article.
        got: &'static str,
    },
    /// A number outside the column's range (or with a fraction).
    #[error("{value} is out of range: the column takes {range}")]
    Range {
        /// The number as Lua shows it.
        value: String,
        /// What is accepted.
        range: String,
    },
    /// A string that is not UTF-8.
    #[error("the string is not UTF-8 (byte {0})")]
    NotUtf8(usize),
    /// A string that is not an address (of the family).
    #[error("{0:?} is not {1}")]
    NotAddress(String, &'static str),
    /// A timestamp table that is not a date, or a time out of range.
    #[error("{0}")]
    BadTime(String),
}

/// A Lua type name with its article, as messages say it (`a string`, `an integer`).
pub(crate) fn a(type_name: &str) -> &'static str {
    match type_name {
        "nil" => "nil",
        "boolean" => "a boolean",
        "integer" => "an integer",
        "number" => "a float",
        "string" => "a string",
        "table" => "a table",
        "function" => "a function",
        "thread" => "a coroutine",
        "userdata" | "lightuserdata" => "a userdata",
        _ => "a value of another type",
    }
}

/// What `accept` is called in messages.
fn expected(accept: Accept) -> &'static str {
    match accept {
        Accept::Bool => "a boolean",
        Accept::Unsigned { .. } | Accept::Signed { .. } => "an integer",
        Accept::Float => "a number",
        Accept::Text => "a UTF-8 string",
        Accept::Bytes => "a string",
        Accept::Ip { .. } => "an address as a string",
        Accept::Mac => "a MAC address (6 bytes, or \"aa:bb:cc:dd:ee:ff\")",
        Accept::Timestamp(_) => "a timestamp (a Vector timestamp table, or a number)",
    }
}

/// Converts `scalar` (not `nil`, not a table under a timestamp column) for a column
/// accepting `accept` into the next of `cells`, copying strings into `strings`. (The cell is
/// written where it stays: returned through memory and copied, each one waited on the
/// stores that made it. Inlined into `emit`'s column loop: called once a column, its
/// prologue and saved registers were a fifth of its time; `decode_lua` −2 to −5%.)
#[inline(always)]
pub(crate) fn convert_into(
    scalar: Scalar<'_>,
    accept: Accept,
    strings: &mut Strings,
    cells: &mut Vec<Cell>,
) -> Result<(), Mismatch> {
    cells.push(convert(scalar, accept, strings)?);
    Ok(())
}

/// Converts `scalar` (not `nil`, not a table under a timestamp column) for a column
/// accepting `accept`, copying strings into `strings`.
#[inline(always)]
pub(crate) fn convert(
    scalar: Scalar<'_>,
    accept: Accept,
    strings: &mut Strings,
) -> Result<Cell, Mismatch> {
    let mismatch = |got: &'static str| Mismatch::Type {
        expected: expected(accept),
        got: a(got),
    };
    match (accept, scalar) {
        (Accept::Bool, Scalar::Bool(b)) => Ok(Cell::Bool(b)),
        (Accept::Unsigned { max }, Scalar::Int(n)) => match u64::try_from(n) {
            Ok(u) if u <= max => Ok(Cell::U64(u)),
            _ => Err(range(&n.to_string(), 0, i128::from(max))),
        },
        (Accept::Unsigned { max }, Scalar::Float(f)) => match integral(f) {
            Some(n) if (0..=i128::from(max)).contains(&n) => Ok(Cell::U64(n as u64)),
            _ => Err(range(&float_text(f), 0, i128::from(max))),
        },
        (Accept::Signed { min, max }, Scalar::Int(n)) if (min..=max).contains(&n) => {
            Ok(Cell::I64(n))
        }
        (Accept::Signed { min, max }, Scalar::Int(n)) => {
            Err(range(&n.to_string(), i128::from(min), i128::from(max)))
        }
        (Accept::Signed { min, max }, Scalar::Float(f)) => match integral(f) {
            Some(n) if (i128::from(min)..=i128::from(max)).contains(&n) => Ok(Cell::I64(n as i64)),
            _ => Err(range(&float_text(f), i128::from(min), i128::from(max))),
        },
        (Accept::Float, Scalar::Int(n)) => Ok(Cell::F64(n as f64)),
        (Accept::Float, Scalar::Float(f)) => Ok(Cell::F64(f)),
        (Accept::Text, Scalar::Str(s)) => match std::str::from_utf8(s) {
            Ok(text) => {
                let start = strings.text.len();
                strings.text.push_str(text);
                Ok(Cell::Text {
                    start,
                    end: strings.text.len(),
                })
            }
            Err(e) => Err(Mismatch::NotUtf8(e.valid_up_to())),
        },
        (Accept::Bytes, Scalar::Str(s)) => {
            let start = strings.bytes.len();
            strings.bytes.extend_from_slice(s);
            Ok(Cell::Bytes {
                start,
                end: strings.bytes.len(),
            })
        }
        (Accept::Ip { family }, Scalar::Str(s)) => address(s, family).map(|ip| match ip {
            IpAddr::V4(v4) => Cell::Ip4(u64::from(u32::from(v4))),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                Cell::Ip6((bits >> 64) as u64, bits as u64)
            }
        }),
        // Six raw bytes, the common case, read here; text is parsed out of line (a
        // call's result through memory, read back in other sizes, stalled the loads).
        (Accept::Mac, Scalar::Str(s)) => match <[u8; 6]>::try_from(s) {
            Ok(raw) => Ok(Cell::Mac(mac_bits(raw))),
            Err(_) => mac_text(s).map(|m| Cell::Mac(mac_bits(m))),
        },
        (Accept::Timestamp(unit), Scalar::Int(n)) => micros(n, unit).map(Cell::Timestamp),
        (Accept::Timestamp(unit), Scalar::Float(f)) => float_micros(f, unit).map(Cell::Timestamp),
        (_, Scalar::Bool(_)) => Err(mismatch("boolean")),
        (_, Scalar::Int(_)) => Err(mismatch("integer")),
        (_, Scalar::Float(_)) => Err(mismatch("number")),
        (_, Scalar::Str(_)) => Err(mismatch("string")),
        (_, Scalar::Other(got)) => Err(mismatch(got)),
    }
}

fn range(value: &str, lo: i128, hi: i128) -> Mismatch {
    Mismatch::Range {
        value: value.to_owned(),
        range: format!("integers from {lo} to {hi}"),
    }
}

/// A float as Lua prints it (`1.5`, `3.0`, `inf`).
fn float_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// The integer a float holds exactly, if it does (within ±2⁶⁴).
fn integral(f: f64) -> Option<i128> {
    const LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64
    (f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT).then_some(f as i128)
}

fn address(s: &[u8], family: Option<IpFamily>) -> Result<IpAddr, Mismatch> {
    let what = match family {
        None => "an IPv4 or IPv6 address",
        Some(IpFamily::V4) => "an IPv4 address",
        Some(IpFamily::V6) => "an IPv6 address",
    };
    let bad = || Mismatch::NotAddress(String::from_utf8_lossy(s).into_owned(), what);
    let ip: IpAddr = std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(bad)?;
    match (family, ip) {
        (None, _) | (Some(IpFamily::V4), IpAddr::V4(_)) | (Some(IpFamily::V6), IpAddr::V6(_)) => {
            Ok(ip)
        }
        _ => Err(bad()),
    }
}

/// A MAC address's six bytes as the low 48 bits (first byte highest).
#[inline(always)]
fn mac_bits(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// Six hex pairs separated by `:` or `-`.
#[inline(never)]
fn mac_text(s: &[u8]) -> Result<[u8; 6], Mismatch> {
    let bad = || {
        Mismatch::NotAddress(
            String::from_utf8_lossy(s).into_owned(),
            "a MAC address (6 bytes, or \"aa:bb:cc:dd:ee:ff\")",
        )
    };
    if s.len() != 17 {
        return Err(bad());
    }
    let sep = s.get(2).copied().filter(|b| *b == b':' || *b == b'-');
    let sep = sep.ok_or_else(bad)?;
    let mut out = [0u8; 6];
    for (i, byte) in out.iter_mut().enumerate() {
        let at = i * 3;
        if i > 0 && s.get(at - 1) != Some(&sep) {
            return Err(bad());
        }
        let pair = s
            .get(at..at + 2)
            .and_then(|p| std::str::from_utf8(p).ok())
            .ok_or_else(bad)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Microseconds per unit.
fn per_unit(unit: TimeUnit) -> (f64, f64) {
    // (multiply, divide)
    match unit {
        TimeUnit::Seconds => (1e6, 1.0),
        TimeUnit::Millis => (1e3, 1.0),
        TimeUnit::Micros => (1.0, 1.0),
        TimeUnit::Nanos => (1.0, 1e3),
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Seconds => "seconds",
        TimeUnit::Millis => "milliseconds",
        TimeUnit::Micros => "microseconds",
        TimeUnit::Nanos => "nanoseconds",
    }
}

/// An integer time in `unit` as microseconds (nanoseconds truncated toward the past, as
/// the `schema` decoder does).
fn micros(n: i64, unit: TimeUnit) -> Result<i64, Mismatch> {
    // In 64 bits, each unit's factor a constant: 128-bit factors known only at run time
    // made a call (`__divti3`) for every timestamp cell.
    match unit {
        TimeUnit::Seconds => n.checked_mul(1_000_000),
        TimeUnit::Millis => n.checked_mul(1_000),
        TimeUnit::Micros => Some(n),
        TimeUnit::Nanos => Some(n.div_euclid(1_000)),
    }
    .ok_or_else(|| {
        Mismatch::BadTime(format!(
            "{n} {} is beyond the representable time range",
            unit_name(unit)
        ))
    })
}

/// A float time in `unit` as microseconds (truncated toward the past).
fn float_micros(f: f64, unit: TimeUnit) -> Result<i64, Mismatch> {
    let (mul, div) = per_unit(unit);
    let us = (f * mul / div).floor();
    // i64::MAX as f64 rounds up to 2^63, which does not fit: `<`, not `<=`.
    if us.is_finite() && us >= i64::MIN as f64 && us < i64::MAX as f64 {
        Ok(us as i64)
    } else {
        Err(Mismatch::BadTime(format!(
            "{} {} is beyond the representable time range",
            float_text(f),
            unit_name(unit)
        )))
    }
}

/// The fields of a Vector timestamp table (`os.date("!*t")` plus `nanosec`), UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CivilTime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub min: i64,
    pub sec: i64,
    pub nanosec: i64,
}

impl CivilTime {
    /// Microseconds since the Unix epoch; `sec = 60` (a leap second) is the next minute's
    /// first second.
    pub(crate) fn micros(&self) -> Result<i64, Mismatch> {
        let bad = |what: &str| Mismatch::BadTime(format!("not a time: {what}"));
        if !(1..=12).contains(&self.month) {
            return Err(bad(&format!("month {}", self.month)));
        }
        if !(-1_000_000..=1_000_000).contains(&self.year) {
            return Err(bad(&format!("year {}", self.year)));
        }
        // The month is 1..=12 (above).
        let days_in_month = civil::days_in_month(self.year, self.month as u32).unwrap_or(31);
        if !(1..=i64::from(days_in_month)).contains(&self.day) {
            return Err(bad(&format!("day {} of month {}", self.day, self.month)));
        }
        if !(0..=23).contains(&self.hour) || !(0..=59).contains(&self.min) {
            return Err(bad(&format!("{}:{}", self.hour, self.min)));
        }
        if !(0..=60).contains(&self.sec) || !(0..1_000_000_000).contains(&self.nanosec) {
            return Err(bad(&format!("second {}.{:09}", self.sec, self.nanosec)));
        }
        // Checked above: the year within ±10^6, month and day of the calendar.
        let days = civil::days_from_civil(self.year, self.month as u32, self.day as u32)
            .ok_or_else(|| bad(&format!("year {}", self.year)))?;
        let secs = days * civil::SECONDS_PER_DAY + self.hour * 3600 + self.min * 60 + self.sec;
        secs.checked_mul(1_000_000)
            .and_then(|us| us.checked_add(self.nanosec / 1000))
            .ok_or_else(|| bad("beyond the representable time range"))
    }

    /// The civil time of `micros` since the Unix epoch (UTC), with the day of the year
    /// (1-based) and of the week (1 = Sunday), as Vector gives them.
    pub(crate) fn from_micros(micros: i64) -> (Self, i64, i64) {
        let secs = micros.div_euclid(1_000_000);
        let nanosec = micros.rem_euclid(1_000_000) * 1000;
        let days = secs.div_euclid(civil::SECONDS_PER_DAY);
        let rem = secs.rem_euclid(civil::SECONDS_PER_DAY);
        let (year, month, day) = civil::civil_from_days(days);
        // `year`'s 1 January is a day number near `days`: it fits.
        let yday = days - civil::days_from_civil(year, 1, 1).unwrap_or(days) + 1;
        // 1970-01-01 was a Thursday (5 when Sunday is 1).
        let wday = (days + 4).rem_euclid(7) + 1;
        (
            Self {
                year,
                month: i64::from(month),
                day: i64::from(day),
                hour: rem / 3600,
                min: rem % 3600 / 60,
                sec: rem % 60,
                nanosec,
            },
            yday,
            wday,
        )
    }
}
