//! Payload decoders: from a UDP payload to typed records, without a scripting runtime in
//! the packet path — but for the `lua` decoder, which runs the Lua parsers teams already
//! have for Vector, each worker in a sandboxed state of its own.
//!
//! Every decoder publishes its [`RecordSchema`] at start (column names and types, as data:
//! it drives the NDJSON field order today and Parquet columns / BigQuery DDL later), and
//! emits rows of [`Value`]s in that column order through a [`RowSink`]. A row is emitted
//! only when it is complete: a payload that does not fit is a [`DecodeError`] (with the
//! field and offset), never a panic and never a partial record.
//!
//! Decoders are built once per worker by a [`DecoderFactory`]; state that must be seen by
//! every worker (NetFlow/IPFIX templates, for instance — one exporter's packets are spread
//! over all workers) lives behind the factory and is shared.

pub mod civil;
pub mod decoder;
pub mod iptext;
pub mod layout;
pub mod lua;
pub mod netflow;
pub mod raw;
pub mod schema;
pub mod syslog;
pub mod value;

pub use decoder::{
    Arg, ConfigFieldError, DecodeError, DecodeErrorKind, DecodeOutcome, Decoder, DecoderFactory,
    Detail, FieldName, PacketContext, RowSink,
};
pub use schema::{BytesEncoding, Column, ColumnType, PROVENANCE, RecordSchema, output_name};
pub use value::Value;
