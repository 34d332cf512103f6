//! The netflow decoder against real peers: softflowd exports the sample traffic of
//! `sluice_testkit::netflow_peers` as NetFlow v5, v9, IPFIX (sysUpTime times) and IPFIX
//! (absolute milliseconds) to nfcapd in a namespace pair, tcpdump captures the export, and
//! the decoded flows must equal nfdump's view of what nfcapd stored, flow by flow:
//! addresses, ports, protocol, packets, bytes, TCP flags, and start/end at nfdump's
//! millisecond resolution. The flows must also be the sample traffic's own (v5: its IPv4
//! part), and with absolute times the pcap's first/last packet times (of the conversation:
//! softflowd gives both directions of a flow the same start and end).
//!
//! Needs root and softflowd, nfcapd, nfdump, tcpdump (`privilege` rule: fails in CI,
//! skips elsewhere).

use std::net::IpAddr;

use sluice_decode::netflow::{NetflowConfig, NetflowFactory};
use sluice_decode::{Decoder, DecoderFactory, PacketContext, Value};
use sluice_testkit::netflow_peers::{
    ExpectedFlow, Export, FlowKey, PeerLab, TOOLS, expected_flows, nfdump_swaps_ipfix_sysuptime,
    sample_traffic, write_traffic_pcap,
};
use sluice_testkit::privilege::{require_root, require_tool};

/// A decoded flow, in nfdump's terms (times in microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Decoded {
    key: FlowKey,
    packets: u64,
    bytes: u64,
    start_us: i64,
    end_us: i64,
    tcp_flags: u8,
}

fn decoded(d: &dyn Decoder, row: &[Value<'_>]) -> Decoded {
    let s = d.schema();
    let get = |name: &str| &row[s.index_of(name).expect(name)];
    let ip = |name: &str| match get(name) {
        Value::Ip(a) => *a,
        other => panic!("{name}: {other:?}"),
    };
    let num = |name: &str| match get(name) {
        Value::U64(n) => *n,
        other => panic!("{name}: {other:?}"),
    };
    let time = |name: &str| match get(name) {
        Value::Timestamp(t) => *t,
        other => panic!("{name}: {other:?}"),
    };
    Decoded {
        key: FlowKey {
            src: ip("src_addr"),
            dst: ip("dst_addr"),
            src_port: u16::try_from(num("src_port")).expect("port"),
            dst_port: u16::try_from(num("dst_port")).expect("port"),
            protocol: u8::try_from(num("protocol")).expect("protocol"),
        },
        packets: num("packets"),
        bytes: num("bytes"),
        start_us: time("flow_start"),
        end_us: time("flow_end"),
        tcp_flags: u8::try_from(num("tcp_flags")).expect("flags"),
    }
}

#[test]
fn softflowd_exports_decode_as_nfdump_reads_them() {
    const NAME: &str = "netflow_peers::softflowd_exports_decode_as_nfdump_reads_them";
    if !require_root(NAME) || !TOOLS.iter().all(|tool| require_tool(NAME, tool)) {
        return;
    }
    let traffic = sample_traffic();
    let expected = expected_flows(&traffic);
    let mut lab = PeerLab::create().expect("namespaces");
    let dir = sluice_testkit::scratch::tempdir("netflow-peers-test").expect("tempdir");
    let pcap = dir.path().join("traffic.pcap");
    write_traffic_pcap(&pcap, &traffic).expect("pcap");
    let swapped = nfdump_swaps_ipfix_sysuptime().expect("nfdump version");

    for export in [Export::V5, Export::V9, Export::Ipfix, Export::IpfixMillis] {
        let run = lab.run(&pcap, export).expect("peer run");
        assert!(!run.datagrams.is_empty(), "{export:?}: no export captured");

        // Decode the capture in order, as one worker would.
        let factory = NetflowFactory::new(&NetflowConfig::default()).expect("factory");
        let mut d = factory.build();
        let mut rows = Vec::new();
        for (i, dg) in run.datagrams.iter().enumerate() {
            let ctx = PacketContext {
                received_at: i64::try_from(dg.timestamp.as_micros()).expect("time"),
                tunnel_src: None,
                tunnel_dst: None,
                gre_key: None,
                src_ip: dg.src,
                src_port: dg.src_port,
                dst_ip: dg.dst,
                dst_port: dg.dst_port,
            };
            let outcome = d
                .decode(&ctx, &dg.payload, &mut rows)
                .unwrap_or_else(|e| panic!("{export:?} packet {i}: {e}"));
            assert!(!outcome.held, "{export:?} packet {i} held");
        }
        let mut ours: Vec<Decoded> = rows.iter().map(|r| decoded(d.as_ref(), r)).collect();
        ours.sort();
        let mut theirs = run.nfdump.clone();
        theirs.sort();

        // Flow by flow against nfdump, times at its millisecond resolution.
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{export:?}: flows, softflowd said {}",
            run.softflowd_log
        );
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(
                (o.key, o.packets, o.bytes, o.tcp_flags),
                (t.key, t.packets, t.bytes, t.tcp_flags),
                "{export:?}"
            );
            let ms = (o.start_us.div_euclid(1000), o.end_us.div_euclid(1000));
            let nfdump_ms = if export == Export::Ipfix && swapped {
                // nfdump 1.7.1 reads flowEndSysUpTime as first and flowStartSysUpTime as last.
                (t.last_ms, t.first_ms)
            } else {
                (t.first_ms, t.last_ms)
            };
            assert_eq!(ms, nfdump_ms, "{export:?} {:?}", o.key);
            assert!(o.start_us <= o.end_us, "{export:?} {o:?}");
        }

        // And against the traffic itself (v5 carries IPv4 flows only).
        let want: Vec<_> = expected
            .iter()
            .filter(|f| export != Export::V5 || matches!(f.key.src, IpAddr::V4(_)))
            .collect();
        let mut by_key: Vec<_> = ours
            .iter()
            .map(|o| (o.key, o.packets, o.bytes, o.tcp_flags))
            .collect();
        by_key.sort();
        assert_eq!(
            by_key,
            want.iter()
                .map(|f| (f.key, f.packets, f.bytes, f.tcp_flags))
                .collect::<Vec<_>>(),
            "{export:?}"
        );
        if export == Export::IpfixMillis {
            // softflowd keeps one start and one end per conversation: both directions of a
            // flow carry its first and last packet times.
            let pcap_ms = |t: std::time::Duration| i64::try_from(t.as_millis()).expect("ms");
            let conversation = |f: &ExpectedFlow| {
                let back = expected.iter().find(|r| {
                    (r.key.src, r.key.dst, r.key.src_port, r.key.dst_port)
                        == (f.key.dst, f.key.src, f.key.dst_port, f.key.src_port)
                });
                let first = back.map_or(f.first, |r| r.first.min(f.first));
                let last = back.map_or(f.last, |r| r.last.max(f.last));
                (pcap_ms(first), pcap_ms(last))
            };
            let times: Vec<_> = ours
                .iter()
                .map(|o| (o.start_us / 1000, o.end_us / 1000))
                .collect();
            assert_eq!(
                times,
                want.iter().map(|f| conversation(f)).collect::<Vec<_>>()
            );
        }
        eprintln!(
            "{export:?}: {} export packets, {} flows decoded = nfdump's",
            run.datagrams.len(),
            ours.len()
        );
    }
}
