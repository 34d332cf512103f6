//! Parsing of every encapsulation variant, and of broken and foreign frames: each gives a
//! datagram, a pass verdict or a counted drop reason — never a panic.

use sluice_common::Verdict;
use sluice_testkit::frames::{
    FrameSpec, MatrixParams, NegativeKind, negative_cases, variant_matrix,
};

use super::*;
use crate::config::FilterConfig;

fn filter() -> PortFilter {
    PortFilter::new(&FilterConfig {
        ports: vec![5000, 5001],
        plain_udp: true,
    })
}

fn expected(spec: &FrameSpec) -> Datagram<'_> {
    Datagram {
        tunnel: spec.tunnel.as_ref().map(|t| Tunnel {
            src: t.outer.src(),
            dst: t.outer.dst(),
            key: t.key,
        }),
        src: spec.inner.src,
        dst: spec.inner.dst,
        src_port: spec.inner.src_port,
        dst_port: spec.inner.dst_port,
        payload: &spec.inner.payload,
    }
}

#[test]
fn every_variant_of_the_matrix_parses_to_its_spec() {
    let matrix = variant_matrix(&MatrixParams::default());
    assert_eq!(matrix.len(), 3 * 2 * 2 * 8 + 6);
    for (label, spec) in &matrix {
        let frame = spec.build();
        assert_eq!(
            parse_captured(&frame, &filter()),
            Ok(expected(spec)),
            "{label}"
        );
    }
}

#[test]
fn every_variant_the_xdp_program_steers_parses_to_its_spec() {
    for (label, spec) in variant_matrix(&MatrixParams::default()) {
        let frame = spec.build();
        assert_eq!(
            parse_steered(&frame, &filter()),
            Ok(expected(&spec)),
            "{label}"
        );
    }
}

#[test]
fn a_steered_frame_the_twin_would_pass_is_a_counted_mismatch() {
    for case in negative_cases(&MatrixParams::default()) {
        assert_eq!(
            parse_steered(&case.frame, &filter()),
            Err(DropReason::ClassifierMismatch),
            "{}",
            case.label
        );
    }
}

#[test]
fn ethernet_padding_is_not_payload() {
    let (_, spec) = variant_matrix(&MatrixParams::default())
        .into_iter()
        .find(|(_, s)| {
            s.tunnel.is_none()
                && s.vlans.is_empty()
                && s.inner.payload.len() < 10
                && s.inner.src.is_ipv4()
        })
        .expect("a short plain IPv4 variant");
    let mut frame = spec.build();
    frame.resize(frame.len().max(60) + 4, 0);
    assert_eq!(parse_captured(&frame, &filter()), Ok(expected(&spec)));
}

#[test]
fn negative_cases_get_the_xdp_programs_verdicts() {
    for case in negative_cases(&MatrixParams::default()) {
        let want = match case.kind {
            NegativeKind::GreVersion1 => Rejected::NotSteered(Verdict::PassGreUnsupported),
            NegativeKind::GreProtocol(_) => Rejected::NotSteered(Verdict::PassGreProtocol),
            NegativeKind::Fragment { .. } => Rejected::NotSteered(Verdict::PassFragment),
            NegativeKind::InnerTcp => Rejected::NotSteered(Verdict::PassInnerNotUdp),
            NegativeKind::PlainTcp { .. } | NegativeKind::IcmpEcho { .. } => {
                Rejected::NotSteered(Verdict::PassNotGreOrUdp)
            }
            NegativeKind::UnsteeredPort { .. } => Rejected::NotSteered(Verdict::PassPortNotSteered),
            // Headers cut short: the XDP program cannot read them and passes the frame.
            NegativeKind::Truncated(_) => Rejected::NotSteered(Verdict::PassMalformed),
            NegativeKind::Arp | NegativeKind::ThreeVlans => {
                Rejected::NotSteered(Verdict::PassNotIp)
            }
        };
        assert_eq!(
            parse_captured(&case.frame, &filter()),
            Err(want),
            "{}",
            case.label
        );
    }
}

#[test]
fn every_truncation_of_every_variant_is_counted() {
    for (label, spec) in variant_matrix(&MatrixParams::default()) {
        let frame = spec.build();
        let headers = spec.inner_udp_offset() + 8;
        for len in 0..frame.len() {
            // Cut inside the headers, the XDP program cannot tell it is ours and passes
            // it; cut inside the payload, it is ours, steered, and dropped as truncated.
            let want = if len < headers {
                Rejected::NotSteered(Verdict::PassMalformed)
            } else {
                Rejected::Dropped(DropReason::Truncated)
            };
            assert_eq!(
                parse_captured(&frame[..len], &filter()),
                Err(want),
                "{label} cut to {len} of {}",
                frame.len()
            );
        }
    }
}

fn variant(matrix: &[(String, FrameSpec)], label: &str) -> FrameSpec {
    matrix
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, s)| s.clone())
        .expect("variant in matrix")
}

#[test]
fn broken_headers_pass_and_broken_lengths_drop() {
    let matrix = variant_matrix(&MatrixParams::default());
    let v4 = variant(&matrix, "gre-o4-i4-vlan0----");
    let frame = v4.build();
    let pass_malformed = Err(Rejected::NotSteered(Verdict::PassMalformed));
    // Outer IPv4 version 5, or IHL 4: unreadable, so the kernel gets it.
    let mut bad = frame.clone();
    bad[14] = 0x55;
    assert_eq!(parse_captured(&bad, &filter()), pass_malformed);
    let mut bad = frame.clone();
    bad[14] = 0x44;
    assert_eq!(parse_captured(&bad, &filter()), pass_malformed);
    // Inner IPv6 version nibble wrong: likewise.
    let v6 = variant(&matrix, "gre-o4-i6-vlan0----");
    let mut bad = v6.build();
    let inner_ip = v6.inner_udp_offset() - 40;
    bad[inner_ip] = 0x40;
    assert_eq!(parse_captured(&bad, &filter()), pass_malformed);

    // Headers readable, lengths wrong: ours, and a counted drop.
    let udp = v4.inner_udp_offset();
    let inner_ip = udp - 20;
    let mut bad = frame.clone();
    bad[udp + 4..udp + 6].copy_from_slice(&0xffffu16.to_be_bytes());
    assert_eq!(
        parse_captured(&bad, &filter()),
        Err(Rejected::Dropped(DropReason::Truncated))
    );
    let mut bad = frame.clone();
    bad[inner_ip + 2..inner_ip + 4].copy_from_slice(&0xffffu16.to_be_bytes());
    assert_eq!(
        parse_captured(&bad, &filter()),
        Err(Rejected::Dropped(DropReason::Truncated))
    );
    let mut bad = frame.clone();
    bad[inner_ip + 2..inner_ip + 4].copy_from_slice(&10u16.to_be_bytes());
    assert!(matches!(
        parse_captured(&bad, &filter()),
        Err(Rejected::Dropped(_))
    ));
    let mut bad = frame.clone();
    bad[udp + 4..udp + 6].copy_from_slice(&3u16.to_be_bytes());
    assert!(matches!(
        parse_captured(&bad, &filter()),
        Err(Rejected::Dropped(_))
    ));
}

#[test]
fn a_corrupted_packet_under_a_gre_checksum_is_dropped_not_recorded() {
    let matrix = variant_matrix(&MatrixParams::default());
    for label in [
        "gre-o4-i4-vlan0-C--",
        "gre-o6-i6-vlan1-CKS",
        "gre-o4-i6-vlan2-C-S",
    ] {
        let spec = variant(&matrix, label);
        let frame = spec.build();
        assert_eq!(
            parse_steered(&frame, &filter()),
            Ok(expected(&spec)),
            "{label}"
        );
        // One payload byte flipped on the way: every length still adds up.
        let mut bad = frame.clone();
        let last = spec.inner_udp_offset() + 8 + spec.inner.payload.len() - 1;
        bad[last] ^= 0x40;
        assert_eq!(
            parse_steered(&bad, &filter()),
            Err(DropReason::GreChecksum),
            "{label}"
        );
        assert_eq!(
            parse_captured(&bad, &filter()),
            Err(Rejected::Dropped(DropReason::GreChecksum)),
            "{label}"
        );
        // Ethernet padding after the packet is not covered by the checksum.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0xaa; 7]);
        assert_eq!(
            parse_steered(&padded, &filter()),
            Ok(expected(&spec)),
            "{label}"
        );
    }
    // Without the C bit the same corruption is not detectable here (the UDP checksum is
    // not verified): it is recorded as sent.
    let spec = variant(&matrix, "gre-o4-i4-vlan0----");
    let mut frame = spec.build();
    let last = spec.inner_udp_offset() + 8 + spec.inner.payload.len() - 1;
    frame[last] ^= 0x40;
    assert!(parse_steered(&frame, &filter()).is_ok());
}

#[test]
fn the_checksum_sum_handles_every_length() {
    // RFC 1071's example words, with their checksum appended: valid at every split.
    let data = [0x00u8, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    let sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !(folded as u16);
    let mut with = data.to_vec();
    with.extend_from_slice(&checksum.to_be_bytes());
    assert!(checksum_is_valid(&with));
    with[3] ^= 1;
    assert!(!checksum_is_valid(&with));
    // Odd lengths pad with a zero byte.
    assert!(checksum_is_valid(&[0xff, 0xff, 0x00]));
    assert!(checksum_is_valid(&[0xfe, 0xff, 0x01]));
    assert!(!checksum_is_valid(&[0x12]));
    // 17 bytes: two 8-byte chunks and one odd byte.
    let mut long = vec![0u8; 17];
    long[16] = 0xff;
    long[15] = 0xff;
    assert!(checksum_is_valid(&long));
}

#[test]
fn random_corruption_never_panics() {
    // A fixed xorshift sequence: reproducible, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let frames: Vec<Vec<u8>> = variant_matrix(&MatrixParams::default())
        .iter()
        .map(|(_, s)| s.build())
        .collect();
    let mut outcomes = [0u64; 3];
    for round in 0..20_000 {
        let mut frame = frames[round % frames.len()].clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % frame.len();
            frame[at] = next() as u8;
        }
        match parse_captured(&frame, &filter()) {
            Ok(_) => outcomes[0] += 1,
            Err(Rejected::NotSteered(_)) => outcomes[1] += 1,
            Err(Rejected::Dropped(_)) => outcomes[2] += 1,
        }
        let _ = parse_steered(&frame, &filter());
    }
    assert_eq!(outcomes.iter().sum::<u64>(), 20_000);
}

#[test]
fn port_filter_matches_the_configured_set_or_everything() {
    let f = filter();
    assert!(f.steers(5000) && f.steers(5001));
    assert!(!f.steers(4999) && !f.steers(0) && !f.steers(65535));
    assert_eq!(
        f.words()[5000 / 64],
        (1 << (5000 % 64)) | (1 << (5001 % 64))
    );
    assert_eq!(f.first_steered_port(), 5000);
    let all = PortFilter::new(&FilterConfig::default());
    assert!(all.all_ports() && all.steers(1) && all.steers(65535));
    assert_eq!(all.first_steered_port(), 9);
    assert!(!all.plain_udp());
}
