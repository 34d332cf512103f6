//! The per-frame payload of [`PayloadKind::SchemaSeries`]: the n-th frame the generator
//! sends carries `sluice_testkit::acme::readings_event(n)` (a sensor's successive readings
//! events: sequence number, time and values change), its inner UDP checksum patched, so
//! the receiver decodes and compresses a new event every packet as it would from real
//! devices, instead of one payload repeated.
//!
//! Both engines send the same bytes: the AF_PACKET engine with [`SeriesVariation`] in its
//! send buffers, live frames with `sluice_gen`, which writes the same fields with the same
//! arithmetic from the first event's fields ([`SeriesVariation::first_fields`]).
//!
//! [`PayloadKind::SchemaSeries`]: super::PayloadKind::SchemaSeries

use sluice_testkit::acme::readings_event;

/// How one frame's payload follows the series (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SeriesVariation {
    /// Offset of the event (the inner UDP payload).
    payload_offset: usize,
    /// Offset of the inner UDP checksum.
    csum_offset: usize,
}

/// Why a frame cannot carry the series.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// The frame's inner UDP payload is not the first event of the series.
    #[error("the frame's inner UDP payload is not the ACME readings event")]
    NotTheEvent,
    /// The inner UDP checksum is 0 (IPv4 without a checksum): an outer checksum covering
    /// the inner datagram (VXLAN over IPv6) would no longer hold once the payload changes.
    #[error("the frame's inner UDP checksum is 0: the series needs a checksum to patch")]
    NoChecksum,
}

impl SeriesVariation {
    /// The variation of `frame`, whose inner UDP header is at `inner_udp_offset` and whose
    /// payload must be the series' first event (`readings_event(0)`).
    pub(super) fn for_frame(frame: &[u8], inner_udp_offset: usize) -> Result<Self, SeriesError> {
        let payload_offset = inner_udp_offset + 8;
        let csum_offset = inner_udp_offset + 6;
        if frame.get(payload_offset..) != Some(&readings_event(0)[..]) {
            return Err(SeriesError::NotTheEvent);
        }
        if frame.get(csum_offset..csum_offset + 2) == Some(&[0, 0]) {
            return Err(SeriesError::NoChecksum);
        }
        Ok(Self {
            payload_offset,
            csum_offset,
        })
    }

    /// Writes event `sequence` (its low 32 bits) into `frame` and patches the inner UDP
    /// checksum for each 16-bit word that changes (RFC 1624, eqn. 3). `frame` is a fresh
    /// copy of the frame this variation was made for, its source port possibly varied
    /// since ([`super::ports::PortVariation::apply`]): its payload is the first event and
    /// its checksum right for it.
    ///
    /// The payload starts at an even offset from the UDP header, so its words are the
    /// checksum's words.
    pub(super) fn apply(&self, frame: &mut [u8], sequence: u64) {
        let (old, new) = (readings_event(0), readings_event(sequence as u32));
        let end = self.payload_offset + new.len();
        let Some(csum_field) = frame.get(self.csum_offset..self.csum_offset + 2) else {
            return;
        };
        if frame.len() < end {
            return;
        }
        let mut sum = u32::from(!u16::from_be_bytes([csum_field[0], csum_field[1]]));
        for (old, new) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
            if old != new {
                sum += u32::from(!u16::from_be_bytes([old[0], old[1]]));
                sum += u32::from(u16::from_be_bytes([new[0], new[1]]));
            }
        }
        let csum = super::ports::checksum_from_sum(sum);
        frame[self.csum_offset..self.csum_offset + 2].copy_from_slice(&csum.to_be_bytes());
        frame[self.payload_offset..end].copy_from_slice(&new);
    }

    /// What `sluice_gen` needs to send `frame` (the frame this variation was made for) as
    /// the series: the offset of its inner UDP checksum (the event follows it) and the
    /// event's varied fields as built ([`FIELDS`]); `None` if the frame is too short.
    pub(super) fn first_fields(&self, frame: &[u8]) -> Option<(u32, [u32; 4])> {
        let event = frame.get(self.payload_offset..)?;
        let mut first = [0u32; 4];
        for (value, at) in first.iter_mut().zip(FIELDS) {
            let bytes = event.get(at..at + 4)?;
            *value = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Some((u32::try_from(self.csum_offset).ok()?, first))
    }
}

/// Offsets in the event of the fields the series varies, each a big-endian 32-bit
/// number: sequence number, time, value of reading 0, value of reading 1 (as
/// `sluice_gen`'s `SERIES_FIELDS`).
const FIELDS: [usize; 4] = [8, 12, 22, 30];

/// Mixes of series frames for tests, each with whether its inner datagram is IPv6: GRE
/// over IPv4 and IPv6 (one frame each) with an inner IPv4 and an inner IPv6 datagram,
/// VXLAN over IPv6 (its outer UDP checksummed), and plain UDP.
#[cfg(test)]
pub(super) fn series_mixes() -> Vec<(super::TrafficMix, bool)> {
    use super::{Encap, PayloadKind, TrafficMix, Tunnel};
    let mut gre = TrafficMix::single(Encap::Gre, Some(7), PayloadKind::SchemaSeries, 5140);
    gre.tunnels.push(Tunnel::lab_v6(None));
    let mut vxlan_v6 = TrafficMix::single(
        Encap::Vxlan { vni: 9 },
        None,
        PayloadKind::SchemaSeries,
        5140,
    );
    vxlan_v6.tunnels = vec![Tunnel::lab_v6(None)];
    let plain = TrafficMix::single(Encap::Plain, None, PayloadKind::SchemaSeries, 5140);
    vec![
        (gre.clone(), false),
        (gre.with_inner_v6(), true),
        (vxlan_v6, false),
        (plain, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::ports::PortVariation;
    use crate::generator::{Encap, PayloadKind, TrafficMix};

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const IPPROTO_UDP: u8 = 17;

    /// Whether the UDP datagram at `udp` (its IP header `ip_len` bytes before it) has a
    /// right checksum: the one's complement sum over the pseudo-header and the datagram,
    /// computed from scratch, is all ones.
    fn udp_checksum_holds(frame: &[u8], udp: usize, ip_len: usize) -> bool {
        let ip = udp - ip_len;
        let addresses = if ip_len == 20 {
            &frame[ip + 12..ip + 20]
        } else {
            &frame[ip + 8..ip + 40]
        };
        let length = usize::from(u16::from_be_bytes([frame[udp + 4], frame[udp + 5]]));
        let words = |bytes: &[u8]| -> u32 {
            bytes
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
                .sum()
        };
        let mut sum = words(addresses) + u32::from(IPPROTO_UDP) + length as u32;
        sum += words(&frame[udp..udp + length]);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    fn ip_len(v6: bool) -> usize {
        if v6 { 40 } else { 20 }
    }

    #[test]
    fn each_frame_carries_its_event_with_checksums_that_hold() {
        for (mix, inner_v6) in series_mixes() {
            for frame in mix.frames(SRC, DST).expect("frames") {
                let udp = frame.inner_udp_offset;
                let port = PortVariation::for_frame(&frame.bytes, udp, mix.src_port, 256)
                    .expect("ports vary");
                let series = SeriesVariation::for_frame(&frame.bytes, udp).expect("a series");
                assert!(udp_checksum_holds(&frame.bytes, udp, ip_len(inner_v6)));
                for n in [0u64, 1, 2, 999, 3_000, 1_000_003, u64::from(u32::MAX) + 5] {
                    let mut sent = frame.bytes.clone();
                    port.apply(&mut sent, n);
                    series.apply(&mut sent, n);
                    assert_eq!(sent[udp + 8..], readings_event(n as u32), "n = {n}");
                    assert_eq!(
                        u16::from_be_bytes([sent[udp], sent[udp + 1]]),
                        mix.src_port + (n % 256) as u16
                    );
                    assert!(
                        udp_checksum_holds(&sent, udp, ip_len(inner_v6)),
                        "{:?} n = {n}",
                        mix.encap
                    );
                    // Nothing else changed.
                    let changed: Vec<usize> = (0..sent.len())
                        .filter(|&i| sent[i] != frame.bytes[i])
                        .filter(|&i| !(udp..udp + 2).contains(&i))
                        .filter(|&i| !(udp + 6..).contains(&i))
                        .collect();
                    assert!(changed.is_empty(), "n = {n}: bytes {changed:?} changed");
                    if let Encap::Vxlan { .. } = mix.encap {
                        // The outer UDP (IPv6: checksummed) still holds: the inner
                        // checksum's change cancels the payload's and the port's.
                        assert!(udp_checksum_holds(&sent, 14 + 40, 40), "outer, n = {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn only_frames_of_the_first_event_with_a_checksum_carry_a_series() {
        let frame = |kind| {
            TrafficMix::single(Encap::Gre, Some(42), kind, 5140)
                .frames(SRC, DST)
                .expect("frames")
                .remove(0)
        };
        let repeated = frame(PayloadKind::Schema);
        assert!(matches!(
            SeriesVariation::for_frame(&repeated.bytes, repeated.inner_udp_offset),
            Err(SeriesError::NotTheEvent)
        ));
        let mut series = frame(PayloadKind::SchemaSeries);
        let csum = series.inner_udp_offset + 6;
        series.bytes[csum..csum + 2].fill(0);
        assert!(matches!(
            SeriesVariation::for_frame(&series.bytes, series.inner_udp_offset),
            Err(SeriesError::NoChecksum)
        ));
    }
}
