//! Header parsing for the XDP program: Ethernet (up to two VLAN tags), IPv4/IPv6, GRE v0.
//!
//! Every read is bounds-checked against `data_end` and every offset is bounded by
//! construction (VLAN count ≤ 2, IHL ≤ 60, GRE options ≤ 12 bytes), so the verifier can
//! follow the variable offsets. A frame that does not parse is never an error to the
//! kernel: it is a pass verdict.

use aya_ebpf::programs::XdpContext;
use sluice_common::proto::ETH_HLEN;
use sluice_common::{
    SETTINGS_STEER_PLAIN_UDP, Settings, Verdict,
    proto::{
        ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, GRE_CHECKSUM, GRE_KEY, GRE_ROUTING,
        GRE_SEQUENCE, GRE_VERSION, IPPROTO_GRE, IPPROTO_UDP, IPV6_NEXTHDR_FRAGMENT,
    },
};

/// How a frame the program steers arrived.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// UDP inside a GRE tunnel.
    Tunnelled,
    /// UDP without a tunnel (plain steering on).
    Plain,
}

struct IpHeader {
    protocol: u8,
    payload_offset: usize,
}

/// Reads `N` bytes at `offset`, or fails as malformed when the frame is shorter.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<[u8; N], Verdict> {
    let start = ctx.data();
    if start + offset + N > ctx.data_end() {
        return Err(Verdict::PassMalformed);
    }
    // SAFETY: `start + offset .. start + offset + N` was checked to lie inside the packet.
    Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Decides whether the frame is ours; `Err` carries the pass verdict.
#[inline(always)]
pub fn classify(
    ctx: &XdpContext,
    settings: &Settings,
    port_steered: impl Fn(&Settings, u16) -> bool,
) -> Result<Steer, Verdict> {
    let eth: [u8; ETH_HLEN] = bytes(ctx, 0)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut offset = ETH_HLEN;
    // At most two tags (802.1Q, or 802.1ad + 802.1Q); unrolled for the verifier.
    if is_vlan(ethertype) {
        let tag: [u8; 4] = bytes(ctx, offset)?;
        ethertype = be16([tag[2], tag[3]]);
        offset += 4;
        if is_vlan(ethertype) {
            let tag: [u8; 4] = bytes(ctx, offset)?;
            ethertype = be16([tag[2], tag[3]]);
            offset += 4;
            if is_vlan(ethertype) {
                return Err(Verdict::PassNotIp);
            }
        }
    }
    let outer = ip_header(ctx, offset, ethertype)?;
    match outer.protocol {
        IPPROTO_GRE => gre(ctx, settings, &outer, port_steered),
        IPPROTO_UDP => {
            if settings.flags & SETTINGS_STEER_PLAIN_UDP == 0 {
                return Err(Verdict::PassNotGreOrUdp);
            }
            let udp: [u8; 8] = bytes(ctx, outer.payload_offset)?;
            if !port_steered(settings, be16([udp[2], udp[3]])) {
                return Err(Verdict::PassPortNotSteered);
            }
            Ok(Steer::Plain)
        }
        _ => Err(Verdict::PassNotGreOrUdp),
    }
}

/// Parses a GRE v0 header at the outer payload and the inner IP/UDP behind it.
#[inline(always)]
fn gre(
    ctx: &XdpContext,
    settings: &Settings,
    outer: &IpHeader,
    port_steered: impl Fn(&Settings, u16) -> bool,
) -> Result<Steer, Verdict> {
    let header: [u8; 4] = bytes(ctx, outer.payload_offset)?;
    let flags = be16([header[0], header[1]]);
    let protocol = be16([header[2], header[3]]);
    // As the kernel's own GRE receive path: version 0 only, no routing.
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
    if flags & GRE_KEY != 0 {
        offset += 4;
    }
    if flags & GRE_SEQUENCE != 0 {
        offset += 4;
    }
    let inner = ip_header(ctx, offset, protocol)?;
    if inner.protocol != IPPROTO_UDP {
        return Err(Verdict::PassInnerNotUdp);
    }
    let udp: [u8; 8] = bytes(ctx, inner.payload_offset)?;
    if !port_steered(settings, be16([udp[2], udp[3]])) {
        return Err(Verdict::PassPortNotSteered);
    }
    Ok(Steer::Tunnelled)
}

/// Parses the IPv4 or IPv6 header at `offset`.
#[inline(always)]
fn ip_header(ctx: &XdpContext, offset: usize, ethertype: u16) -> Result<IpHeader, Verdict> {
    match ethertype {
        ETH_P_IP => {
            let h: [u8; 20] = bytes(ctx, offset)?;
            if h[0] >> 4 != 4 {
                return Err(Verdict::PassMalformed);
            }
            let header_len = usize::from(h[0] & 0x0f) * 4;
            if header_len < 20 {
                return Err(Verdict::PassMalformed);
            }
            // More fragments, or a non-zero fragment offset.
            if be16([h[6], h[7]]) & 0x3fff != 0 {
                return Err(Verdict::PassFragment);
            }
            // The options, if any, must be present too.
            let _: [u8; 1] = bytes(ctx, offset + header_len - 1)?;
            Ok(IpHeader {
                protocol: h[9],
                payload_offset: offset + header_len,
            })
        }
        ETH_P_IPV6 => {
            let h: [u8; 40] = bytes(ctx, offset)?;
            if h[0] >> 4 != 6 {
                return Err(Verdict::PassMalformed);
            }
            if h[6] == IPV6_NEXTHDR_FRAGMENT {
                return Err(Verdict::PassFragment);
            }
            Ok(IpHeader {
                protocol: h[6],
                payload_offset: offset + 40,
            })
        }
        _ => Err(Verdict::PassNotIp),
    }
}
