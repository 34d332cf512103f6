//! Combining finished batch files of one stream into one larger file, without decoding or
//! encoding a row again.
//!
//! Why: a batch closes at `batch.max_age_ms` (1 s) at low rates, so every worker writes a
//! small file a second per stream. BigQuery reads many small objects slowly (a cost per
//! file, Parquet row groups far under its 16 MiB guidance), so the uploader joins the
//! spooled batches of one stream and hour into objects of hundreds of MiB. Decoding and
//! encoding them again would take CPU from the packet path and memory in proportion to the
//! object; joining the files as they are costs one copy of their bytes, and memory stays
//! at one batch (the one being pushed) plus the output's metadata.
//!
//! How each [`CombineKind`] joins:
//!
//! - **`ndjson.gz`, `ndjson.zst`**: the files back to back. Concatenated gzip members are
//!   one gzip file (RFC 1952: `gzip -d`, Python's `gzip`, flate2's `MultiGzDecoder` and
//!   DuckDB read them all, as the tests check; BigQuery's documentation does not say, and
//!   no test here reaches BigQuery), concatenated zstd frames one zstd file.
//! - **`csv.gz`**: every CSV batch starts with its header line as a gzip member of its own
//!   ([`crate::TextEncoder::csv_gzip`]); the first batch goes in whole, every later one
//!   without that member, so the object has one header line.
//! - **`parquet`**: every row group of every batch becomes a row group of the output, its
//!   column chunks copied byte for byte (parquet's `append_column`); only the footer is
//!   new. Kept from the batches: column chunk statistics, page headers (with their
//!   statistics), dictionary pages, the column index and offset index (offsets moved to
//!   where the chunks land), bloom filters, level histograms; the footer's `created_by`,
//!   key-value metadata and format version are the first batch's. Row groups stay as the
//!   encoder cut them (a batch under `row_group_bytes` is one row group).
//!
//! Operating: group batches by [`compatibility_key`] (it differs when a stream's columns
//! changed between runs: another CSV header, another Parquet schema), then
//! [`Combiner::push`] each batch of a group and [`Combiner::finish`]. A batch refused for
//! what it holds ([`CombineError::Batch`]) leaves the output as it was and the combiner
//! usable; after a failed write ([`CombineError::Write`], [`CombineError::ParquetWrite`])
//! the output is incomplete and every later call returns [`CombineError::Failed`].
//!
//! What is checked without decoding: gzip batches start with a gzip header (their deflate
//! data is not inflated: the spool's CRC vouches for the bytes); zstd batches are walked
//! frame by frame through the block headers; a CSV batch's header member is inflated (one
//! line) and must be followed by another member; a Parquet batch's footer, page index and
//! bloom filters are read, and every column chunk must lie inside the file.

mod csv_header;
mod row_groups;

use std::io::Write;

use bytes::Bytes;
use parquet::{errors::ParquetError, file::writer::SerializedFileWriter};

use crate::Format;

/// How the batches of one file format are joined into one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CombineKind {
    /// `ndjson.gz`: gzip members back to back.
    GzipMembers,
    /// `ndjson.zst`: zstd frames back to back.
    ZstdFrames,
    /// `csv.gz`: the first batch whole, the later ones without their header member.
    CsvGzip,
    /// `parquet`: every batch's row groups appended, one footer.
    Parquet,
}

impl CombineKind {
    /// How batches of `format` are joined.
    pub fn for_format(format: Format) -> Self {
        match format {
            Format::NdjsonGzip => Self::GzipMembers,
            Format::NdjsonZstd => Self::ZstdFrames,
            Format::CsvGzip => Self::CsvGzip,
            Format::Parquet => Self::Parquet,
        }
    }

    /// The kind of a batch file named `*.{ext}`, `ext` as [`Format::extension`] spells it
    /// (`ndjson.gz`, `ndjson.zst`, `csv.gz`, `parquet`; no leading dot); `None` for any
    /// other extension.
    pub fn for_extension(ext: &str) -> Option<Self> {
        Format::ALL
            .into_iter()
            .find(|format| format.extension() == ext)
            .map(Self::for_format)
    }

    /// The format whose batches this kind joins.
    pub fn format(self) -> Format {
        match self {
            Self::GzipMembers => Format::NdjsonGzip,
            Self::ZstdFrames => Format::NdjsonZstd,
            Self::CsvGzip => Format::CsvGzip,
            Self::Parquet => Format::Parquet,
        }
    }
}

impl std::fmt::Display for CombineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.format().name())
    }
}

/// Why one batch cannot join an object.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The batch is not a complete file of its kind.
    #[error("not a complete {kind} batch: {reason}")]
    Malformed {
        /// The kind the batch was pushed as.
        kind: CombineKind,
        /// What is wrong, e.g. `starts with 50 41 52 31, not a gzip header`.
        reason: String,
    },
    /// The Parquet footer, page index or a bloom filter could not be read.
    #[error("unreadable Parquet metadata: {source}")]
    ParquetMetadata {
        /// The parquet crate's error.
        #[source]
        source: ParquetError,
    },
    /// The batch's columns differ from the object's (the first batch's).
    #[error("{what} differs from the object's: {found:?} where the object has {expected:?}")]
    Incompatible {
        /// `CSV header line` or `Parquet schema`.
        what: &'static str,
        /// The object's first differing line (of the header line or the printed schema).
        expected: String,
        /// The batch's line there.
        found: String,
    },
}

/// Why combining failed.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// Batch `index` was refused; nothing of it was written, the combiner stays usable.
    #[error("batch {index}: {source}")]
    Batch {
        /// 0-based number of the [`Combiner::push`] call (refused batches count).
        index: u64,
        /// What is wrong with the batch.
        #[source]
        source: BatchError,
    },
    /// Writing to the output failed; the output is incomplete.
    #[error("writing the combined file failed after {batches} batches: {source}")]
    Write {
        /// Batches completely written before the failure.
        batches: u64,
        /// The output's error.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet writer failed (appending a column chunk, closing a row group, writing
    /// the footer); the output is incomplete.
    #[error("writing the combined Parquet file failed after {batches} batches: {source}")]
    ParquetWrite {
        /// Batches completely written before the failure.
        batches: u64,
        /// The parquet crate's error.
        #[source]
        source: ParquetError,
    },
    /// [`Combiner::finish`] without a batch: zero bytes are not a valid file of any kind.
    #[error("no batch was combined: an empty object is not a valid {kind} file")]
    NoBatches {
        /// The combiner's kind.
        kind: CombineKind,
    },
    /// An earlier write failed; the output is incomplete and must be discarded.
    #[error("an earlier write failed: the combined file is incomplete and must be discarded")]
    Failed,
}

/// The key batches must share to be combined into one object: empty for NDJSON (any
/// batches concatenate), the header line for CSV, the printed Parquet schema (column
/// names, physical and logical types, repetition). Batches of one stream whose columns did
/// not change have equal keys; [`Combiner::push`] refuses a batch whose key differs from
/// the first batch's. Checks the batch as `push` does (a Parquet batch through its footer
/// alone: `push` also reads its page index and bloom filters).
///
/// # Errors
/// [`BatchError::Malformed`] or [`BatchError::ParquetMetadata`]: not a complete file of
/// `kind`.
pub fn compatibility_key(kind: CombineKind, batch: &[u8]) -> Result<Vec<u8>, BatchError> {
    match kind {
        CombineKind::GzipMembers => check_gzip_start(kind, batch).map(|()| Vec::new()),
        CombineKind::ZstdFrames => check_zstd_frames(batch).map(|()| Vec::new()),
        CombineKind::CsvGzip => Ok(csv_header::split(batch)?.line),
        CombineKind::Parquet => row_groups::footer_key(batch),
    }
}

/// What a finished combined file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CombineSummary {
    /// Bytes of the combined file.
    pub bytes: u64,
    /// Batches combined (refused ones not counted).
    pub batches: u64,
    /// Rows, when known without decoding: Parquet only (from the footers).
    pub rows: Option<u64>,
    /// Parquet row groups (the sum of the batches'); `None` for the text kinds.
    pub row_groups: Option<u64>,
}

/// Writes batches of one kind and compatibility key, one at a time, as one file into `W`
/// (e.g. a temporary file), holding no more than the batch being pushed plus the
/// output's metadata (Parquet: the footer's row groups and page index, until `finish`).
pub struct Combiner<W: Write + Send> {
    kind: CombineKind,
    output: Output<W>,
    /// The first batch's compatibility key (CSV header line, printed Parquet schema).
    key: Option<Vec<u8>>,
    pushes: u64,
    batches: u64,
    rows: u64,
    row_groups: u64,
}

enum Output<W: Write + Send> {
    /// Text kinds; Parquet before its first batch.
    Plain(Counted<W>),
    /// Parquet from its first batch on (the writer needs the schema).
    Parquet(Box<SerializedFileWriter<Counted<W>>>),
    /// A write failed.
    Failed,
}

impl<W: Write + Send> std::fmt::Debug for Combiner<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner")
            .field("kind", &self.kind)
            .field("batches", &self.batches)
            .field("bytes_written", &self.bytes_written())
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> Combiner<W> {
    /// An empty combined file of `kind`, written to `out`.
    pub fn new(kind: CombineKind, out: W) -> Self {
        Self {
            kind,
            output: Output::Plain(Counted {
                inner: out,
                bytes: 0,
            }),
            key: None,
            pushes: 0,
            batches: 0,
            rows: 0,
            row_groups: 0,
        }
    }

    /// The kind this combiner joins.
    pub fn kind(&self) -> CombineKind {
        self.kind
    }

    /// Batches combined so far.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Parquet row groups appended so far (0 for the text kinds). The output's metadata
    /// held until `finish` grows with them (about 15 KB a row group of 18 columns: footer
    /// entry, column and offset index), so an object should be closed at a row-group
    /// count as well as at a size.
    pub fn row_groups(&self) -> u64 {
        self.row_groups
    }

    /// Bytes of the combined file so far, to close an object at a size. Parquet: up to
    /// 8 KiB of them still sit in the writer's buffer, and the page index and footer come
    /// at `finish` (about 3 KB a row group of 18 columns).
    pub fn bytes_written(&self) -> u64 {
        match &self.output {
            Output::Plain(out) => out.bytes,
            Output::Parquet(writer) => writer.bytes_written() as u64,
            Output::Failed => 0,
        }
    }

    /// Appends one complete batch file, as [`crate::BatchEncoder::finish`] made it.
    ///
    /// # Errors
    /// [`CombineError::Batch`]: the batch is malformed or its compatibility key differs
    /// from the first batch's; nothing of it was written. [`CombineError::Write`] /
    /// [`CombineError::ParquetWrite`]: the output failed, and is incomplete.
    /// [`CombineError::Failed`]: an earlier write failed.
    pub fn push(&mut self, batch: Bytes) -> Result<(), CombineError> {
        if matches!(self.output, Output::Failed) {
            return Err(CombineError::Failed);
        }
        let index = self.pushes;
        self.pushes += 1;
        let refused = |source| CombineError::Batch { index, source };
        match self.kind {
            CombineKind::GzipMembers => {
                check_gzip_start(self.kind, &batch).map_err(refused)?;
                self.write_plain(&batch)?;
            }
            CombineKind::ZstdFrames => {
                check_zstd_frames(&batch).map_err(refused)?;
                self.write_plain(&batch)?;
            }
            CombineKind::CsvGzip => {
                let header = csv_header::split(&batch).map_err(refused)?;
                let rest = match &self.key {
                    None => &batch[..],
                    Some(key) if *key == header.line => &batch[header.member_len..],
                    Some(key) => {
                        return Err(refused(incompatible("CSV header line", key, &header.line)));
                    }
                };
                self.write_plain(rest)?;
                if self.key.is_none() {
                    self.key = Some(header.line);
                }
            }
            CombineKind::Parquet => self.push_parquet(batch, index)?,
        }
        self.batches += 1;
        Ok(())
    }

    fn write_plain(&mut self, bytes: &[u8]) -> Result<(), CombineError> {
        let Output::Plain(out) = &mut self.output else {
            return Err(CombineError::Failed);
        };
        if let Err(source) = out.write_all(bytes) {
            self.output = Output::Failed;
            return Err(CombineError::Write {
                batches: self.batches,
                source,
            });
        }
        Ok(())
    }

    fn push_parquet(&mut self, batch: Bytes, index: u64) -> Result<(), CombineError> {
        let refused = |source| CombineError::Batch { index, source };
        let mut batch = row_groups::ParquetBatch::read(batch).map_err(refused)?;
        match &self.key {
            None => {}
            Some(key) if *key == batch.key => {
                if let Output::Parquet(writer) = &self.output
                    && writer.schema_descr().root_schema() != batch.schema()
                {
                    // Same printed schema, different tree (e.g. a field id the printer
                    // shows differently): refused before anything is written.
                    return Err(refused(BatchError::Incompatible {
                        what: "Parquet schema",
                        expected: format!("{:?}", writer.schema_descr().root_schema()),
                        found: format!("{:?}", batch.schema()),
                    }));
                }
            }
            Some(key) => return Err(refused(incompatible("Parquet schema", key, &batch.key))),
        }
        let batches = self.batches;
        let output = std::mem::replace(&mut self.output, Output::Failed);
        let mut writer = match output {
            Output::Plain(out) => Box::new(
                batch
                    .writer(out)
                    .map_err(|source| CombineError::ParquetWrite { batches, source })?,
            ),
            Output::Parquet(writer) => writer,
            Output::Failed => return Err(CombineError::Failed),
        };
        let (rows, row_groups) = batch
            .append_to(&mut writer)
            .map_err(|source| CombineError::ParquetWrite { batches, source })?;
        self.output = Output::Parquet(writer);
        if self.key.is_none() {
            self.key = Some(batch.key);
        }
        self.rows += rows;
        self.row_groups += row_groups;
        Ok(())
    }

    /// Finishes the file (Parquet: writes the footer), flushes `W` and returns it with a
    /// summary.
    ///
    /// # Errors
    /// [`CombineError::NoBatches`] when no batch was combined, [`CombineError::Write`] /
    /// [`CombineError::ParquetWrite`] when the output fails, [`CombineError::Failed`]
    /// after an earlier failed write.
    pub fn finish(self) -> Result<(W, CombineSummary), CombineError> {
        if self.batches == 0 && !matches!(self.output, Output::Failed) {
            return Err(CombineError::NoBatches { kind: self.kind });
        }
        let batches = self.batches;
        let mut out = match self.output {
            Output::Plain(out) => out,
            Output::Parquet(writer) => writer
                .into_inner()
                .map_err(|source| CombineError::ParquetWrite { batches, source })?,
            Output::Failed => return Err(CombineError::Failed),
        };
        out.flush()
            .map_err(|source| CombineError::Write { batches, source })?;
        let parquet = self.kind == CombineKind::Parquet;
        let summary = CombineSummary {
            bytes: out.bytes,
            batches,
            rows: parquet.then_some(self.rows),
            row_groups: parquet.then_some(self.row_groups),
        };
        Ok((out.inner, summary))
    }
}

/// The output, counting the bytes that reached it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The first bytes of a gzip member: ID1, ID2, CM = deflate (RFC 1952).
pub(crate) const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The shortest gzip member: a 10-byte header, an empty deflate block (2), the trailer (8).
const GZIP_MIN_MEMBER: usize = 20;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether `bytes` starts like a gzip member (its deflate data is not inflated).
fn check_gzip_start(kind: CombineKind, bytes: &[u8]) -> Result<(), BatchError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Err(BatchError::Malformed {
            kind,
            reason: format!("starts with {}, not a gzip header", hex_start(bytes)),
        });
    }
    if bytes.len() < GZIP_MIN_MEMBER {
        return Err(BatchError::Malformed {
            kind,
            reason: format!(
                "{} bytes, shorter than any gzip member ({GZIP_MIN_MEMBER})",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// Whether `bytes` is whole zstd frames, read through their frame and block headers.
fn check_zstd_frames(bytes: &[u8]) -> Result<(), BatchError> {
    let malformed = |reason| BatchError::Malformed {
        kind: CombineKind::ZstdFrames,
        reason,
    };
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return Err(malformed(format!(
            "starts with {}, not a zstd frame",
            hex_start(bytes)
        )));
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let frame = zstd::zstd_safe::find_frame_compressed_size(rest).map_err(|code| {
            malformed(format!(
                "frame at byte {offset}: {}",
                zstd::zstd_safe::get_error_name(code)
            ))
        })?;
        // A frame's size is never 0 on success; the guard keeps the loop finite anyway.
        if frame == 0 || frame > rest.len() {
            return Err(malformed(format!("frame at byte {offset} has no length")));
        }
        rest = &rest[frame..];
    }
    Ok(())
}

/// Up to the first 8 bytes, in hex, for an error message.
fn hex_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (0 bytes)".to_owned();
    }
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`BatchError::Incompatible`] naming the first line where the keys differ.
fn incompatible(what: &'static str, expected: &[u8], found: &[u8]) -> BatchError {
    let expected = String::from_utf8_lossy(expected);
    let found = String::from_utf8_lossy(found);
    let same = expected
        .lines()
        .zip(found.lines())
        .take_while(|(a, b)| a == b)
        .count();
    let line = |text: &str| {
        text.lines()
            .nth(same)
            .map_or_else(|| "(no more lines)".to_owned(), |l| l.trim().to_owned())
    };
    BatchError::Incompatible {
        what,
        expected: line(&expected),
        found: line(&found),
    }
}

#[cfg(test)]
mod tests;
