//! The `schema` decoder's options, as written in the config (`[decoder.schema]`) or in the
//! layout file it names. Plain serde data: the `compile` module checks it and turns it into
//! the plan the decoder runs, naming the offending key when something is wrong.

use std::{collections::BTreeMap, path::Path, path::PathBuf};

use serde::Deserialize;

use crate::ConfigFieldError;

/// A binary record layout: header fields, optionally variants chosen by a discriminator
/// field, optionally a repeated group (one record per element).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LayoutConfig {
    /// Byte order of multi-byte numbers unless a field sets its own: `"big"` (network
    /// order, the default) or `"little"`. Addresses ignore it (see [`FieldConfig::byte_order`]).
    #[serde(default)]
    pub byte_order: Option<ByteOrder>,
    /// The header: fields every payload starts with, in payload order.
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
    /// Name of the header field whose value picks one of `variants` (an integer field,
    /// possibly masked or with `enum` names). Required with `variants`, refused without.
    #[serde(default)]
    pub discriminator: Option<String>,
    /// Layouts of what follows the header, one of which is chosen by `discriminator`.
    #[serde(default)]
    pub variants: Vec<VariantConfig>,
    /// A discriminator value no variant lists: `"error"` (the default; the payload is a
    /// decode error `unknown_variant`) or `"header_only"` (one row with the header's
    /// columns, the others null).
    #[serde(default)]
    pub unknown_variant: Option<UnknownVariant>,
    /// Elements repeated after the header (and after the variant's fields, if any): one
    /// record per element. At most one group per layout: here, or in variants.
    #[serde(default)]
    pub group: Option<GroupConfig>,
    /// Bytes after the end of the layout: `"ignore"` (the default) or `"reject"` (decode
    /// error `trailing_bytes`).
    #[serde(default)]
    pub trailing_bytes: Option<TrailingBytes>,
    /// A TOML file holding the layout (these same keys, without `file`); a relative path is
    /// resolved from the config file's directory. No other key may be set alongside it.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// One field of the payload.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// Column name (and the name in error messages): lowercase letters, digits and `_`,
    /// not starting with a digit, unique within the layout.
    pub name: String,
    /// `u8` `u16` `u32` `u64` `i8` `i16` `i32` `i64` (or `uint` / `int` with `width`),
    /// `f32` `f64` (or `float` with `width`), `ipv4` `ipv6` `mac`, `bytes` and `text`
    /// (with `length`).
    #[serde(rename = "type")]
    pub ty: String,
    /// Byte offset: from the start of the payload for header and variant fields, from the
    /// start of the element for group fields. Omitted: right after the previous field
    /// (the first field of a variant starts where the header ends). Fields are listed in
    /// payload order and never overlap, except bit fields sharing the same bytes.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Size in bytes of `uint`, `int` (1, 2, 4, 8) and `float` (4, 8). The sized names
    /// (`u16`, `f32`, ...) need none; if given it must agree.
    #[serde(default)]
    pub width: Option<usize>,
    /// Size in bytes of `bytes` and `text` (at least 1).
    #[serde(default)]
    pub length: Option<usize>,
    /// Byte order of this field, overriding the layout's. Numbers only, plus `ipv4`, which
    /// is read in network order unless this says `"little"` (IPv6 and MAC addresses are
    /// always in network order).
    #[serde(default)]
    pub byte_order: Option<ByteOrder>,
    /// Bit field: only these bits of an unsigned integer, moved down by `shift`. A mask of
    /// a single bit makes a `bool` column (unless `enum` names it).
    #[serde(default)]
    pub mask: Option<u64>,
    /// Right shift applied after `mask`; default: the mask's trailing zero bits (so the
    /// value is right-aligned). At most that many.
    #[serde(default)]
    pub shift: Option<u32>,
    /// How `bytes` are written in text outputs: `"hex"` (the default) or `"base64"`.
    #[serde(default)]
    pub encoding: Option<BytesFormat>,
    /// Character set of `text`: `"utf8"` (the default) or `"ascii"`. The text ends at the
    /// first NUL byte and is trimmed of spaces; bytes outside the charset are a decode
    /// error `bad_text`.
    #[serde(default)]
    pub charset: Option<Charset>,
    /// Names of integer values: `enum = { 0 = "ok", 1 = "warn" }` (keys are decimal or
    /// `0x` hex numbers, in the range of the field). The column becomes a string.
    #[serde(default, rename = "enum")]
    pub enum_names: Option<BTreeMap<String, String>>,
    /// An integer `enum` does not name: `"number"` (the default: the number as text),
    /// `"null"` or `"error"` (decode error `unknown_enum`).
    #[serde(default)]
    pub on_unknown: Option<UnknownEnum>,
    /// An integer that is a Unix time in these units becomes a timestamp column:
    /// `"seconds"`, `"millis"`, `"micros"` or `"nanos"`.
    #[serde(default)]
    pub timestamp: Option<TimeUnit>,
    /// Padding or reserved bytes: read past, not a column. A skipped integer can still be a
    /// group's `count` or the `discriminator`.
    #[serde(default)]
    pub skip: bool,
}

/// One layout of what follows the header.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// Discriminator values that select this variant (at least one; each value in one
    /// variant only).
    pub values: Vec<i64>,
    /// The variant's fields, after the header. The same name in two variants is one column
    /// (it must have the same column type in both).
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
    /// This variant's repeated group (only when the layout has no top-level `group`).
    #[serde(default)]
    pub group: Option<GroupConfig>,
}

/// Elements repeated after the fixed part: each becomes one record carrying the header's
/// (and variant's) columns too.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Name of an earlier unsigned integer field holding the number of elements (a header
    /// field, or a field of the same variant). Omitted: elements fill the rest of the
    /// payload, which must then be a whole number of elements.
    #[serde(default)]
    pub count: Option<String>,
    /// Byte offset of the first element from the start of the payload; omitted: right after
    /// the last field before the group.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Size of one element in bytes; omitted: the end of its last field. Larger values skip
    /// trailing padding in each element.
    #[serde(default)]
    pub size: Option<usize>,
    /// Largest element count accepted; a larger count is a decode error `count_too_large`.
    /// Omitted: any count the payload holds.
    #[serde(default)]
    pub max_count: Option<u64>,
    /// Name of an extra `u64` column holding the element's position (0-based); omitted: no
    /// such column.
    #[serde(default)]
    pub index: Option<String>,
    /// A count of zero: `"no_rows"` (the default: the payload yields no record) or
    /// `"one_row"` (one record with the element columns null).
    #[serde(default)]
    pub when_empty: Option<EmptyGroup>,
    /// The element's fields; offsets are from the start of the element.
    pub fields: Vec<FieldConfig>,
}

/// Byte order of a multi-byte number.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ByteOrder {
    /// Most significant byte first (network order).
    #[default]
    Big,
    /// Least significant byte first.
    Little,
}

/// How a byte-string column is written in text outputs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BytesFormat {
    /// Lowercase hex.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Character set of a text field.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// UTF-8.
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    /// 7-bit ASCII.
    Ascii,
}

/// What an `enum` field does with a number it does not name.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownEnum {
    /// The number, as text (`"7"`).
    #[default]
    Number,
    /// Null (the column becomes nullable).
    Null,
    /// The payload is a decode error `unknown_enum`.
    Error,
}

/// What a layout does with a discriminator value no variant lists.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownVariant {
    /// The payload is a decode error `unknown_variant`.
    #[default]
    Error,
    /// One row with the header's columns; every other column null.
    HeaderOnly,
}

/// What a group with zero elements yields.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmptyGroup {
    /// No record at all.
    #[default]
    NoRows,
    /// One record, element columns null.
    OneRow,
}

/// What a layout does with bytes after its end.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrailingBytes {
    /// They are ignored.
    #[default]
    Ignore,
    /// The payload is a decode error `trailing_bytes`.
    Reject,
}

/// Unit of an integer Unix time.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds (truncated to microseconds).
    Nanos,
}

impl LayoutConfig {
    /// Checks the layout as [`super::LayoutFactory::new`] would, naming the first key that
    /// is wrong (`fields[2].offset`, `variants[1].group.count`, ...).
    pub fn validate(&self) -> Result<(), ConfigFieldError> {
        super::compile::compile(self).map(drop)
    }

    /// Replaces `file = "..."` by the layout the file holds. `load` gets the path as
    /// written (resolving a relative one is the caller's job), reads and parses it; its
    /// error is reported under `file`. A layout without `file` is returned as is.
    pub fn resolve_file<E: std::fmt::Display>(
        self,
        load: impl FnOnce(&Path) -> Result<LayoutConfig, E>,
    ) -> Result<LayoutConfig, ConfigFieldError> {
        let Some(path) = self.file.as_deref() else {
            return Ok(self);
        };
        if let Some(key) = self.key_besides_file() {
            return Err(ConfigFieldError::new(
                key,
                "not allowed with `file`: the whole layout comes from the file",
            ));
        }
        let loaded = load(path).map_err(|e| {
            ConfigFieldError::new("file", format!("cannot load {}: {e}", path.display()))
        })?;
        if loaded.file.is_some() {
            return Err(ConfigFieldError::new(
                "file",
                format!(
                    "{} sets `file` itself; layout files do not nest",
                    path.display()
                ),
            ));
        }
        Ok(loaded)
    }

    /// The first key other than `file` that is set.
    pub(super) fn key_besides_file(&self) -> Option<&'static str> {
        let set = [
            ("byte_order", self.byte_order.is_some()),
            ("fields", !self.fields.is_empty()),
            ("discriminator", self.discriminator.is_some()),
            ("variants", !self.variants.is_empty()),
            ("unknown_variant", self.unknown_variant.is_some()),
            ("group", self.group.is_some()),
            ("trailing_bytes", self.trailing_bytes.is_some()),
        ];
        set.into_iter()
            .find(|(_, is_set)| *is_set)
            .map(|(key, _)| key)
    }
}
