//! Classic pcap files (LINKTYPE_ETHERNET, microsecond timestamps) for tcpreplay, tshark
//! and `sluice replay`.
//!
//! Written frames get deterministic timestamps (a fixed start plus one microsecond per
//! frame), so the same frames always give the same file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};

/// Timestamp of the first frame written: 2026-01-01T00:00:00Z.
pub const FIRST_TIMESTAMP: Duration = Duration::from_secs(1_767_225_600);

/// Why reading or writing a pcap failed.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Opening or creating the file failed.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The pcap library rejected the data.
    #[error("pcap error in {path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: pcap_file::PcapError,
    },
    /// The file is not an Ethernet capture with microsecond timestamps.
    #[error("{path}: expected LINKTYPE_ETHERNET with microsecond timestamps, found {found}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What the header says.
        found: String,
    },
}

/// One frame read from a pcap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapFrame {
    /// Capture timestamp since the Unix epoch.
    pub timestamp: Duration,
    /// Length on the wire.
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Writes `frames` to `path` (created or truncated), complete (caplen = orig_len).
///
/// # Errors
/// [`PcapError`] on I/O or encoding failure.
pub fn write_pcap<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<usize, PcapError> {
    let io_err = |source| PcapError::Io {
        path: path.to_owned(),
        source,
    };
    let format_err = |source| PcapError::Format {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(io_err)?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::MicroSecond,
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header).map_err(format_err)?;
    let mut count = 0usize;
    for (i, frame) in frames.into_iter().enumerate() {
        let orig_len = u32::try_from(frame.len()).map_err(|_| {
            io_err(std::io::Error::other(format!(
                "frame {i} is {} bytes",
                frame.len()
            )))
        })?;
        let timestamp = FIRST_TIMESTAMP + Duration::from_micros(i as u64);
        writer
            .write_packet(&PcapPacket::new(timestamp, orig_len, frame))
            .map_err(format_err)?;
        count += 1;
    }
    writer.into_writer().flush().map_err(io_err)?;
    Ok(count)
}

/// Reads every frame of an Ethernet, microsecond-resolution pcap.
///
/// # Errors
/// [`PcapError`] on I/O failure, a malformed file, or another link type or resolution.
pub fn read_pcap(path: &Path) -> Result<Vec<PcapFrame>, PcapError> {
    let format_err = |source| PcapError::Format {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| PcapError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = PcapReader::new(BufReader::new(file)).map_err(format_err)?;
    let header = reader.header();
    if header.datalink != DataLink::ETHERNET
        || header.ts_resolution != pcap_file::TsResolution::MicroSecond
    {
        return Err(PcapError::Header {
            path: path.to_owned(),
            found: format!("{:?}, {:?}", header.datalink, header.ts_resolution),
        });
    }
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(format_err)?;
        frames.push(PcapFrame {
            timestamp: packet.timestamp,
            orig_len: packet.orig_len,
            data: packet.data.into_owned(),
        });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{MatrixParams, variant_matrix};

    #[test]
    fn matrix_round_trips_through_a_pcap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("matrix.pcap");
        let frames: Vec<Vec<u8>> = variant_matrix(&MatrixParams::default())
            .iter()
            .map(|(_, spec)| spec.build())
            .collect();
        let written = write_pcap(&path, frames.iter().map(Vec::as_slice)).expect("write");
        assert_eq!(written, 102);

        let read = read_pcap(&path).expect("read");
        assert_eq!(read.len(), frames.len());
        for (i, (got, want)) in read.iter().zip(&frames).enumerate() {
            assert_eq!(&got.data, want, "frame {i}");
            assert_eq!(got.orig_len as usize, want.len());
            assert_eq!(
                got.timestamp,
                FIRST_TIMESTAMP + Duration::from_micros(i as u64)
            );
        }

        // Classic pcap, little-endian magic for microseconds, LINKTYPE_ETHERNET (1).
        let bytes = std::fs::read(&path).expect("read bytes");
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&bytes[20..24], &1u32.to_le_bytes());
        let expected_len = 24 + frames.iter().map(|f| 16 + f.len()).sum::<usize>();
        assert_eq!(bytes.len(), expected_len);
    }

    #[test]
    fn empty_pcap_has_only_a_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pcap");
        assert_eq!(write_pcap(&path, std::iter::empty()).expect("write"), 0);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 24);
        assert_eq!(read_pcap(&path).expect("read"), Vec::new());
    }
}
