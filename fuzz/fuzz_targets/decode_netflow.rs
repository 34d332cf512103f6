//! Fuzzes the `netflow` decoder: arbitrary bytes, cut into packets of one exporter and
//! decoded alternately by two decoders of one factory — after seed templates when the first
//! byte says so, so data sets, options and variable-length fields are reached — with
//! releases and expiries in between, under small state limits. It must never panic, every
//! packet must be counted once (decoded, an error, or held and then released or expired),
//! and nothing may stay charged once everything is released or expired.
//!
//! Input: a flags byte (bit 0: seed templates), then packets, each a selector byte (which
//! version to force: none, 5, 9, or 10 with its length fixed up), a 2-byte length, bytes.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use sluice_decode::netflow::encode::{FieldSpec, MessageBuilder};
use sluice_decode::netflow::{NetflowConfig, NetflowFactory};
use sluice_decode::{DecoderFactory, PacketContext, Value};

const T0: i64 = 1_767_225_600_000_000;

fn ctx(received_at: i64) -> PacketContext {
    PacketContext {
        received_at,
        tunnel_src: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        tunnel_dst: None,
        gre_key: None,
        src_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        src_port: 1,
        dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        dst_port: 2055,
    }
}

/// v9 and IPFIX templates 256 (IPv4 flow), 257 (IPv6, enterprise, variable length) and
/// options template 258, for source id / domain 0.
fn seeds() -> [Vec<u8>; 2] {
    let flow = [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (6, 1),
        (2, 4),
        (1, 4),
        (22, 4),
        (21, 4),
    ]
    .map(|(id, len)| FieldSpec::new(id, len));
    let v6 = [
        FieldSpec::new(27, 16),
        FieldSpec::new(28, 16),
        FieldSpec::new(1, 0xffff),
        FieldSpec::enterprise(9, 1, 0xffff),
        FieldSpec::enterprise(29_305, 2, 4),
        FieldSpec::new(152, 8),
        FieldSpec::new(155, 8),
        FieldSpec::new(158, 4),
    ];
    let scope = [FieldSpec::new(1, 4)];
    let options = [FieldSpec::new(160, 8), FieldSpec::new(34, 4)];
    let v9 = MessageBuilder::v9(1000, 1_767_225_600, 0, 0)
        .template_set(&[(256, &flow)])
        .options_template_set(258, &scope, &options)
        .finish();
    let ipfix = MessageBuilder::ipfix(1_767_225_600, 0, 0)
        .template_set(&[(256, &flow), (257, &v6)])
        .options_template_set(258, &[FieldSpec::new(149, 4)], &options)
        .finish();
    [v9, ipfix]
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    // Small limits, so that every refusal is reached: two exporters, three templates, a
    // few held packets.
    let config = NetflowConfig {
        template_timeout_secs: 10,
        hold_ms: 1000,
        max_held_packets: 4,
        max_held_bytes: 4096,
        max_exporters: 2,
        max_templates: 3,
        ..NetflowConfig::default()
    };
    let Ok(factory) = NetflowFactory::new(&config) else {
        return;
    };
    let mut decoders = [factory.build(), factory.build()];
    let mut sink: Vec<Vec<Value<'static>>> = Vec::new();
    if flags & 1 == 1 {
        for seed in seeds() {
            let _ = decoders[0].decode(&ctx(T0), &seed, &mut sink);
        }
    }
    let (mut held, mut completed) = (0u64, 0u64);
    let mut i = 0usize;
    while rest.len() >= 3 && i < 64 {
        let selector = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let mut packet = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        if packet.len() >= 4 {
            match selector % 4 {
                1 => packet[..2].copy_from_slice(&5u16.to_be_bytes()),
                2 => packet[..2].copy_from_slice(&9u16.to_be_bytes()),
                3 => {
                    let n = u16::try_from(packet.len()).unwrap_or(u16::MAX);
                    packet[..2].copy_from_slice(&10u16.to_be_bytes());
                    packet[2..4].copy_from_slice(&n.to_be_bytes());
                }
                _ => {}
            }
        }
        // 300 ms apart: holds (1 s) and templates (10 s) expire within a run.
        let now = T0 + i as i64 * 300_000;
        let d = &mut decoders[i % 2];
        let before = sink.len();
        match d.decode(&ctx(now), &packet, &mut sink) {
            Ok(outcome) => {
                assert_eq!(outcome.rows as usize, sink.len() - before);
                if outcome.held {
                    assert_eq!(outcome.rows, 0);
                    held += 1;
                }
            }
            Err(e) => assert_eq!(sink.len(), before, "{e}"),
        }
        let other = &mut decoders[(i + 1) % 2];
        completed += other.release(&mut sink);
        completed += other.expire(now, false);
        i += 1;
    }
    for d in &mut decoders {
        completed += d.release(&mut sink);
    }
    for d in &mut decoders {
        completed += d.expire(i64::MAX, true);
    }
    assert_eq!(factory.held_packets(), 0);
    assert_eq!(factory.state().held_bytes, 0);
    assert!(factory.state().exporters <= 2 && factory.state().templates <= 3);
    assert_eq!(
        held, completed,
        "every held packet is released or expired once"
    );
});
