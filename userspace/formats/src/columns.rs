//! The columns of every output file: the packet's provenance first, then the decoder's
//! columns. One list drives the NDJSON keys, the CSV header, the Parquet schema and the
//! BigQuery DDL, so the four cannot disagree.
//!
//! A decoder column with the name of a provenance column (the `netflow` decoder's
//! `src_port`/`dst_port`, or a `schema` field called `src_ip`) would make a JSON object
//! with a repeated key and a table with a repeated column, which BigQuery refuses; it is
//! written as `<decoder>_<name>` (`netflow_src_port`). Any clash left after that is a
//! [`FormatError::DuplicateColumn`] when the encoder is built.

use std::collections::HashSet;

use sluice_decode::{Column, PacketContext, RecordSchema, Value};

use crate::FormatError;

/// Number of provenance columns, which come first in every row.
pub const PROVENANCE_COLUMNS: usize = PROVENANCE.len();

/// The provenance columns: name, type, nullable (defined once, by the decoders' crate).
pub use sluice_decode::PROVENANCE;

/// The full column list of a stream's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputColumns {
    columns: Vec<Column>,
    decoder_columns: usize,
}

impl OutputColumns {
    /// Provenance columns followed by `schema`'s columns (renamed on a clash).
    ///
    /// # Errors
    /// [`FormatError::DuplicateColumn`] when two output names are still equal.
    pub fn new(schema: &RecordSchema) -> Result<Self, FormatError> {
        let mut columns: Vec<Column> = PROVENANCE
            .iter()
            .map(|&(name, ty, nullable)| Column {
                name: name.to_owned(),
                ty,
                nullable,
            })
            .collect();
        let mut seen: HashSet<String> = columns.iter().map(|c| c.name.clone()).collect();
        for column in &schema.columns {
            let name = if PROVENANCE.iter().any(|(p, _, _)| *p == column.name) {
                sluice_decode::output_name(schema, column).into_owned()
            } else {
                column.name.clone()
            };
            if !seen.insert(name.clone()) {
                return Err(FormatError::DuplicateColumn {
                    decoder: schema.decoder.clone(),
                    name,
                });
            }
            columns.push(Column {
                name,
                ty: column.ty,
                nullable: column.nullable,
            });
        }
        Ok(Self {
            columns,
            decoder_columns: schema.columns.len(),
        })
    }

    /// Every output column, provenance first.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Number of the decoder's columns (the length every row must have).
    pub fn decoder_columns(&self) -> usize {
        self.decoder_columns
    }
}

/// Row `row` has one value per decoder column (`expected`), or it is refused.
///
/// # Errors
/// [`crate::FormatError::RowLength`].
pub fn check_row_length(row: u64, expected: usize, found: usize) -> Result<(), crate::FormatError> {
    if found == expected {
        Ok(())
    } else {
        Err(crate::FormatError::RowLength {
            row,
            expected,
            found,
        })
    }
}

/// The provenance values of a packet, in [`PROVENANCE`] order.
pub fn provenance_values(ctx: &PacketContext) -> [Value<'static>; PROVENANCE_COLUMNS] {
    let ip = |ip: Option<std::net::IpAddr>| ip.map_or(Value::Null, Value::Ip);
    [
        Value::Timestamp(ctx.received_at),
        ip(ctx.tunnel_src),
        ip(ctx.tunnel_dst),
        ctx.gre_key
            .map_or(Value::Null, |key| Value::U64(u64::from(key))),
        Value::Ip(ctx.src_ip),
        Value::U64(u64::from(ctx.src_port)),
        Value::Ip(ctx.dst_ip),
        Value::U64(u64::from(ctx.dst_port)),
    ]
}

#[cfg(test)]
mod tests {
    use sluice_decode::{ColumnType, DecoderFactory as _, netflow::NetflowFactory};

    use super::*;

    #[test]
    fn netflow_ports_are_renamed_after_the_decoder() {
        let factory = NetflowFactory::new(&Default::default()).expect("default config");
        let out = OutputColumns::new(factory.schema()).expect("no clash left");
        let names: Vec<&str> = out.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names[..13],
            [
                "received_at",
                "tunnel_src",
                "tunnel_dst",
                "gre_key",
                "src_ip",
                "src_port",
                "dst_ip",
                "dst_port",
                "version",
                "exported_at",
                "observation_domain_id",
                "src_addr",
                "dst_addr",
            ]
        );
        assert_eq!(names[13..15], ["netflow_src_port", "netflow_dst_port"]);
        assert_eq!(names.len(), 8 + 25);
        assert_eq!(out.decoder_columns(), 25);
    }

    #[test]
    fn a_clash_left_after_renaming_is_an_error() {
        let schema = RecordSchema {
            decoder: "x".into(),
            columns: vec![
                Column::required("x_src_ip", ColumnType::String),
                Column::required("src_ip", ColumnType::String),
            ],
        };
        let err = OutputColumns::new(&schema).expect_err("clash");
        assert_eq!(
            err.to_string(),
            "column \"x_src_ip\" appears twice in the output of decoder \"x\""
        );
    }
}
