//! `sluice replay`: frames from a pcap or pcapng capture, through the same classifier,
//! parser, batches and sink as live traffic. Records carry the capture timestamps.
//!
//! Frames are classified as the XDP program would (`decap::parse_captured`), so the
//! records of a replayed capture equal those of the same packets received live.

use std::{fs::File, io::BufReader, path::Path};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

use crate::{
    accounting::LocalCounters,
    pipeline::{FRAMES_PER_BATCH, FrameSender, frames::FrameOrigin},
};

/// Why a capture could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The capture.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a readable pcap or pcapng capture.
    #[error("{path}: not a readable pcap/pcapng capture: {message}")]
    Format {
        /// The capture.
        path: std::path::PathBuf,
        /// The reader's message.
        message: String,
    },
    /// A link type other than Ethernet.
    #[error("{path}: link type {link:?} is not supported (only Ethernet captures)")]
    LinkType {
        /// The capture.
        path: std::path::PathBuf,
        /// The link type found.
        link: DataLink,
    },
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Feeds every frame of the capture into the pipeline; returns the number of frames read.
pub fn replay(
    path: &Path,
    frames: &FrameSender,
    counters: &mut LocalCounters,
) -> Result<u64, ReplayError> {
    let open = || {
        File::open(path)
            .map(BufReader::new)
            .map_err(|source| ReplayError::Open {
                path: path.to_owned(),
                source,
            })
    };
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut open()?, &mut magic).map_err(|e| ReplayError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let format_err = |e: pcap_file::PcapError| ReplayError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut feeder = Feeder {
        frames,
        batch: frames.empty_batch(),
        read: 0,
    };
    if magic == PCAPNG_MAGIC {
        let mut reader = PcapNgReader::new(open()?).map_err(format_err)?;
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.map_err(format_err)? {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let link = links.get(epb.interface_id as usize).copied();
                    if link != Some(DataLink::ETHERNET) {
                        return Err(ReplayError::LinkType {
                            path: path.to_owned(),
                            link: link.unwrap_or(DataLink::NULL),
                        });
                    }
                    feeder.push(&epb.data, epb.timestamp, counters);
                }
                Block::SimplePacket(spb) => {
                    if links.first() != Some(&DataLink::ETHERNET) {
                        return Err(ReplayError::LinkType {
                            path: path.to_owned(),
                            link: links.first().copied().unwrap_or(DataLink::NULL),
                        });
                    }
                    feeder.push(&spb.data, std::time::Duration::ZERO, counters);
                }
                _ => {}
            }
        }
    } else {
        let mut reader = PcapReader::new(open()?).map_err(format_err)?;
        let link = reader.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(ReplayError::LinkType {
                path: path.to_owned(),
                link,
            });
        }
        while let Some(packet) = reader.next_packet() {
            let packet = packet.map_err(format_err)?;
            feeder.push(&packet.data, packet.timestamp, counters);
        }
    }
    Ok(feeder.finish(counters))
}

struct Feeder<'a> {
    frames: &'a FrameSender,
    batch: crate::pipeline::frames::FrameBatch,
    read: u64,
}

impl Feeder<'_> {
    fn push(&mut self, data: &[u8], timestamp: std::time::Duration, counters: &mut LocalCounters) {
        let micros = i64::try_from(timestamp.as_micros()).unwrap_or(i64::MAX);
        self.batch.push(data, micros, FrameOrigin::Captured);
        self.read += 1;
        counters.received += 1;
        if self.batch.len() >= FRAMES_PER_BATCH {
            let full = std::mem::take(&mut self.batch);
            self.batch = self.frames.send_blocking(full, counters);
        }
    }

    fn finish(mut self, counters: &mut LocalCounters) -> u64 {
        if !self.batch.is_empty() {
            let last = std::mem::take(&mut self.batch);
            self.frames.send_blocking(last, counters);
        }
        self.read
    }
}
