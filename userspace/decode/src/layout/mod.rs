//! The declarative binary layout decoder (`schema = { ... }` in a `[[decoder]]`).
//!
//! Devices that send fixed binary records (a header, maybe a type byte choosing between a
//! few record shapes, maybe a counted array of readings) should not need code in Sluice:
//! their layout is written down in the config, checked and compiled once at start
//! ([`LayoutFactory::new`]) into a flat plan of reads, and every worker runs that plan.
//! Values borrow from the payload and rows are assembled on the stack (or, for layouts
//! of more than 64 columns, in a buffer reused across payloads), so decoding allocates
//! nothing in the common case.
//!
//! - [`config`]: the options ([`LayoutConfig`] and friends), as serde structs.
//! - `field`, `place`, `compile`: checking a layout (one field, a list's offsets, the
//!   whole), naming the offending key on error.
//! - `plan`, `decode`: the compiled form and the loop that runs it.
//!
//! The reference with a complete example is `docs/decoders.md`.

pub mod config;

mod compile;
mod decode;
pub(crate) mod field;
pub(crate) mod intern;
mod place;
mod plan;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use config::{
    ByteOrder, BytesFormat, Charset, EmptyGroup, FieldConfig, GroupConfig, LayoutConfig, TimeUnit,
    TrailingBytes, UnknownEnum, UnknownVariant, VariantConfig,
};
pub use decode::{
    BAD_TEXT, BAD_TIMESTAMP, COUNT_TOO_LARGE, ERROR_KINDS, TRAILING_BYTES, TRUNCATED, UNKNOWN_ENUM,
    UNKNOWN_VARIANT,
};

use crate::{
    ConfigFieldError, DecodeError, DecodeOutcome, Decoder, DecoderFactory, PacketContext,
    RecordSchema, RowSink, Value,
};
use plan::Plan;

/// Builds `schema` decoders from one compiled layout.
#[derive(Debug)]
pub struct LayoutFactory {
    name: String,
    plan: Arc<Plan>,
}

impl LayoutFactory {
    /// Checks and compiles `config` (with `file` already resolved, see
    /// [`LayoutConfig::resolve_file`]). `name` is the stream's name, kept for messages.
    pub fn new(name: &str, config: &LayoutConfig) -> Result<Self, ConfigFieldError> {
        Ok(Self {
            name: name.to_owned(),
            plan: Arc::new(compile::compile(config)?),
        })
    }

    /// The stream name given to [`LayoutFactory::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A decoder with its concrete type (benchmarks and tools; the daemon uses [`DecoderFactory::build`]).
    pub fn decoder(&self) -> LayoutDecoder {
        LayoutDecoder {
            plan: Arc::clone(&self.plan),
            row: Vec::new(),
            elems: Vec::new(),
        }
    }
}

impl DecoderFactory for LayoutFactory {
    fn schema(&self) -> &RecordSchema {
        &self.plan.schema
    }

    fn build(&self) -> Box<dyn Decoder> {
        Box::new(self.decoder())
    }

    fn error_kinds(&self) -> &'static [crate::DecodeErrorKind] {
        &ERROR_KINDS
    }
}

/// One worker's `schema` decoder: the shared plan and this worker's scratch rows.
#[derive(Debug)]
pub struct LayoutDecoder {
    plan: Arc<Plan>,
    /// The row being assembled when it has more than 64 columns; empty between payloads,
    /// keeping its capacity.
    row: Vec<Value<'static>>,
    /// Every element's values of the payload being decoded; empty between payloads.
    elems: Vec<Value<'static>>,
}

impl Decoder for LayoutDecoder {
    fn schema(&self) -> &RecordSchema {
        &self.plan.schema
    }

    fn decode(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        sink: &mut dyn RowSink,
    ) -> Result<DecodeOutcome, DecodeError> {
        let mut row = recycle(std::mem::take(&mut self.row));
        row.extend((0..self.plan.schema.columns.len()).map(|_| Value::Null));
        let result = self
            .plan
            .decode(ctx, payload, &mut row, &mut self.elems, sink);
        // Only values of `owning_cols` may own memory: those are dropped, the others are
        // not looked at (a leaked `Drain` empties the row; `recycle` clears what it left).
        for &col in &self.plan.owning_cols {
            if let Some(value) = row.get_mut(col) {
                *value = Value::Null;
            }
        }
        debug_assert!(
            row.iter().all(|v| !matches!(
                v,
                Value::Str(std::borrow::Cow::Owned(_)) | Value::Bytes(std::borrow::Cow::Owned(_))
            )),
            "an owned value outside owning_cols would leak"
        );
        std::mem::forget(row.drain(..));
        self.row = recycle(row);
        result.map(|rows| DecodeOutcome { rows, held: false })
    }
}

/// Empties `values` and gives its allocation back with another lifetime, so the scratch
/// buffers can hold values borrowed from each payload in turn. Nothing is allocated or
/// copied: the buffer is the same.
#[inline(always)]
pub(crate) fn recycle<'b>(mut values: Vec<Value<'_>>) -> Vec<Value<'b>> {
    values.clear();
    let mut values = std::mem::ManuallyDrop::new(values);
    let (ptr, capacity) = (values.as_mut_ptr(), values.capacity());
    // SAFETY: `Value<'_>` and `Value<'b>` are one type but for a lifetime, which has no
    // effect on size, alignment or layout, so the allocation (from the global allocator,
    // `capacity` elements of that layout, or none and a dangling pointer when `capacity`
    // is 0; taken over from the `ManuallyDrop` that will not free it) is valid for a
    // `Vec<Value<'b>>` of that capacity. The length
    // is 0: no value is reinterpreted, so no borrow outlives its lifetime. This is what
    // `values.into_iter().map(|_| Value::Null).collect()` does in place, without the
    // out-of-line call per payload. Tested by `recycle_keeps_the_buffer` below (and, for
    // the decoder, `tests::decoding::scratch_buffers_are_reused`).
    unsafe { Vec::from_raw_parts(ptr.cast::<Value<'b>>(), 0, capacity) }
}

#[cfg(test)]
mod recycle_tests {
    use std::borrow::Cow;

    use super::{Value, recycle};

    #[test]
    fn recycle_keeps_the_buffer() {
        let text = String::from("borrowed");
        let mut values: Vec<Value<'_>> = Vec::with_capacity(4);
        values.push(Value::Str(Cow::Borrowed(&text)));
        values.push(Value::Str(Cow::Owned("owned".to_owned())));
        values.push(Value::U64(7));
        let (ptr, capacity) = (values.as_ptr().cast::<u8>(), values.capacity());
        let mut again: Vec<Value<'static>> = recycle(values);
        assert!(again.is_empty());
        assert_eq!(
            (again.as_ptr().cast::<u8>(), again.capacity()),
            (ptr, capacity)
        );
        drop(text);
        again.push(Value::Str(Cow::Owned("x".repeat(3))));
        again.extend((0..3).map(|_| Value::Null));
        assert_eq!(
            again.as_ptr().cast::<u8>(),
            ptr,
            "no reallocation within capacity"
        );
        assert_eq!(again.first(), Some(&Value::Str(Cow::Borrowed("xxx"))));
        let empty: Vec<Value<'_>> = recycle(Vec::<Value<'static>>::new());
        assert_eq!(empty.capacity(), 0);
    }
}
