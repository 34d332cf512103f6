//! Deterministic sets of frames: every steered shape ([`variant_matrix`]) and every shape
//! that must go to the kernel ([`negative_cases`]).
//!
//! Tests send, replay and decode these sets, so their order and content never depend on
//! time or randomness: the same parameters always give the same bytes. Each steered frame
//! has a distinct UDP source port (`40000 + index`), which makes records from it unique
//! and lets tests match records to frames after sorting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::layers::{ETHERTYPE_ERSPAN, ETHERTYPE_TEB};
use super::{
    FrameSpec, GreTunnel, MacAddr, Mutation, OuterIp, TPID_8021AD, TPID_8021Q, UdpDatagram, Vlan,
    arp_request_frame, icmp_echo_frame,
};
use crate::frames::Fragment;

/// GRE keys the matrix cycles through (0 is a present key, distinct from no key).
pub const KEYS: [u32; 7] = [0, 1, 42, 0x0000_ffff, 0x0001_0000, 0xdead_beef, 0xffff_ffff];

/// UDP payload lengths the matrix cycles through.
pub const PAYLOAD_LENS: [usize; 12] = [0, 1, 5, 17, 64, 100, 256, 511, 777, 1000, 1199, 1200];

/// Words of IPv4 options the matrix cycles through for outer IPv4 (IHL 5, 6, 7, 8, 15).
pub const OPTIONS_WORDS: [u8; 5] = [0, 1, 2, 3, 10];

/// What the generated sets look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixParams {
    /// Ethernet source of every frame.
    pub src_mac: MacAddr,
    /// Ethernet destination of every frame (the receiving interface's address).
    pub dst_mac: MacAddr,
    /// Steered UDP destination ports, used in turn.
    pub dst_ports: Vec<u16>,
    /// Append plain (un-tunnelled) UDP frames to the variant matrix.
    pub include_plain: bool,
    /// A UDP destination port outside `dst_ports`, for the negative cases.
    pub unsteered_port: u16,
    /// Sender and receiver IPv4 host addresses, for ICMP, ARP and plain TCP cases.
    pub hosts_v4: (Ipv4Addr, Ipv4Addr),
    /// Sender and receiver IPv6 host addresses, for ICMPv6 and plain TCP cases.
    pub hosts_v6: (Ipv6Addr, Ipv6Addr),
}

impl Default for MatrixParams {
    /// Parameters matching a default [`crate::netns::NetnsPair`] (MACs and addresses of
    /// its two ends) and ports 5000 and 5001.
    fn default() -> Self {
        Self {
            src_mac: crate::netns::MAC_A,
            dst_mac: crate::netns::MAC_B,
            dst_ports: vec![5000, 5001],
            include_plain: true,
            unsteered_port: 6000,
            hosts_v4: (crate::netns::ADDR_V4_A, crate::netns::ADDR_V4_B),
            hosts_v6: (crate::netns::ADDR_V6_A, crate::netns::ADDR_V6_B),
        }
    }
}

/// The `index`-th deterministic payload: `PAYLOAD_LENS[index % 12]` bytes of a pattern
/// that differs between indexes.
pub fn payload_for(index: usize) -> Vec<u8> {
    let len = PAYLOAD_LENS[index % PAYLOAD_LENS.len()];
    (0..len)
        .map(|j| ((index * 131 + j * 7 + j / 256) % 256) as u8)
        .collect()
}

fn vlans_for(count: usize, index: usize) -> Vec<Vlan> {
    let customer = Vlan {
        tpid: TPID_8021Q,
        vid: 100 + (index % 50) as u16,
    };
    match count {
        0 => Vec::new(),
        1 => vec![customer],
        _ => vec![
            Vlan {
                tpid: TPID_8021AD,
                vid: 2000 + (index % 10) as u16,
            },
            customer,
        ],
    }
}

fn inner_addrs(ipv6: bool, index: usize) -> (IpAddr, IpAddr) {
    let n = (index % 50) as u8;
    if ipv6 {
        (
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x113,
                0,
                0,
                0,
                0,
                0x10 + u16::from(n),
            )),
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x113,
                1,
                0,
                0,
                0,
                0x200 + (index % 7) as u16,
            )),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + n)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200 + (index % 7) as u8)),
        )
    }
}

fn outer_for(ipv6: bool, index: usize) -> OuterIp {
    if ipv6 {
        OuterIp::V6 {
            src: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0xa, 1 + (index % 4) as u16),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 2, 0xff, 0, 0, 0, 1 + (index % 3) as u16),
        }
    } else {
        OuterIp::V4 {
            src: Ipv4Addr::new(192, 0, 2, 1 + (index % 4) as u8),
            dst: Ipv4Addr::new(192, 0, 2, 101 + (index % 3) as u8),
            options_words: OPTIONS_WORDS[index % OPTIONS_WORDS.len()],
        }
    }
}

fn datagram(params: &MatrixParams, ipv6: bool, index: usize) -> UdpDatagram {
    let (src, dst) = inner_addrs(ipv6, index);
    UdpDatagram {
        src,
        dst,
        src_port: 40000 + index as u16,
        dst_port: params.dst_ports[index % params.dst_ports.len()],
        payload: payload_for(index),
    }
}

/// Every steered shape: GRE with all 8 C/K/S combinations × outer IPv4/IPv6 × inner
/// IPv4/IPv6 × 0/1/2 VLAN tags (96 frames), then, with `include_plain`, plain UDP over
/// IPv4/IPv6 × 0/1/2 VLAN tags (6 frames). Labels read like `gre-o4-i6-vlan2-CKS`
/// (a `-` for each flag that is clear) and `plain-i4-vlan0`.
///
/// # Panics
/// If `params.dst_ports` is empty.
pub fn variant_matrix(params: &MatrixParams) -> Vec<(String, FrameSpec)> {
    assert!(
        !params.dst_ports.is_empty(),
        "the matrix needs a steered port"
    );
    let mut out = Vec::new();
    for vlan_count in 0..3 {
        for outer_v6 in [false, true] {
            for inner_v6 in [false, true] {
                for flags in 0u8..8 {
                    let index = out.len();
                    let (c, k, s) = (flags & 4 != 0, flags & 2 != 0, flags & 1 != 0);
                    let label = format!(
                        "gre-o{}-i{}-vlan{vlan_count}-{}{}{}",
                        if outer_v6 { 6 } else { 4 },
                        if inner_v6 { 6 } else { 4 },
                        if c { 'C' } else { '-' },
                        if k { 'K' } else { '-' },
                        if s { 'S' } else { '-' },
                    );
                    let spec = FrameSpec {
                        src_mac: params.src_mac,
                        dst_mac: params.dst_mac,
                        vlans: vlans_for(vlan_count, index),
                        tunnel: Some(GreTunnel {
                            outer: outer_for(outer_v6, index),
                            checksum: c,
                            key: k.then(|| KEYS[index % KEYS.len()]),
                            sequence: s.then_some(index as u32 * 1000 + 7),
                        }),
                        inner: datagram(params, inner_v6, index),
                    };
                    out.push((label, spec));
                }
            }
        }
    }
    if params.include_plain {
        for vlan_count in 0..3 {
            for ipv6 in [false, true] {
                let index = out.len();
                let label = format!("plain-i{}-vlan{vlan_count}", if ipv6 { 6 } else { 4 });
                let spec = FrameSpec {
                    src_mac: params.src_mac,
                    dst_mac: params.dst_mac,
                    vlans: vlans_for(vlan_count, index),
                    tunnel: None,
                    inner: datagram(params, ipv6, index),
                };
                out.push((label, spec));
            }
        }
    }
    out
}

/// Which IP header of a [`NegativeKind::Fragment`] frame is the fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragmentLayer {
    /// The outer (tunnel) header of a GRE packet.
    Outer,
    /// The inner header of a GRE packet.
    Inner,
    /// The only IP header of plain UDP.
    Plain,
}

/// Where a [`NegativeKind::Truncated`] frame ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TruncatedAt {
    /// Inside the outer IPv4 header (12 of its 20 bytes present).
    OuterIp,
    /// Inside the GRE header (2 of its bytes present).
    Gre,
    /// Inside the inner UDP header (4 of its 8 bytes present).
    InnerUdp,
}

/// Why a negative case must be left to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NegativeKind {
    /// GRE version 1 (otherwise a steerable packet).
    GreVersion1,
    /// GRE carrying this protocol type (0x6558 or 0x88BE) instead of IP.
    GreProtocol(u16),
    /// An IP fragment (MF set, or offset != 0).
    Fragment {
        /// Which header is fragmented.
        layer: FragmentLayer,
        /// Whether that header is IPv6 (a Fragment extension header).
        ipv6: bool,
        /// MF flag.
        more_fragments: bool,
        /// Offset in 8-byte units.
        offset_units: u16,
    },
    /// GRE carrying TCP instead of UDP.
    InnerTcp,
    /// Plain TCP to the receiving host.
    PlainTcp {
        /// Over IPv6.
        ipv6: bool,
    },
    /// An ICMP/ICMPv6 echo request to the receiving host.
    IcmpEcho {
        /// ICMPv6.
        ipv6: bool,
    },
    /// UDP to a port outside the steered set.
    UnsteeredPort {
        /// Inside GRE (else plain UDP).
        tunnelled: bool,
    },
    /// A GRE frame cut short.
    Truncated(TruncatedAt),
    /// An ARP request (not IP at all).
    Arp,
    /// Otherwise steerable GRE behind three VLAN tags (Sluice parses at most two).
    ThreeVlans,
}

/// One frame that Sluice must leave to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegativeCase {
    /// Short unique name.
    pub label: String,
    /// Why it must pass.
    pub kind: NegativeKind,
    /// The frame.
    pub frame: Vec<u8>,
}

/// A steerable GRE spec used as the base of the tunnelled negative cases.
fn base_gre(params: &MatrixParams, outer_v6: bool, inner_v6: bool, index: usize) -> FrameSpec {
    FrameSpec {
        src_mac: params.src_mac,
        dst_mac: params.dst_mac,
        vlans: Vec::new(),
        tunnel: Some(GreTunnel {
            outer: match outer_for(outer_v6, index) {
                OuterIp::V4 { src, dst, .. } => OuterIp::V4 {
                    src,
                    dst,
                    options_words: 0,
                },
                v6 => v6,
            },
            checksum: false,
            key: Some(7000 + index as u32),
            sequence: None,
        }),
        inner: UdpDatagram {
            src_port: 30000 + index as u16,
            ..datagram(params, inner_v6, index)
        },
    }
}

/// Every shape that must go to the kernel, one frame each, in a fixed order (see
/// [`NegativeKind`]). Frames to "the receiving host" use `params.hosts_*`.
///
/// # Panics
/// If `params.dst_ports` is empty.
pub fn negative_cases(params: &MatrixParams) -> Vec<NegativeCase> {
    assert!(
        !params.dst_ports.is_empty(),
        "the cases need a steered port"
    );
    let mut out = Vec::new();
    let mut push = |label: &str, kind: NegativeKind, frame: Vec<u8>| {
        out.push(NegativeCase {
            label: label.to_owned(),
            kind,
            frame,
        });
    };

    let gre44 = base_gre(params, false, false, 0);
    push(
        "gre-version1",
        NegativeKind::GreVersion1,
        gre44.build_mutated(&[Mutation::GreVersion(1)]),
    );
    for protocol in [ETHERTYPE_TEB, ETHERTYPE_ERSPAN] {
        let mut spec = base_gre(params, false, false, 1);
        if let Some(tunnel) = spec.tunnel.as_mut()
            && protocol == ETHERTYPE_ERSPAN
        {
            // ERSPAN type II is recognised by its S bit (type I has neither S nor header).
            tunnel.sequence = Some(1);
        }
        push(
            &format!("gre-protocol-{protocol:04x}"),
            NegativeKind::GreProtocol(protocol),
            spec.build_mutated(&[Mutation::GreProtocol(protocol)]),
        );
    }

    let fragments = [(true, 0u16), (false, 100u16)];
    for (layer, spec_v6) in [
        (FragmentLayer::Outer, false),
        (FragmentLayer::Outer, true),
        (FragmentLayer::Inner, false),
        (FragmentLayer::Inner, true),
        (FragmentLayer::Plain, false),
        (FragmentLayer::Plain, true),
    ] {
        for (more_fragments, offset_units) in fragments {
            let index = out_len_hint(layer, spec_v6, more_fragments);
            let fragment = Fragment {
                more_fragments,
                offset_units,
                identification: 0x5100 + index as u32,
            };
            let (spec, mutation) = match layer {
                FragmentLayer::Outer => (
                    base_gre(params, spec_v6, false, index),
                    Mutation::OuterFragment(fragment),
                ),
                FragmentLayer::Inner => (
                    base_gre(params, false, spec_v6, index),
                    Mutation::InnerFragment(fragment),
                ),
                FragmentLayer::Plain => (
                    FrameSpec {
                        tunnel: None,
                        ..base_gre(params, false, spec_v6, index)
                    },
                    Mutation::OuterFragment(fragment),
                ),
            };
            let layer_name = match layer {
                FragmentLayer::Outer => "outer",
                FragmentLayer::Inner => "inner",
                FragmentLayer::Plain => "plain",
            };
            push(
                &format!(
                    "fragment-{layer_name}-v{}-{}",
                    if spec_v6 { 6 } else { 4 },
                    if more_fragments { "mf" } else { "offset" }
                ),
                NegativeKind::Fragment {
                    layer,
                    ipv6: spec_v6,
                    more_fragments,
                    offset_units,
                },
                spec.build_mutated(&[mutation]),
            );
        }
    }

    push(
        "gre-inner-tcp",
        NegativeKind::InnerTcp,
        base_gre(params, false, false, 20).build_mutated(&[Mutation::Tcp]),
    );
    for ipv6 in [false, true] {
        let (src, dst) = host_pair(params, ipv6);
        let spec = FrameSpec {
            src_mac: params.src_mac,
            dst_mac: params.dst_mac,
            vlans: Vec::new(),
            tunnel: None,
            inner: UdpDatagram {
                src,
                dst,
                src_port: 33000,
                dst_port: params.dst_ports[0],
                payload: b"tcp must pass".to_vec(),
            },
        };
        push(
            &format!("plain-tcp-v{}", if ipv6 { 6 } else { 4 }),
            NegativeKind::PlainTcp { ipv6 },
            spec.build_mutated(&[Mutation::Tcp]),
        );
    }
    for ipv6 in [false, true] {
        let (src, dst) = host_pair(params, ipv6);
        push(
            &format!("icmp-echo-v{}", if ipv6 { 6 } else { 4 }),
            NegativeKind::IcmpEcho { ipv6 },
            icmp_echo_frame(params.src_mac, params.dst_mac, src, dst, 1),
        );
    }
    for tunnelled in [true, false] {
        let mut spec = base_gre(params, true, true, 21);
        spec.inner.dst_port = params.unsteered_port;
        if !tunnelled {
            spec.tunnel = None;
        }
        push(
            &format!("unsteered-port-{}", if tunnelled { "gre" } else { "plain" }),
            NegativeKind::UnsteeredPort { tunnelled },
            spec.build(),
        );
    }
    let truncated_base = base_gre(params, false, false, 22);
    for at in [
        TruncatedAt::OuterIp,
        TruncatedAt::Gre,
        TruncatedAt::InnerUdp,
    ] {
        let len = match at {
            TruncatedAt::OuterIp => 14 + 12,
            TruncatedAt::Gre => 14 + 20 + 2,
            TruncatedAt::InnerUdp => truncated_base.inner_udp_offset() + 4,
        };
        let label = match at {
            TruncatedAt::OuterIp => "truncated-outer-ip",
            TruncatedAt::Gre => "truncated-gre",
            TruncatedAt::InnerUdp => "truncated-inner-udp",
        };
        push(
            label,
            NegativeKind::Truncated(at),
            truncated_base.build_mutated(&[Mutation::TruncateTo(len)]),
        );
    }
    push(
        "arp-request",
        NegativeKind::Arp,
        arp_request_frame(params.src_mac, params.hosts_v4.0, params.hosts_v4.1),
    );
    let mut three = base_gre(params, false, false, 23);
    three.vlans = vec![
        Vlan {
            tpid: TPID_8021AD,
            vid: 10,
        },
        Vlan {
            tpid: TPID_8021Q,
            vid: 20,
        },
        Vlan {
            tpid: TPID_8021Q,
            vid: 30,
        },
    ];
    push("three-vlans", NegativeKind::ThreeVlans, three.build());
    out
}

/// A stable per-case index for the fragment cases (keeps their addresses distinct).
fn out_len_hint(layer: FragmentLayer, ipv6: bool, more_fragments: bool) -> usize {
    let layer = match layer {
        FragmentLayer::Outer => 0,
        FragmentLayer::Inner => 1,
        FragmentLayer::Plain => 2,
    };
    2 + layer * 4 + usize::from(ipv6) * 2 + usize::from(more_fragments)
}

fn host_pair(params: &MatrixParams, ipv6: bool) -> (IpAddr, IpAddr) {
    if ipv6 {
        (IpAddr::V6(params.hosts_v6.0), IpAddr::V6(params.hosts_v6.1))
    } else {
        (IpAddr::V4(params.hosts_v4.0), IpAddr::V4(params.hosts_v4.1))
    }
}
