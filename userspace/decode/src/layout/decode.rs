//! Running a [`Plan`] over one payload: header, variant, group. Every value that can fail
//! is read and checked before the first row leaves, so a payload yields all its rows or
//! an error, never part of them.

use super::{
    config::TimeUnit,
    plan::{Dispatch, Fault, FieldOp, Group, OpKind, Plan, Segment},
};
use crate::{DecodeError, Detail, FieldName, PacketContext, RowSink, Value, detail};

/// The payload ends before the layout does.
pub const TRUNCATED: &str = "truncated";
/// A text field holds bytes outside its charset.
pub const BAD_TEXT: &str = "bad_text";
/// An `enum` field with `on_unknown = "error"` holds a number it does not name.
pub const UNKNOWN_ENUM: &str = "unknown_enum";
/// A timestamp field holds a time beyond ±292 000 years.
pub const BAD_TIMESTAMP: &str = "bad_timestamp";
/// The discriminator holds a value no variant lists.
pub const UNKNOWN_VARIANT: &str = "unknown_variant";
/// A group's count is above its `max_count`.
pub const COUNT_TOO_LARGE: &str = "count_too_large";
/// Bytes after the layout's end, with `trailing_bytes = "reject"`.
pub const TRAILING_BYTES: &str = "trailing_bytes";

/// Every error kind of this decoder (the `kind` label's bounded set).
pub const ERROR_KINDS: [&str; 7] = [
    TRUNCATED,
    BAD_TEXT,
    UNKNOWN_ENUM,
    BAD_TIMESTAMP,
    UNKNOWN_VARIANT,
    COUNT_TOO_LARGE,
    TRAILING_BYTES,
];

impl Plan {
    /// Decodes `payload` into `sink`, returning the number of rows. `row` (one Null per
    /// column) is where rows are assembled; `elems` is scratch space for groups, kept
    /// from payload to payload.
    pub(crate) fn decode<'a>(
        &'a self,
        ctx: &PacketContext,
        payload: &'a [u8],
        row: &mut [Value<'a>],
        elems: &mut Vec<Value<'static>>,
        sink: &mut dyn RowSink,
    ) -> Result<u64, DecodeError> {
        let len = payload.len();
        if len < self.header.end {
            return Err(truncated(&self.header, len, self.header.end));
        }
        read_segment(&self.header, payload, row)?;
        let body = match &self.dispatch {
            Dispatch::Single(body) => &**body,
            Dispatch::Variants(variants) => match variants.select(payload) {
                Ok(body) => body,
                Err(_) if variants.header_only => {
                    sink.row(ctx, row);
                    return Ok(1);
                }
                Err(value) => {
                    return Err(DecodeError::new(
                        UNKNOWN_VARIANT,
                        FieldName::Static(variants.discriminator_name),
                        variants.discriminator.offset,
                        detail!("no variant for the value {}", value),
                    ));
                }
            },
        };
        if len < body.fixed.end {
            return Err(truncated(&body.fixed, len, body.fixed.end));
        }
        if !body.fixed.ops.is_empty() {
            read_segment(&body.fixed, payload, row)?;
        }
        let Some(group) = &body.group else {
            self.check_trailing(body.fixed.end, len)?;
            sink.row(ctx, row);
            return Ok(1);
        };
        let count = group_count(group, payload)?;
        self.check_trailing(group.start + count * group.size, len)?;
        if count == 0 {
            if group.empty_row {
                sink.row(ctx, row);
                return Ok(1);
            }
            return Ok(0);
        }
        if group.infallible {
            // No element field can fail once the group's bytes are known to be there
            // (checked above), so rows can go out as they are read: all or nothing holds.
            for i in 0..count {
                read_ops::<false>(&group.element, payload, group.start + i * group.size, row)?;
                if let Some(slot) = group.index_col.and_then(|c| row.get_mut(c)) {
                    *slot = Value::U64(i as u64);
                }
                sink.row(ctx, row);
            }
            return Ok(count as u64);
        }
        let mut values = super::recycle(std::mem::take(elems));
        let result = decode_elements(group, count, ctx, payload, row, &mut values, sink);
        *elems = super::recycle(values);
        result
    }

    fn check_trailing(&self, end: usize, len: usize) -> Result<(), DecodeError> {
        if self.reject_trailing && len > end {
            return Err(DecodeError::new(
                TRAILING_BYTES,
                FieldName::None,
                end,
                detail!("{} bytes after the end of the layout", len - end),
            ));
        }
        Ok(())
    }
}

/// Reads every element of a group, then (nothing having failed) emits one row each.
fn decode_elements<'a>(
    group: &'a Group,
    count: usize,
    ctx: &PacketContext,
    payload: &'a [u8],
    row: &mut [Value<'a>],
    elems: &mut Vec<Value<'a>>,
    sink: &mut dyn RowSink,
) -> Result<u64, DecodeError> {
    let ops = &group.element.ops;
    let width = ops.len();
    elems.extend((0..count * width).map(|_| Value::Null));
    for (i, values) in elems.chunks_exact_mut(width.max(1)).enumerate() {
        let base = group.start + i * group.size;
        for (op, slot) in ops.iter().zip(values) {
            op.read_into::<true>(payload, base, slot)
                .map_err(|f| fault(op, payload, base, f))?;
        }
    }
    for i in 0..count {
        let values = elems
            .get_mut(i * width..(i + 1) * width)
            .unwrap_or_default();
        for (op, value) in ops.iter().zip(values) {
            if let Some(slot) = row.get_mut(op.col) {
                *slot = std::mem::replace(value, Value::Null);
            }
        }
        if let Some(slot) = group.index_col.and_then(|c| row.get_mut(c)) {
            *slot = Value::U64(i as u64);
        }
        sink.row(ctx, row);
    }
    Ok(count as u64)
}

/// Reads a bounds-checked segment's fields into their columns.
#[inline]
fn read_segment<'a>(
    segment: &'a Segment,
    payload: &'a [u8],
    row: &mut [Value<'a>],
) -> Result<(), DecodeError> {
    // The row is fresh and a segment writes each column once.
    read_ops::<true>(segment, payload, 0, row)
}

/// Reads fields of a bounds-checked element (or segment) at `base` into their columns
/// (`FRESH`: columns that hold `Null`): the integers, then the others in order.
#[inline]
fn read_ops<'a, const FRESH: bool>(
    segment: &'a Segment,
    payload: &'a [u8],
    base: usize,
    row: &mut [Value<'a>],
) -> Result<(), DecodeError> {
    for int in &segment.ints {
        if let Some(slot) = row.get_mut(int.col) {
            int.read_into::<FRESH>(payload, base, slot)
                .map_err(|f| int_fault(segment, int.op, payload, base, f))?;
        }
    }
    for op in &segment.rest {
        if let Some(slot) = row.get_mut(op.col) {
            op.read_into::<FRESH>(payload, base, slot)
                .map_err(|f| fault(op, payload, base, f))?;
        }
    }
    Ok(())
}

/// [`fault`] of the integer field `segment.ops[op]`.
#[cold]
fn int_fault(segment: &Segment, op: usize, payload: &[u8], base: usize, f: Fault) -> DecodeError {
    match segment.ops.get(op) {
        Some(op) => fault(op, payload, base, f),
        None => DecodeError::new(
            TRUNCATED,
            FieldName::None,
            base,
            Detail::text("the payload ends inside a field"),
        ),
    }
}

/// How many elements the payload holds, checked against the payload's length.
fn group_count(group: &Group, payload: &[u8]) -> Result<usize, DecodeError> {
    let len = payload.len();
    let available = len.saturating_sub(group.start);
    let (count, declared) = match &group.count {
        Some(c) => {
            // The count field lies before the group, in bytes already checked.
            let n = c.read.read_raw(payload, 0).unwrap_or(0);
            if let Some(max) = group.max_count
                && n > max
            {
                return Err(DecodeError::new(
                    COUNT_TOO_LARGE,
                    FieldName::Static(c.name),
                    c.read.offset,
                    detail!("{} elements, more than max_count {}", n, max),
                ));
            }
            (n, true)
        }
        None => {
            let n = (available / group.size) as u64;
            if !available.is_multiple_of(group.size) {
                return Err(group_truncated(group, len, None));
            }
            if let Some(max) = group.max_count
                && n > max
            {
                return Err(DecodeError::new(
                    COUNT_TOO_LARGE,
                    FieldName::None,
                    group.start,
                    detail!("{} elements, more than max_count {}", n, max),
                ));
            }
            (n, false)
        }
    };
    let fits = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(group.size))
        .and_then(|bytes| bytes.checked_add(group.start))
        .is_some_and(|end| end <= len);
    match usize::try_from(count) {
        Ok(n) if fits => Ok(n),
        _ => Err(group_truncated(group, len, declared.then_some(count))),
    }
}

/// The `truncated` error for a group whose first incomplete element is the one the
/// payload ends in (or the first, if the payload ends before the group).
#[cold]
fn group_truncated(group: &Group, len: usize, count: Option<u64>) -> DecodeError {
    let i = len.saturating_sub(group.start) / group.size;
    let base = group.start + i * group.size;
    let needed = base + group.size;
    let (field, offset) = group.element.missing(base, len);
    let detail = match count {
        Some(n) => detail!(
            "the payload ends at byte {}; the layout needs {} bytes, in element {} of {} ({} bytes each from byte {})",
            len,
            needed,
            i,
            n,
            group.size,
            group.start
        ),
        None => detail!(
            "the payload ends at byte {}; the layout needs {} bytes, in element {} ({} bytes each from byte {})",
            len,
            needed,
            i,
            group.size,
            group.start
        ),
    };
    DecodeError::new(TRUNCATED, field, offset, detail)
}

/// The `truncated` error for a segment (header or fixed part) in a payload of `len`
/// bytes, which needed `needed` bytes.
#[cold]
fn truncated(segment: &Segment, len: usize, needed: usize) -> DecodeError {
    let (field, offset) = segment.missing(0, len);
    DecodeError::new(
        TRUNCATED,
        field,
        offset,
        detail!(
            "the payload ends at byte {}; the layout needs {} bytes",
            len,
            needed
        ),
    )
}

/// A field's fault as a decode error.
#[cold]
fn fault(op: &FieldOp, payload: &[u8], base: usize, fault: Fault) -> DecodeError {
    let at = base + op.offset;
    let number = || {
        op.kind
            .int()
            .and_then(|read| read.read(payload, base))
            .unwrap_or_default()
    };
    let beyond = match &op.kind {
        OpKind::Timestamp(_, unit) => match unit {
            TimeUnit::Seconds => "{} seconds is beyond the representable time range",
            TimeUnit::Millis => "{} milliseconds is beyond the representable time range",
            TimeUnit::Micros => "{} microseconds is beyond the representable time range",
            TimeUnit::Nanos => "{} nanoseconds is beyond the representable time range",
        },
        _ => "{}  is beyond the representable time range",
    };
    let field = FieldName::Static(op.name);
    match fault {
        Fault::Truncated => DecodeError::new(
            TRUNCATED,
            field,
            at,
            Detail::text("the payload ends inside the field"),
        ),
        Fault::BadText(i) => DecodeError::new(
            BAD_TEXT,
            field,
            at + i,
            detail!("byte {} of the field is not valid text in its charset", i),
        ),
        Fault::UnknownEnum => {
            DecodeError::new(UNKNOWN_ENUM, field, at, detail!("{} has no name", number()))
        }
        Fault::BadTimestamp => {
            DecodeError::new(BAD_TIMESTAMP, field, at, detail!(beyond, number()))
        }
    }
}
