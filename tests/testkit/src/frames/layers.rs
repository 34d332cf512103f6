//! Byte-level encoders for each protocol layer, with their checksums.
//!
//! [`super::FrameSpec::build`] composes these from the inside out (payload → UDP → inner IP
//! → GRE → outer IP → Ethernet/VLAN). They are public so a test can assemble a frame no
//! spec describes, but each one only encodes: it never guesses a field the caller did not
//! give. All multi-byte fields are written in network byte order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// GRE protocol type of Transparent Ethernet Bridging (an Ethernet frame inside GRE).
pub const ETHERTYPE_TEB: u16 = 0x6558;
/// GRE protocol type of ERSPAN type II.
pub const ETHERTYPE_ERSPAN: u16 = 0x88be;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;
/// IPv6 next-header value of the Fragment extension header.
pub const IPPROTO_IPV6_FRAGMENT: u8 = 44;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// GRE flag: checksum (and reserved1) present.
pub const GRE_FLAG_C: u16 = 0x8000;
/// GRE flag: key present.
pub const GRE_FLAG_K: u16 = 0x2000;
/// GRE flag: sequence number present.
pub const GRE_FLAG_S: u16 = 0x1000;

/// One 802.1Q/802.1ad tag. PCP and DEI are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vlan {
    /// Tag protocol identifier: `0x8100` (C-tag) or `0x88a8` (S-tag, outer).
    pub tpid: u16,
    /// VLAN id, 12 bits (`0..=4095`).
    pub vid: u16,
}

/// The fragment fields of an IPv4 header or an IPv6 Fragment extension header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// More Fragments flag.
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub offset_units: u16,
    /// Identification (IPv4 uses the low 16 bits).
    pub identification: u32,
}

impl Fragment {
    /// Not a fragment: MF clear and offset zero.
    pub const NONE: Fragment = Fragment {
        more_fragments: false,
        offset_units: 0,
        identification: 0,
    };

    /// True when these fields describe a fragment (MF set or offset != 0).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.offset_units != 0
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
///
/// Odd-length parts are handled as if the parts were one contiguous buffer.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut pending: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match pending.take() {
                Some(high) => sum += u64::from(u16::from_be_bytes([high, byte])),
                None => pending = Some(byte),
            }
        }
    }
    if let Some(high) = pending {
        sum += u64::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop above leaves `sum` at most 0xffff.
    !(sum as u16)
}

/// Ethernet II header, `vlans` outermost first, then `ethertype` and `payload`.
pub fn ethernet(
    src: [u8; 6],
    dst: [u8; 6],
    vlans: &[Vlan],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    for vlan in vlans {
        out.extend_from_slice(&vlan.tpid.to_be_bytes());
        out.extend_from_slice(&(vlan.vid & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// IPv4 header (with `options_words` 32-bit words of options: NOPs ending in an EOL) and
/// `payload`. TTL 64, no DF; the header checksum is computed.
///
/// # Panics
/// If `options_words > 10` (IHL is at most 15) or the packet exceeds 65535 bytes.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    options_words: u8,
    fragment: Fragment,
    payload: &[u8],
) -> Vec<u8> {
    assert!(options_words <= 10, "IPv4 options are at most 10 words");
    let header_len = 20 + 4 * usize::from(options_words);
    let total_len =
        u16::try_from(header_len + payload.len()).expect("IPv4 packet over 65535 bytes");
    let mut out = Vec::with_capacity(usize::from(total_len));
    out.push(0x40 | (5 + options_words));
    out.push(0); // DSCP/ECN
    out.extend_from_slice(&total_len.to_be_bytes());
    // The identification field is 16 bits; the upper half of `identification` is for IPv6.
    out.extend_from_slice(&(fragment.identification as u16).to_be_bytes());
    let flags_offset =
        (u16::from(fragment.more_fragments) << 13) | (fragment.offset_units & 0x1fff);
    out.extend_from_slice(&flags_offset.to_be_bytes());
    out.push(64); // TTL
    out.push(protocol);
    out.extend_from_slice(&[0, 0]); // checksum, filled below
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let options_len = 4 * usize::from(options_words);
    for i in 0..options_len {
        // NOP (1) padding, with End of Options List (0) as the last byte.
        out.push(if i + 1 == options_len { 0 } else { 1 });
    }
    let checksum = internet_checksum(&[&out[..header_len]]);
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// IPv6 header and `payload` (hop limit 64, flow label 0). With `fragment` set to a
/// fragment, a Fragment extension header (next header 44) carries `next_header`.
///
/// # Panics
/// If the payload exceeds 65535 bytes.
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    fragment: Fragment,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + payload.len());
    let first_header = if fragment.is_fragment() {
        body.push(next_header);
        body.push(0);
        let offset_flags = (fragment.offset_units << 3) | u16::from(fragment.more_fragments);
        body.extend_from_slice(&offset_flags.to_be_bytes());
        body.extend_from_slice(&fragment.identification.to_be_bytes());
        IPPROTO_IPV6_FRAGMENT
    } else {
        next_header
    };
    body.extend_from_slice(payload);
    let payload_len = u16::try_from(body.len()).expect("IPv6 payload over 65535 bytes");
    let mut out = Vec::with_capacity(40 + body.len());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&payload_len.to_be_bytes());
    out.push(first_header);
    out.push(64); // hop limit
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&body);
    out
}

/// An IPv4 or IPv6 packet, chosen by the address family of `src`/`dst`.
///
/// # Panics
/// If `src` and `dst` are of different families.
pub fn ip(src: IpAddr, dst: IpAddr, protocol: u8, fragment: Fragment, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => ipv4(src, dst, protocol, 0, fragment, payload),
        (IpAddr::V6(src), IpAddr::V6(dst)) => ipv6(src, dst, protocol, fragment, payload),
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// The checksum of an upper-layer `segment` (its checksum field zeroed) with the IPv4 or
/// IPv6 pseudo-header.
fn pseudo_header_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let len = u16::try_from(segment.len()).expect("segment over 65535 bytes");
            let pseudo_tail = [0, protocol];
            internet_checksum(&[
                &src.octets(),
                &dst.octets(),
                &pseudo_tail,
                &len.to_be_bytes(),
                segment,
            ])
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let len = u32::try_from(segment.len()).expect("segment over 4 GiB");
            let pseudo_tail = [0, 0, 0, protocol];
            internet_checksum(&[
                &src.octets(),
                &dst.octets(),
                &len.to_be_bytes(),
                &pseudo_tail,
                segment,
            ])
        }
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// UDP header and `payload`, with the checksum over the pseudo-header of `src`/`dst`
/// (a computed 0 is sent as 0xffff, RFC 768 / RFC 8200).
///
/// # Panics
/// If the datagram exceeds 65535 bytes or the address families differ.
pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP datagram over 65535 bytes");
    let mut out = Vec::with_capacity(usize::from(len));
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let checksum = match pseudo_header_checksum(src, dst, IPPROTO_UDP, &out) {
        0 => 0xffff,
        sum => sum,
    };
    out[6..8].copy_from_slice(&checksum.to_be_bytes());
    out
}

/// TCP header (20 bytes, no options, window 64240) with `flags` (e.g. `0x02` SYN,
/// `0x18` PSH|ACK), `seq`, and `payload`; checksum over the pseudo-header.
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + payload.len());
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // ack
    out.push(5 << 4); // data offset
    out.push(flags);
    out.extend_from_slice(&64240u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    out.extend_from_slice(payload);
    let checksum = pseudo_header_checksum(src, dst, IPPROTO_TCP, &out);
    out[16..18].copy_from_slice(&checksum.to_be_bytes());
    out
}

/// An ICMP (IPv4) or ICMPv6 echo request with `id`, `seq` and `payload`. ICMPv6 includes
/// the pseudo-header in its checksum, so it needs the addresses.
pub fn icmp_echo_request(src: IpAddr, dst: IpAddr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(if src.is_ipv4() { 8 } else { 128 });
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let checksum = if src.is_ipv4() {
        internet_checksum(&[&out])
    } else {
        pseudo_header_checksum(src, dst, IPPROTO_ICMPV6, &out)
    };
    out[2..4].copy_from_slice(&checksum.to_be_bytes());
    out
}

/// The fields of a GRE header (RFC 2784 with the RFC 2890 key and sequence extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreHeader {
    /// Whether the checksum and reserved1 fields are present (C bit).
    pub checksum: bool,
    /// The key, when present (K bit).
    pub key: Option<u32>,
    /// The sequence number, when present (S bit).
    pub sequence: Option<u32>,
    /// Version, 3 bits (0 for GRE, 1 for PPTP's enhanced GRE).
    pub version: u8,
    /// Protocol type of the payload (an EtherType).
    pub protocol: u16,
}

impl GreHeader {
    /// Length of the encoded header in bytes.
    pub fn len(&self) -> usize {
        4 + 4
            * (usize::from(self.checksum)
                + usize::from(self.key.is_some())
                + usize::from(self.sequence.is_some()))
    }

    /// Always false: a GRE header has at least 4 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// GRE header followed by `payload`. With the C bit, the checksum covers the GRE header
/// (checksum field zero) and the payload (RFC 1701 / RFC 2784).
pub fn gre(header: &GreHeader, payload: &[u8]) -> Vec<u8> {
    let mut flags = u16::from(header.version & 0x07);
    if header.checksum {
        flags |= GRE_FLAG_C;
    }
    if header.key.is_some() {
        flags |= GRE_FLAG_K;
    }
    if header.sequence.is_some() {
        flags |= GRE_FLAG_S;
    }
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&header.protocol.to_be_bytes());
    if header.checksum {
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum (filled below) + reserved1
    }
    if let Some(key) = header.key {
        out.extend_from_slice(&key.to_be_bytes());
    }
    if let Some(sequence) = header.sequence {
        out.extend_from_slice(&sequence.to_be_bytes());
    }
    out.extend_from_slice(payload);
    if header.checksum {
        let checksum = internet_checksum(&[&out]);
        out[4..6].copy_from_slice(&checksum.to_be_bytes());
    }
    out
}

/// An ERSPAN type II header (8 bytes: version 1, the given VLAN and session id), which
/// precedes the mirrored Ethernet frame in GRE protocol 0x88BE.
pub fn erspan_type2(vlan: u16, session_id: u16) -> [u8; 8] {
    let word0: u32 = (1 << 28) | (u32::from(vlan & 0x0fff) << 16) | u32::from(session_id & 0x03ff);
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&word0.to_be_bytes());
    out
}

/// An ARP request over Ethernet/IPv4: who has `target_ip`, tell `sender_ip`.
pub fn arp_request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    out.push(6);
    out.push(4);
    out.extend_from_slice(&1u16.to_be_bytes()); // request
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&sender_ip.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&target_ip.octets());
    out
}
