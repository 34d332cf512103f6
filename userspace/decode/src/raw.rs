//! The `raw` decoder: the payload as it is (length and base64 bytes). The default for
//! every port without another decoder, and what a record held before typed decoders.

use std::borrow::Cow;

use crate::{
    BytesEncoding, Column, ColumnType, DecodeError, DecodeOutcome, Decoder, DecoderFactory,
    PacketContext, RecordSchema, RowSink, Value,
};

/// Builds [`RawDecoder`]s.
#[derive(Clone, Debug)]
pub struct RawFactory {
    schema: RecordSchema,
}

impl Default for RawFactory {
    fn default() -> Self {
        Self {
            schema: RecordSchema {
                decoder: "raw".into(),
                columns: vec![
                    Column::required("payload_len", ColumnType::UInt64),
                    Column::required("payload", ColumnType::Bytes(BytesEncoding::Base64)),
                ],
            },
        }
    }
}

impl DecoderFactory for RawFactory {
    fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    fn build(&self) -> Box<dyn Decoder> {
        Box::new(RawDecoder {
            schema: self.schema.clone(),
        })
    }
}

/// One row per payload: `payload_len`, `payload`.
#[derive(Clone, Debug)]
pub struct RawDecoder {
    schema: RecordSchema,
}

impl Decoder for RawDecoder {
    fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    fn decode(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        sink: &mut dyn RowSink,
    ) -> Result<DecodeOutcome, DecodeError> {
        sink.row(
            ctx,
            &[
                Value::U64(payload.len() as u64),
                Value::Bytes(Cow::Borrowed(payload)),
            ],
        );
        Ok(DecodeOutcome {
            rows: 1,
            held: false,
        })
    }
}
