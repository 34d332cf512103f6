//! Tests of the layout decoder: config errors (exact key and reason), decoding (exact
//! values), property tests (encode → decode round trips, truncation), and regressions.
//! Layouts are written as JSON, which goes through the same serde structs as TOML.

mod config_errors;
mod decoding;
mod doc_example;
mod groups;
mod props;
mod variants;

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::{LayoutConfig, LayoutFactory};
use crate::{ConfigFieldError, DecodeError, Decoder, DecoderFactory, PacketContext, Value};

/// Rows of one payload, owned.
type Rows = Vec<Vec<Value<'static>>>;

fn ctx() -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    PacketContext {
        received_at: 1_795_328_725_123_456,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 40_000,
        dst_ip: ip,
        dst_port: 5_140,
    }
}

fn layout(v: serde_json::Value) -> LayoutConfig {
    serde_json::from_value(v).expect("layout JSON matches the config structs")
}

fn factory(v: serde_json::Value) -> LayoutFactory {
    LayoutFactory::new("test", &layout(v)).expect("valid layout")
}

/// The config error of an invalid layout.
fn config_error(v: serde_json::Value) -> ConfigFieldError {
    let config = layout(v);
    let err = LayoutFactory::new("test", &config).expect_err("layout must be refused");
    assert_eq!(config.validate(), Err(err.clone()), "validate() agrees");
    err
}

/// Decodes with a fresh decoder built through the trait object, as the daemon does.
fn decode(f: &LayoutFactory, payload: &[u8]) -> Result<Rows, DecodeError> {
    let mut decoder = f.build();
    decode_with(&mut *decoder, payload)
}

fn decode_with(decoder: &mut dyn Decoder, payload: &[u8]) -> Result<Rows, DecodeError> {
    let mut rows: Rows = Vec::new();
    match decoder.decode(&ctx(), payload, &mut rows) {
        Ok(outcome) => {
            assert!(!outcome.held);
            assert_eq!(outcome.rows, rows.len() as u64, "outcome counts the rows");
            let width = decoder.schema().columns.len();
            assert!(rows.iter().all(|r| r.len() == width), "full rows");
            Ok(rows)
        }
        Err(e) => {
            assert!(rows.is_empty(), "no row on error, got {rows:?}");
            Err(e)
        }
    }
}

/// The single row of a payload.
fn one_row(f: &LayoutFactory, payload: &[u8]) -> Vec<Value<'static>> {
    let mut rows = decode(f, payload).expect("payload decodes");
    assert_eq!(rows.len(), 1, "one row");
    rows.remove(0)
}

fn s(text: &str) -> Value<'static> {
    Value::Str(text.to_owned().into())
}

fn b(bytes: &[u8]) -> Value<'static> {
    Value::Bytes(bytes.to_vec().into())
}

fn ip(text: &str) -> Value<'static> {
    Value::Ip(text.parse().expect("address"))
}

/// (name, type, nullable) of every column.
fn columns(f: &LayoutFactory) -> Vec<(String, crate::ColumnType, bool)> {
    f.schema()
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty, c.nullable))
        .collect()
}

/// A decode error's (kind, field, offset).
fn fault(e: DecodeError) -> (&'static str, Option<String>, usize) {
    (e.kind, e.field_text(), e.offset)
}

#[test]
fn helpers_build_a_layout() {
    let f = factory(json!({ "fields": [{ "name": "a", "type": "u8" }] }));
    assert_eq!(f.name(), "test");
    assert_eq!(f.schema().decoder, "schema");
    assert_eq!(one_row(&f, &[7]), vec![Value::U64(7)]);
}
