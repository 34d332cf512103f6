//! RFC 3164 (BSD) messages and what devices actually send under that name:
//! `<PRI>TIMESTAMP HOSTNAME TAG[PID]: MSG`, with any part possibly missing or dressed
//! differently.
//!
//! Tolerated, in the order they are tried:
//! - no PRI (facility and severity are then null);
//! - Cisco IOS prefixes before the timestamp: a sequence number `123: `, an origin
//!   hostname `router1: ` (`logging origin-id`), `*` (clock not set) or `.` (clock not
//!   synchronised); NX-OS `: ` with a year-first timestamp `2024 Mar 15 10:20:30`;
//! - timestamps in BSD form (day padded with a space, a zero or nothing; optional year;
//!   optional `.fraction`), RFC 3339 form (`2024-03-15T10:20:30.123+01:00`, rsyslog
//!   forwarding), or year-first form; a zone word before a colon (`10:20:30 UTC:`), and the
//!   Cisco colon after the timestamp (then no hostname follows);
//! - no hostname (the token after the timestamp is already a tag: it ends with `:` or
//!   holds `[`); the ASA separator `host : %ASA-...`;
//! - no timestamp at all (Fortinet `date=... time=...`): everything after PRI is the
//!   message (with a leading `tag:` still recognised).
//!
//! A payload with neither PRI nor timestamp is `unknown`: all of it is the message.

use super::{
    cursor::{Cursor, Span},
    message::{Fields, Format, non_nil, strip_bom},
    timestamp::{self, Stamp},
};

/// RFC 3164 caps TAG at 32 characters; real tags run longer (systemd units, Java apps).
const MAX_TAG: usize = 64;
/// RFC 5424's PROCID bound, applied to `[pid]` too.
const MAX_PID: usize = 128;
/// Longest Cisco sequence number accepted (a u64 has 20 digits).
const MAX_SEQUENCE_DIGITS: usize = 20;

/// What precedes the hostname: the timestamp and how it was written.
struct Header {
    stamp: Stamp,
    /// Hostname written before the timestamp (Cisco `logging origin-id`).
    origin: Option<Span>,
    /// A colon followed the timestamp (Cisco): no hostname comes after it.
    colon: bool,
}

/// Parses the message from the cursor (just past PRI, if any).
pub(crate) fn parse(mut c: Cursor<'_>, pri: Option<u8>) -> Fields {
    let buf = c.buf();
    let start = c.pos();
    let header = header(&mut c);
    let format = if pri.is_some() || header.is_some() {
        Format::Rfc3164
    } else {
        Format::Unknown
    };
    let mut fields = Fields::new(format, pri, buf.len());
    match header {
        Some(header) => {
            fields.stamp = Some(header.stamp);
            c.skip_spaces();
            fields.hostname = match header.origin {
                Some(origin) => non_nil(buf, origin),
                None if header.colon => None,
                None => hostname(&mut c),
            };
            if fields.hostname.is_some() && c.peek() == Some(b':') && c.peek_at(1) == Some(b' ') {
                c.set_pos(c.pos() + 2);
            }
            tag(&mut c, &mut fields);
        }
        None => {
            c.set_pos(start);
            if pri.is_some() {
                tag(&mut c, &mut fields);
            }
        }
    }
    fields.message = strip_bom(buf, c.rest());
    fields
}

/// Finds the timestamp, possibly behind Cisco prefixes. The cursor is left after it (and
/// its colon) on success, and where it was otherwise.
fn header(c: &mut Cursor<'_>) -> Option<Header> {
    let start = c.pos();
    if let Some(header) = stamp_at(c, None, false) {
        return Some(header);
    }
    c.set_pos(start);
    let after_sequence = if sequence(c) { c.pos() } else { start };
    if after_sequence != start {
        if let Some(header) = stamp_at(c, None, true) {
            return Some(header);
        }
        c.set_pos(after_sequence);
    }
    if let Some(origin) = origin_host(c)
        && let Some(header) = stamp_at(c, Some(origin), true)
    {
        return Some(header);
    }
    c.set_pos(start);
    None
}

/// A timestamp after optional spaces and a Cisco `*`/`.` marker, then an optional zone
/// and colon. It must end at a space, a colon or the end of the payload. `cisco` says a
/// Cisco prefix came before (which makes a zone word likely).
fn stamp_at(c: &mut Cursor<'_>, origin: Option<Span>, cisco: bool) -> Option<Header> {
    c.skip_spaces();
    let marked = c.eat(b'*') || c.eat(b'.');
    let mut stamp = timestamp::rfc3339(c, true)
        .or_else(|| timestamp::bsd(c))
        .or_else(|| timestamp::year_first(c))?;
    zone_before_colon(c, &mut stamp, cisco || marked);
    let colon = c.eat(b':');
    (colon || matches!(c.peek(), None | Some(b' '))).then_some(Header {
        stamp,
        origin,
        colon,
    })
}

/// Cisco `service timestamps ... show-timezone`: ` UTC:` or ` +0100:` after the clock.
///
/// A word before a colon is also what a tag looks like when the hostname is missing
/// (`Mar 15 10:20:30 kernel: ...`), so a zone word must be upper case, 2 to 5 letters, and
/// either `UTC`/`GMT`/`UT` or in a Cisco context: a Cisco prefix came before (`cisco`) or
/// a `%FACILITY-SEVERITY-MNEMONIC` follows. Words other than UTC/GMT/UT cannot be resolved
/// (`CET` is set by the operator and might mean CEST) and leave the configured default zone
/// in force.
fn zone_before_colon(c: &mut Cursor<'_>, stamp: &mut Stamp, cisco: bool) {
    if stamp.offset.is_some() || c.peek() != Some(b' ') {
        return;
    }
    let start = c.pos();
    c.next_byte();
    let word = c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b':'));
    // The colon after the zone is taken with the word; a `+01:00` has one inside too.
    let text = word.slice(c.buf());
    if let Some(zone) = text.strip_suffix(b":") {
        if let Some(offset) = numeric_or_utc(zone) {
            c.set_pos(word.end - 1);
            stamp.offset = Some(offset);
            return;
        }
        let mnemonic_follows = c.peek() == Some(b' ') && c.peek_at(1) == Some(b'%');
        let is_word = (2..=5).contains(&zone.len()) && zone.iter().all(u8::is_ascii_uppercase);
        if is_word && (cisco || mnemonic_follows) {
            c.set_pos(word.end - 1);
            return;
        }
    }
    c.set_pos(start);
}

/// `UTC`, `GMT`, `UT` or a numeric offset, in seconds east of UTC.
fn numeric_or_utc(zone: &[u8]) -> Option<i32> {
    match zone {
        b"UTC" | b"GMT" | b"UT" => Some(0),
        [b'+' | b'-', ..] => timestamp::parse_offset(zone),
        _ => None,
    }
}

/// Cisco `123: ` (or NX-OS `: `): digits, a colon and at least one space.
fn sequence(c: &mut Cursor<'_>) -> bool {
    let start = c.pos();
    let digits = c.take_while(|b| b.is_ascii_digit());
    if digits.len() <= MAX_SEQUENCE_DIGITS && c.eat(b':') && c.skip_spaces() > 0 {
        return true;
    }
    c.set_pos(start);
    false
}

/// Cisco origin hostname `router1: ` before the timestamp.
fn origin_host(c: &mut Cursor<'_>) -> Option<Span> {
    let start = c.pos();
    let host = c.take_while(|b| b > b' ' && b != b':' && b != 0x7f);
    if !host.is_empty() && c.eat(b':') && c.skip_spaces() > 0 {
        return Some(host);
    }
    c.set_pos(start);
    None
}

/// The HOSTNAME token, unless it looks like a tag (then the sender left the hostname
/// out) or it is the last token (then it is the message). Spaces after it are consumed.
fn hostname(c: &mut Cursor<'_>) -> Option<Span> {
    let start = c.pos();
    let token = c.token();
    let text = token.slice(c.buf());
    let looks_like_tag = text.last() == Some(&b':') || text.contains(&b'[');
    if token.is_empty() || looks_like_tag || c.peek() != Some(b' ') {
        c.set_pos(start);
        return None;
    }
    c.skip_spaces();
    non_nil(c.buf(), token)
}

/// TAG, `TAG:`, `TAG[PID]:` or `TAG[PID]` followed by a space or the end; sets app_name
/// and procid and moves past it (and one space), or leaves everything as it was.
fn tag(c: &mut Cursor<'_>, fields: &mut Fields) {
    let start = c.pos();
    let name = c.take_while(|b| {
        (b'!'..=b'~').contains(&b) && !matches!(b, b'[' | b']' | b':' | b'=' | b'"')
    });
    let starts_well = name.slice(c.buf()).first().is_some_and(|&b| b != b'%');
    let mut procid = None;
    let mut ok = starts_well && name.len() <= MAX_TAG;
    if ok && c.eat(b'[') {
        let pid = c.take_while(|b| b != b']' && b != b' ');
        ok = c.eat(b']') && (1..=MAX_PID).contains(&pid.len());
        procid = Some(pid);
    }
    let colon = ok && c.eat(b':');
    ok = ok && (colon || procid.is_some()) && matches!(c.peek(), None | Some(b' '));
    if !ok {
        c.set_pos(start);
        return;
    }
    c.eat(b' ');
    fields.app_name = Some(name);
    fields.procid = procid.and_then(|pid| non_nil(c.buf(), pid));
}
