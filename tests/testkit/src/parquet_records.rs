//! Reads the daemon's Parquet files (`raw` stream) into the same [`Record`]s as its NDJSON
//! lines, so that a test or the demo can compare either format with what was sent.
//!
//! Uses the parquet crate's row reader (already in the tree for the encoder); every file
//! must hold exactly the ten [`RECORD_FIELDS`] with the types the daemon writes.

use std::fs::File;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::record::Field;

use crate::records::{RECORD_FIELDS, Record, RecordsError};

/// Decodes one `.parquet` record file, rows in file order.
///
/// # Errors
/// [`RecordsError::Io`] when the file cannot be opened or is not Parquet;
/// [`RecordsError::Line`] (with the 1-based row number) for a row without exactly the
/// record fields or with a value of another type.
pub fn read_parquet_file(path: &Path) -> Result<Vec<Record>, RecordsError> {
    let io_err = |source| RecordsError::Io {
        path: path.to_owned(),
        source,
    };
    let not_parquet = |e: parquet::errors::ParquetError| {
        io_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    let file = File::open(path).map_err(io_err)?;
    let reader = SerializedFileReader::new(file).map_err(not_parquet)?;
    let mut records = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(not_parquet)?.enumerate() {
        let row = row.map_err(not_parquet)?;
        let fields: Vec<(&str, &Field)> = row
            .get_column_iter()
            .map(|(name, field)| (name.as_str(), field))
            .collect();
        records.push(record_of(&fields).map_err(|reason| RecordsError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason,
        })?);
    }
    Ok(records)
}

fn record_of(fields: &[(&str, &Field)]) -> Result<Record, String> {
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    if names != RECORD_FIELDS {
        return Err(format!("columns {names:?}, expected {RECORD_FIELDS:?}"));
    }
    let field = |i: usize| fields[i].1;
    let text = |i: usize| match field(i) {
        Field::Str(s) => Ok(Some(s.clone())),
        Field::Null => Ok(None),
        other => Err(format!("{}: expected a string, got {other:?}", names[i])),
    };
    let required = |i: usize| text(i)?.ok_or_else(|| format!("{}: null", names[i]));
    let int = |i: usize| match field(i) {
        Field::Long(n) => Ok(Some(*n)),
        Field::Null => Ok(None),
        other => Err(format!("{}: expected an INT64, got {other:?}", names[i])),
    };
    let number = |i: usize| int(i)?.ok_or_else(|| format!("{}: null", names[i]));
    let narrow =
        |i: usize, n: i64| u16::try_from(n).map_err(|_| format!("{}: {n} is not a port", names[i]));
    let received_at = match field(0) {
        Field::TimestampMicros(us) => rfc3339_micros(*us),
        other => return Err(format!("received_at: expected a timestamp, got {other:?}")),
    };
    let payload = match field(9) {
        Field::Bytes(b) => BASE64.encode(b.data()),
        other => return Err(format!("payload: expected bytes, got {other:?}")),
    };
    Ok(Record {
        received_at,
        tunnel_src: text(1)?,
        tunnel_dst: text(2)?,
        gre_key: int(3)?
            .map(|k| u32::try_from(k).map_err(|_| format!("gre_key: {k} is not a u32")))
            .transpose()?,
        src_ip: required(4)?,
        src_port: narrow(5, number(5)?)?,
        dst_ip: required(6)?,
        dst_port: narrow(7, number(7)?)?,
        payload_len: usize::try_from(number(8)?).map_err(|e| format!("payload_len: {e}"))?,
        payload,
    })
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of Unix microseconds (UTC), as the NDJSON writer prints.
pub fn rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = crate::civil::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_the_ndjson_writer() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_795_328_725_123_456),
            "2026-11-22T06:25:25.123456Z"
        );
        assert_eq!(
            rfc3339_micros(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
    }
}
