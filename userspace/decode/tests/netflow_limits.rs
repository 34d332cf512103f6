//! The decoder's state is bounded across exporters (issue 12): exporters with templates
//! (`max_exporters`), templates (`max_templates`, `max_template_bytes`) and held packets
//! (`max_held_bytes`, half of it for exporters without templates, and `max_held_packets`
//! per exporter). What a limit refuses is counted by limit and never kept; a packet not
//! held is a `no_template` error; every packet is still counted once. Template-less data
//! adds no exporter state, whatever its observation domains; a template releases only the
//! packets that wait for it.

use std::net::{IpAddr, Ipv4Addr};

use sluice_decode::netflow::encode::{FieldSpec, MessageBuilder};
use sluice_decode::netflow::{
    NetflowConfig, NetflowFactory, NetflowState, NetflowStats, PARKED_OVERHEAD,
};
use sluice_decode::{DecodeOutcome, Decoder, DecoderFactory, PacketContext};

/// 2026-01-01T00:00:00Z.
const EXPORT_SECS: u32 = 1_767_225_600;
const T0: i64 = 1_767_225_600_000_000;

fn ctx(received_at: i64, exporter: u8) -> PacketContext {
    PacketContext {
        received_at,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, exporter)),
        src_port: 4739,
        dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254)),
        dst_port: 4739,
    }
}

fn factory(config: NetflowConfig) -> NetflowFactory {
    NetflowFactory::new(&config).expect("valid")
}

const FIELDS: [FieldSpec; 2] = [FieldSpec::new(4, 1), FieldSpec::new(2, 4)];

fn template(domain: u32, ids: &[u16]) -> Vec<u8> {
    let templates: Vec<(u16, &[FieldSpec])> = ids.iter().map(|&id| (id, &FIELDS[..])).collect();
    MessageBuilder::ipfix(EXPORT_SECS, 0, domain)
        .template_set(&templates)
        .finish()
}

/// One record of [`FIELDS`] for template `id`.
fn data(domain: u32, id: u16) -> Vec<u8> {
    MessageBuilder::ipfix(EXPORT_SECS, 1, domain)
        .data_set(id, &[vec![6, 0, 0, 0, 1]])
        .finish()
}

fn rows(n: u64) -> DecodeOutcome {
    DecodeOutcome {
        rows: n,
        held: false,
    }
}

const HELD: DecodeOutcome = DecodeOutcome {
    rows: 0,
    held: true,
};

fn decode(d: &mut dyn Decoder, c: &PacketContext, p: &[u8]) -> Result<DecodeOutcome, String> {
    d.decode(c, p, &mut Vec::new()).map_err(|e| e.to_string())
}

#[test]
fn a_new_exporter_beyond_max_exporters_keeps_no_template_until_one_expires() {
    let f = factory(NetflowConfig {
        max_exporters: 2,
        template_timeout_secs: 10,
        hold_ms: 0,
        ..NetflowConfig::default()
    });
    let mut d = f.build();
    for domain in [1, 2] {
        assert_eq!(
            decode(d.as_mut(), &ctx(T0, 1), &template(domain, &[256])),
            Ok(rows(0))
        );
    }
    // The third exporter's two templates are refused; a packet carrying its own template
    // still decodes (the template is used within the packet, not kept).
    assert_eq!(
        decode(d.as_mut(), &ctx(T0, 1), &template(3, &[256, 257])),
        Ok(rows(0))
    );
    let with_template = MessageBuilder::ipfix(EXPORT_SECS, 2, 3)
        .template_set(&[(256, &FIELDS)])
        .data_set(256, &[vec![17, 0, 0, 0, 2]])
        .finish();
    assert_eq!(decode(d.as_mut(), &ctx(T0, 1), &with_template), Ok(rows(1)));
    assert_eq!(
        decode(d.as_mut(), &ctx(T0, 1), &data(3, 256)),
        Err("no_template: field Some(\"set id\") at offset 16: template 256 is unknown".into())
    );
    // Known exporters are unaffected.
    assert_eq!(decode(d.as_mut(), &ctx(T0, 1), &data(2, 256)), Ok(rows(1)));
    assert_eq!(f.exporters(), 2);
    assert_eq!(f.stats().templates_refused_exporters, 3);
    // Domain 1 refreshes its template, domain 2 does not: after the timeout domain 2 is
    // forgotten and makes room.
    let later = T0 + 8_000_000;
    decode(d.as_mut(), &ctx(later, 1), &template(1, &[256])).expect("refresh");
    d.expire(T0 + 11_000_000, false);
    assert_eq!(f.exporters(), 1);
    decode(d.as_mut(), &ctx(T0 + 11_000_000, 1), &template(3, &[256])).expect("template");
    assert_eq!(
        decode(d.as_mut(), &ctx(T0 + 11_000_000, 1), &data(3, 256)),
        Ok(rows(1))
    );
    assert_eq!(
        f.state(),
        NetflowState {
            exporters: 2,
            templates: 2,
            ..f.state()
        }
    );
}

#[test]
fn templates_are_bounded_in_number_over_all_exporters_and_withdrawals_make_room() {
    let f = factory(NetflowConfig {
        max_templates: 3,
        hold_ms: 0,
        ..NetflowConfig::default()
    });
    let mut d = f.build();
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[256, 257])).expect("two");
    decode(d.as_mut(), &ctx(T0, 2), &template(1, &[256, 257])).expect("one of two");
    assert_eq!(decode(d.as_mut(), &ctx(T0, 2), &data(1, 256)), Ok(rows(1)));
    assert!(decode(d.as_mut(), &ctx(T0, 2), &data(1, 257)).is_err());
    assert_eq!(f.stats().templates_refused_count, 1);
    assert_eq!(f.state().templates, 3);
    // A resend of a kept template costs nothing more.
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[256, 257])).expect("resend");
    assert_eq!(f.stats().templates_refused_count, 1);
    // Exporter 1 withdraws 257: exporter 2's 257 now fits.
    let withdraw = MessageBuilder::ipfix(EXPORT_SECS, 3, 1)
        .withdrawal_set(false, &[257])
        .finish();
    decode(d.as_mut(), &ctx(T0, 1), &withdraw).expect("withdrawal");
    assert_eq!(f.state().templates, 2);
    decode(d.as_mut(), &ctx(T0, 2), &template(1, &[257])).expect("fits");
    assert_eq!(decode(d.as_mut(), &ctx(T0, 2), &data(1, 257)), Ok(rows(1)));
    assert_eq!(
        f.stats(),
        NetflowStats {
            templates_learned: 4,
            templates_withdrawn: 1,
            templates_refused_count: 1,
            ..NetflowStats::default()
        }
    );
}

#[test]
fn templates_are_bounded_in_bytes_and_a_refused_redefinition_forgets_the_old_one() {
    let f = factory(NetflowConfig {
        max_template_bytes: 64 << 10,
        hold_ms: 0,
        ..NetflowConfig::default()
    });
    let mut d = f.build();
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[256])).expect("small");
    let small = f.state().template_bytes;
    assert!(small > 0 && small < 1024, "{small}");
    // 4000 one-byte fields: far more than 64 KiB of decoding plan.
    let big: Vec<FieldSpec> = (0..4000).map(|_| FieldSpec::new(4, 1)).collect();
    let redefine = MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .template_set(&[(256, &big)])
        .finish();
    decode(d.as_mut(), &ctx(T0, 1), &redefine).expect("template packet");
    // The new definition does not fit and the old one is stale: 256 is unknown now.
    assert_eq!((f.state().templates, f.state().template_bytes), (0, 0));
    assert!(decode(d.as_mut(), &ctx(T0, 1), &data(1, 256)).is_err());
    assert_eq!(f.stats().templates_refused_bytes, 1);
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[256])).expect("small again");
    assert_eq!(f.state().template_bytes, small);
}

#[test]
fn template_less_data_from_any_number_of_domains_adds_no_exporter_and_bounded_bytes() {
    // Room for 40 held packets; strangers get half.
    let cost = data(0, 256).len() + PARKED_OVERHEAD;
    let f = factory(NetflowConfig {
        max_held_bytes: 40 * cost as u64,
        ..NetflowConfig::default()
    });
    let mut d = f.build();
    let mut outcomes = (0, 0);
    for domain in 0..10_000 {
        match decode(d.as_mut(), &ctx(T0, 1), &data(domain, 256)) {
            Ok(outcome) => {
                assert_eq!(outcome, HELD);
                outcomes.0 += 1;
            }
            Err(e) => {
                assert_eq!(
                    e,
                    "no_template: field Some(\"set id\") at offset 16: template 256 is unknown \
                     and max_held_bytes are held"
                );
                outcomes.1 += 1;
            }
        }
    }
    assert_eq!(outcomes, (20, 9_980));
    assert_eq!(
        f.state(),
        NetflowState {
            exporters: 0,
            templates: 0,
            template_bytes: 0,
            held_packets: 20,
            held_bytes: 20 * cost,
        }
    );
    // A known exporter still holds the packet that overtook its new template, and gets it
    // released when the template comes: the strangers stay.
    decode(d.as_mut(), &ctx(T0, 9), &template(7, &[256])).expect("known");
    assert_eq!(decode(d.as_mut(), &ctx(T0, 9), &data(7, 300)), Ok(HELD));
    decode(d.as_mut(), &ctx(T0, 9), &template(7, &[300])).expect("its template");
    let mut released = Vec::new();
    assert_eq!(d.release(&mut released), 1);
    assert_eq!(released.len(), 1);
    assert_eq!((f.held_packets(), f.state().held_bytes), (20, 20 * cost));
    // Every packet counted once: held then expired, or refused (a decode error).
    assert_eq!(d.expire(T0 + 2_000_001, false), 20);
    let stats = f.stats();
    assert_eq!(
        (
            stats.packets_held,
            stats.packets_released,
            stats.packets_expired,
            stats.hold_refused_bytes
        ),
        (21, 1, 20, 9_980)
    );
    assert_eq!(f.state().held_bytes, 0);
}

#[test]
fn a_template_releases_only_the_packets_waiting_for_it() {
    let f = factory(NetflowConfig::default());
    let mut d = f.build();
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[256])).expect("known exporter");
    // 5000 packets for templates that never come, 3 for 300, 2 for 301.
    for i in 0..5000u32 {
        assert_eq!(decode(d.as_mut(), &ctx(T0, 2), &data(i, 256)), Ok(HELD));
    }
    for id in [300, 301, 300, 301, 300] {
        assert_eq!(decode(d.as_mut(), &ctx(T0, 1), &data(1, id)), Ok(HELD));
    }
    let mut released = Vec::new();
    assert_eq!(d.release(&mut released), 0);
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[300])).expect("300");
    assert_eq!(d.release(&mut released), 3);
    assert_eq!(d.release(&mut released), 0);
    assert_eq!(f.held_packets(), 5002);
    decode(d.as_mut(), &ctx(T0, 1), &template(1, &[301])).expect("301");
    assert_eq!(d.release(&mut released), 2);
    assert_eq!((released.len(), f.held_packets()), (5, 5000));
    assert_eq!(d.expire(T0, true), 5000);
}
