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
