//! One typed value of a row. Borrowed from the payload where it can be, so decoding
//! allocates nothing in the common case.

use std::{borrow::Cow, net::IpAddr};

/// A value of one column; the variant matches the column's [`crate::ColumnType`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// No value (only in nullable columns).
    Null,
    /// `ColumnType::Bool`.
    Bool(bool),
    /// `ColumnType::UInt64`.
    U64(u64),
    /// `ColumnType::Int64`.
    I64(i64),
    /// `ColumnType::Float64`.
    F64(f64),
    /// `ColumnType::String`.
    Str(Cow<'a, str>),
    /// `ColumnType::Bytes`.
    Bytes(Cow<'a, [u8]>),
    /// `ColumnType::IpAddr`.
    Ip(IpAddr),
    /// `ColumnType::MacAddr`.
    Mac([u8; 6]),
    /// `ColumnType::Timestamp`: microseconds since the Unix epoch.
    Timestamp(i64),
}
