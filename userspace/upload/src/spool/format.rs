//! The spool file format: the batch bytes exactly as they will be uploaded, followed by a
//! 32-byte trailer that proves the file is complete.
//!
//! A commit fsyncs the file before renaming it into place, so a complete file is the
//! normal case; the trailer is there for what the file system does not promise (a power
//! cut on a disk that lies about flushes, a file copied by hand, bit rot). A file whose
//! trailer is missing, damaged or disagrees with the file's length is caught when the
//! spool is opened; a payload whose CRC32C disagrees is caught when it is read for
//! upload. Either way the file is quarantined, never uploaded.
//!
//! ```text
//! offset        size  field
//! 0             n     payload (the object's bytes)
//! n             8     magic "SLSPOOL1"
//! n+8           8     sequence (u64 LE): commit order within the spool, oldest first
//! n+16          8     payload length n (u64 LE)
//! n+24          4     CRC32C (Castagnoli) of the payload (u32 LE) = the object's crc32c
//! n+28          4     CRC32C of bytes n..n+28 of the trailer (u32 LE)
//! ```

/// Size of the trailer.
pub const TRAILER_LEN: usize = 32;

/// First bytes of the trailer (the `1` is the format version).
pub const MAGIC: [u8; 8] = *b"SLSPOOL1";

/// What the trailer records about its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Commit order within the spool.
    pub sequence: u64,
    /// Payload length.
    pub payload_len: u64,
    /// CRC32C of the payload.
    pub crc32c: u32,
}

/// Why a spool file is not a complete batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file name is not an encoded object name (`name::decode` refuses it).
    #[error("the file name does not encode an object name")]
    BadName,
    /// Shorter than a trailer: cut off before it was complete.
    #[error("{len} bytes, shorter than the {TRAILER_LEN}-byte trailer")]
    TooShort {
        /// The file's length.
        len: u64,
    },
    /// The last 32 bytes are not a trailer (truncated or overwritten).
    #[error("no trailer (bad magic)")]
    BadMagic,
    /// The trailer's own checksum fails.
    #[error("trailer checksum mismatch")]
    TrailerChecksum,
    /// The trailer's length disagrees with the file's.
    #[error("trailer says {recorded} payload bytes, the file holds {actual}")]
    LengthMismatch {
        /// Length in the trailer.
        recorded: u64,
        /// Length of the file minus the trailer.
        actual: u64,
    },
    /// The payload's CRC32C disagrees with the trailer's.
    #[error("payload CRC32C is {actual:#010x}, the trailer says {recorded:#010x}")]
    PayloadChecksum {
        /// CRC32C in the trailer.
        recorded: u32,
        /// CRC32C of the bytes read.
        actual: u32,
    },
    /// An object manifest that does not read back (see `spool::manifest`).
    #[error("not a valid object manifest: {reason}")]
    BadManifest {
        /// What is wrong with it.
        reason: String,
    },
}

impl Trailer {
    /// The trailer for `payload` committed as number `sequence`.
    pub fn for_payload(sequence: u64, payload: &[u8]) -> Self {
        Self {
            sequence,
            payload_len: payload.len() as u64,
            crc32c: crc32c::crc32c(payload),
        }
    }

    /// The 32 bytes written after the payload.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        out[24..28].copy_from_slice(&self.crc32c.to_le_bytes());
        let own = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&own.to_le_bytes());
        out
    }

    /// Reads the trailer of a file of `file_len` bytes whose last 32 bytes are `bytes`.
    ///
    /// # Errors
    /// When the bytes are not a trailer, or not the trailer of a file of this length.
    pub fn decode(bytes: &[u8; TRAILER_LEN], file_len: u64) -> Result<Self, Corruption> {
        if bytes[0..8] != MAGIC {
            return Err(Corruption::BadMagic);
        }
        let own = crc32c::crc32c(&bytes[0..28]);
        if own.to_le_bytes() != bytes[28..32] {
            return Err(Corruption::TrailerChecksum);
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[24..28]);
        let trailer = Self {
            sequence: u64_at(8),
            payload_len: u64_at(16),
            crc32c: u32::from_le_bytes(crc),
        };
        let actual = file_len.saturating_sub(TRAILER_LEN as u64);
        if trailer.payload_len != actual {
            return Err(Corruption::LengthMismatch {
                recorded: trailer.payload_len,
                actual,
            });
        }
        Ok(trailer)
    }

    /// Splits a whole spool file into its payload and trailer, checking both.
    ///
    /// # Errors
    /// When the file is not a complete batch.
    pub fn split(file: &[u8]) -> Result<(&[u8], Self), Corruption> {
        let Some(payload_len) = file.len().checked_sub(TRAILER_LEN) else {
            return Err(Corruption::TooShort {
                len: file.len() as u64,
            });
        };
        let (payload, tail) = file.split_at(payload_len);
        let mut bytes = [0u8; TRAILER_LEN];
        bytes.copy_from_slice(tail);
        let trailer = Self::decode(&bytes, file.len() as u64)?;
        let actual = crc32c::crc32c(payload);
        if actual != trailer.crc32c {
            return Err(Corruption::PayloadChecksum {
                recorded: trailer.crc32c,
                actual,
            });
        }
        Ok((payload, trailer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sequence: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = payload.to_vec();
        f.extend_from_slice(&Trailer::for_payload(sequence, payload).encode());
        f
    }

    #[test]
    fn trailer_layout_is_exact() {
        let t = Trailer::for_payload(7, b"123456789");
        // The CRC32C check value of "123456789".
        assert_eq!(t.crc32c, 0xe306_9283);
        let b = t.encode();
        assert_eq!(&b[0..8], b"SLSPOOL1");
        assert_eq!(&b[8..16], &7u64.to_le_bytes());
        assert_eq!(&b[16..24], &9u64.to_le_bytes());
        assert_eq!(&b[24..28], &0xe306_9283u32.to_le_bytes());
        assert_eq!(&b[28..32], &crc32c::crc32c(&b[0..28]).to_le_bytes());
    }

    #[test]
    fn round_trip_returns_the_payload() {
        let f = file(42, b"hello batch");
        let (payload, t) = Trailer::split(&f).unwrap();
        assert_eq!(payload, b"hello batch");
        assert_eq!(
            t,
            Trailer {
                sequence: 42,
                payload_len: 11,
                crc32c: crc32c::crc32c(b"hello batch")
            }
        );
        let empty = file(0, b"");
        assert_eq!(Trailer::split(&empty).unwrap().0, b"");
    }

    #[test]
    fn every_truncation_is_detected() {
        let f = file(3, b"some records\n");
        for len in 0..f.len() {
            assert!(Trailer::split(&f[..len]).is_err(), "truncated to {len}");
        }
        assert_eq!(
            Trailer::split(&f[..10]),
            Err(Corruption::TooShort { len: 10 })
        );
        assert_eq!(Trailer::split(&f[..40]), Err(Corruption::BadMagic));
    }

    #[test]
    fn flipped_bits_are_detected() {
        let f = file(3, b"some records\n");
        let mut payload_flip = f.clone();
        payload_flip[0] ^= 1;
        assert!(matches!(
            Trailer::split(&payload_flip),
            Err(Corruption::PayloadChecksum { .. })
        ));
        let mut trailer_flip = f.clone();
        let seq_at = f.len() - TRAILER_LEN + 8;
        trailer_flip[seq_at] ^= 1;
        assert_eq!(
            Trailer::split(&trailer_flip),
            Err(Corruption::TrailerChecksum)
        );
    }

    #[test]
    fn appended_bytes_are_detected() {
        let mut f = file(3, b"abc");
        let mut trailer = [0u8; TRAILER_LEN];
        trailer.copy_from_slice(&f[3..]);
        f.push(0);
        assert_eq!(
            Trailer::decode(&trailer, f.len() as u64),
            Err(Corruption::LengthMismatch {
                recorded: 3,
                actual: 4
            })
        );
    }
}
