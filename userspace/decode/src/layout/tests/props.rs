//! Property tests. Layouts are generated (field kinds, byte orders, gaps, bit fields sharing
//! a word, an optional counted group), values are generated for them and encoded by hand
//! into a payload; decoding must give those values back, and every truncation of the
//! payload must be a `truncated` error with no row.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::{Rows, decode_with, layout, s, variants};
use crate::{
    Decoder, Value,
    layout::{ERROR_KINDS, LayoutFactory, TRUNCATED},
};

/// One generated field kind (bit fields: several fields over one integer).
#[derive(Clone, Debug)]
enum Kind {
    Uint {
        width: usize,
        little: bool,
    },
    Int {
        width: usize,
        little: bool,
    },
    Bits {
        width: usize,
        little: bool,
        bits: Vec<u32>,
    },
    Enum {
        names: u8,
    },
    F32 {
        little: bool,
    },
    F64 {
        little: bool,
    },
    Ipv4 {
        little: bool,
    },
    Ipv6,
    Mac,
    Bytes {
        len: usize,
        base64: bool,
    },
    Text {
        len: usize,
        ascii: bool,
        spaces: bool,
    },
    Time,
    Skip {
        len: usize,
    },
}

/// A field kind at a place: `gap` filler bytes before it, and whether `offset` is written.
#[derive(Clone, Debug)]
struct Placed {
    gap: usize,
    explicit: bool,
    kind: Kind,
}

/// Bytes of one field kind's value, and the values its fields decode to (`None`: skipped).
type Encoded = (Vec<u8>, Vec<Option<Value<'static>>>);

fn width() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), Just(4), Just(8)]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (width(), any::<bool>()).prop_map(|(width, little)| Kind::Uint { width, little }),
        (width(), any::<bool>()).prop_map(|(width, little)| Kind::Int { width, little }),
        (
            width(),
            any::<bool>(),
            prop::collection::vec(1u32..=9, 1..5)
        )
            .prop_map(|(width, little, mut bits)| {
                // Keep the sub-fields within the word.
                let room = width as u32 * 8;
                let mut used = 0;
                bits.retain(|b| {
                    used += b;
                    used <= room
                });
                if bits.is_empty() {
                    bits.push(1);
                }
                Kind::Bits {
                    width,
                    little,
                    bits,
                }
            }),
        (1u8..5).prop_map(|names| Kind::Enum { names }),
        any::<bool>().prop_map(|little| Kind::F32 { little }),
        any::<bool>().prop_map(|little| Kind::F64 { little }),
        any::<bool>().prop_map(|little| Kind::Ipv4 { little }),
        Just(Kind::Ipv6),
        Just(Kind::Mac),
        (1usize..17, any::<bool>()).prop_map(|(len, base64)| Kind::Bytes { len, base64 }),
        (1usize..13, any::<bool>(), any::<bool>()).prop_map(|(len, ascii, spaces)| Kind::Text {
            len,
            ascii,
            spaces
        }),
        Just(Kind::Time),
        (1usize..9).prop_map(|len| Kind::Skip { len }),
    ]
}

fn placed() -> impl Strategy<Value = Placed> {
    (
        prop_oneof![3 => Just(0usize), 1 => 1usize..4],
        any::<bool>(),
        kind(),
    )
        .prop_map(|(gap, explicit, kind)| Placed {
            gap,
            explicit: explicit || gap > 0,
            kind,
        })
}

fn int_bytes(v: u64, width: usize, little: bool) -> Vec<u8> {
    if little {
        v.to_le_bytes()[..width].to_vec()
    } else {
        v.to_be_bytes()[8 - width..].to_vec()
    }
}

/// The field configs of a kind (without name and offset).
fn configs(kind: &Kind) -> Vec<Json> {
    let order = |little: bool| if little { "little" } else { "big" };
    match kind {
        Kind::Uint { width, little } => {
            vec![json!({ "type": "uint", "width": width, "byte_order": order(*little) })]
        }
        Kind::Int { width, little } => {
            vec![json!({ "type": format!("i{}", width * 8), "byte_order": order(*little) })]
        }
        Kind::Bits {
            width,
            little,
            bits,
        } => {
            let mut low = 0;
            bits.iter()
                .map(|b| {
                    let mask = ((1u64 << b) - 1) << low;
                    low += b;
                    json!({ "type": format!("u{}", width * 8), "byte_order": order(*little), "mask": mask })
                })
                .collect()
        }
        Kind::Enum { names } => {
            let names: serde_json::Map<String, Json> = (0..*names)
                .map(|n| (n.to_string(), json!(format!("name_{n}"))))
                .collect();
            vec![json!({ "type": "u8", "enum": names })]
        }
        Kind::F32 { little } => vec![json!({ "type": "f32", "byte_order": order(*little) })],
        Kind::F64 { little } => {
            vec![json!({ "type": "float", "width": 8, "byte_order": order(*little) })]
        }
        Kind::Ipv4 { little } if *little => {
            vec![json!({ "type": "ipv4", "byte_order": "little" })]
        }
        Kind::Ipv4 { .. } => vec![json!({ "type": "ipv4" })],
        Kind::Ipv6 => vec![json!({ "type": "ipv6" })],
        Kind::Mac => vec![json!({ "type": "mac" })],
        Kind::Bytes { len, base64 } => vec![json!({
            "type": "bytes", "length": len, "encoding": if *base64 { "base64" } else { "hex" }
        })],
        Kind::Text { len, ascii, .. } => vec![json!({
            "type": "text", "length": len, "charset": if *ascii { "ascii" } else { "utf8" }
        })],
        Kind::Time => vec![json!({ "type": "u32", "timestamp": "seconds", "byte_order": "big" })],
        Kind::Skip { len } => vec![json!({ "type": "bytes", "length": len, "skip": true })],
    }
}

/// Values for a kind, encoded.
fn encoded(kind: &Kind) -> BoxedStrategy<Encoded> {
    match kind.clone() {
        Kind::Uint { width, little } => any::<u64>()
            .prop_map(move |v| {
                let v = if width == 8 {
                    v
                } else {
                    v & ((1 << (width * 8)) - 1)
                };
                (int_bytes(v, width, little), vec![Some(Value::U64(v))])
            })
            .boxed(),
        Kind::Int { width, little } => any::<i64>()
            .prop_map(move |v| {
                let shift = 64 - width * 8;
                let v = (v << shift) >> shift;
                (
                    int_bytes(v as u64, width, little),
                    vec![Some(Value::I64(v))],
                )
            })
            .boxed(),
        Kind::Bits {
            width,
            little,
            bits,
        } => any::<u64>()
            .prop_map(move |word| {
                let word = if width == 8 {
                    word
                } else {
                    word & ((1 << (width * 8)) - 1)
                };
                let mut low = 0;
                let values = bits
                    .iter()
                    .map(|b| {
                        let v = (word >> low) & ((1u64 << b) - 1);
                        low += b;
                        Some(if *b == 1 {
                            Value::Bool(v == 1)
                        } else {
                            Value::U64(v)
                        })
                    })
                    .collect();
                (int_bytes(word, width, little), values)
            })
            .boxed(),
        Kind::Enum { names } => any::<u8>()
            .prop_map(move |v| {
                let text = if v < names {
                    format!("name_{v}")
                } else {
                    v.to_string()
                };
                (vec![v], vec![Some(s(&text))])
            })
            .boxed(),
        Kind::F32 { little } => any::<u32>()
            .prop_filter("not NaN", |b| !f32::from_bits(*b).is_nan())
            .prop_map(move |bits| {
                let bytes = if little {
                    bits.to_le_bytes()
                } else {
                    bits.to_be_bytes()
                };
                (
                    bytes.to_vec(),
                    vec![Some(Value::F64(f64::from(f32::from_bits(bits))))],
                )
            })
            .boxed(),
        Kind::F64 { little } => any::<u64>()
            .prop_filter("not NaN", |b| !f64::from_bits(*b).is_nan())
            .prop_map(move |bits| {
                let bytes = if little {
                    bits.to_le_bytes()
                } else {
                    bits.to_be_bytes()
                };
                (bytes.to_vec(), vec![Some(Value::F64(f64::from_bits(bits)))])
            })
            .boxed(),
        Kind::Ipv4 { little } => any::<[u8; 4]>()
            .prop_map(move |a| {
                let mut bytes = a;
                if little {
                    bytes.reverse();
                }
                (bytes.to_vec(), vec![Some(Value::Ip(a.into()))])
            })
            .boxed(),
        Kind::Ipv6 => any::<[u8; 16]>()
            .prop_map(|a| (a.to_vec(), vec![Some(Value::Ip(a.into()))]))
            .boxed(),
        Kind::Mac => any::<[u8; 6]>()
            .prop_map(|a| (a.to_vec(), vec![Some(Value::Mac(a))]))
            .boxed(),
        Kind::Bytes { len, .. } => prop::collection::vec(any::<u8>(), len)
            .prop_map(|v| (v.clone(), vec![Some(Value::Bytes(v.into()))]))
            .boxed(),
        Kind::Text { len, ascii, spaces } => {
            let chars = if ascii { "[a-z0-9]" } else { "[a-z0-9é]" };
            prop::collection::vec(chars, 0..=len)
                .prop_map(move |parts| {
                    let mut text = String::new();
                    for p in parts {
                        if text.len() + p.len() <= len {
                            text.push_str(&p);
                        }
                    }
                    let mut bytes = Vec::with_capacity(len);
                    let room = len - text.len();
                    if spaces {
                        // Spaces on both sides, trimmed away.
                        bytes.resize(room / 2, b' ');
                        bytes.extend(text.as_bytes());
                        bytes.resize(len, b' ');
                    } else {
                        bytes.extend(text.as_bytes());
                        bytes.resize(len, 0);
                    }
                    (bytes, vec![Some(s(&text))])
                })
                .boxed()
        }
        Kind::Time => any::<u32>()
            .prop_map(|t| {
                (
                    t.to_be_bytes().to_vec(),
                    vec![Some(Value::Timestamp(i64::from(t) * 1_000_000))],
                )
            })
            .boxed(),
        Kind::Skip { len } => prop::collection::vec(any::<u8>(), len)
            .prop_map(|v| (v, vec![None]))
            .boxed(),
    }
}

/// Field configs of a list of placed kinds, named `{prefix}{i}`, with their offsets.
fn field_list(list: &[Placed], prefix: &str) -> (Vec<Json>, usize) {
    let mut fields = Vec::new();
    let mut at = 0;
    for p in list {
        at += p.gap;
        let start = at;
        for (i, mut config) in configs(&p.kind).into_iter().enumerate() {
            config["name"] = json!(format!("{prefix}{}", fields.len()));
            if p.explicit || i > 0 {
                config["offset"] = json!(start);
            }
            fields.push(config);
        }
        at += size(&p.kind);
    }
    (fields, at)
}

fn size(kind: &Kind) -> usize {
    match kind {
        Kind::Uint { width, .. } | Kind::Int { width, .. } | Kind::Bits { width, .. } => *width,
        Kind::Enum { .. } => 1,
        Kind::F32 { .. } | Kind::Ipv4 { .. } | Kind::Time => 4,
        Kind::F64 { .. } => 8,
        Kind::Ipv6 => 16,
        Kind::Mac => 6,
        Kind::Bytes { len, .. } | Kind::Text { len, .. } | Kind::Skip { len } => *len,
    }
}

/// Values of a list of placed kinds: payload bytes (gaps filled with 0xa5) and the
/// values of its columns in order.
fn list_values(list: &[Placed]) -> BoxedStrategy<(Vec<u8>, Vec<Value<'static>>)> {
    let parts: Vec<BoxedStrategy<Encoded>> = list.iter().map(|p| encoded(&p.kind)).collect();
    let gaps: Vec<usize> = list.iter().map(|p| p.gap).collect();
    parts
        .prop_map(move |parts| {
            let mut bytes = Vec::new();
            let mut values = Vec::new();
            for ((chunk, vals), gap) in parts.into_iter().zip(&gaps) {
                bytes.resize(bytes.len() + gap, 0xa5);
                bytes.extend(chunk);
                values.extend(vals.into_iter().flatten());
            }
            (bytes, values)
        })
        .boxed()
}

/// A generated layout: header fields, maybe a group counted by a `u16` after the header.
#[derive(Clone, Debug)]
struct Generated {
    header: Vec<Placed>,
    group: Option<(Vec<Placed>, usize)>,
    little: bool,
}

impl Generated {
    fn config(&self) -> Json {
        let (fields, end) = field_list(&self.header, "h");
        let mut config = json!({
            "byte_order": if self.little { "little" } else { "big" },
            "fields": fields,
            "trailing_bytes": "reject",
        });
        if let Some((element, pad)) = &self.group {
            config["fields"].as_array_mut().expect("array").push(
                json!({ "name": "count", "type": "u16", "offset": end, "byte_order": "big" }),
            );
            let (fields, elem_end) = field_list(element, "e");
            config["group"] = json!({ "count": "count", "size": elem_end + pad, "fields": fields });
        }
        config
    }
}

fn generated() -> impl Strategy<Value = Generated> {
    let list = |n| prop::collection::vec(placed(), n);
    (
        list(0..6),
        prop::option::of((list(1..4), 0usize..3)),
        any::<bool>(),
    )
        .prop_map(|(header, group, little)| Generated {
            header,
            group,
            little,
        })
        .prop_filter("a layout needs a column", |g| {
            g.group.is_some()
                || g.header
                    .iter()
                    .any(|p| !matches!(p.kind, Kind::Skip { .. }))
        })
        .prop_filter("an element needs a column", |g| {
            g.group
                .as_ref()
                .is_none_or(|(e, _)| e.iter().any(|p| !matches!(p.kind, Kind::Skip { .. })))
        })
}

/// A layout, a payload for it and the rows it must decode to.
fn case() -> impl Strategy<Value = (Generated, Vec<u8>, Rows)> {
    generated().prop_flat_map(|g| {
        let header = list_values(&g.header);
        let elements = match &g.group {
            None => Just(Vec::new()).boxed(),
            Some((element, _)) => prop::collection::vec(list_values(element), 0..5).boxed(),
        };
        (Just(g), header, elements).prop_map(|(g, (mut payload, header), elements)| {
            let Some((_, pad)) = &g.group else {
                return (g, payload, vec![header]);
            };
            let mut prefix = header;
            prefix.push(Value::U64(elements.len() as u64));
            payload.extend((elements.len() as u16).to_be_bytes());
            let mut rows = Vec::new();
            for (bytes, values) in elements {
                payload.extend(bytes);
                payload.resize(payload.len() + pad, 0x5a);
                let mut row = prefix.clone();
                row.extend(values);
                rows.push(row);
            }
            (g, payload, rows)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_layouts_round_trip((generated, payload, rows) in case()) {
        let config = generated.config();
        let factory = LayoutFactory::new("prop", &layout(config.clone()))
            .map_err(|e| TestCaseError::fail(format!("{e} in {config}")))?;
        let mut decoder = factory.decoder();
        prop_assert_eq!(decode_with(&mut decoder, &payload), Ok(rows));
        for cut in 0..payload.len() {
            let err = decode_with(&mut decoder, &payload[..cut]);
            prop_assert_eq!(err.map_err(|e| e.kind), Err(TRUNCATED), "cut at {}", cut);
        }
        // One byte too many is refused (`trailing_bytes = "reject"`), not truncated.
        let mut longer = payload.clone();
        longer.push(0);
        prop_assert_eq!(decode_with(&mut decoder, &longer).map_err(|e| e.kind), Err("trailing_bytes"));
    }

    #[test]
    fn acme_events_round_trip(
        seq in any::<u32>(),
        kind in prop_oneof![Just(1u8), Just(2), Just(3), Just(4), Just(9)],
        readings in prop::collection::vec((any::<u8>(), 0u8..4, any::<bool>(), any::<i16>()), 0..6),
        code in any::<u16>(),
        message in "[a-z ]{0,8}",
        value in any::<i16>(),
    ) {
        let f = variants::acme("error");
        let mut payload = vec![2, kind, 0, 1, 2, 3, 4, 5];
        payload.extend(seq.to_be_bytes());
        payload.extend(1_000u32.to_be_bytes());
        let name = match kind { 1 => "readings", 2 => "alarm", 3 => "heartbeat", _ => "" };
        let mut head = vec![
            Value::U64(2),
            if name.is_empty() { s(&kind.to_string()) } else { s(name) },
            Value::Mac([0, 1, 2, 3, 4, 5]),
            Value::U64(u64::from(seq)),
            Value::Timestamp(1_000_000_000),
        ];
        let null = Value::Null;
        let rows: Rows = match kind {
            1 => {
                payload.extend([readings.len() as u8, 0]);
                head.push(Value::U64(readings.len() as u64));
                readings.iter().map(|(sensor, status, alarm, v)| {
                    payload.extend([*sensor, status | if *alarm { 0x80 } else { 0 }]);
                    payload.extend(v.to_be_bytes());
                    let status = ["ok", "warn", "fail", "3"][usize::from(*status)];
                    let mut row = head.clone();
                    row.extend([null.clone(), null.clone(), Value::I64(i64::from(*v)),
                        Value::U64(u64::from(*sensor)), s(status), Value::Bool(*alarm)]);
                    row
                }).collect()
            }
            2 => {
                payload.extend(code.to_be_bytes());
                let mut text = message.clone().into_bytes();
                text.resize(8, 0);
                payload.extend(text);
                payload.extend(value.to_be_bytes());
                head.extend([null.clone(), Value::U64(u64::from(code)), s(message.trim_matches(' ')),
                    Value::I64(i64::from(value)), null.clone(), null.clone(), null.clone()]);
                vec![head]
            }
            3 | 4 => {
                head.extend(vec![null; 7]);
                vec![head]
            }
            _ => Vec::new(),
        };
        let mut decoder = f.decoder();
        let decoded = decode_with(&mut decoder, &payload);
        if kind == 9 {
            prop_assert_eq!(decoded.map_err(|e| e.kind), Err("unknown_variant"));
        } else {
            prop_assert_eq!(decoded, Ok(rows));
            for cut in 0..payload.len() {
                let err = decode_with(&mut decoder, &payload[..cut]);
                prop_assert_eq!(err.map_err(|e| e.kind), Err(TRUNCATED), "cut at {}", cut);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..96)) {
        let f = variants::acme("header_only");
        let mut decoder = f.decoder();
        match decode_with(&mut decoder, &payload) {
            Ok(rows) => prop_assert!(rows.iter().all(|r| r.len() == decoder.schema().columns.len())),
            Err(e) => prop_assert!(ERROR_KINDS.contains(&e.kind), "kind {}", e.kind),
        }
    }
}
