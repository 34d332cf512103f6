//! Frame parsing in userspace: from raw bytes to a [`Datagram`] (tunnel provenance, inner
//! addresses, ports and payload).
//!
//! Both the live path and replay read whole frames as they were on the wire — the XDP
//! program redirects steered frames unchanged — and share one parser:
//! - [`parse_captured`] (pcap replay) first takes the XDP program's decision
//!   ([`classify`], a check-for-check twin of the eBPF parser), so a replayed capture and a
//!   live run agree on which packets are ours, down to the pass verdict of each one that
//!   is not; then it strips the outer headers and parses the inner IP/UDP (etherparse).
//! - [`parse_steered`] (frames from AF_XDP) does the same; a frame the XDP program
//!   steered but the twin would not is a counted drop, not a pass.
//!
//! Stripping here, on the workers, rather than in the XDP program keeps the per-queue
//! receive path (one core per tunnel) to a copy, and keeps the program free of packet
//! rewrites and metadata, whose limits differ between the kernels users run.
//!
//! Nothing here panics on any input: a frame that is not ours (including one whose
//! headers cannot even be read: `pass_malformed`, as in the kernel) is a pass [`Verdict`];
//! one that is ours but whose lengths do not add up is a counted [`DropReason`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4Slice, Ipv6Slice, UdpSlice, err::LenError};
use sluice_common::{
    PORT_BITMAP_WORDS, Verdict,
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, GRE_CHECKSUM, GRE_KEY,
        GRE_ROUTING, GRE_SEQUENCE, GRE_VERSION, IPPROTO_GRE, IPPROTO_UDP, IPV6_NEXTHDR_FRAGMENT,
    },
};

use crate::{accounting::DropReason, config::FilterConfig};

/// The GRE tunnel a packet arrived through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// Outer source address (the tunnel's remote end).
    pub src: IpAddr,
    /// Outer destination address (this host's end).
    pub dst: IpAddr,
    /// GRE key, when the header carried one.
    pub key: Option<u32>,
}

/// An inner UDP datagram and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// `None` for plain (un-tunnelled) UDP.
    pub tunnel: Option<Tunnel>,
    /// Inner source address.
    pub src: IpAddr,
    /// Inner destination address.
    pub dst: IpAddr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload (exactly the UDP length, without Ethernet padding).
    pub payload: &'a [u8],
}

/// Why [`parse_captured`] did not produce a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not ours: the XDP program would pass it to the kernel.
    NotSteered(Verdict),
    /// Ours, but broken.
    Dropped(DropReason),
}

impl From<DropReason> for Rejected {
    fn from(reason: DropReason) -> Self {
        Rejected::Dropped(reason)
    }
}

/// The configured destination ports, as the bitmap the XDP program reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortFilter {
    words: Vec<u64>,
    all_ports: bool,
    plain_udp: bool,
}

impl PortFilter {
    /// Builds the filter from `[filter]`.
    pub fn new(config: &FilterConfig) -> Self {
        let mut words = vec![0u64; PORT_BITMAP_WORDS as usize];
        for port in &config.ports {
            words[usize::from(*port >> 6)] |= 1 << (port & 63);
        }
        Self {
            words,
            all_ports: config.ports.is_empty(),
            plain_udp: config.plain_udp,
        }
    }

    /// True when UDP to `port` is steered.
    #[inline]
    pub fn steers(&self, port: u16) -> bool {
        self.all_ports || (self.words[usize::from(port >> 6)] >> (port & 63)) & 1 == 1
    }

    /// The lowest steered port (9, discard, when every port is steered): what the
    /// start-up self-test sends to.
    pub fn first_steered_port(&self) -> u16 {
        if self.all_ports {
            return 9;
        }
        self.words
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map_or(9, |(i, w)| (i * 64) as u16 + w.trailing_zeros() as u16)
    }

    /// The bitmap words (index = port / 64).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// True when the port set is empty (every port is steered).
    pub fn all_ports(&self) -> bool {
        self.all_ports
    }

    /// True when plain UDP is steered too.
    pub fn plain_udp(&self) -> bool {
        self.plain_udp
    }
}

fn len_error(_: LenError) -> DropReason {
    DropReason::Truncated
}

/// One parsed IP header and its payload.
struct IpPart<'a> {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    fragmented: bool,
    /// True when IPv6 extension headers sit between the header and the payload.
    extensions: bool,
    payload: &'a [u8],
}

fn ip_part(ethertype: u16, data: &[u8]) -> Result<IpPart<'_>, Rejected> {
    match ethertype {
        ETH_P_IP => {
            let ip = Ipv4Slice::from_slice(data).map_err(|e| match e {
                etherparse::err::ipv4::SliceError::Len(_) => DropReason::Truncated,
                _ => DropReason::Malformed,
            })?;
            let header = ip.header();
            let payload = ip.payload();
            Ok(IpPart {
                src: IpAddr::V4(Ipv4Addr::from(header.source())),
                dst: IpAddr::V4(Ipv4Addr::from(header.destination())),
                protocol: header.protocol().0,
                fragmented: header.is_fragmenting_payload(),
                extensions: false,
                payload: payload.payload,
            })
        }
        ETH_P_IPV6 => {
            let ip = Ipv6Slice::from_slice(data).map_err(|e| match e {
                etherparse::err::ipv6::SliceError::Len(_) => DropReason::Truncated,
                _ => DropReason::Malformed,
            })?;
            let header = ip.header();
            let payload = ip.payload();
            Ok(IpPart {
                src: IpAddr::V6(Ipv6Addr::from(header.source())),
                dst: IpAddr::V6(Ipv6Addr::from(header.destination())),
                protocol: payload.ip_number.0,
                fragmented: payload.fragmented,
                extensions: !ip.extensions().is_empty(),
                payload: payload.payload,
            })
        }
        _ => Err(Rejected::NotSteered(Verdict::PassNotIp)),
    }
}

fn udp_part(data: &[u8]) -> Result<UdpSlice<'_>, DropReason> {
    UdpSlice::from_slice(data).map_err(len_error)
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// Where the XDP program would cut a frame it steers, and the tunnel it came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steered {
    /// Offset of the inner (or only) IP header.
    pub inner_ip_offset: usize,
    /// Its EtherType.
    pub inner_ethertype: u16,
    /// The tunnel, `None` for plain UDP.
    pub tunnel: Option<Tunnel>,
    /// With the GRE C bit: the bytes the GRE checksum covers (GRE header and payload, up
    /// to the end of the outer IP packet by its length field).
    pub gre_checksummed: Option<(usize, usize)>,
}

/// The XDP program's decision, made the same way in userspace: the twin of
/// `ebpf/sluice-ebpf/src/parse.rs`, check for check (the integration tests compare the two
/// verdict by verdict). It only needs the headers up to the inner UDP destination port;
/// whether the lengths add up is left to the parser behind it, as in the live path.
pub fn classify(frame: &[u8], filter: &PortFilter) -> Result<Steered, Verdict> {
    let malformed = Verdict::PassMalformed;
    let mut ethertype = be16(frame, 12).ok_or(malformed)?;
    let mut offset = ETH_HLEN;
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(frame, offset + 2).ok_or(malformed)?;
        offset += 4;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(Verdict::PassNotIp);
    }
    let outer = ip_header(frame, offset, ethertype)?;
    match outer.protocol {
        IPPROTO_GRE => classify_gre(frame, &outer, filter),
        IPPROTO_UDP => {
            if !filter.plain_udp() {
                return Err(Verdict::PassNotGreOrUdp);
            }
            let port = be16(frame, outer.payload_offset + 2).ok_or(malformed)?;
            frame.get(outer.payload_offset + 7).ok_or(malformed)?;
            if !filter.steers(port) {
                return Err(Verdict::PassPortNotSteered);
            }
            Ok(Steered {
                inner_ip_offset: offset,
                inner_ethertype: ethertype,
                tunnel: None,
                gre_checksummed: None,
            })
        }
        _ => Err(Verdict::PassNotGreOrUdp),
    }
}

fn classify_gre(frame: &[u8], outer: &IpHeader, filter: &PortFilter) -> Result<Steered, Verdict> {
    let malformed = Verdict::PassMalformed;
    let flags = be16(frame, outer.payload_offset).ok_or(malformed)?;
    let protocol = be16(frame, outer.payload_offset + 2).ok_or(malformed)?;
    if flags & (GRE_VERSION | GRE_ROUTING) != 0 {
        return Err(Verdict::PassGreUnsupported);
    }
    if protocol != ETH_P_IP && protocol != ETH_P_IPV6 {
        return Err(Verdict::PassGreProtocol);
    }
    let mut offset = outer.payload_offset + 4;
    if flags & GRE_CHECKSUM != 0 {
        offset += 4;
    }
    let mut key = None;
    if flags & GRE_KEY != 0 {
        let bytes = frame.get(offset..offset + 4).ok_or(malformed)?;
        key = Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        offset += 4;
    }
    if flags & GRE_SEQUENCE != 0 {
        offset += 4;
    }
    let inner = ip_header(frame, offset, protocol)?;
    if inner.protocol != IPPROTO_UDP {
        return Err(Verdict::PassInnerNotUdp);
    }
    let port = be16(frame, inner.payload_offset + 2).ok_or(malformed)?;
    frame.get(inner.payload_offset + 7).ok_or(malformed)?;
    if !filter.steers(port) {
        return Err(Verdict::PassPortNotSteered);
    }
    Ok(Steered {
        inner_ip_offset: offset,
        inner_ethertype: protocol,
        tunnel: Some(Tunnel {
            src: outer.src,
            dst: outer.dst,
            key,
        }),
        gre_checksummed: (flags & GRE_CHECKSUM != 0)
            .then_some((outer.payload_offset, outer.packet_end)),
    })
}

/// The fields of an IP header the classifier needs.
struct IpHeader {
    protocol: u8,
    payload_offset: usize,
    /// Where the packet ends by its length field (not checked against the frame here).
    packet_end: usize,
    src: IpAddr,
    dst: IpAddr,
}

fn ip_header(frame: &[u8], offset: usize, ethertype: u16) -> Result<IpHeader, Verdict> {
    let malformed = Verdict::PassMalformed;
    match ethertype {
        ETH_P_IP => {
            let h = frame.get(offset..offset + 20).ok_or(malformed)?;
            if h[0] >> 4 != 4 {
                return Err(malformed);
            }
            let header_len = usize::from(h[0] & 0x0f) * 4;
            if header_len < 20 {
                return Err(malformed);
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Err(Verdict::PassFragment);
            }
            frame.get(offset + header_len - 1).ok_or(malformed)?;
            Ok(IpHeader {
                protocol: h[9],
                payload_offset: offset + header_len,
                packet_end: offset + usize::from(u16::from_be_bytes([h[2], h[3]])),
                src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
                dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            })
        }
        ETH_P_IPV6 => {
            let h = frame.get(offset..offset + 40).ok_or(malformed)?;
            if h[0] >> 4 != 6 {
                return Err(malformed);
            }
            if h[6] == IPV6_NEXTHDR_FRAGMENT {
                return Err(Verdict::PassFragment);
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&h[8..24]);
            dst.copy_from_slice(&h[24..40]);
            Ok(IpHeader {
                protocol: h[6],
                payload_offset: offset + 40,
                packet_end: offset + 40 + usize::from(u16::from_be_bytes([h[4], h[5]])),
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
            })
        }
        _ => Err(Verdict::PassNotIp),
    }
}

/// Parses a whole captured frame: the XDP program's verdict first ([`classify`]), then,
/// for a steered frame, the inner IP/UDP as the live path parses it.
pub fn parse_captured<'a>(frame: &'a [u8], filter: &PortFilter) -> Result<Datagram<'a>, Rejected> {
    let steered = classify(frame, filter).map_err(Rejected::NotSteered)?;
    if let Some((start, end)) = steered.gre_checksummed {
        // As the kernel's GRE receive path: a packet whose checksum fails is dropped (the
        // XDP program leaves the sum to the workers; it would cost the one receiving core
        // a pass over every byte).
        if end < start {
            return Err(DropReason::Malformed.into());
        }
        let covered = frame.get(start..end).ok_or(DropReason::Truncated)?;
        if !checksum_is_valid(covered) {
            return Err(DropReason::GreChecksum.into());
        }
    }
    let inner = frame
        .get(steered.inner_ip_offset..)
        .ok_or(DropReason::Truncated)?;
    Ok(parse_inner(steered.inner_ethertype, inner, steered.tunnel)?)
}

/// The folded 16-bit one's-complement sum of `bytes` (RFC 1071; an odd last byte is
/// padded with zero). A checksum field holds the complement of this sum over its data
/// with the field zeroed; over the data with the field as sent, it is all ones.
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_be_bytes(w);
        // The four 16-bit words, carrying into the upper bits.
        sum += (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff);
    }
    let mut pairs = words.remainder().chunks_exact(2);
    for pair in &mut pairs {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// True when the GRE checksum of RFC 2784 verifies over `bytes` (GRE header, checksum
/// field as sent, and payload).
fn checksum_is_valid(bytes: &[u8]) -> bool {
    ones_complement_sum(bytes) == 0xffff
}

/// Parses a frame the XDP program redirected. The program hands frames over exactly as
/// they arrived, so this is [`parse_captured`]; a frame the twin classifier would not have
/// steered is counted as `classifier_mismatch` (it was seen, so it must be accounted for),
/// never silently passed.
pub fn parse_steered<'a>(frame: &'a [u8], filter: &PortFilter) -> Result<Datagram<'a>, DropReason> {
    parse_captured(frame, filter).map_err(|rejected| match rejected {
        Rejected::Dropped(reason) => reason,
        Rejected::NotSteered(_) => DropReason::ClassifierMismatch,
    })
}

/// Parses an IP packet that must be an unfragmented UDP datagram (the classifier said so):
/// lengths are checked here, and any inconsistency is a counted drop.
fn parse_inner(
    ethertype: u16,
    packet: &[u8],
    tunnel: Option<Tunnel>,
) -> Result<Datagram<'_>, DropReason> {
    let ip = ip_part(ethertype, packet).map_err(|r| match r {
        Rejected::Dropped(reason) => reason,
        Rejected::NotSteered(_) => DropReason::Malformed,
    })?;
    if ip.fragmented || ip.protocol != IPPROTO_UDP || ip.extensions {
        return Err(DropReason::Malformed);
    }
    let udp = udp_part(ip.payload)?;
    Ok(Datagram {
        tunnel,
        src: ip.src,
        dst: ip.dst,
        src_port: udp.source_port(),
        dst_port: udp.destination_port(),
        payload: udp.payload(),
    })
}

#[cfg(test)]
mod tests;
