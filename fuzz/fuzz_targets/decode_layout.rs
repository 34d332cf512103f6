//! Fuzzes the `schema` (layout) decoder with arbitrary payloads against one fixed layout
//! that uses every feature: integers of each width and both byte orders, a bit-field word
//! with a bool, a masked enum and a masked discriminator, text in both charsets, bytes,
//! addresses, a timestamp, skipped padding, variants (one with a counted, padded group of
//! fallible elements, one with an uncounted group of infallible elements, one empty) and
//! header-only rows for unknown variants. The decoder must never panic; a decoded payload
//! yields full rows whose values match their column types, an error has a known kind.

#![no_main]

use std::{collections::BTreeMap, net::Ipv4Addr, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use sluice_decode::{
    ColumnType, DecoderFactory, PacketContext, RecordSchema, RowSink, Value,
    layout::{
        ByteOrder, Charset, ERROR_KINDS, FieldConfig, GroupConfig, LayoutConfig, LayoutFactory,
        TimeUnit, UnknownEnum, UnknownVariant, VariantConfig,
    },
};

fn field(name: &str, ty: &str) -> FieldConfig {
    FieldConfig {
        name: name.into(),
        ty: ty.into(),
        ..FieldConfig::default()
    }
}

fn names(pairs: &[(i64, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).to_owned()))
            .collect(),
    )
}

fn layout() -> LayoutConfig {
    LayoutConfig {
        byte_order: Some(ByteOrder::Little),
        fields: vec![
            field("version", "u8"),
            FieldConfig {
                mask: Some(0xf0),
                ..field("kind", "u8")
            },
            FieldConfig {
                offset: Some(1),
                mask: Some(0x08),
                ..field("urgent", "u8")
            },
            FieldConfig {
                offset: Some(1),
                mask: Some(0x07),
                enum_names: names(&[(0, "none"), (1, "low"), (7, "max")]),
                on_unknown: Some(UnknownEnum::Null),
                ..field("priority", "u8")
            },
            FieldConfig {
                byte_order: Some(ByteOrder::Big),
                ..field("seq", "u32")
            },
            FieldConfig {
                timestamp: Some(TimeUnit::Millis),
                ..field("time", "i64")
            },
            field("device", "mac"),
            FieldConfig {
                length: Some(2),
                skip: true,
                ..field("reserved", "bytes")
            },
            FieldConfig {
                byte_order: Some(ByteOrder::Little),
                ..field("src", "ipv4")
            },
            FieldConfig {
                length: Some(6),
                ..field("site", "text")
            },
        ],
        discriminator: Some("kind".into()),
        unknown_variant: Some(UnknownVariant::HeaderOnly),
        variants: vec![
            VariantConfig {
                values: vec![1],
                fields: vec![field("n", "u16"), field("dst", "ipv6")],
                group: Some(GroupConfig {
                    count: Some("n".into()),
                    size: Some(12),
                    max_count: Some(64),
                    index: Some("reading".into()),
                    fields: vec![
                        field("sensor", "i16"),
                        FieldConfig {
                            enum_names: names(&[(0, "ok"), (1, "warn")]),
                            on_unknown: Some(UnknownEnum::Error),
                            ..field("status", "u8")
                        },
                        FieldConfig {
                            length: Some(4),
                            charset: Some(Charset::Ascii),
                            ..field("unit", "text")
                        },
                        field("value", "f32"),
                    ],
                    ..GroupConfig::default()
                }),
            },
            VariantConfig {
                values: vec![2, 3],
                fields: vec![
                    FieldConfig {
                        width: Some(8),
                        ..field("code", "uint")
                    },
                    FieldConfig {
                        length: Some(5),
                        ..field("blob", "bytes")
                    },
                ],
                group: Some(GroupConfig {
                    fields: vec![field("sensor", "i16"), field("ratio", "f64")],
                    ..GroupConfig::default()
                }),
            },
            VariantConfig {
                values: vec![4],
                ..VariantConfig::default()
            },
        ],
        ..LayoutConfig::default()
    }
}

fn factory() -> &'static LayoutFactory {
    static FACTORY: OnceLock<LayoutFactory> = OnceLock::new();
    FACTORY.get_or_init(|| LayoutFactory::new("fuzz", &layout()).expect("the layout is valid"))
}

/// Checks every row against the schema.
struct Checker<'s> {
    schema: &'s RecordSchema,
    rows: u64,
}

impl RowSink for Checker<'_> {
    fn row(&mut self, _ctx: &PacketContext, values: &[Value<'_>]) {
        assert_eq!(values.len(), self.schema.columns.len(), "a full row");
        for (column, value) in self.schema.columns.iter().zip(values) {
            let fits = match (column.ty, value) {
                (_, Value::Null) => column.nullable,
                (ColumnType::Bool, Value::Bool(_))
                | (ColumnType::UInt64, Value::U64(_))
                | (ColumnType::Int64, Value::I64(_))
                | (ColumnType::Float64, Value::F64(_))
                | (ColumnType::String, Value::Str(_))
                | (ColumnType::Bytes(_), Value::Bytes(_))
                | (ColumnType::IpAddr, Value::Ip(_))
                | (ColumnType::MacAddr, Value::Mac(_))
                | (ColumnType::Timestamp, Value::Timestamp(_)) => true,
                _ => false,
            };
            assert!(
                fits,
                "column {} ({:?}) got {value:?}",
                column.name, column.ty
            );
        }
        self.rows += 1;
    }
}

fuzz_target!(|payload: &[u8]| {
    let factory = factory();
    let mut decoder = factory.build();
    let ctx = PacketContext {
        received_at: 0,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: Ipv4Addr::LOCALHOST.into(),
        src_port: 1,
        dst_ip: Ipv4Addr::LOCALHOST.into(),
        dst_port: 2,
    };
    let mut sink = Checker {
        schema: factory.schema(),
        rows: 0,
    };
    match decoder.decode(&ctx, payload, &mut sink) {
        Ok(outcome) => {
            assert_eq!(outcome.rows, sink.rows);
            assert!(!outcome.held);
        }
        Err(e) => {
            assert_eq!(sink.rows, 0, "no row before an error");
            assert!(ERROR_KINDS.contains(&e.kind), "unknown kind {}", e.kind);
            assert!(
                e.offset <= payload.len(),
                "offset {} within the payload",
                e.offset
            );
        }
    }
});
