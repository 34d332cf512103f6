//! A flood of template-less IPFIX (issue 12) must cost the `netflow` decoder bounded
//! memory and constant work per packet, so that the other streams sharing the workers
//! lose nothing.
//!
//! `sluice run` (UDP source on namespace b's loopback, two workers, the `netflow` decoder
//! with its default options) receives, for [`FLOOD_SECS`] seconds at [`FLOOD_PPS`]:
//! 1.4 KB IPFIX data sets whose template never comes, from [`DOMAINS`] observation domains
//! and [`SOURCES`] source addresses (so as many exporters as domains); beside them a real
//! exporter (softflowd's IPFIX export of the test kit's sample traffic, resent every
//! [`LEGIT_PERIOD`] from one address) and a raw stream. Afterwards:
//!
//! - nothing was discarded for capacity (`worker_queue_full`, `socket_overflow`): every
//!   flood packet is a `decode_error` (`no_template`), every other packet is recorded, and
//!   seen = recorded + discarded exactly;
//! - every legitimate flow arrived, as nfdump read it, once per round; every raw datagram
//!   arrived;
//! - the decoder's state stayed within its limits: its held bytes never above
//!   `max_held_bytes` (16 MiB), the flood left no exporter state (it sent no template),
//!   and held + refused packets account for the flood exactly (`/metrics`);
//! - the daemon's peak RSS (VmHWM) stayed under [`RSS_BASELINE_MIB`] + `max_held_bytes`.
//!
//! The rate is one the debug build's two workers sustain on a 2-CPU VM for good traffic
//! (measured by the ignored [`good_ipfix_at_the_flood_rate`]; docs/decoders.md, "Bounded
//! state"); every loop is bounded by count and time. Every address is on 127.0.0.0/8
//! inside a namespace the test creates. `SLUICE_FLOOD_BINARY` and `SLUICE_FLOOD_PPS` run
//! another build (release, or the code before a change) at another rate, for
//! measurements.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use common::{read_json_records, sluice_binary};
use sluice_testkit::{
    daemon::{self, ConfigSpec, RunFiles, RunningSluice, SourceSpec},
    netflow_peers::{Export, FlowKey, PeerLab, TOOLS, sample_traffic, write_traffic_pcap},
    netns::{Netns, NetnsPair},
    privilege::{require_root, require_tool},
    records,
};

const NAME: &str = "netflow_flood::template_less_ipfix_flood_costs_other_streams_nothing";

/// Flood packets per second, and for how long. The debug build's two workers sustain
/// 4000/s of good 1.4 KB IPFIX (30 flows each) on a 2-CPU VM, not 5000/s
/// ([`good_ipfix_at_the_flood_rate`]); before the decoder's state was bounded, this flood
/// at 4000/s lost half its packets and 40 % of the other streams' to `worker_queue_full`.
const FLOOD_PPS: u64 = 4000;
const FLOOD_SECS: u64 = 30;
/// Observation domains of the flood (each one an exporter).
const DOMAINS: u32 = 100_000;
/// Source addresses of the flood: 127.1.x.y.
const SOURCES: u32 = 1000;
/// Bytes of a flood packet (IPFIX header, one data set).
const FLOOD_BYTES: usize = 1400;
/// The legitimate exporter's export is resent this often during the flood.
const LEGIT_PERIOD: Duration = Duration::from_millis(500);
/// Raw datagrams, sent at [`RAW_PPS`] during the flood.
const RAW_PACKETS: u64 = 20_000;
const RAW_PPS: u64 = 1000;
/// The daemon's peak RSS without the decoder's held packets: code, the frame queue, the
/// open batches and their encoders, the allocator's slack. Good traffic at the flood's
/// rate peaks at 33 MiB, an idle daemon at 22-25 MiB (docs/decoders.md).
const RSS_BASELINE_MIB: u64 = 40;
/// `max_held_bytes`' default.
const MAX_HELD_BYTES: u64 = 16 << 20;

const NETFLOW_PORT: u16 = 4739;
const RAW_PORT: u16 = 5000;
const LEGIT_SRC: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const RAW_SRC: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn to(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

/// A template-less IPFIX packet of [`FLOOD_BYTES`]: header, then one data set of
/// template 256..=259 (which no one defines).
fn flood_packet() -> Vec<u8> {
    let mut p = vec![0u8; FLOOD_BYTES];
    p[0..2].copy_from_slice(&10u16.to_be_bytes());
    p[2..4].copy_from_slice(&(FLOOD_BYTES as u16).to_be_bytes());
    p[4..8].copy_from_slice(&1_767_225_600u32.to_be_bytes());
    p[20..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    p[16..18].copy_from_slice(&256u16.to_be_bytes());
    p[18..20].copy_from_slice(&((FLOOD_BYTES - 16) as u16).to_be_bytes());
    p
}

/// Calls `send(i)` for `i` in `0..total` at `pps`, paced in 1 ms steps, stopping at the
/// count or after `limit`; returns how many were sent.
fn paced(total: u64, pps: u64, limit: Duration, mut send: impl FnMut(u64)) -> u64 {
    let start = Instant::now();
    let mut sent = 0;
    while sent < total && start.elapsed() < limit {
        let due = ((start.elapsed().as_micros() as u64).saturating_mul(pps) / 1_000_000).min(total);
        while sent < due {
            send(sent);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

/// Flood packets per second: [`FLOOD_PPS`], or `SLUICE_FLOOD_PPS` for measurements.
fn flood_pps() -> u64 {
    std::env::var("SLUICE_FLOOD_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FLOOD_PPS)
}

/// The flood, from inside namespace b: returns the packets sent.
fn flood() -> u64 {
    let sockets: Vec<UdpSocket> = (0..SOURCES)
        .map(|i| {
            let src = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1);
            UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind flood source")
        })
        .collect();
    let mut packet = flood_packet();
    let total = flood_pps() * FLOOD_SECS;
    paced(
        total,
        flood_pps(),
        Duration::from_secs(FLOOD_SECS + 5),
        |i| {
            let domain = (i % u64::from(DOMAINS)) as u32;
            packet[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            packet[12..16].copy_from_slice(&domain.to_be_bytes());
            packet[16..18].copy_from_slice(&(256 + (i % 4) as u16).to_be_bytes());
            let socket = &sockets[(i % u64::from(SOURCES)) as usize];
            socket
                .send_to(&packet, to(NETFLOW_PORT))
                .expect("send flood");
        },
    )
}

/// `sluice run` in `ns`: the UDP source on [`NETFLOW_PORT`] (stream `flows`, `netflow`
/// with its defaults) and [`RAW_PORT`] (`raw`), two workers, `/metrics` on 127.0.0.1:9464.
fn start_sluice(ns: &Netns, dir: &Path, out: &Path) -> RunningSluice {
    let files = RunFiles::in_dir(dir, "sluice");
    let spec = ConfigSpec {
        source: SourceSpec::Udp {
            listen: vec![to(NETFLOW_PORT).to_string(), to(RAW_PORT).to_string()],
        },
        ports: vec![NETFLOW_PORT, RAW_PORT],
        ..ConfigSpec::xdp("unused", out)
    };
    let config = spec.to_toml()
        + "\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:9464\"\n"
        + &format!("\n[[decoder]]\nname = \"flows\"\nports = [{NETFLOW_PORT}]\nnetflow = {{}}\n");
    std::fs::write(&files.config, config).expect("config");
    // Another build (a release build, the code before a change) for measurements.
    let binary = std::env::var_os("SLUICE_FLOOD_BINARY").map_or_else(sluice_binary, Into::into);
    let mut sluice = daemon::start_run(&binary, ns, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    sluice
}

/// `GET /metrics` from inside `ns`: `name{labels}` → value.
fn scrape(ns: &Netns) -> BTreeMap<String, f64> {
    let text = ns
        .run_in(|| -> std::io::Result<String> {
            let mut s = TcpStream::connect("127.0.0.1:9464")?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .expect("enter namespace")
        .expect("scrape /metrics");
    text.lines()
        .filter(|l| l.starts_with("sluice_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn metric(m: &BTreeMap<String, f64>, name: &str) -> u64 {
    m.get(name)
        .copied()
        .unwrap_or_else(|| panic!("{name} not exported"))
        .round() as u64
}

/// `VmHWM` and `VmRSS` of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// (flow key, packets, bytes) of a record of the `flows` stream.
fn flow_of(r: &serde_json::Value) -> (FlowKey, u64, u64) {
    let ip = |k: &str| r[k].as_str().and_then(|s| s.parse().ok()).expect(k);
    let num = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    (
        FlowKey {
            src: ip("src_addr"),
            dst: ip("dst_addr"),
            src_port: num("netflow_src_port") as u16,
            dst_port: num("netflow_dst_port") as u16,
            protocol: num("protocol") as u8,
        },
        num("packets"),
        num("bytes"),
    )
}

#[test]
fn template_less_ipfix_flood_costs_other_streams_nothing() {
    if !(require_root(NAME) && TOOLS.iter().chain(&["ip"]).all(|t| require_tool(NAME, t))) {
        return;
    }
    let started = Instant::now();
    let dir = sluice_testkit::scratch::tempdir("netflow-flood").expect("tempdir");

    // The legitimate exporter: softflowd's IPFIX export and nfdump's reading of it.
    let traffic_pcap = dir.path().join("traffic.pcap");
    write_traffic_pcap(&traffic_pcap, &sample_traffic()).expect("traffic pcap");
    let legit = PeerLab::create()
        .and_then(|mut lab| lab.run(&traffic_pcap, Export::IpfixMillis))
        .expect("softflowd export");
    let export: Vec<Vec<u8>> = legit.datagrams.iter().map(|d| d.payload.clone()).collect();
    assert!(!export.is_empty() && !legit.nfdump.is_empty());
    eprintln!(
        "legitimate export: {} packets, {} flows ({:?})",
        export.len(),
        legit.nfdump.len(),
        started.elapsed()
    );

    let pair = NetnsPair::create().expect("namespaces");
    let out = dir.path().join("records");
    let sluice = start_sluice(&pair.b, dir.path(), &out);
    let pid = sluice.pid().expect("pid");

    // The legitimate exporter is known before the flood starts (its templates learned).
    let legit_socket = pair
        .b
        .run_in(|| UdpSocket::bind(SocketAddr::new(LEGIT_SRC.into(), 9995)))
        .expect("enter namespace")
        .expect("bind exporter");
    for p in &export {
        legit_socket
            .send_to(p, to(NETFLOW_PORT))
            .expect("send export");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (idle_hwm, _) = memory_kib(pid);

    let flooding = pair.b.spawn_in(flood).expect("flood thread");
    let raw = pair
        .b
        .spawn_in(|| {
            let socket = UdpSocket::bind(SocketAddr::new(RAW_SRC.into(), 40_000)).expect("bind");
            paced(
                RAW_PACKETS,
                RAW_PPS,
                Duration::from_secs(FLOOD_SECS + 5),
                |i| {
                    let payload = format!("raw datagram {i}");
                    socket
                        .send_to(payload.as_bytes(), to(RAW_PORT))
                        .expect("send raw");
                },
            )
        })
        .expect("raw thread");
    // The exporter keeps exporting, and /metrics is read, during the flood.
    let mut rounds = 1u64;
    let mut peak_held_bytes = 0;
    let flood_start = Instant::now();
    while flood_start.elapsed() < Duration::from_secs(FLOOD_SECS) {
        std::thread::sleep(LEGIT_PERIOD);
        for p in &export {
            legit_socket
                .send_to(p, to(NETFLOW_PORT))
                .expect("send export");
        }
        rounds += 1;
        if rounds.is_multiple_of(10) {
            let m = scrape(&pair.b);
            let held_bytes = m.get("sluice_netflow_held_bytes{stream=\"flows\"}");
            peak_held_bytes = peak_held_bytes.max(held_bytes.map_or(0, |v| *v as u64));
        }
    }
    let flood_sent = flooding.join().expect("flood").expect("namespace");
    let raw_sent = raw.join().expect("raw").expect("namespace");
    let flood_elapsed = flood_start.elapsed();
    // Held packets expire after hold_ms (2 s).
    std::thread::sleep(Duration::from_secs(3));
    let m = scrape(&pair.b);
    let (hwm, rss) = memory_kib(pid);
    let (status, in_time, stats) = sluice.stop(Duration::from_secs(15)).expect("stop sluice");
    eprintln!(
        "flood: {flood_sent} packets in {flood_elapsed:?}; raw {raw_sent}; {rounds} rounds of \
         the export; VmHWM {hwm} KiB (idle {idle_hwm} KiB), VmRSS {rss} KiB; peak held bytes \
         {peak_held_bytes}; stats {stats:?}"
    );
    assert!(status.success() && in_time, "sluice exit {status}");
    assert_eq!(
        flood_sent,
        flood_pps() * FLOOD_SECS,
        "the sender fell behind"
    );
    assert_eq!(raw_sent, RAW_PACKETS);

    // Every packet accounted for; the flood is its only loss.
    let legit_packets = rounds * export.len() as u64;
    let dropped: BTreeMap<&str, u64> = stats
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    assert_eq!(
        (stats.seen, stats.recorded, dropped),
        (
            flood_sent + legit_packets + raw_sent,
            legit_packets + raw_sent,
            BTreeMap::from([("decode_error", flood_sent)])
        ),
        "stats {stats:?}"
    );
    assert!(stats.balanced && stats.is_balanced());

    // Each round of the export gave exactly nfdump's flows.
    let mut want: BTreeMap<(FlowKey, u64, u64), u64> = BTreeMap::new();
    for f in &legit.nfdump {
        *want.entry((f.key, f.packets, f.bytes)).or_default() += rounds;
    }
    let mut got: BTreeMap<(FlowKey, u64, u64), u64> = BTreeMap::new();
    for r in read_json_records(&out.join("flows")) {
        assert_eq!(r["src_ip"], LEGIT_SRC.to_string(), "{r}");
        *got.entry(flow_of(&r)).or_default() += 1;
    }
    assert_eq!(got, want);
    let mut raw_payloads: Vec<String> = records::read_output(&out.join("raw"))
        .expect("raw output")
        .records()
        .into_iter()
        .map(|r| r.payload)
        .collect();
    let mut want_raw: Vec<String> = (0..RAW_PACKETS)
        .map(|i| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("raw datagram {i}"))
        })
        .collect();
    raw_payloads.sort();
    want_raw.sort();
    assert_eq!(raw_payloads, want_raw);

    // The decoder's state: bounded, and the flood accounted for in it.
    let flows = |name: &str| metric(&m, &format!("{name}{{stream=\"flows\"}}"));
    let by = |name: &str, label: &str, value: &str| {
        metric(
            &m,
            &format!("{name}{{{label}=\"{value}\",stream=\"flows\"}}"),
        )
    };
    assert_eq!(
        by("sluice_decode_errors_total", "kind", "no_template"),
        flood_sent
    );
    let held = by("sluice_netflow_hold_packets_total", "event", "held");
    let released = by("sluice_netflow_hold_packets_total", "event", "released");
    let expired = by("sluice_netflow_hold_packets_total", "event", "expired");
    let refused: u64 = ["max_held_bytes", "max_held_packets"]
        .iter()
        .map(|r| by("sluice_netflow_hold_refused_packets_total", "reason", r))
        .sum();
    eprintln!("held {held}, released {released}, expired {expired}, refused {refused}");
    assert_eq!(
        (
            flows("sluice_netflow_held_packets"),
            flows("sluice_netflow_held_bytes")
        ),
        (0, 0)
    );
    assert_eq!(held, released + expired);
    assert_eq!(expired + refused, flood_sent);
    assert!(
        by(
            "sluice_netflow_hold_refused_packets_total",
            "reason",
            "max_held_bytes"
        ) > 0,
        "the flood never reached max_held_bytes"
    );
    assert!(peak_held_bytes <= MAX_HELD_BYTES, "{peak_held_bytes}");
    // Only the legitimate exporter has state; nothing was refused to it.
    assert_eq!(flows("sluice_netflow_exporters"), 1);
    for reason in ["max_exporters", "max_templates", "max_template_bytes"] {
        assert_eq!(
            by("sluice_netflow_refused_templates_total", "reason", reason),
            0
        );
    }
    assert!(
        hwm <= (RSS_BASELINE_MIB << 10) + (MAX_HELD_BYTES >> 10),
        "VmHWM {hwm} KiB above {RSS_BASELINE_MIB} MiB + max_held_bytes"
    );
    eprintln!("{NAME}: {:?}", started.elapsed());
}

/// A good IPFIX packet of [`FLOOD_BYTES`] or less: `records` flows of [`GOOD_FIELDS`] for
/// template 256 of observation domain 0, with the template when `template`.
fn good_packet(template: bool, sequence: u32, records: usize) -> Vec<u8> {
    use sluice_decode::netflow::encode::{FieldSpec, MessageBuilder, RecordWriter};
    let fields: Vec<FieldSpec> = GOOD_FIELDS
        .iter()
        .map(|&(id, len)| FieldSpec::new(id, len))
        .collect();
    let mut m = MessageBuilder::ipfix(1_767_225_600, sequence, 0);
    if template {
        m = m.template_set(&[(256, &fields)]);
    }
    let rows: Vec<Vec<u8>> = (0..records as u32)
        .map(|i| {
            let mut r = RecordWriter::new();
            for &(id, len) in &GOOD_FIELDS {
                r = match (id, len) {
                    (8, _) => r.ip(Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1).into()),
                    (12, _) => r.ip(Ipv4Addr::new(198, 51, 100, (i % 250) as u8 + 1).into()),
                    (152 | 153, _) => r.u64(1_767_225_599_000 + u64::from(i)),
                    (_, 1) => r.u8(6),
                    (_, 2) => r.u16(40_000 + i as u16),
                    (_, _) => r.u64(u64::from(1_000 + i)),
                };
            }
            r.finish()
        })
        .collect();
    m.data_set(256, &rows).finish()
}

/// The fields of the good traffic: addresses, ports, protocol, TCP flags, counters,
/// millisecond times (45 bytes a flow, 30 flows in 1.37 KB).
const GOOD_FIELDS: [(u16, u16); 9] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 2),
    (2, 8),
    (1, 8),
    (152, 8),
];

/// Measures what the test's rate is for good traffic: [`FLOOD_PPS`] (or
/// `SLUICE_GOOD_PPS`) of 1.4 KB IPFIX packets whose template is known (`SLUICE_GOOD_FLOWS`
/// flows each, default 30) from [`SOURCES`] exporters, for 10 s, through the same daemon.
/// Prints the account and the peak RSS (the baseline of the flood test). Not run by
/// default: `cargo test -p sluice --test netflow_flood -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement (docs/decoders.md, \"Bounded state\"), run by hand"]
fn good_ipfix_at_the_flood_rate() {
    const NAME: &str = "netflow_flood::good_ipfix_at_the_flood_rate";
    if !require_root(NAME) {
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (pps, flows) = (
        env("SLUICE_GOOD_PPS", FLOOD_PPS),
        env("SLUICE_GOOD_FLOWS", 30),
    );
    let dir = sluice_testkit::scratch::tempdir("netflow-good").expect("tempdir");
    let pair = NetnsPair::create().expect("namespaces");
    let out = dir.path().join("records");
    let sluice = start_sluice(&pair.b, dir.path(), &out);
    let pid = sluice.pid().expect("pid");
    let sent = pair
        .b
        .run_in(move || {
            let sockets: Vec<UdpSocket> = (0..SOURCES)
                .map(|i| {
                    let src = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1);
                    UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind")
                })
                .collect();
            let template = good_packet(true, 0, 0);
            for s in &sockets {
                s.send_to(&template, to(NETFLOW_PORT))
                    .expect("send template");
            }
            std::thread::sleep(Duration::from_millis(200));
            let data = good_packet(false, 1, flows as usize);
            assert!(data.len() <= FLOOD_BYTES, "{}", data.len());
            let secs = 10;
            paced(pps * secs, pps, Duration::from_secs(secs + 5), |i| {
                let s = &sockets[(i % u64::from(SOURCES)) as usize];
                s.send_to(&data, to(NETFLOW_PORT)).expect("send");
            }) + u64::from(SOURCES)
        })
        .expect("namespace");
    std::thread::sleep(Duration::from_secs(2));
    let (hwm, _) = memory_kib(pid);
    let (_, _, stats) = sluice.stop(Duration::from_secs(30)).expect("stop");
    eprintln!(
        "good IPFIX: {sent} packets at {pps}/s, {flows} flows each; VmHWM {hwm} KiB; \
         recorded {}, records {}, dropped {:?}",
        stats.recorded,
        stats.records_written,
        stats
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .collect::<Vec<_>>()
    );
    assert_eq!((stats.seen, stats.recorded), (sent, sent), "{stats:?}");
}
