//! The gzip or zstd stream a text batch is written through. Rows are collected in a
//! reused buffer and handed to the compressor in chunks, so the compressor sees few large
//! writes instead of one per row.
//!
//! A CSV batch starts with its header line as a gzip member of its own
//! ([`Compressed::gzip_after_member`]), so that batches can be combined into one object by
//! dropping every later batch's first member (`crate::combine`).

use std::io::Write as _;

use flate2::write::GzEncoder;

use crate::FormatError;

/// Bytes collected before they go to the compressor.
const CHUNK: usize = 64 * 1024;

/// The gzip level of a member written whole by [`gzip_member`]: fixed rather than the
/// configured level, so that a CSV header member's bytes depend on the column names alone.
const MEMBER_LEVEL: u32 = 6;

/// A compressed byte stream kept in memory.
pub(crate) struct Compressed {
    pending: Vec<u8>,
    stream: Stream,
    written: u64,
}

enum Stream {
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
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
        let level = flate2::Compression::new(level.clamp(0, 9) as u32);
        Self::with(Stream::Gzip(GzEncoder::new(Vec::new(), level)))
    }

    /// A gzip stream at `level` (0–9) that starts with `first` as a complete gzip member
    /// of its own (see [`gzip_member`]); `first` counts as uncompressed bytes written.
    ///
    /// # Errors
    /// [`FormatError::Compression`] (not expected: the member is written to memory).
    pub(crate) fn gzip_after_member(first: &[u8], level: i32) -> Result<Self, FormatError> {
        let member = gzip_member(first).map_err(|source| FormatError::Compression {
            codec: "gzip",
            source,
        })?;
        let level = flate2::Compression::new(level.clamp(0, 9) as u32);
        let mut compressed = Self::with(Stream::Gzip(GzEncoder::new(member, level)));
        compressed.written = first.len() as u64;
        Ok(compressed)
    }

    /// A zstd stream at `level` (1–22).
    pub(crate) fn zstd(level: i32) -> Result<Self, FormatError> {
        let encoder = zstd::stream::write::Encoder::new(Vec::new(), level).map_err(|source| {
            FormatError::Compression {
                codec: "zstd",
                source,
            }
        })?;
        Ok(Self::with(Stream::Zstd(encoder)))
    }

    fn with(stream: Stream) -> Self {
        Self {
            pending: Vec::with_capacity(CHUNK + 4096),
            stream,
            written: 0,
        }
    }

    fn codec(&self) -> &'static str {
        match self.stream {
            Stream::Gzip(_) => "gzip",
            Stream::Zstd(_) => "zstd",
        }
    }

    /// The buffer to append uncompressed bytes to; call [`Self::commit`] afterwards.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Uncompressed bytes so far (committed or pending).
    pub(crate) fn uncompressed_len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Hands the buffer to the compressor once it holds a chunk.
    pub(crate) fn commit(&mut self) -> Result<(), FormatError> {
        if self.pending.len() >= CHUNK {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), FormatError> {
        let codec = self.codec();
        let result = match &mut self.stream {
            Stream::Gzip(e) => e.write_all(&self.pending),
            Stream::Zstd(e) => e.write_all(&self.pending),
        };
        result.map_err(|source| FormatError::Compression { codec, source })?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// The complete compressed stream.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, FormatError> {
        self.flush_pending()?;
        let codec = self.codec();
        match self.stream {
            Stream::Gzip(e) => e.finish(),
            Stream::Zstd(e) => e.finish(),
        }
        .map_err(|source| FormatError::Compression { codec, source })
    }
}

/// `bytes` as one complete gzip member, byte for byte the same for the same input: level
/// [`MEMBER_LEVEL`], and flate2's fixed header (no file name, modification time 0, OS byte
/// 255 "unknown", extra flags 0 at this level).
pub(crate) fn gzip_member(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut member = GzEncoder::new(Vec::new(), flate2::Compression::new(MEMBER_LEVEL));
    member.write_all(bytes)?;
    member.finish()
}
