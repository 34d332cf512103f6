//! Complete Ethernet frames, built byte by byte, for every shape of traffic Sluice must
//! steer or must leave to the kernel.
//!
//! A [`FrameSpec`] describes one frame Sluice should record: inner UDP, optionally inside a
//! GRE (version 0) tunnel over IPv4 (with options) or IPv6, behind 0–2 VLAN tags. Its
//! [`FrameSpec::build`] writes every checksum (IPv4 header, UDP, GRE when C is set). The
//! frames Sluice must *not* take are the same specs built with a [`Mutation`]
//! ([`FrameSpec::build_mutated`]) or made by [`icmp_echo_frame`] and [`arp_request_frame`];
//! [`matrix`] lists deterministic sets of both. The encoders are our own rather than a
//! packet library's so that malformed and unusual frames (GRE version 1, IHL > 5,
//! truncation) are as easy to make as good ones.

pub mod layers;
pub mod matrix;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use layers::{Fragment, Vlan};
pub use matrix::{
    FragmentLayer, MatrixParams, NegativeCase, NegativeKind, TruncatedAt, negative_cases,
    variant_matrix,
};

use layers::{
    ETHERTYPE_ARP, ETHERTYPE_ERSPAN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_TEB, GreHeader,
    IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

/// A MAC address.
pub type MacAddr = [u8; 6];

/// TPID of an 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad service tag (the outer tag of a QinQ pair).
pub const TPID_8021AD: u16 = 0x88a8;

/// The outer (tunnel) IP header of a GRE packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OuterIp {
    /// IPv4 with `options_words` 32-bit words of options (IHL = 5 + options_words, ≤ 10).
    V4 {
        /// Tunnel source.
        src: Ipv4Addr,
        /// Tunnel destination.
        dst: Ipv4Addr,
        /// Words of IP options (NOP padding ending in EOL).
        options_words: u8,
    },
    /// IPv6 without extension headers.
    V6 {
        /// Tunnel source.
        src: Ipv6Addr,
        /// Tunnel destination.
        dst: Ipv6Addr,
    },
}

impl OuterIp {
    /// The tunnel source address.
    pub fn src(&self) -> IpAddr {
        match self {
            OuterIp::V4 { src, .. } => IpAddr::V4(*src),
            OuterIp::V6 { src, .. } => IpAddr::V6(*src),
        }
    }

    /// The tunnel destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            OuterIp::V4 { dst, .. } => IpAddr::V4(*dst),
            OuterIp::V6 { dst, .. } => IpAddr::V6(*dst),
        }
    }
}

/// A GRE version 0 tunnel around the inner packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GreTunnel {
    /// The outer IP header.
    pub outer: OuterIp,
    /// C bit: a checksum over the GRE header and payload.
    pub checksum: bool,
    /// K bit and key.
    pub key: Option<u32>,
    /// S bit and sequence number.
    pub sequence: Option<u32>,
}

/// The UDP datagram Sluice should record (the inner packet of a tunnel, or the only one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpDatagram {
    /// Source address; the same family as `dst`.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// One frame Sluice should steer and record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameSpec {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// VLAN tags, outermost first (0, 1 or 2 for frames Sluice takes).
    pub vlans: Vec<Vlan>,
    /// The GRE tunnel, or `None` for plain UDP.
    pub tunnel: Option<GreTunnel>,
    /// The UDP datagram.
    pub inner: UdpDatagram,
}

/// A change that turns a [`FrameSpec`] into a frame Sluice must leave to the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Write this GRE version instead of 0 (the rest of the tunnel unchanged).
    GreVersion(u8),
    /// Carry the inner packet as GRE protocol `0x6558` (inside an Ethernet frame) or
    /// `0x88BE` (behind an ERSPAN type II header, inside an Ethernet frame; give the
    /// tunnel a sequence number, whose S bit marks type II); any other
    /// value is written as is in front of the inner IP packet.
    GreProtocol(u16),
    /// Mark the outer IP header (the only one for plain UDP) as a fragment.
    OuterFragment(Fragment),
    /// Mark the inner IP header of a tunnel as a fragment.
    InnerFragment(Fragment),
    /// Send the payload as a TCP segment (PSH|ACK) with the same ports instead of UDP.
    Tcp,
    /// Cut the built frame to this many bytes (IP and UDP lengths still claim the full size).
    TruncateTo(usize),
}

impl FrameSpec {
    /// The complete frame, checksums included.
    ///
    /// # Panics
    /// If the inner addresses are of different families, or IPv4 options exceed 10 words.
    pub fn build(&self) -> Vec<u8> {
        self.build_mutated(&[])
    }

    /// The frame with `mutations` applied (see [`Mutation`]).
    ///
    /// # Panics
    /// As [`FrameSpec::build`]; also if a tunnel mutation is applied to plain UDP.
    pub fn build_mutated(&self, mutations: &[Mutation]) -> Vec<u8> {
        let mut gre_version = 0;
        let mut gre_protocol = None;
        let mut outer_fragment = Fragment::NONE;
        let mut inner_fragment = Fragment::NONE;
        let mut tcp = false;
        let mut truncate_to = None;
        for mutation in mutations {
            match mutation {
                Mutation::GreVersion(version) => gre_version = *version,
                Mutation::GreProtocol(protocol) => gre_protocol = Some(*protocol),
                Mutation::OuterFragment(fragment) => outer_fragment = *fragment,
                Mutation::InnerFragment(fragment) => inner_fragment = *fragment,
                Mutation::Tcp => tcp = true,
                Mutation::TruncateTo(len) => truncate_to = Some(*len),
            }
        }
        let tunnel_only =
            gre_version != 0 || gre_protocol.is_some() || inner_fragment.is_fragment();
        assert!(
            self.tunnel.is_some() || !tunnel_only,
            "GRE and inner-fragment mutations need a tunnel"
        );

        let inner = &self.inner;
        let (protocol, segment) = if tcp {
            let seq = 1_000_000;
            let segment = layers::tcp(
                inner.src,
                inner.dst,
                inner.src_port,
                inner.dst_port,
                seq,
                0x18,
                &inner.payload,
            );
            (IPPROTO_TCP, segment)
        } else {
            let segment = layers::udp(
                inner.src,
                inner.dst,
                inner.src_port,
                inner.dst_port,
                &inner.payload,
            );
            (IPPROTO_UDP, segment)
        };

        let mut frame = match &self.tunnel {
            None => {
                let packet = layers::ip(inner.src, inner.dst, protocol, outer_fragment, &segment);
                layers::ethernet(
                    self.src_mac,
                    self.dst_mac,
                    &self.vlans,
                    ethertype_of(inner.src),
                    &packet,
                )
            }
            Some(tunnel) => {
                let inner_packet =
                    layers::ip(inner.src, inner.dst, protocol, inner_fragment, &segment);
                let (gre_payload, protocol) = match gre_protocol {
                    None => (inner_packet, ethertype_of(inner.src)),
                    Some(ETHERTYPE_TEB) => (self.bridged(&inner_packet), ETHERTYPE_TEB),
                    Some(ETHERTYPE_ERSPAN) => {
                        let mut payload = layers::erspan_type2(0, 7).to_vec();
                        payload.extend_from_slice(&self.bridged(&inner_packet));
                        (payload, ETHERTYPE_ERSPAN)
                    }
                    Some(other) => (inner_packet, other),
                };
                let header = GreHeader {
                    checksum: tunnel.checksum,
                    key: tunnel.key,
                    sequence: tunnel.sequence,
                    version: gre_version,
                    protocol,
                };
                let gre = layers::gre(&header, &gre_payload);
                let (ethertype, outer_packet) = match &tunnel.outer {
                    OuterIp::V4 {
                        src,
                        dst,
                        options_words,
                    } => (
                        ETHERTYPE_IPV4,
                        layers::ipv4(
                            *src,
                            *dst,
                            IPPROTO_GRE,
                            *options_words,
                            outer_fragment,
                            &gre,
                        ),
                    ),
                    OuterIp::V6 { src, dst } => (
                        ETHERTYPE_IPV6,
                        layers::ipv6(*src, *dst, IPPROTO_GRE, outer_fragment, &gre),
                    ),
                };
                layers::ethernet(
                    self.src_mac,
                    self.dst_mac,
                    &self.vlans,
                    ethertype,
                    &outer_packet,
                )
            }
        };
        if let Some(len) = truncate_to {
            frame.truncate(len);
        }
        frame
    }

    /// The inner IP packet wrapped in an Ethernet header (for GRE protocols that bridge).
    fn bridged(&self, inner_packet: &[u8]) -> Vec<u8> {
        layers::ethernet(
            self.src_mac,
            self.dst_mac,
            &[],
            ethertype_of(self.inner.src),
            inner_packet,
        )
    }

    /// Offset of the inner UDP header in [`FrameSpec::build`]'s output.
    pub fn inner_udp_offset(&self) -> usize {
        let ip_len = |addr: &IpAddr| if addr.is_ipv4() { 20 } else { 40 };
        let mut offset = 14 + 4 * self.vlans.len();
        if let Some(tunnel) = &self.tunnel {
            offset += match &tunnel.outer {
                OuterIp::V4 { options_words, .. } => 20 + 4 * usize::from(*options_words),
                OuterIp::V6 { .. } => 40,
            };
            offset += GreHeader {
                checksum: tunnel.checksum,
                key: tunnel.key,
                sequence: tunnel.sequence,
                version: 0,
                protocol: 0,
            }
            .len();
        }
        offset + ip_len(&self.inner.src)
    }
}

/// The EtherType of an IP packet with this source address.
fn ethertype_of(addr: IpAddr) -> u16 {
    if addr.is_ipv4() {
        ETHERTYPE_IPV4
    } else {
        ETHERTYPE_IPV6
    }
}

/// An ICMP (IPv4) or ICMPv6 echo request frame from `src` to `dst`.
pub fn icmp_echo_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    seq: u16,
) -> Vec<u8> {
    let payload: Vec<u8> = (0u8..32).collect();
    let icmp = layers::icmp_echo_request(src, dst, 0x51ce, seq, &payload);
    let protocol = if src.is_ipv4() {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    let packet = layers::ip(src, dst, protocol, Fragment::NONE, &icmp);
    layers::ethernet(src_mac, dst_mac, &[], ethertype_of(src), &packet)
}

/// A broadcast ARP request frame: who has `target`, tell `sender`.
pub fn arp_request_frame(src_mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = layers::arp_request(src_mac, sender, target);
    layers::ethernet(src_mac, [0xff; 6], &[], ETHERTYPE_ARP, &arp)
}

/// A lab GRE frame (MAC_A → MAC_B of [`crate::netns`], IPv4 outer 192.0.2.10 → 192.0.2.1,
/// key 7) carrying a UDP datagram from 203.0.113.7:`src_port` to 203.0.113.1:`dst_port`:
/// one packet of a stream on `dst_port`, told apart by its source port.
pub fn lab_gre_udp_frame(dst_port: u16, src_port: u16, payload: &[u8]) -> Vec<u8> {
    FrameSpec {
        src_mac: crate::netns::MAC_A,
        dst_mac: crate::netns::MAC_B,
        vlans: Vec::new(),
        tunnel: Some(GreTunnel {
            outer: OuterIp::V4 {
                src: Ipv4Addr::new(192, 0, 2, 10),
                dst: Ipv4Addr::new(192, 0, 2, 1),
                options_words: 0,
            },
            checksum: false,
            key: Some(7),
            sequence: None,
        }),
        inner: UdpDatagram {
            src: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            src_port,
            dst_port,
            payload: payload.to_vec(),
        },
    }
    .build()
}
