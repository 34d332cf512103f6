//! Batches of received frames, the unit handed from a receive loop to the workers.
//!
//! Receivers copy frames out of the UMEM (or socket buffer, or capture file) into a
//! [`FrameBatch`] so that UMEM frames go straight back to the fill ring; the batch's
//! buffers are recycled between receiver and workers, so steady state allocates nothing.

use std::net::SocketAddr;

use crate::record::timestamp::UnixMicros;

/// How to interpret a frame's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOrigin {
    /// A whole frame the XDP program steered, exactly as it arrived: decapsulate.
    Steered,
    /// A whole frame as it was on the wire (pcap replay): classify and decapsulate.
    Captured,
    /// A UDP payload read from a socket, with its addresses.
    Socket {
        /// Sender.
        src: SocketAddr,
        /// Local address it was sent to.
        dst: SocketAddr,
    },
}

/// Where one frame sits in a [`FrameBatch`]'s buffer.
#[derive(Clone, Copy, Debug)]
pub struct FrameEntry {
    start: u32,
    len: u32,
    /// Receive (or capture) time.
    pub received_at: UnixMicros,
    /// How to read it.
    pub origin: FrameOrigin,
}

/// A batch of frames copied into one buffer.
#[derive(Debug, Default)]
pub struct FrameBatch {
    data: Vec<u8>,
    entries: Vec<FrameEntry>,
}

impl FrameBatch {
    /// An empty batch with room for `frames` frames of `bytes` bytes in all.
    pub fn with_capacity(frames: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(frames),
        }
    }

    /// Appends a copy of `frame`.
    #[inline]
    pub fn push(&mut self, frame: &[u8], received_at: UnixMicros, origin: FrameOrigin) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(frame);
        self.entries.push(FrameEntry {
            start,
            len: frame.len() as u32,
            received_at,
            origin,
        });
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the frames, keeping the buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    /// The frames with their bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&FrameEntry, &[u8])> {
        self.entries.iter().map(|e| {
            let start = e.start as usize;
            let bytes = self.data.get(start..start + e.len as usize).unwrap_or(&[]);
            (e, bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order_and_clear_keeps_capacity() {
        let mut b = FrameBatch::with_capacity(4, 64);
        b.push(b"abc", 1, FrameOrigin::Captured);
        b.push(b"", 2, FrameOrigin::Captured);
        b.push(b"defg", 3, FrameOrigin::Steered);
        let got: Vec<(i64, Vec<u8>)> = b.iter().map(|(e, d)| (e.received_at, d.to_vec())).collect();
        assert_eq!(
            got,
            vec![(1, b"abc".to_vec()), (2, vec![]), (3, b"defg".to_vec())]
        );
        let cap = b.data.capacity();
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.data.capacity(), cap);
    }
}
