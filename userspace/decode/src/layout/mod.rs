//! The declarative binary layout decoder (`schema = { ... }` in a `[[decoder]]`).
//!
//! Devices that send fixed binary records (a header, maybe a type byte choosing between a
//! few record shapes, maybe a counted array of readings) should not need code in Sluice:
//! their layout is written down in the config, checked and compiled once at start
//! ([`LayoutFactory::new`]) into a flat plan of reads, and every worker runs that plan.
//! Values borrow from the payload and rows are assembled in a buffer reused across
//! payloads, so decoding allocates nothing in the common case.
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
mod field;
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
}

/// One worker's `schema` decoder: the shared plan and this worker's scratch rows.
#[derive(Debug)]
pub struct LayoutDecoder {
    plan: Arc<Plan>,
    /// The row being assembled; empty between payloads, keeping its capacity.
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
        let result = self
            .plan
            .decode(ctx, payload, &mut row, &mut self.elems, sink);
        self.row = recycle(row);
        result.map(|rows| DecodeOutcome { rows, held: false })
    }
}

/// Empties `values` and gives its allocation back with another lifetime, so the scratch
/// buffers can hold values borrowed from each payload in turn. `Vec` collects a mapped
/// `IntoIter` of a same-layout type in place, so no allocation happens here.
fn recycle<'b>(mut values: Vec<Value<'_>>) -> Vec<Value<'b>> {
    values.clear();
    values.into_iter().map(|_| Value::Null).collect()
}
