//! The per-frame inner UDP source port: the n-th frame a generator sends carries
//! `src_port + n % src_ports`, with its UDP checksum patched, so a run spreads over many
//! flows. `sluice_gen` does it in the kernel for the live-frames engine; [`PortVariation`]
//! is the same rule and the same arithmetic in userspace for the AF_PACKET engine, so both
//! engines put identical bytes on the wire.
//!
//! Which frames vary is decided by what `sluice_gen` can do: it restores the frame's
//! pristine headers in whole 8-byte words (at most [`HEADER_WORDS`]) before patching, and
//! both the port and the checksum must come from that pristine copy. A frame too short for
//! whole words to reach the inner UDP checksum (payload under 8 bytes) keeps one port,
//! whichever engine sends it.

/// Size of `sluice_gen`'s `GEN_HEADER` (the pristine headers it restores), in 8-byte words.
pub(super) const HEADER_WORDS: usize = 32;

/// Whole 8-byte words that cover the frame through its inner UDP header (checksum
/// included), when the frame holds that many and they fit `GEN_HEADER`.
pub(super) fn words_through_udp(inner_udp_offset: usize, frame_len: usize) -> Option<usize> {
    let covering = (inner_udp_offset + 8).div_ceil(8);
    (covering * 8 <= frame_len && covering <= HEADER_WORDS).then_some(covering)
}

/// Where and how one frame's inner UDP source port varies (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PortVariation {
    /// Offset of the inner UDP source port.
    port_offset: usize,
    /// First port.
    base: u16,
    /// Number of ports (≥ 2).
    range: u64,
    /// The checksum of the frame as built, and the port it was built with: every patch
    /// starts from these, never from a previous patch.
    pristine_csum: u16,
    pristine_port: u16,
}

impl PortVariation {
    /// The variation of `frame` (inner UDP header at `inner_udp_offset`), or `None` when
    /// every frame keeps its port: one port only, or a frame `sluice_gen` cannot vary.
    pub(super) fn for_frame(
        frame: &[u8],
        inner_udp_offset: usize,
        base: u16,
        range: u16,
    ) -> Option<Self> {
        if range < 2 {
            return None;
        }
        words_through_udp(inner_udp_offset, frame.len())?;
        let port = frame.get(inner_udp_offset..inner_udp_offset + 2)?;
        let csum = frame.get(inner_udp_offset + 6..inner_udp_offset + 8)?;
        Some(Self {
            port_offset: inner_udp_offset,
            base,
            range: u64::from(range),
            pristine_csum: u16::from_be_bytes([csum[0], csum[1]]),
            pristine_port: u16::from_be_bytes([port[0], port[1]]),
        })
    }

    /// Writes the port of the `sequence`-th frame into `frame` (a copy of the frame this
    /// variation was made for) and the checksum that goes with it.
    pub(super) fn apply(&self, frame: &mut [u8], sequence: u64) {
        // As in sluice_gen: the sum wraps at 16 bits.
        let port = (u64::from(self.base) + sequence % self.range) as u16;
        let csum = patched_checksum(self.pristine_csum, self.pristine_port, port);
        if let Some(field) = frame.get_mut(self.port_offset..self.port_offset + 8) {
            field[0..2].copy_from_slice(&port.to_be_bytes());
            field[6..8].copy_from_slice(&csum.to_be_bytes());
        }
    }
}

/// The UDP checksum `csum` after a 16-bit word of the datagram changed from `old` to
/// `new` (RFC 1624, eqn. 3), exactly as `sluice_gen` computes it; 0 (an IPv4 datagram
/// without a checksum) stays 0, and a result of 0 is sent as 0xffff.
fn patched_checksum(csum: u16, old: u16, new: u16) -> u16 {
    if csum == 0 {
        return 0;
    }
    checksum_from_sum(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// The checksum for `sum`, the one's complement sum of an old checksum's complement and
/// the changed words (RFC 1624, eqn. 3): folded to 16 bits, complemented, 0 sent as
/// 0xffff; as `sluice_gen`'s `checksum_field`.
pub(super) fn checksum_from_sum(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        folded => folded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Encap, PayloadKind, TrafficMix, Tunnel};

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    /// Patching the frame of `mix` for frame `n` gives exactly the frame built with that
    /// port (checksums computed from scratch, the outer ones included).
    fn assert_patch_matches_rebuild(mix: &TrafficMix) {
        let frames = mix.frames(SRC, DST).expect("frames");
        for (index, frame) in frames.iter().enumerate() {
            let variation = PortVariation::for_frame(
                &frame.bytes,
                frame.inner_udp_offset,
                mix.src_port,
                mix.src_ports,
            )
            .expect("this frame varies");
            for n in [0u64, 1, 7, 255, 256, 1_000_003] {
                let mut patched = frame.bytes.clone();
                variation.apply(&mut patched, n);
                let port = mix.src_port + (n % u64::from(mix.src_ports)) as u16;
                let rebuilt = TrafficMix {
                    src_port: port,
                    ..mix.clone()
                }
                .frames(SRC, DST)
                .expect("frames");
                assert_eq!(patched, rebuilt[index].bytes, "frame {index}, n = {n}");
            }
        }
    }

    #[test]
    fn patched_frames_equal_frames_built_with_the_port() {
        let mut gre = TrafficMix::single(Encap::Gre, Some(7), PayloadKind::Syslog5424, 9000);
        gre.tunnels.push(Tunnel::lab_v6(None));
        assert_patch_matches_rebuild(&gre);
        assert_patch_matches_rebuild(&gre.clone().with_inner_v6());
        let mut vxlan_v6 = TrafficMix::single(
            Encap::Vxlan { vni: 9 },
            None,
            PayloadKind::Raw { len: 18 },
            9000,
        );
        vxlan_v6.tunnels = vec![Tunnel::lab_v6(None)];
        assert_patch_matches_rebuild(&vxlan_v6);
        assert_patch_matches_rebuild(&TrafficMix::single(
            Encap::Plain,
            None,
            PayloadKind::Raw { len: 8 },
            514,
        ));
    }

    #[test]
    fn short_frames_and_single_ports_do_not_vary() {
        let mix = TrafficMix::single(Encap::Gre, Some(42), PayloadKind::Raw { len: 7 }, 9000);
        let frame = &mix.frames(SRC, DST).expect("frames")[0];
        // 14 + 20 + 8 + 20 + 8 + 7 = 77 bytes: 9 words (72) reach the checksum at 68..70.
        assert_eq!(words_through_udp(frame.inner_udp_offset, 77), Some(9));
        // 71 bytes: 8 whole words end before the checksum.
        assert_eq!(words_through_udp(62, 71), None);
        assert!(PortVariation::for_frame(&frame.bytes, 62, 10_000, 256).is_some());
        assert!(PortVariation::for_frame(&frame.bytes[..71], 62, 10_000, 256).is_none());
        assert!(PortVariation::for_frame(&frame.bytes, 62, 10_000, 1).is_none());
    }

    #[test]
    fn checksum_patch_follows_rfc_1624() {
        // No checksum stays none.
        assert_eq!(patched_checksum(0, 10_000, 10_001), 0);
        // Unchanged port, unchanged checksum.
        assert_eq!(patched_checksum(0x1234, 10_000, 10_000), 0x1234);
        // One more in the port is one less in the checksum.
        assert_eq!(patched_checksum(0x1234, 10_000, 10_001), 0x1233);
        // A result of zero is sent as 0xffff.
        assert_eq!(patched_checksum(0x0001, 0, 1), 0xffff);
    }
}
