//! The typed schema of a decoder's records, known at start.

use serde::Serialize;

/// How a byte-string column is written in text formats (JSON, CSV).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BytesEncoding {
    /// Lowercase hex, two digits a byte.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The type of one column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// true/false.
    Bool,
    /// Unsigned integer of at most 64 bits (`Value::U64`).
    UInt64,
    /// Signed integer of at most 64 bits (`Value::I64`).
    Int64,
    /// IEEE 754 double (`Value::F64`).
    Float64,
    /// UTF-8 text (`Value::Str`).
    String,
    /// Bytes (`Value::Bytes`), written as hex or base64 in text formats.
    Bytes(BytesEncoding),
    /// IPv4 or IPv6 address (`Value::Ip`), written in canonical text form.
    IpAddr,
    /// MAC address (`Value::Mac`), written `aa:bb:cc:dd:ee:ff`.
    MacAddr,
    /// Instant, microseconds since the Unix epoch (`Value::Timestamp`), written RFC 3339 UTC.
    Timestamp,
}

/// One column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Field name in the output (snake_case, unique within the schema).
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether a row may hold `Value::Null` here.
    pub nullable: bool,
}

impl Column {
    /// A column that may be null.
    pub fn nullable(name: impl Into<String>, ty: ColumnType) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable: true,
        }
    }

    /// A column that is always present.
    pub fn required(name: impl Into<String>, ty: ColumnType) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable: false,
        }
    }
}

/// The provenance columns every record starts with (name, type, nullable), ahead of its
/// decoder's columns: the packet's receive time, tunnel and 5-tuple.
pub const PROVENANCE: [(&str, ColumnType, bool); 8] = [
    ("received_at", ColumnType::Timestamp, false),
    ("tunnel_src", ColumnType::IpAddr, true),
    ("tunnel_dst", ColumnType::IpAddr, true),
    ("gre_key", ColumnType::UInt64, true),
    ("src_ip", ColumnType::IpAddr, false),
    ("src_port", ColumnType::UInt64, false),
    ("dst_ip", ColumnType::IpAddr, false),
    ("dst_port", ColumnType::UInt64, false),
];

/// The name a decoder column gets in output files: its own, or `<decoder>_<name>` when it
/// would clash with a provenance column (NetFlow's `src_port` is the flow's, not the
/// export packet's), so that no file or table ever holds one name twice.
pub fn output_name<'a>(schema: &RecordSchema, column: &'a Column) -> std::borrow::Cow<'a, str> {
    if PROVENANCE.iter().any(|(name, _, _)| *name == column.name) {
        std::borrow::Cow::Owned(format!("{}_{}", schema.decoder, column.name))
    } else {
        std::borrow::Cow::Borrowed(&column.name)
    }
}

/// The columns a decoder emits, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordSchema {
    /// The decoder's name (`raw`, `schema`, `netflow`, `syslog`).
    pub decoder: String,
    /// Columns in row order.
    pub columns: Vec<Column>,
}

impl RecordSchema {
    /// Index of the column named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}
