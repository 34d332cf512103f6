//! Frames are checked against etherparse (an independent decoder and encoder): every
//! layer parses back to the spec and every checksum verifies.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::layers::{self, internet_checksum};
use super::*;

/// The VLAN ids etherparse found, outermost first.
fn vlan_ids(packet: &SlicedPacket<'_>) -> Vec<u16> {
    packet.vlan_ids().iter().map(|id| id.value()).collect()
}

/// Checks an IP slice against `src`/`dst`, verifies the IPv4 header checksum and returns
/// (protocol number, payload).
fn check_ip<'a>(net: &NetSlice<'a>, src: IpAddr, dst: IpAddr, label: &str) -> (u8, &'a [u8]) {
    match net {
        NetSlice::Ipv4(ip) => {
            let header = ip.header();
            assert_eq!(IpAddr::V4(header.source_addr()), src, "{label}");
            assert_eq!(IpAddr::V4(header.destination_addr()), dst, "{label}");
            assert_eq!(
                header.to_header().calc_header_checksum(),
                header.header_checksum(),
                "{label}: IPv4 header checksum"
            );
            assert!(!ip.is_payload_fragmented(), "{label}");
            (header.protocol().0, ip.payload().payload)
        }
        NetSlice::Ipv6(ip) => {
            let header = ip.header();
            assert_eq!(IpAddr::V6(header.source_addr()), src, "{label}");
            assert_eq!(IpAddr::V6(header.destination_addr()), dst, "{label}");
            (header.next_header().0, ip.payload().payload)
        }
        NetSlice::Arp(_) => panic!("{label}: unexpected ARP"),
    }
}

/// Checks the transport layer of an inner (or plain) packet against the spec's datagram.
fn check_udp(packet: &SlicedPacket<'_>, inner: &UdpDatagram, label: &str) {
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        panic!("{label}: no UDP layer");
    };
    assert_eq!(udp.source_port(), inner.src_port, "{label}");
    assert_eq!(udp.destination_port(), inner.dst_port, "{label}");
    assert_eq!(
        usize::from(udp.length()),
        8 + inner.payload.len(),
        "{label}"
    );
    assert_eq!(udp.payload(), inner.payload.as_slice(), "{label}");
    let header = udp.to_header();
    let expected = match (inner.src, inner.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            header.calc_checksum_ipv4_raw(s.octets(), d.octets(), udp.payload())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            header.calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload())
        }
        _ => panic!("{label}: mixed families"),
    }
    .expect("checksum");
    assert_eq!(header.checksum, expected, "{label}: UDP checksum");
    assert_ne!(header.checksum, 0, "{label}: UDP checksum must be present");
}

/// Parses a GRE header by hand (etherparse has no GRE) and checks it against the tunnel.
/// Returns the GRE payload.
fn check_gre<'a>(gre: &'a [u8], tunnel: &GreTunnel, inner_v4: bool, label: &str) -> &'a [u8] {
    let flags = u16::from_be_bytes([gre[0], gre[1]]);
    assert_eq!(flags & 0x0007, 0, "{label}: version");
    assert_eq!(flags & 0x4000, 0, "{label}: routing bit");
    assert_eq!(
        flags & layers::GRE_FLAG_C != 0,
        tunnel.checksum,
        "{label}: C"
    );
    assert_eq!(
        flags & layers::GRE_FLAG_K != 0,
        tunnel.key.is_some(),
        "{label}: K"
    );
    assert_eq!(
        flags & layers::GRE_FLAG_S != 0,
        tunnel.sequence.is_some(),
        "{label}: S"
    );
    let protocol = u16::from_be_bytes([gre[2], gre[3]]);
    let expected_protocol = if inner_v4 { 0x0800 } else { 0x86dd };
    assert_eq!(protocol, expected_protocol, "{label}: protocol");
    let mut offset = 4;
    if tunnel.checksum {
        assert_eq!(internet_checksum(&[gre]), 0, "{label}: GRE checksum");
        assert_eq!(&gre[6..8], &[0, 0], "{label}: reserved1");
        offset += 4;
    }
    if let Some(key) = tunnel.key {
        let got = u32::from_be_bytes(gre[offset..offset + 4].try_into().expect("4 bytes"));
        assert_eq!(got, key, "{label}: key");
        offset += 4;
    }
    if let Some(sequence) = tunnel.sequence {
        let got = u32::from_be_bytes(gre[offset..offset + 4].try_into().expect("4 bytes"));
        assert_eq!(got, sequence, "{label}: sequence");
        offset += 4;
    }
    &gre[offset..]
}

/// Parses a whole steered frame and checks it against its spec.
fn check_frame(spec: &FrameSpec, frame: &[u8], label: &str) {
    let outer = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("{label}: {e}"));
    let link = outer.link.as_ref().expect("ethernet");
    let etherparse::LinkSlice::Ethernet2(eth) = link else {
        panic!("{label}: not Ethernet II");
    };
    assert_eq!(eth.source(), spec.src_mac, "{label}");
    assert_eq!(eth.destination(), spec.dst_mac, "{label}");
    let expected_vids: Vec<u16> = spec.vlans.iter().map(|v| v.vid).collect();
    assert_eq!(vlan_ids(&outer), expected_vids, "{label}");
    for (i, vlan) in spec.vlans.iter().enumerate() {
        let tpid = u16::from_be_bytes([frame[12 + 4 * i], frame[13 + 4 * i]]);
        assert_eq!(tpid, vlan.tpid, "{label}: TPID {i}");
    }
    let net = outer.net.as_ref().expect("IP layer");
    match &spec.tunnel {
        None => {
            let (protocol, _) = check_ip(net, spec.inner.src, spec.inner.dst, label);
            assert_eq!(protocol, layers::IPPROTO_UDP, "{label}");
            check_udp(&outer, &spec.inner, label);
        }
        Some(tunnel) => {
            let (protocol, gre) = check_ip(net, tunnel.outer.src(), tunnel.outer.dst(), label);
            assert_eq!(protocol, layers::IPPROTO_GRE, "{label}");
            if let (NetSlice::Ipv4(ip), OuterIp::V4 { options_words, .. }) = (net, &tunnel.outer) {
                assert_eq!(ip.header().ihl(), 5 + options_words, "{label}: IHL");
            }
            let inner_bytes = check_gre(gre, tunnel, spec.inner.src.is_ipv4(), label);
            let inner =
                SlicedPacket::from_ip(inner_bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
            let inner_net = inner.net.as_ref().expect("inner IP");
            let (protocol, _) = check_ip(inner_net, spec.inner.src, spec.inner.dst, label);
            assert_eq!(protocol, layers::IPPROTO_UDP, "{label}");
            check_udp(&inner, &spec.inner, label);
            assert_eq!(
                spec.inner_udp_offset(),
                frame.len() - 8 - spec.inner.payload.len(),
                "{label}: inner UDP offset"
            );
        }
    }
}

#[test]
fn internet_checksum_matches_rfc1071_example() {
    // RFC 1071 section 3: the one's complement sum of these words is 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(internet_checksum(&[&data]), !0xddf2);
    // Split at an odd boundary: the same sum.
    assert_eq!(internet_checksum(&[&data[..3], &data[3..]]), !0xddf2);
    assert_eq!(internet_checksum(&[&[0xff]]), !0xff00);
}

#[test]
fn every_matrix_frame_parses_back_to_its_spec() {
    let matrix = variant_matrix(&MatrixParams::default());
    for (label, spec) in &matrix {
        check_frame(spec, &spec.build(), label);
    }
}

#[test]
fn plain_udp_is_byte_identical_to_etherparse_builder() {
    let params = MatrixParams::default();
    for (label, spec) in variant_matrix(&params)
        .into_iter()
        .filter(|(label, spec)| label.starts_with("plain") && spec.vlans.len() <= 1)
    {
        let builder = etherparse::PacketBuilder::ethernet2(spec.src_mac, spec.dst_mac);
        let builder = match spec.vlans.first() {
            Some(vlan) => builder.single_vlan(etherparse::VlanId::try_new(vlan.vid).expect("vid")),
            None => builder.single_vlan(etherparse::VlanId::try_new(0).expect("vid")),
        };
        let mut expected = Vec::new();
        let (src, dst) = (spec.inner.src, spec.inner.dst);
        let with_ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut header = etherparse::Ipv4Header::new(
                    0,
                    64,
                    etherparse::IpNumber::UDP,
                    s.octets(),
                    d.octets(),
                )
                .expect("header");
                header.dont_fragment = false;
                builder.ip(etherparse::IpHeaders::Ipv4(header, Default::default()))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => builder.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!(),
        };
        with_ip
            .udp(spec.inner.src_port, spec.inner.dst_port)
            .write(&mut expected, &spec.inner.payload)
            .expect("write");
        if spec.vlans.is_empty() {
            // The builder wrote a VLAN tag with id 0 to share one code path; drop it.
            expected.drain(12..16);
        }
        assert_eq!(spec.build(), expected, "{label}");
    }
}

#[test]
fn matrix_covers_every_combination_exactly_once() {
    let params = MatrixParams::default();
    let matrix = variant_matrix(&params);
    assert_eq!(matrix.len(), 96 + 6);
    let labels: BTreeSet<&str> = matrix.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels.len(), matrix.len(), "labels are unique");
    let ports: BTreeSet<u16> = matrix.iter().map(|(_, s)| s.inner.src_port).collect();
    assert_eq!(ports.len(), matrix.len(), "source ports are unique");

    let mut combos = BTreeSet::new();
    for (_, spec) in &matrix {
        let tunnel = spec.tunnel.as_ref().map(|t| {
            (
                t.checksum,
                t.key.is_some(),
                t.sequence.is_some(),
                matches!(t.outer, OuterIp::V6 { .. }),
            )
        });
        assert!(combos.insert((tunnel, spec.inner.src.is_ipv6(), spec.vlans.len())));
        assert!(spec.vlans.len() <= 2);
        assert!(params.dst_ports.contains(&spec.inner.dst_port));
    }
    assert_eq!(combos.len(), 102);

    let keys: BTreeSet<u32> = matrix
        .iter()
        .filter_map(|(_, s)| s.tunnel.as_ref().and_then(|t| t.key))
        .collect();
    assert_eq!(keys, matrix::KEYS.into_iter().collect());
    let lens: BTreeSet<usize> = matrix.iter().map(|(_, s)| s.inner.payload.len()).collect();
    assert_eq!(lens, matrix::PAYLOAD_LENS.into_iter().collect());
    let options: BTreeSet<u8> = matrix
        .iter()
        .filter_map(|(_, s)| match s.tunnel.as_ref().map(|t| &t.outer) {
            Some(OuterIp::V4 { options_words, .. }) => Some(*options_words),
            _ => None,
        })
        .collect();
    assert_eq!(options, matrix::OPTIONS_WORDS.into_iter().collect());
    let endpoints: BTreeSet<IpAddr> = matrix
        .iter()
        .filter_map(|(_, s)| s.tunnel.as_ref().map(|t| t.outer.src()))
        .collect();
    assert_eq!(endpoints.len(), 8, "4 IPv4 + 4 IPv6 tunnel sources");

    // Deterministic: a second call gives identical specs.
    assert_eq!(variant_matrix(&params), matrix);
    // Fits a 1500-byte MTU (frame = 14 + 2 tags + MTU-sized packet).
    let longest = matrix.iter().map(|(_, s)| s.build().len()).max();
    assert_eq!(longest, Some(14 + 8 + 40 + 16 + 40 + 8 + 1200));
}

#[test]
fn matrix_addresses_stay_in_documentation_ranges() {
    let v4_in = |ip: Ipv4Addr, a: u8, b: u8, c: u8| ip.octets()[..3] == [a, b, c];
    let v6_in = |ip: Ipv6Addr, third: u16| ip.segments()[..3] == [0x2001, 0xdb8, third];
    for (label, spec) in variant_matrix(&MatrixParams::default()) {
        if let Some(tunnel) = &spec.tunnel {
            for addr in [tunnel.outer.src(), tunnel.outer.dst()] {
                let ok = match addr {
                    IpAddr::V4(ip) => v4_in(ip, 192, 0, 2),
                    IpAddr::V6(ip) => v6_in(ip, 2),
                };
                assert!(ok, "{label}: tunnel {addr}");
            }
        }
        for addr in [spec.inner.src, spec.inner.dst] {
            let ok = match addr {
                IpAddr::V4(ip) => v4_in(ip, 203, 0, 113),
                IpAddr::V6(ip) => v6_in(ip, 0x113),
            };
            assert!(ok, "{label}: inner {addr}");
        }
    }
}

#[test]
fn negative_cases_have_the_property_they_are_named_for() {
    let params = MatrixParams::default();
    let cases = negative_cases(&params);
    let labels: BTreeSet<&str> = cases.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels.len(), cases.len());
    assert_eq!(cases.len(), 27);
    for case in &cases {
        let frame = &case.frame;
        let label = &case.label;
        let ethertype_at = |offset: usize| u16::from_be_bytes([frame[offset], frame[offset + 1]]);
        match case.kind {
            NegativeKind::GreVersion1 => {
                // Outer IPv4 without options: GRE at 14 + 20.
                assert_eq!(frame[14 + 20 + 1] & 0x07, 1, "{label}");
            }
            NegativeKind::GreProtocol(protocol) => {
                assert_eq!(ethertype_at(14 + 20 + 2), protocol, "{label}");
            }
            NegativeKind::Fragment {
                layer,
                ipv6,
                more_fragments,
                offset_units,
            } => {
                let ip_start = match layer {
                    FragmentLayer::Outer | FragmentLayer::Plain => 14,
                    // Outer IPv4 (20) + GRE with key (8).
                    FragmentLayer::Inner => 14 + 20 + 8,
                };
                if ipv6 {
                    assert_eq!(
                        frame[ip_start + 6],
                        layers::IPPROTO_IPV6_FRAGMENT,
                        "{label}"
                    );
                    let field = ethertype_at(ip_start + 40 + 2);
                    assert_eq!(field >> 3, offset_units, "{label}");
                    assert_eq!(field & 1 == 1, more_fragments, "{label}");
                } else {
                    let field = ethertype_at(ip_start + 6);
                    assert_eq!(field & 0x1fff, offset_units, "{label}");
                    assert_eq!(field & 0x2000 != 0, more_fragments, "{label}");
                    let header = &frame[ip_start..ip_start + 20];
                    assert_eq!(internet_checksum(&[header]), 0, "{label}: IPv4 checksum");
                }
            }
            NegativeKind::InnerTcp => assert_eq!(frame[14 + 20 + 8 + 9], 6, "{label}"),
            NegativeKind::PlainTcp { ipv6 } => {
                assert_eq!(frame[14 + if ipv6 { 6 } else { 9 }], 6, "{label}");
            }
            NegativeKind::IcmpEcho { ipv6 } => {
                let (proto, kind) = if ipv6 { (58, 128) } else { (1, 8) };
                assert_eq!(frame[14 + if ipv6 { 6 } else { 9 }], proto, "{label}");
                assert_eq!(frame[14 + if ipv6 { 40 } else { 20 }], kind, "{label}");
            }
            NegativeKind::UnsteeredPort { .. } => {
                // Index 21 of the payload table: 1000 bytes; the port is 6 bytes before the payload.
                let port = ethertype_at(frame.len() - 1000 - 6);
                assert_eq!(port, params.unsteered_port, "{label}");
            }
            NegativeKind::Truncated(at) => {
                let len = match at {
                    TruncatedAt::OuterIp => 26,
                    TruncatedAt::Gre => 36,
                    TruncatedAt::InnerUdp => 14 + 20 + 8 + 20 + 4,
                };
                assert_eq!(frame.len(), len, "{label}");
            }
            NegativeKind::Arp => assert_eq!(ethertype_at(12), layers::ETHERTYPE_ARP, "{label}"),
            NegativeKind::ThreeVlans => {
                assert_eq!(ethertype_at(12), TPID_8021AD, "{label}");
                assert_eq!(ethertype_at(16), TPID_8021Q, "{label}");
                assert_eq!(ethertype_at(20), TPID_8021Q, "{label}");
                assert_eq!(ethertype_at(24), layers::ETHERTYPE_IPV4, "{label}");
            }
        }
    }
}

#[test]
fn gre_checksum_detects_a_flipped_payload_byte() {
    let header = layers::GreHeader {
        checksum: true,
        key: Some(7),
        sequence: Some(9),
        version: 0,
        protocol: 0x0800,
    };
    let mut gre = layers::gre(&header, b"payload bytes");
    assert_eq!(gre.len(), header.len() + 13);
    assert_eq!(internet_checksum(&[&gre]), 0);
    gre[20] ^= 0x01;
    assert_ne!(internet_checksum(&[&gre]), 0);
}

#[test]
fn ipv4_options_set_ihl_and_keep_the_header_checksum_valid() {
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let dst = Ipv4Addr::new(192, 0, 2, 2);
    for words in [0u8, 1, 3, 10] {
        let packet = layers::ipv4(src, dst, 47, words, Fragment::NONE, b"abc");
        let header_len = 20 + 4 * usize::from(words);
        assert_eq!(packet[0], 0x40 | (5 + words));
        assert_eq!(packet.len(), header_len + 3);
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]) as usize,
            header_len + 3
        );
        assert_eq!(internet_checksum(&[&packet[..header_len]]), 0);
        if words > 0 {
            assert_eq!(packet[header_len - 1], 0, "EOL ends the options");
        }
    }
}

#[test]
fn udp_checksum_zero_is_sent_as_all_ones() {
    // Find a payload whose checksum computes to zero, and check it is sent as 0xffff.
    let src = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
    let found = (0u16..=u16::MAX).find_map(|word| {
        let datagram = layers::udp(src, dst, 1, 2, &word.to_be_bytes());
        (u16::from_be_bytes([datagram[6], datagram[7]]) == 0xffff).then_some(datagram)
    });
    let datagram = found.expect("some payload has a zero checksum");
    let pseudo = [203, 0, 113, 1, 203, 0, 113, 2, 0, 17, 0, 10];
    // With 0xffff in place the sum over pseudo-header and datagram is still all ones.
    assert_eq!(internet_checksum(&[&pseudo, &datagram]), 0);
}
