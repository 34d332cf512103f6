//! Records: what one packet becomes, and its encodings.
//!
//! A [`PacketRecord`] borrows the packet's payload; encoders append it to a batch buffer
//! without allocating. Later decoders add typed fields next to these provenance fields.

pub mod ndjson;
pub mod timestamp;

use crate::decap::Datagram;
use timestamp::UnixMicros;

/// One packet as a record: when it arrived, and the datagram with its tunnel provenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRecord<'a> {
    /// Receive time (or capture time, in replay), microseconds since the epoch.
    pub received_at: UnixMicros,
    /// The datagram.
    pub datagram: Datagram<'a>,
}
