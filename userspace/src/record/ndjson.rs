//! Newline-delimited JSON encoding of records.
//!
//! One object per line: the provenance fields first, in a fixed order — `received_at,
//! tunnel_src, tunnel_dst, gre_key, src_ip, src_port, dst_ip, dst_port` (tunnel fields and
//! `gre_key` are `null` when absent) — then the decoder's columns in schema order (for the
//! `raw` decoder: `payload_len, payload` as base64). Written by hand into a reused buffer,
//! with every column's `,"name":` prefix escaped once when the stream is set up.

use std::net::IpAddr;

use sluice_decode::{BytesEncoding, ColumnType, PacketContext, RecordSchema, Value, output_name};

use sluice_formats::text::{
    push_base64, push_f64, push_hex, push_i64, push_ip, push_json_string, push_mac, push_u64,
};

use super::timestamp::TimestampFormatter;

/// A schema's column keys, escaped and ready to append.
#[derive(Clone, Debug)]
pub struct EncodedColumns {
    keys: Vec<Vec<u8>>,
    types: Vec<ColumnType>,
}

impl EncodedColumns {
    /// Prepares the keys of `schema`.
    pub fn new(schema: &RecordSchema) -> Self {
        let keys = schema
            .columns
            .iter()
            .map(|c| {
                let mut key = b",".to_vec();
                push_json_string(&mut key, &output_name(schema, c));
                key.push(b':');
                key
            })
            .collect();
        let types = schema.columns.iter().map(|c| c.ty).collect();
        Self { keys, types }
    }
}

/// Appends records to a buffer as NDJSON lines.
#[derive(Debug, Default)]
pub struct NdjsonEncoder {
    timestamps: TimestampFormatter,
}

impl NdjsonEncoder {
    /// Appends one record (provenance + `values` for `columns`) and its newline to `out`.
    pub fn encode(
        &mut self,
        ctx: &PacketContext,
        columns: &EncodedColumns,
        values: &[Value<'_>],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"{\"received_at\":\"");
        self.timestamps.push(out, ctx.received_at);
        out.extend_from_slice(b"\",\"tunnel_src\":");
        push_opt_quoted_ip(out, ctx.tunnel_src);
        out.extend_from_slice(b",\"tunnel_dst\":");
        push_opt_quoted_ip(out, ctx.tunnel_dst);
        out.extend_from_slice(b",\"gre_key\":");
        match ctx.gre_key {
            Some(key) => push_u64(out, u64::from(key)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"src_ip\":");
        push_quoted_ip(out, ctx.src_ip);
        out.extend_from_slice(b",\"src_port\":");
        push_u64(out, u64::from(ctx.src_port));
        out.extend_from_slice(b",\"dst_ip\":");
        push_quoted_ip(out, ctx.dst_ip);
        out.extend_from_slice(b",\"dst_port\":");
        push_u64(out, u64::from(ctx.dst_port));
        for ((key, ty), value) in columns.keys.iter().zip(&columns.types).zip(values) {
            out.extend_from_slice(key);
            self.push_value(out, *ty, value);
        }
        out.extend_from_slice(b"}\n");
    }

    fn push_value(&mut self, out: &mut Vec<u8>, ty: ColumnType, value: &Value<'_>) {
        match value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::U64(n) => push_u64(out, *n),
            Value::I64(n) => push_i64(out, *n),
            Value::F64(f) if f.is_finite() => push_f64(out, *f),
            Value::F64(_) => out.extend_from_slice(b"null"),
            Value::Str(s) => push_json_string(out, s),
            Value::Bytes(bytes) => {
                out.push(b'"');
                match ty {
                    ColumnType::Bytes(BytesEncoding::Hex) => push_hex(out, bytes),
                    _ => push_base64(out, bytes),
                }
                out.push(b'"');
            }
            Value::Ip(ip) => push_quoted_ip(out, *ip),
            Value::Mac(mac) => {
                out.push(b'"');
                push_mac(out, mac);
                out.push(b'"');
            }
            Value::Timestamp(micros) => {
                out.push(b'"');
                self.timestamps.push(out, *micros);
                out.push(b'"');
            }
        }
    }
}

fn push_quoted_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(b'"');
    push_ip(out, ip);
    out.push(b'"');
}

fn push_opt_quoted_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        Some(ip) => push_quoted_ip(out, ip),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        borrow::Cow,
        net::{Ipv4Addr, Ipv6Addr},
    };

    use sluice_decode::{Column, DecoderFactory as _, raw::RawFactory};

    use super::*;

    fn ctx(tunnel: bool) -> PacketContext {
        PacketContext {
            received_at: 1_795_328_725_123_456,
            tunnel_src: tunnel.then_some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            tunnel_dst: tunnel
                .then_some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2))),
            gre_key: tunnel.then_some(4_294_967_295),
            src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            src_port: 40000,
            dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
            dst_port: 5000,
        }
    }

    fn encode(ctx: &PacketContext, schema: &RecordSchema, values: &[Value<'_>]) -> String {
        let mut out = Vec::new();
        NdjsonEncoder::default().encode(ctx, &EncodedColumns::new(schema), values, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn raw_record_has_every_field_in_order() {
        let raw = RawFactory::default();
        let line = encode(
            &ctx(true),
            raw.schema(),
            &[Value::U64(5), Value::Bytes(Cow::Borrowed(b"hello"))],
        );
        assert_eq!(
            line,
            "{\"received_at\":\"2026-11-22T06:25:25.123456Z\",\"tunnel_src\":\"192.0.2.1\",\
             \"tunnel_dst\":\"2001:db8::2\",\"gre_key\":4294967295,\"src_ip\":\"203.0.113.5\",\
             \"src_port\":40000,\"dst_ip\":\"203.0.113.9\",\"dst_port\":5000,\"payload_len\":5,\
             \"payload\":\"aGVsbG8=\"}\n"
        );
        let plain = encode(
            &ctx(false),
            raw.schema(),
            &[Value::U64(0), Value::Bytes(Cow::Borrowed(b""))],
        );
        assert!(
            plain.contains("\"tunnel_src\":null,\"tunnel_dst\":null,\"gre_key\":null,"),
            "{plain}"
        );
    }

    #[test]
    fn decoder_columns_named_like_provenance_are_prefixed() {
        let schema = RecordSchema {
            decoder: "netflow".into(),
            columns: vec![Column::nullable("src_port", ColumnType::UInt64)],
        };
        let line = encode(&ctx(false), &schema, &[Value::U64(443)]);
        assert!(line.ends_with(",\"src_port\":40000,\"dst_ip\":\"203.0.113.9\",\"dst_port\":5000,\"netflow_src_port\":443}\n"), "{line}");
    }

    #[test]
    fn every_value_type_is_valid_json() {
        let schema = RecordSchema {
            decoder: "test".into(),
            columns: vec![
                Column::nullable("n", ColumnType::UInt64),
                Column::required("b", ColumnType::Bool),
                Column::required("i", ColumnType::Int64),
                Column::required("f", ColumnType::Float64),
                Column::required("s", ColumnType::String),
                Column::required("h", ColumnType::Bytes(BytesEncoding::Hex)),
                Column::required("ip", ColumnType::IpAddr),
                Column::required("mac", ColumnType::MacAddr),
                Column::required("t", ColumnType::Timestamp),
                Column::required("odd \"name\"", ColumnType::Float64),
            ],
        };
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::I64(-42),
            Value::F64(1.5),
            Value::Str(Cow::Borrowed("quote \" back \\ nl \n ctl \u{1} é")),
            Value::Bytes(Cow::Borrowed(&[0x00, 0xab, 0xff])),
            Value::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Value::Mac([0x02, 0, 0, 0, 0xab, 0x0c]),
            Value::Timestamp(0),
            Value::F64(f64::NAN),
        ];
        let line = encode(&ctx(false), &schema, &values);
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["n"], serde_json::Value::Null);
        assert_eq!(v["b"], true);
        assert_eq!(v["i"], -42);
        assert_eq!(v["f"], 1.5);
        assert_eq!(v["s"], "quote \" back \\ nl \n ctl \u{1} é");
        assert_eq!(v["h"], "00abff");
        assert_eq!(v["ip"], "::1");
        assert_eq!(v["mac"], "02:00:00:00:ab:0c");
        assert_eq!(v["t"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["odd \"name\""], serde_json::Value::Null);
    }
}
