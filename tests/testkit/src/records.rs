//! Reads what `sluice` wrote — `DIR/dt=YYYY-MM-DD/hour=HH/<host>-<worker>-<sequence>.ndjson.zst`,
//! or `.parquet` (the daemon's default format; read by [`crate::parquet_records`]) — and
//! states what it should have written for a given [`FrameSpec`].
//!
//! Files whose name (or any parent directory's name) starts with a dot are the daemon's
//! in-progress temporaries and are skipped. Every line must carry exactly the ten record
//! fields (absent tunnel data is an explicit `null`), so a renamed or missing field fails
//! here instead of silently reading as `None`.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::frames::FrameSpec;
use crate::summary::PacketSummary;

/// The field names of a record line, in the order the daemon writes them.
pub const RECORD_FIELDS: [&str; 10] = [
    "received_at",
    "tunnel_src",
    "tunnel_dst",
    "gre_key",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "payload_len",
    "payload",
];

/// Why the output could not be read, or a record is malformed.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// Walking the directory or reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a JSON object with exactly the record fields.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record's fields are inconsistent or not in canonical form.
    #[error("invalid record field {field}: {reason}")]
    Field {
        /// The field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// One line of a record file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// RFC 3339 UTC with microseconds, e.g. `2026-11-22T06:25:25.123456Z`.
    pub received_at: String,
    /// Outer source address; null for plain UDP.
    pub tunnel_src: Option<String>,
    /// Outer destination address; null for plain UDP.
    pub tunnel_dst: Option<String>,
    /// GRE key; null without a key.
    pub gre_key: Option<u32>,
    /// Inner source address (canonical text; IPv6 compressed).
    pub src_ip: String,
    /// Inner UDP source port.
    pub src_port: u16,
    /// Inner destination address.
    pub dst_ip: String,
    /// Inner UDP destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Payload, standard base64 with padding.
    pub payload: String,
}

/// One record file and its records, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFile {
    /// Path relative to the output directory.
    pub relative: PathBuf,
    /// The file's records.
    pub records: Vec<Record>,
}

/// Everything in an output directory, files sorted by relative path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The completed record files.
    pub files: Vec<RecordFile>,
}

impl Output {
    /// All records of all files.
    pub fn records(&self) -> Vec<Record> {
        self.files
            .iter()
            .flat_map(|f| f.records.iter().cloned())
            .collect()
    }
}

/// Reads every completed `*.ndjson.zst` and `*.parquet` file under `dir`, recursively.
///
/// # Errors
/// [`RecordsError::Io`] on I/O or zstd failure; [`RecordsError::Line`] on a line that is
/// not exactly a record.
pub fn read_output(dir: &Path) -> Result<Output, RecordsError> {
    let mut paths = Vec::new();
    collect_files(dir, &mut paths)?;
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let records = read_file(&path)?;
        let relative = path.strip_prefix(dir).unwrap_or(&path).to_owned();
        files.push(RecordFile { relative, records });
    }
    Ok(Output { files })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RecordsError> {
    let io_err = |source| RecordsError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(io_err)?.is_dir() {
            collect_files(&path, out)?;
        } else if name.ends_with(".ndjson.zst") || name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Decodes one record file: `.parquet` by its rows, anything else as zstd NDJSON
/// (streaming, one line at a time).
///
/// # Errors
/// As [`read_output`].
pub fn read_file(path: &Path) -> Result<Vec<Record>, RecordsError> {
    if path.extension().is_some_and(|e| e == "parquet") {
        return crate::parquet_records::read_parquet_file(path);
    }
    let io_err = |source| RecordsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let decoder = zstd::stream::read::Decoder::new(file).map_err(io_err)?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(decoder).lines().enumerate() {
        let line = line.map_err(io_err)?;
        records.push(parse_line(&line).map_err(|reason| RecordsError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason,
        })?);
    }
    Ok(records)
}

/// Parses one NDJSON line, requiring exactly the fields in [`RECORD_FIELDS`].
///
/// # Errors
/// A description of what is wrong.
pub fn parse_line(line: &str) -> Result<Record, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = RECORD_FIELDS.to_vec();
    keys.sort_unstable();
    expected.sort_unstable();
    if keys != expected {
        return Err(format!("fields {keys:?}, expected {expected:?}"));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The record Sluice should write for `spec`, with an empty `received_at`.
pub fn expected_record(spec: &FrameSpec) -> Record {
    let tunnel = spec.tunnel.as_ref();
    Record {
        received_at: String::new(),
        tunnel_src: tunnel.map(|t| t.outer.src().to_string()),
        tunnel_dst: tunnel.map(|t| t.outer.dst().to_string()),
        gre_key: tunnel.and_then(|t| t.key),
        src_ip: spec.inner.src.to_string(),
        src_port: spec.inner.src_port,
        dst_ip: spec.inner.dst.to_string(),
        dst_port: spec.inner.dst_port,
        payload_len: spec.inner.payload.len(),
        payload: BASE64.encode(&spec.inner.payload),
    }
}

/// `records` with `received_at` cleared, sorted: ready to compare with
/// [`expected_record`]s passed through the same function.
pub fn normalize(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut out: Vec<Record> = records
        .into_iter()
        .map(|r| Record {
            received_at: String::new(),
            ..r
        })
        .collect();
    out.sort();
    out
}

/// True for `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, exactly six fractional digits).
pub fn is_rfc3339_micros(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 27
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            26 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// The partition directory a timestamp belongs in: `dt=YYYY-MM-DD/hour=HH`.
pub fn partition_of(received_at: &str) -> Option<String> {
    is_rfc3339_micros(received_at)
        .then(|| format!("dt={}/hour={}", &received_at[..10], &received_at[11..13]))
}

/// True when `relative` is `dt=YYYY-MM-DD/hour=HH/<host>-<worker>-<sequence>.ndjson.zst`
/// (or `.parquet`) with a numeric worker and sequence.
pub fn is_valid_file_path(relative: &Path) -> bool {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let [dt, hour, name] = parts.as_slice() else {
        return false;
    };
    let date_ok = dt.len() == 13
        && is_rfc3339_micros(&format!("{}T00:00:00.000000Z", &dt[3..]))
        && dt.starts_with("dt=");
    let hour_ok = hour.len() == 7
        && hour.starts_with("hour=")
        && hour[5..].parse::<u8>().is_ok_and(|h| h < 24);
    let Some(stem) = name
        .strip_suffix(".ndjson.zst")
        .or_else(|| name.strip_suffix(".parquet"))
    else {
        return false;
    };
    let mut fields = stem.rsplitn(3, '-');
    let sequence = fields.next().unwrap_or_default();
    let worker = fields.next().unwrap_or_default();
    let host = fields.next().unwrap_or_default();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    date_ok && hour_ok && !host.is_empty() && numeric(worker) && numeric(sequence)
}

impl Record {
    /// The record's summary, for comparison with tshark and frame specs.
    ///
    /// # Errors
    /// [`RecordsError::Field`] when an address does not parse.
    pub fn summary(&self) -> Result<PacketSummary, RecordsError> {
        let parse = |field: &'static str, text: &str| {
            text.parse::<IpAddr>().map_err(|e| RecordsError::Field {
                field,
                reason: format!("{text:?}: {e}"),
            })
        };
        Ok(PacketSummary {
            tunnel_src: self
                .tunnel_src
                .as_deref()
                .map(|t| parse("tunnel_src", t))
                .transpose()?,
            tunnel_dst: self
                .tunnel_dst
                .as_deref()
                .map(|t| parse("tunnel_dst", t))
                .transpose()?,
            gre_key: self.gre_key,
            src_ip: parse("src_ip", &self.src_ip)?,
            src_port: self.src_port,
            dst_ip: parse("dst_ip", &self.dst_ip)?,
            dst_port: self.dst_port,
            payload_len: self.payload_len,
        })
    }

    /// Checks the record on its own: timestamp format, canonical addresses, tunnel fields
    /// both present or both absent (and no key without a tunnel), base64 payload whose
    /// length is `payload_len`.
    ///
    /// # Errors
    /// [`RecordsError::Field`] naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), RecordsError> {
        let bad = |field, reason: String| Err(RecordsError::Field { field, reason });
        if !is_rfc3339_micros(&self.received_at) {
            return bad(
                "received_at",
                format!("{:?} is not RFC 3339 UTC µs", self.received_at),
            );
        }
        let fields = [
            ("tunnel_src", self.tunnel_src.as_deref()),
            ("tunnel_dst", self.tunnel_dst.as_deref()),
            ("src_ip", Some(self.src_ip.as_str())),
            ("dst_ip", Some(self.dst_ip.as_str())),
        ];
        for (field, text) in fields {
            if let Some(text) = text {
                match text.parse::<IpAddr>() {
                    Ok(ip) if ip.to_string() == text => {}
                    _ => return bad(field, format!("{text:?} is not a canonical address")),
                }
            }
        }
        if self.tunnel_src.is_some() != self.tunnel_dst.is_some() {
            return bad("tunnel_dst", "tunnel_src and tunnel_dst disagree".into());
        }
        if self.gre_key.is_some() && self.tunnel_src.is_none() {
            return bad("gre_key", "a key without a tunnel".into());
        }
        match BASE64.decode(&self.payload) {
            Ok(bytes) if bytes.len() == self.payload_len => Ok(()),
            Ok(bytes) => bad(
                "payload_len",
                format!("{} but payload has {} bytes", self.payload_len, bytes.len()),
            ),
            Err(e) => bad("payload", e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{MatrixParams, variant_matrix};
    use std::io::Write as _;

    const SAMPLE: &str = r#"{"received_at":"2026-11-22T06:25:25.123456Z","tunnel_src":"192.0.2.1","tunnel_dst":"192.0.2.2","gre_key":42,"src_ip":"203.0.113.5","src_port":40000,"dst_ip":"203.0.113.9","dst_port":5000,"payload_len":5,"payload":"aGVsbG8="}"#;

    fn sample() -> Record {
        Record {
            received_at: "2026-11-22T06:25:25.123456Z".into(),
            tunnel_src: Some("192.0.2.1".into()),
            tunnel_dst: Some("192.0.2.2".into()),
            gre_key: Some(42),
            src_ip: "203.0.113.5".into(),
            src_port: 40000,
            dst_ip: "203.0.113.9".into(),
            dst_port: 5000,
            payload_len: 5,
            payload: "aGVsbG8=".into(),
        }
    }

    fn write_zst(path: &Path, lines: &[String]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let file = File::create(path).expect("create");
        let mut encoder = zstd::stream::write::Encoder::new(file, 3).expect("encoder");
        for line in lines {
            writeln!(encoder, "{line}").expect("write");
        }
        encoder.finish().expect("finish");
    }

    #[test]
    fn sample_line_parses_and_validates() {
        let record = parse_line(SAMPLE).expect("parse");
        assert_eq!(record, sample());
        record.validate().expect("valid");
        assert_eq!(serde_json::to_string(&record).expect("serialize"), SAMPLE);
    }

    #[test]
    fn missing_null_field_and_extra_field_are_rejected() {
        let without_key = SAMPLE.replace(r#""gre_key":42,"#, "");
        assert!(parse_line(&without_key).is_err());
        let extra = SAMPLE.replace('}', r#","extra":1}"#);
        assert!(parse_line(&extra).is_err());
        let null_key = SAMPLE.replace("42", "null");
        assert_eq!(parse_line(&null_key).expect("parse").gre_key, None);
    }

    #[test]
    fn validate_names_the_wrong_field() {
        let field_of = |record: Record| match record.validate() {
            Err(RecordsError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut r = sample();
        r.received_at = "2026-11-22T06:25:25.123Z".into();
        assert_eq!(field_of(r), "received_at");
        let mut r = sample();
        r.src_ip = "2001:0db8::1".into();
        assert_eq!(field_of(r), "src_ip");
        let mut r = sample();
        r.tunnel_dst = None;
        assert_eq!(field_of(r), "tunnel_dst");
        let mut r = sample();
        r.payload_len = 4;
        assert_eq!(field_of(r), "payload_len");
        let mut r = sample();
        r.tunnel_src = None;
        r.tunnel_dst = None;
        assert_eq!(field_of(r), "gre_key");
    }

    #[test]
    fn expected_records_of_the_matrix_are_valid_and_summarize_their_spec() {
        for (label, spec) in variant_matrix(&MatrixParams::default()) {
            let mut record = expected_record(&spec);
            record.received_at = "2026-01-01T00:00:00.000000Z".into();
            record.validate().unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(
                record.summary().expect("summary"),
                PacketSummary::from(&spec),
                "{label}"
            );
        }
    }

    #[test]
    fn output_directory_is_read_recursively_skipping_dot_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut second = sample();
        second.src_port = 40001;
        second.tunnel_src = None;
        second.tunnel_dst = None;
        second.gre_key = None;
        let line = |r: &Record| serde_json::to_string(r).expect("json");
        let first_path = Path::new("dt=2026-11-22/hour=06/host-0-0.ndjson.zst");
        write_zst(&dir.path().join(first_path), &[line(&sample())]);
        write_zst(
            &dir.path().join("dt=2026-11-22/hour=07/host-1-0.ndjson.zst"),
            &[line(&second), line(&sample())],
        );
        write_zst(
            &dir.path()
                .join("dt=2026-11-22/hour=07/.host-1-1.ndjson.zst"),
            &[line(&sample())],
        );
        write_zst(&dir.path().join(".tmp/x.ndjson.zst"), &[line(&sample())]);

        let output = read_output(dir.path()).expect("read");
        assert_eq!(output.files.len(), 2);
        assert_eq!(output.files[0].relative, first_path);
        assert!(output.files.iter().all(|f| is_valid_file_path(&f.relative)));
        assert_eq!(output.records(), vec![sample(), second.clone(), sample()]);
        let normalized = normalize(output.records());
        assert_eq!(normalized.len(), 3);
        assert!(normalized.iter().all(|r| r.received_at.is_empty()));
        // Plain (no tunnel) sorts first: `None < Some`.
        assert_eq!(normalized[0], normalize([second]).remove(0));
        assert_eq!(normalized[1].src_port, 40000);
        assert_eq!(normalized[2].src_port, 40000);
    }

    #[test]
    fn file_paths_and_partitions() {
        assert!(is_valid_file_path(Path::new(
            "dt=2026-11-22/hour=06/my-host-1-17.ndjson.zst"
        )));
        assert!(!is_valid_file_path(Path::new(
            "dt=2026-11-22/hour=24/h-1-17.ndjson.zst"
        )));
        assert!(!is_valid_file_path(Path::new(
            "dt=2026-11-22/hour=06/h-x-17.ndjson.zst"
        )));
        assert!(!is_valid_file_path(Path::new("hour=06/h-1-17.ndjson.zst")));
        assert_eq!(
            partition_of("2026-11-22T06:25:25.123456Z").as_deref(),
            Some("dt=2026-11-22/hour=06")
        );
        assert_eq!(partition_of("2026-11-22 06:25:25"), None);
    }
}
