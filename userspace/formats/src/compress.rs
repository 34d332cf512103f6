//! The gzip or zstd stream a text batch is written through. Rows are collected in a
//! reused buffer and handed to the compressor in chunks (gzip: 64 KiB into one member;
//! zstd: 1 MiB compressed whole as a frame of its own), so the compressor sees few large
//! writes instead of one per row.
//!
//! One [`Compressed`] lives as long as its encoder, batch after batch:
//! [`Compressed::finish_file`] ends the file and starts the next one on the same
//! compressor (the zstd context is reused, not rebuilt; the deflate state is reset), into a
//! file buffer sized from the last file. The bytes are those a new compressor would write:
//! a zstd frame or gzip member depends on the level and the input only (tested).
//!
//! A CSV batch starts with its header line as a gzip member of its own
//! ([`Compressed::gzip_after_member`], compressed once per encoder), so that batches can be
//! combined into one object by dropping every later batch's first member
//! (`crate::combine`).

use std::io::Write as _;

use crate::{FormatError, zstd_context::FrameContext};
use flate2::{Crc, write::DeflateEncoder};

/// Bytes collected before they go to the gzip compressor.
const CHUNK: usize = 64 * 1024;

/// Bytes collected before they are compressed as one zstd frame (whole rows: the frame
/// ends at the first row boundary at or past it).
const ZSTD_FRAME: usize = 1024 * 1024;

/// The gzip level of a member written whole by [`gzip_member`]: fixed rather than the
/// configured level, so that a CSV header member's bytes depend on the column names alone.
const MEMBER_LEVEL: u32 = 6;

/// A compressed byte stream kept in memory, one file per batch.
pub(crate) struct Compressed {
    pending: Vec<u8>,
    stream: Stream,
    /// Uncompressed bytes of the current file handed to the compressor (for a CSV file,
    /// the header line's included).
    written: u64,
    /// Length of the last finished file, for the buffer of a file started after a
    /// discarded one.
    last_file_len: usize,
    /// Why the stream could not be reset after a failed file: every later file fails
    /// with it (not expected; see [`Compressed::discard_file`]).
    broken: Option<std::io::Error>,
}

enum Stream {
    /// Boxed: the deflate state's fields are most of the stream's size.
    Gzip(Box<Gzip>),
    Zstd(Zstd),
}

impl Stream {
    /// Bytes collected before they go to the compressor.
    fn chunk(&self) -> usize {
        match self {
            Self::Gzip(_) => CHUNK,
            Self::Zstd(_) => ZSTD_FRAME,
        }
    }
}

/// A gzip member written as its parts (RFC 1952): a fixed header, raw deflate data, and
/// the CRC-32 and length of the input. The same bytes as flate2's `GzEncoder` (tested);
/// unlike it, the deflate state is reset for the next file instead of rebuilt.
struct Gzip {
    deflate: DeflateEncoder<Vec<u8>>,
    level: flate2::Compression,
    crc: Crc,
    /// What every file starts with: a complete leading member if any (the CSV header
    /// line), then the 10-byte header of the member holding the rows.
    start: Vec<u8>,
    /// Uncompressed length of the leading member's content.
    leading_len: u64,
}

/// zstd frames written into the file buffer directly, one per [`ZSTD_FRAME`] of rows.
///
/// A frame is compressed in one call from the rows' buffer, where a single stream over
/// the file would first copy every byte into zstd's own window and, once that wraps, match
/// across two segments (its `extDict` path): 13% of a text row's time in the daemon's
/// profile. Concatenated frames are one zstd file to every reader (RFC 8878, 3.1); a frame
/// of 1 MiB holds the repetition rows have (the matches are within a few rows).
struct Zstd {
    context: FrameContext,
    file: Vec<u8>,
    /// Where a frame is compressed to: room for the worst case, which zstd needs to
    /// compress in one pass; then appended to `file` (a few percent of the input).
    frame: Vec<u8>,
}

impl std::fmt::Debug for Compressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressed")
            .field("codec", &self.codec())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl Compressed {
    /// A gzip stream at `level` (0–9).
    pub(crate) fn gzip(level: i32) -> Self {
        Self::gzip_with(Vec::new(), 0, level)
    }

    /// A gzip stream at `level` (0–9) whose every file starts with `first` as a complete
    /// gzip member of its own (see [`gzip_member`]); `first` counts as uncompressed bytes
    /// written.
    ///
    /// # Errors
    /// [`FormatError::Compression`] (not expected: the member is written to memory).
    pub(crate) fn gzip_after_member(first: &[u8], level: i32) -> Result<Self, FormatError> {
        let member = gzip_member(first).map_err(|source| FormatError::Compression {
            codec: "gzip",
            source,
        })?;
        Ok(Self::gzip_with(member, first.len() as u64, level))
    }

    fn gzip_with(leading_member: Vec<u8>, leading_len: u64, level: i32) -> Self {
        let level = flate2::Compression::new(level.clamp(0, 9) as u32);
        let mut start = leading_member;
        start.extend_from_slice(&gzip_header(level));
        let deflate = DeflateEncoder::new(start.clone(), level);
        let mut compressed = Self::with(Stream::Gzip(Box::new(Gzip {
            deflate,
            level,
            crc: Crc::new(),
            start,
            leading_len,
        })));
        compressed.written = leading_len;
        compressed
    }

    /// A zstd stream at `level` (1–22).
    pub(crate) fn zstd(level: i32) -> Result<Self, FormatError> {
        let zstd = Zstd::new(level).map_err(|source| FormatError::Compression {
            codec: "zstd",
            source,
        })?;
        Ok(Self::with(Stream::Zstd(zstd)))
    }

    fn with(stream: Stream) -> Self {
        Self {
            pending: Vec::with_capacity(stream.chunk() + 4096),
            stream,
            written: 0,
            last_file_len: 0,
            broken: None,
        }
    }

    fn codec(&self) -> &'static str {
        match self.stream {
            Stream::Gzip(_) => "gzip",
            Stream::Zstd(_) => "zstd",
        }
    }

    fn error(&self, source: std::io::Error) -> FormatError {
        FormatError::Compression {
            codec: self.codec(),
            source,
        }
    }

    /// The buffer to append uncompressed bytes to; call [`Self::commit`] afterwards.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Uncompressed bytes of the current file so far (committed or pending).
    pub(crate) fn uncompressed_len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Hands the buffer to the compressor once it holds a chunk (gzip) or a frame (zstd).
    pub(crate) fn commit(&mut self) -> Result<(), FormatError> {
        if self.pending.len() >= self.stream.chunk() {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), FormatError> {
        let result = match &mut self.stream {
            Stream::Gzip(gzip) => {
                gzip.crc.update(&self.pending);
                gzip.deflate.write_all(&self.pending)
            }
            Stream::Zstd(zstd) => {
                if self.pending.is_empty() {
                    Ok(())
                } else {
                    zstd.frame(&self.pending)
                }
            }
        };
        result.map_err(|source| self.error(source))?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// The complete compressed file; the stream is left at the start of the next one.
    ///
    /// # Errors
    /// [`FormatError::Compression`]; then call [`Self::discard_file`].
    pub(crate) fn finish_file(&mut self) -> Result<Vec<u8>, FormatError> {
        if let Some(source) = &self.broken {
            return Err(self.error(std::io::Error::new(source.kind(), source.to_string())));
        }
        self.flush_pending()?;
        let file = match &mut self.stream {
            Stream::Gzip(gzip) => gzip.finish(),
            Stream::Zstd(zstd) => zstd.finish(),
        }
        .map_err(|source| self.error(source))?;
        self.last_file_len = file.len();
        self.written = self.leading_len();
        Ok(file)
    }

    /// Drops what the current file holds and starts the next one: after a refused row or
    /// a failed [`Self::finish_file`], so that the next batch starts clean.
    pub(crate) fn discard_file(&mut self) {
        self.pending.clear();
        self.written = self.leading_len();
        match &mut self.stream {
            Stream::Gzip(gzip) => {
                // A new deflate state rather than `reset`, which would first finish the
                // abandoned stream.
                let next = gzip.file_buffer(self.last_file_len);
                gzip.deflate = DeflateEncoder::new(next, gzip.level);
                gzip.crc.reset();
            }
            Stream::Zstd(zstd) => {
                zstd.file = Zstd::file_buffer(self.last_file_len);
                // zstd documents that resetting a session never fails; should it, every
                // later file fails rather than continue an abandoned frame.
                if let Err(source) = zstd.reset() {
                    self.broken = Some(source);
                }
            }
        }
    }

    fn leading_len(&self) -> u64 {
        match &self.stream {
            Stream::Gzip(gzip) => gzip.leading_len,
            Stream::Zstd(_) => 0,
        }
    }
}

/// Room for a file of `last_len` bytes and an eighth: a file buffer's capacity, so that it
/// does not grow (and move) while the file is written when files are of a size.
fn room_after(last_len: usize) -> usize {
    last_len + last_len / 8
}

impl Gzip {
    /// A buffer for the next file, after one of `last_len` bytes: what every file starts
    /// with, and room for the rest.
    fn file_buffer(&self, last_len: usize) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(room_after(last_len).max(self.start.len()));
        buffer.extend_from_slice(&self.start);
        buffer
    }

    /// Ends the member (deflate end, CRC-32, length) and returns the file; the next file
    /// is started.
    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        self.deflate.try_finish()?;
        let trailer = self.crc.sum().to_le_bytes();
        let length = self.crc.amount().to_le_bytes();
        let file = self.deflate.get_mut();
        file.extend_from_slice(&trailer);
        file.extend_from_slice(&length);
        let len = file.len();
        let next = self.file_buffer(len);
        self.crc.reset();
        // The stream is finished already: `reset` resets the deflate state and swaps the
        // buffers.
        self.deflate.reset(next)
    }
}

impl Zstd {
    fn new(level: i32) -> std::io::Result<Self> {
        Ok(Self {
            context: FrameContext::new(level)?,
            file: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// Appends `input` to the file as one whole frame.
    fn frame(&mut self, input: &[u8]) -> std::io::Result<()> {
        self.context.compress(input, &mut self.frame)?;
        self.file.extend_from_slice(&self.frame);
        Ok(())
    }

    /// Abandons a frame left unfinished by an error.
    fn reset(&mut self) -> std::io::Result<()> {
        self.context.reset()
    }

    /// A buffer for the next file, after one of `last_len` bytes.
    fn file_buffer(last_len: usize) -> Vec<u8> {
        Vec::with_capacity(room_after(last_len))
    }

    /// Returns the file (its last frame was written by the flush before); a file without
    /// rows is one empty frame, as a single stream would have written it.
    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        if self.file.is_empty() {
            self.frame(&[])?;
        }
        let next = Self::file_buffer(self.file.len());
        Ok(std::mem::replace(&mut self.file, next))
    }
}

/// The 10-byte header flate2's `GzEncoder::new` writes: no flags, modification time 0,
/// extra flags 2 at level 9 and 4 at levels 0-1, operating system 255 ("unknown").
fn gzip_header(level: flate2::Compression) -> [u8; 10] {
    let extra_flags = if level.level() >= flate2::Compression::best().level() {
        2
    } else if level.level() <= flate2::Compression::fast().level() {
        4
    } else {
        0
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, extra_flags, 255]
}

/// `bytes` as one complete gzip member, byte for byte the same for the same input: level
/// [`MEMBER_LEVEL`], and flate2's fixed header (no file name, modification time 0, OS byte
/// 255 "unknown", extra flags 0 at this level).
pub(crate) fn gzip_member(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut member =
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(MEMBER_LEVEL));
    member.write_all(bytes)?;
    member.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that compresses like rows: repeated structure, changing numbers.
    fn text(lines: usize, seed: usize) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| {
                format!(
                    "{{\"n\":{},\"s\":\"device-{}\",\"v\":{}}}\n",
                    i + seed,
                    (i * 7 + seed) % 13,
                    (i * 2_654_435_761 + seed) % 100_003
                )
                .into_bytes()
            })
            .collect()
    }

    /// Feeds `input` as the encoders do: line by line.
    fn write(stream: &mut Compressed, input: &[u8]) -> Result<(), FormatError> {
        for line in input.split_inclusive(|b| *b == b'\n') {
            stream.buffer().extend_from_slice(line);
            stream.commit()?;
        }
        Ok(())
    }

    /// What a new compressor writes for `input`: a new flate2 `GzEncoder` fed the same
    /// chunks, or each frame's lines compressed whole by zstd's one-shot `compress`.
    fn reference(codec: &str, level: i32, input: &[u8]) -> Vec<u8> {
        let size = if codec == "gzip" { CHUNK } else { ZSTD_FRAME };
        let mut chunks = Vec::new();
        let mut chunk = Vec::new();
        for line in input.split_inclusive(|b| *b == b'\n') {
            chunk.extend_from_slice(line);
            if chunk.len() >= size {
                chunks.push(std::mem::take(&mut chunk));
            }
        }
        if !chunk.is_empty() || chunks.is_empty() {
            chunks.push(chunk);
        }
        if codec == "gzip" {
            let level = flate2::Compression::new(level as u32);
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            for c in &chunks {
                e.write_all(c).expect("to memory");
            }
            e.finish().expect("to memory")
        } else {
            chunks
                .iter()
                .flat_map(|c| zstd::bulk::compress(c, level).expect("to memory"))
                .collect()
        }
    }

    #[test]
    fn every_file_of_a_reused_stream_equals_a_new_compressors() -> Result<(), FormatError> {
        let inputs = [
            text(9000, 1),
            Vec::new(),
            text(10, 2),
            text(30_000, 3),
            text(120_000, 4),
        ];
        for (codec, level) in [("gzip", 1), ("gzip", 6), ("gzip", 9), ("zstd", 3)] {
            let mut stream = if codec == "gzip" {
                Compressed::gzip(level)
            } else {
                Compressed::zstd(level)?
            };
            for input in &inputs {
                write(&mut stream, input)?;
                assert_eq!(stream.uncompressed_len(), input.len() as u64);
                let file = stream.finish_file()?;
                assert_eq!(file, reference(codec, level, input), "{codec} {level}");
                if codec == "zstd" {
                    // Frames past the first: still one file to a reader.
                    assert_eq!(zstd::decode_all(file.as_slice()).ok().as_ref(), Some(input));
                }
                assert_eq!(stream.uncompressed_len(), 0);
            }
        }
        Ok(())
    }

    #[test]
    fn a_discarded_file_leaves_no_trace_in_the_next() -> Result<(), FormatError> {
        let header = b"a,b\r\n";
        let streams = [
            (Compressed::gzip(6), reference("gzip", 6, &text(50, 5))),
            (Compressed::zstd(3)?, reference("zstd", 3, &text(50, 5))),
            (Compressed::gzip_after_member(header, 6)?, {
                let mut csv = gzip_member(header).expect("to memory");
                csv.extend(reference("gzip", 6, &text(50, 5)));
                csv
            }),
        ];
        for (mut stream, expected) in streams {
            let start = stream.uncompressed_len();
            write(&mut stream, &text(20_000, 4))?;
            stream.discard_file();
            assert_eq!(stream.uncompressed_len(), start);
            write(&mut stream, &text(50, 5))?;
            assert_eq!(stream.finish_file()?, expected, "{stream:?}");
            assert_eq!(stream.uncompressed_len(), start);
        }
        Ok(())
    }
}
