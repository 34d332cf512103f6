//! The traffic a generator offers: tunnels, encapsulation and weighted payloads, turned into
//! the complete Ethernet frames (checksums included) that the generator transmits.
//!
//! Every address is a documentation address: outer 198.51.100.0/24, 203.0.113.0/24 or
//! 2001:db8::/32; inner 192.0.2.0/24 or 2001:db8::/32. Each (tunnel, payload) pair is one
//! frame; a frame's weight is its payload's weight, so tunnels share a payload's traffic
//! evenly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sluice_testkit::frames::{
    FrameSpec, GreTunnel, OuterIp, UdpDatagram,
    layers::{Fragment, ethernet, ip, udp},
};

use super::payload::PayloadKind;

/// Destination port of VXLAN (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// MAC address of the receiver's VXLAN device (see [`crate::kernel_path`]); inner frames of
/// VXLAN packets are addressed to it.
pub const VXLAN_DEV_MAC: [u8; 6] = [0x02, 0x51, 0xce, 0x00, 0x01, 0x0b];
/// Inner source MAC of VXLAN packets.
pub const VXLAN_INNER_SRC_MAC: [u8; 6] = [0x02, 0x51, 0xce, 0x00, 0x01, 0x0a];
/// Default inner (collector) destination address.
pub const INNER_DST_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Default inner source address (the exporter).
pub const INNER_SRC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// IPv6 inner destination used by [`TrafficMix::with_inner_v6`].
pub const INNER_DST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 0, 0, 0, 0, 1);
/// IPv6 inner source used by [`TrafficMix::with_inner_v6`].
pub const INNER_SRC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 0, 0, 0, 0, 0x10);

/// How the inner UDP datagram is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// GRE version 0 (no checksum, no sequence), the key from each [`Tunnel`]; outer IPv4 or
    /// IPv6 by the tunnel's addresses.
    Gre,
    /// VXLAN (UDP 4789, outer IPv4 checksum 0) around an Ethernet frame to
    /// [`VXLAN_DEV_MAC`]; the tunnels' keys are ignored.
    Vxlan {
        /// VXLAN network identifier (24 bits).
        vni: u32,
    },
    /// No tunnel: the inner UDP datagram is the frame's only IP packet.
    Plain,
}

/// One tunnel's outer addresses (same family) and GRE key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// Outer source (the tunnel's far end).
    pub outer_src: IpAddr,
    /// Outer destination: the receiver's veth address for the kernel paths.
    pub outer_dst: IpAddr,
    /// GRE key (K bit), or none.
    pub gre_key: Option<u32>,
}

impl Tunnel {
    /// 198.51.100.1 → 198.51.100.2 (sender → receiver veth).
    pub fn lab_v4(gre_key: Option<u32>) -> Self {
        Self {
            outer_src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            outer_dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            gre_key,
        }
    }

    /// 2001:db8:51::1 → 2001:db8:51::2 (sender → receiver veth).
    pub fn lab_v6(gre_key: Option<u32>) -> Self {
        Self {
            outer_src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 1)),
            outer_dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 2)),
            gre_key,
        }
    }

    /// 203.0.113.`host` → 198.51.100.2: another router's tunnel to the receiver.
    pub fn remote_v4(host: u8, gre_key: Option<u32>) -> Self {
        Self {
            outer_src: IpAddr::V4(Ipv4Addr::new(203, 0, 113, host)),
            outer_dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            gre_key,
        }
    }
}

/// One payload kind of a mix, with its share of the traffic and its inner port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadShare {
    /// What the datagram carries.
    pub kind: PayloadKind,
    /// Relative weight (frames of this kind / all frames = weight / sum of weights).
    pub weight: u32,
    /// Inner UDP destination port (the decoder's port at the receiver).
    pub dst_port: u16,
}

/// Everything the generator sends (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficMix {
    /// Encapsulation, the same for every frame.
    pub encap: Encap,
    /// Tunnels, used round-robin per payload (ignored for [`Encap::Plain`]; the plain
    /// frames go from the sender's to the receiver's veth address).
    pub tunnels: Vec<Tunnel>,
    /// Payload kinds with weights and ports.
    pub payloads: Vec<PayloadShare>,
    /// Inner source address.
    pub inner_src: IpAddr,
    /// Inner destination address (the kernel paths assign it to the receiver).
    pub inner_dst: IpAddr,
    /// First inner UDP source port.
    pub src_port: u16,
    /// Number of distinct inner source ports: the generator writes
    /// `src_port + n % src_ports` into the n-th frame (1 = every frame the same).
    pub src_ports: u16,
}

impl TrafficMix {
    /// One payload kind through one tunnel (198.51.100.1 → .2, GRE key when given for
    /// [`Encap::Gre`]), inner 192.0.2.10 → 192.0.2.1, source ports 10000..10000+256.
    pub fn single(encap: Encap, gre_key: Option<u32>, kind: PayloadKind, dst_port: u16) -> Self {
        Self {
            encap,
            tunnels: vec![Tunnel::lab_v4(gre_key)],
            payloads: vec![PayloadShare {
                kind,
                weight: 1,
                dst_port,
            }],
            inner_src: IpAddr::V4(INNER_SRC_V4),
            inner_dst: IpAddr::V4(INNER_DST_V4),
            src_port: 10_000,
            src_ports: 256,
        }
    }

    /// The same mix with IPv6 inner addresses (2001:db8:c0::10 → 2001:db8:c0::1).
    pub fn with_inner_v6(mut self) -> Self {
        self.inner_src = IpAddr::V6(INNER_SRC_V6);
        self.inner_dst = IpAddr::V6(INNER_DST_V6);
        self
    }

    /// The frames of the mix, in a fixed order (tunnel-major within each payload).
    ///
    /// # Errors
    /// [`MixError`] when the mix is empty, a payload is too large, or address families
    /// differ.
    pub fn frames(&self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Vec<MixFrame>, MixError> {
        self.validate()?;
        let plain = [Tunnel::lab_v4(None)];
        let tunnels: &[Tunnel] = match self.encap {
            Encap::Plain => &plain,
            _ => &self.tunnels,
        };
        let mut frames = Vec::with_capacity(tunnels.len() * self.payloads.len());
        for share in &self.payloads {
            let payload = share.kind.bytes();
            for tunnel in tunnels {
                let inner = UdpDatagram {
                    src: self.inner_src,
                    dst: self.inner_dst,
                    src_port: self.src_port,
                    dst_port: share.dst_port,
                    payload: payload.clone(),
                };
                let (bytes, udp_offset) = match self.encap {
                    Encap::Gre => gre_frame(src_mac, dst_mac, tunnel, inner),
                    Encap::Plain => plain_frame(src_mac, dst_mac, inner),
                    Encap::Vxlan { vni } => vxlan_frame(src_mac, dst_mac, tunnel, vni, &inner),
                };
                frames.push(MixFrame {
                    bytes,
                    inner_udp_offset: udp_offset,
                    weight: share.weight,
                    kind: share.kind.clone(),
                    dst_port: share.dst_port,
                });
            }
        }
        Ok(frames)
    }

    fn validate(&self) -> Result<(), MixError> {
        if self.payloads.is_empty() || self.payloads.iter().all(|p| p.weight == 0) {
            return Err(MixError::Empty { what: "payloads" });
        }
        if self.encap != Encap::Plain && self.tunnels.is_empty() {
            return Err(MixError::Empty { what: "tunnels" });
        }
        if self.inner_src.is_ipv4() != self.inner_dst.is_ipv4() {
            return Err(MixError::MixedFamilies {
                src: self.inner_src,
                dst: self.inner_dst,
            });
        }
        for tunnel in &self.tunnels {
            if tunnel.outer_src.is_ipv4() != tunnel.outer_dst.is_ipv4() {
                return Err(MixError::MixedFamilies {
                    src: tunnel.outer_src,
                    dst: tunnel.outer_dst,
                });
            }
        }
        for share in &self.payloads {
            let len = share.kind.bytes().len();
            if len > MAX_PAYLOAD {
                return Err(MixError::PayloadTooLarge {
                    label: share.kind.label(),
                    len,
                });
            }
        }
        if self.src_ports == 0 {
            return Err(MixError::Empty { what: "src_ports" });
        }
        Ok(())
    }
}

/// Largest inner UDP payload: the frame, with up to 40 + 16 + 40 + 8 header bytes, must fit
/// a live-frames page (4096 − headroom) and the veth MTU of 1500.
pub const MAX_PAYLOAD: usize = 1400;

/// Why a mix cannot be turned into frames.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    /// A required list is empty (or all weights are 0).
    #[error("traffic mix has no {what}")]
    Empty {
        /// Which list.
        what: &'static str,
    },
    /// A payload is longer than [`MAX_PAYLOAD`].
    #[error("payload {label} is {len} bytes, more than {MAX_PAYLOAD}")]
    PayloadTooLarge {
        /// The payload's label.
        label: String,
        /// Its length.
        len: usize,
    },
    /// Source and destination of one header are of different families.
    #[error("mixed address families: {src} -> {dst}")]
    MixedFamilies {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
    },
}

/// One frame of a mix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixFrame {
    /// The complete Ethernet frame.
    pub bytes: Vec<u8>,
    /// Offset of the inner UDP header (the source port is varied there).
    pub inner_udp_offset: usize,
    /// Relative weight.
    pub weight: u32,
    /// The payload kind.
    pub kind: PayloadKind,
    /// Inner destination port.
    pub dst_port: u16,
}

fn gre_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tunnel: &Tunnel,
    inner: UdpDatagram,
) -> (Vec<u8>, usize) {
    let outer = match (tunnel.outer_src, tunnel.outer_dst) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => OuterIp::V6 { src, dst },
        (IpAddr::V4(src), IpAddr::V4(dst)) => OuterIp::V4 {
            src,
            dst,
            options_words: 0,
        },
        // validate() rejects mixed families; fall back to the lab's addresses.
        _ => OuterIp::V4 {
            src: Ipv4Addr::new(198, 51, 100, 1),
            dst: Ipv4Addr::new(198, 51, 100, 2),
            options_words: 0,
        },
    };
    let spec = FrameSpec {
        src_mac,
        dst_mac,
        vlans: Vec::new(),
        tunnel: Some(GreTunnel {
            outer,
            checksum: false,
            key: tunnel.gre_key,
            sequence: None,
        }),
        inner,
    };
    (spec.build(), spec.inner_udp_offset())
}

fn plain_frame(src_mac: [u8; 6], dst_mac: [u8; 6], inner: UdpDatagram) -> (Vec<u8>, usize) {
    let spec = FrameSpec {
        src_mac,
        dst_mac,
        vlans: Vec::new(),
        tunnel: None,
        inner,
    };
    (spec.build(), spec.inner_udp_offset())
}

fn ip_header_len(addr: IpAddr) -> usize {
    if addr.is_ipv4() { 20 } else { 40 }
}

fn ethertype(addr: IpAddr) -> u16 {
    if addr.is_ipv4() { 0x0800 } else { 0x86dd }
}

/// Outer Ethernet + IP + UDP(4789) + VXLAN + inner Ethernet + IP + UDP. The outer UDP
/// checksum is 0 over IPv4 (RFC 7348) and computed over IPv6; varying the inner source
/// port with its checksum keeps the outer checksum valid (their sum is unchanged).
fn vxlan_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    tunnel: &Tunnel,
    vni: u32,
    inner: &UdpDatagram,
) -> (Vec<u8>, usize) {
    let inner_udp = udp(
        inner.src,
        inner.dst,
        inner.src_port,
        inner.dst_port,
        &inner.payload,
    );
    let inner_ip = ip(inner.src, inner.dst, 17, Fragment::NONE, &inner_udp);
    let inner_eth = ethernet(
        VXLAN_INNER_SRC_MAC,
        VXLAN_DEV_MAC,
        &[],
        ethertype(inner.src),
        &inner_ip,
    );
    let mut vxlan = Vec::with_capacity(8 + inner_eth.len());
    vxlan.extend_from_slice(&[0x08, 0, 0, 0]);
    vxlan.extend_from_slice(&((vni & 0x00ff_ffff) << 8).to_be_bytes());
    vxlan.extend_from_slice(&inner_eth);
    // Source port from the inner flow, as a VTEP does (fixed here: one inner flow hash).
    let mut outer_udp = udp(
        tunnel.outer_src,
        tunnel.outer_dst,
        49_152,
        VXLAN_PORT,
        &vxlan,
    );
    if tunnel.outer_src.is_ipv4() {
        outer_udp[6..8].copy_from_slice(&[0, 0]);
    }
    let outer_ip = ip(
        tunnel.outer_src,
        tunnel.outer_dst,
        17,
        Fragment::NONE,
        &outer_udp,
    );
    let frame = ethernet(
        src_mac,
        dst_mac,
        &[],
        ethertype(tunnel.outer_src),
        &outer_ip,
    );
    let offset = 14 + ip_header_len(tunnel.outer_src) + 8 + 8 + 14 + ip_header_len(inner.src);
    (frame, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    #[test]
    fn gre_v4_with_key_has_inner_udp_where_it_says() {
        let mix = TrafficMix::single(Encap::Gre, Some(7), PayloadKind::Raw { len: 18 }, 9000);
        let frames = mix.frames(SRC, DST).expect("frames");
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        // 14 + 20 + 8 (GRE with key) + 20 + 8 + 18
        assert_eq!(frame.bytes.len(), 88);
        assert_eq!(frame.inner_udp_offset, 62);
        assert_eq!(
            frame.bytes[frame.inner_udp_offset..][..4],
            [0x27, 0x10, 0x23, 0x28]
        );
        assert_eq!(frame.bytes[38..42], 7u32.to_be_bytes());
    }

    #[test]
    fn vxlan_frame_layout_and_vni() {
        let mix = TrafficMix::single(
            Encap::Vxlan { vni: 0x1234 },
            None,
            PayloadKind::Raw { len: 10 },
            9000,
        );
        let frame = &mix.frames(SRC, DST).expect("frames")[0];
        assert_eq!(frame.bytes.len(), 14 + 20 + 8 + 8 + 14 + 20 + 8 + 10);
        assert_eq!(frame.bytes[36..38], VXLAN_PORT.to_be_bytes());
        assert_eq!(frame.bytes[40..42], [0, 0], "outer IPv4 UDP checksum 0");
        assert_eq!(frame.bytes[42..50], [0x08, 0, 0, 0, 0, 0x12, 0x34, 0]);
        assert_eq!(frame.bytes[50..56], VXLAN_DEV_MAC);
        assert_eq!(frame.inner_udp_offset, 84);
        assert_eq!(frame.bytes[86..88], 9000u16.to_be_bytes());
    }

    #[test]
    fn weights_and_tunnels_multiply() {
        let mut mix = TrafficMix::single(Encap::Gre, None, PayloadKind::Schema, 5140);
        mix.tunnels.push(Tunnel::lab_v6(Some(1)));
        mix.payloads.push(PayloadShare {
            kind: PayloadKind::Syslog5424,
            weight: 3,
            dst_port: 514,
        });
        let frames = mix.frames(SRC, DST).expect("frames");
        assert_eq!(frames.len(), 4);
        assert_eq!(
            frames.iter().map(|f| f.weight).collect::<Vec<_>>(),
            [1, 1, 3, 3]
        );
        // IPv6 outer, GRE with key: 14 + 40 + 8 + 20.
        assert_eq!(frames[1].inner_udp_offset, 82);
    }

    #[test]
    fn empty_and_mixed_mixes_are_refused() {
        let mut mix = TrafficMix::single(Encap::Gre, None, PayloadKind::Schema, 5140);
        mix.tunnels.clear();
        assert!(matches!(
            mix.frames(SRC, DST),
            Err(MixError::Empty { what: "tunnels" })
        ));
        let mut mix = TrafficMix::single(Encap::Plain, None, PayloadKind::Schema, 5140);
        mix.inner_dst = IpAddr::V6(INNER_DST_V6);
        assert!(matches!(
            mix.frames(SRC, DST),
            Err(MixError::MixedFamilies { .. })
        ));
        let mix = TrafficMix::single(Encap::Plain, None, PayloadKind::Raw { len: 1401 }, 1);
        assert!(matches!(
            mix.frames(SRC, DST),
            Err(MixError::PayloadTooLarge { len: 1401, .. })
        ));
    }
}
