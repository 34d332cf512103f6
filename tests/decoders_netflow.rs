//! NetFlow and IPFIX from a real exporter through the whole appliance, checked against a
//! real collector: softflowd exports a known pcap as NetFlow v5, v9, IPFIX and IPFIX with
//! millisecond times; nfcapd stores the same export and nfdump reads it back (the test
//! kit's `PeerLab`). Each export is then wrapped in GRE — one tunnel per export version —
//! and sent with tcpreplay into `sluice run` (XDP) with a `netflow` decoder. The flows
//! Sluice records must equal nfdump's, flow by flow: addresses, ports, protocol, packets,
//! bytes, TCP flags, start and end (at nfdump's millisecond resolution).
//!
//! Packets of one exporter reach Sluice's workers in parallel, so a data packet may be
//! decoded before the template packet that preceded it on the wire: held packets and
//! their release are exercised here too, and the accounting still has to balance exactly.

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use common::{read_json_records, rfc3339_micros, sluice_binary};
use sluice_testkit::{
    daemon::{self, ConfigSpec, RunFiles},
    frames::{FrameSpec, GreTunnel, OuterIp},
    netflow_peers::{
        Export, FlowKey, NfdumpFlow, PeerLab, TOOLS, nfdump_swaps_ipfix_sysuptime, sample_traffic,
        write_traffic_pcap,
    },
    netns::{MAC_A, MAC_B, NetnsPair},
    pcap::write_pcap,
    privilege::{require_root, require_tool},
    tcpreplay::{self, ReplayParams},
};

const NAME: &str = "decoders_netflow::exports_through_gre_decode_as_nfdump_reads_them";

const EXPORTS: [Export; 4] = [Export::V5, Export::V9, Export::Ipfix, Export::IpfixMillis];

/// The tunnel an export version travels in.
fn tunnel_src(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + index as u8)
}

/// A flow as recorded by Sluice, in nfdump's terms (times in milliseconds).
fn flow_of(r: &serde_json::Value) -> NfdumpFlow {
    let ip = |k: &str| {
        r[k].as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .unwrap_or_else(|| panic!("{k}: {r}"))
    };
    let num = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    let ms = |k: &str| {
        rfc3339_micros(r[k].as_str().unwrap_or_else(|| panic!("{k}: {r}"))).div_euclid(1000)
    };
    NfdumpFlow {
        key: FlowKey {
            src: ip("src_addr"),
            dst: ip("dst_addr"),
            // The flow's ports; `src_port`/`dst_port` are the export packet's.
            src_port: num("netflow_src_port") as u16,
            dst_port: num("netflow_dst_port") as u16,
            protocol: num("protocol") as u8,
        },
        packets: num("packets"),
        bytes: num("bytes"),
        first_ms: ms("flow_start"),
        last_ms: ms("flow_end"),
        tcp_flags: num("tcp_flags") as u8,
    }
}

#[test]
fn exports_through_gre_decode_as_nfdump_reads_them() {
    if !(require_root(NAME)
        && TOOLS
            .iter()
            .chain(&["ip", "tcpreplay"])
            .all(|t| require_tool(NAME, t)))
    {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("netflow-e2e").expect("tempdir");
    let traffic_pcap = dir.path().join("traffic.pcap");
    write_traffic_pcap(&traffic_pcap, &sample_traffic()).expect("traffic pcap");
    let swapped = nfdump_swaps_ipfix_sysuptime().expect("nfdump version");

    // The real exporter and collector.
    let mut runs = Vec::new();
    {
        let mut lab = PeerLab::create().expect("peer lab");
        for export in EXPORTS {
            runs.push(lab.run(&traffic_pcap, export).expect("peer run"));
        }
    }

    // Every export packet, in capture order per export, wrapped in its version's tunnel.
    let mut frames = Vec::new();
    let mut ports = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        assert!(
            !run.datagrams.is_empty(),
            "{:?}: nothing exported",
            run.export
        );
        for dg in &run.datagrams {
            if !ports.contains(&dg.dst_port) {
                ports.push(dg.dst_port);
            }
            let spec = FrameSpec {
                src_mac: MAC_A,
                dst_mac: MAC_B,
                vlans: Vec::new(),
                tunnel: Some(GreTunnel {
                    outer: OuterIp::V4 {
                        src: tunnel_src(i),
                        dst: Ipv4Addr::new(192, 0, 2, 1),
                        options_words: 0,
                    },
                    checksum: false,
                    key: Some(100 + i as u32),
                    sequence: None,
                }),
                inner: dg.udp(),
            };
            frames.push(spec.build());
        }
    }
    let pcap = dir.path().join("exports-in-gre.pcap");
    write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");

    // The appliance.
    let pair = NetnsPair::create().expect("namespaces");
    let out = dir.path().join("records");
    let files = RunFiles::in_dir(dir.path(), "sluice");
    let mut spec = ConfigSpec::xdp(&pair.if_b, &out);
    spec.ports = ports.clone();
    let port_list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let config = spec.to_toml()
        + &format!("\n[[decoder]]\nname = \"flows\"\nports = [{port_list}]\nnetflow = {{}}\n");
    std::fs::write(&files.config, config).expect("config");
    let mut sluice = daemon::start_run(&sluice_binary(), &pair.b, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = tcpreplay::send(
        &pair.a,
        &pair.if_a,
        &pcap,
        ReplayParams {
            pps: 500,
            loops: 1,
            timeout: Duration::from_secs(60),
        },
    )
    .expect("tcpreplay");
    assert_eq!(sent.successful, frames.len() as u64);
    std::thread::sleep(Duration::from_secs(1));
    let (status, in_time, stats) = sluice.stop(Duration::from_secs(15)).expect("stop sluice");
    assert!(status.success() && in_time, "sluice exit {status}");

    let records = read_json_records(&out.join("flows"));
    let want_flows: usize = runs.iter().map(|r| r.nfdump.len()).sum();
    assert_eq!(
        (
            stats.seen,
            stats.recorded,
            stats.dropped_total,
            stats.records_written
        ),
        (
            frames.len() as u64,
            frames.len() as u64,
            0,
            want_flows as u64
        ),
        "stats {stats:?}"
    );
    assert!(stats.balanced);
    assert_eq!(records.len(), want_flows);

    // Flow by flow, per export version (its tunnel).
    let mut by_tunnel: BTreeMap<String, Vec<NfdumpFlow>> = BTreeMap::new();
    for r in &records {
        let tunnel = r["tunnel_src"].as_str().expect("tunnel_src").to_owned();
        // Every key once: the decoder's `src_port` is renamed, so this is the export
        // packet's own source port.
        let run = (0..runs.len())
            .find(|i| tunnel_src(*i).to_string() == tunnel)
            .map(|i| &runs[i])
            .expect("known tunnel");
        let port = r["src_port"].as_u64().expect("src_port");
        assert!(
            run.datagrams.iter().any(|d| u64::from(d.src_port) == port),
            "src_port {port} is no export packet's"
        );
        by_tunnel.entry(tunnel).or_default().push(flow_of(r));
    }
    for (i, run) in runs.iter().enumerate() {
        let mut ours = by_tunnel
            .remove(&tunnel_src(i).to_string())
            .unwrap_or_default();
        let mut theirs = run.nfdump.clone();
        if run.export == Export::Ipfix && swapped {
            // nfdump 1.7.1 reads flowEndSysUpTime as first and flowStartSysUpTime as last.
            for t in &mut theirs {
                std::mem::swap(&mut t.first_ms, &mut t.last_ms);
            }
        }
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{:?}", run.export);
    }
    assert!(
        by_tunnel.is_empty(),
        "records from unknown tunnels: {by_tunnel:?}"
    );
}
