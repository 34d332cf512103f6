//! A real Prometheus server (Debian's `prometheus`) scrapes `sluice run` during a netns
//! traffic run; its HTTP API must report exactly the packets sent, by verdict and by
//! queue, and seen = recorded + discarded. Both processes run in namespace b, on its own
//! loopback (127.0.0.1:9464 for sluice, 127.0.0.1:9090 for Prometheus).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::{Scenario, sluice_binary};
use sluice_testkit::{
    cleanup::ProcessGuard,
    daemon::{self, ConfigSpec, RunFiles},
    netns::{Netns, NetnsPair},
    privilege::{require_root, require_tool},
    tcpreplay::{self, ReplayParams},
};

const NAME: &str = "metrics_prometheus::prometheus_sees_every_packet";

/// One instant query against Prometheus' HTTP API inside `ns`: the sum of the series.
fn query(ns: &Netns, promql: &str) -> Option<f64> {
    let path = format!("/api/v1/query?query={}", urlencode(promql));
    let body = ns
        .run_in(move || -> Option<String> {
            let mut s = TcpStream::connect("127.0.0.1:9090").ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .ok()??;
    let json = body.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let result = v["data"]["result"].as_array()?;
    let mut sum = 0.0;
    for series in result {
        sum += series["value"][1].as_str()?.parse::<f64>().ok()?;
    }
    (!result.is_empty()).then_some(sum)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `promql` until it equals `want` (scrapes are every second), for at most 20 s.
fn wait_for(ns: &Netns, promql: &str, want: f64) -> Option<f64> {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(20) {
        last = query(ns, promql);
        if last == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last
}

#[test]
fn prometheus_sees_every_packet() {
    if !(require_root(NAME)
        && ["ip", "tcpreplay", "prometheus"]
            .iter()
            .all(|t| require_tool(NAME, t)))
    {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("prometheus").expect("tempdir");
    let scenario = Scenario::write(dir.path());
    let pair = NetnsPair::create().expect("namespaces");

    let files = RunFiles::in_dir(dir.path(), "sluice");
    let config = ConfigSpec::xdp(&pair.if_b, &dir.path().join("records")).to_toml()
        + "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n";
    std::fs::write(&files.config, config).expect("config");
    let mut sluice = daemon::start_run(&sluice_binary(), &pair.b, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n",
    )
    .expect("prometheus config");
    let prom_log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let child = pair
        .b
        .command("prometheus")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(prom_log.try_clone().expect("log"))
        .stderr(prom_log)
        .spawn()
        .expect("start prometheus");
    let mut prometheus = ProcessGuard::new("prometheus", child);
    assert_eq!(
        wait_for(&pair.b, "up{job=\"sluice\"}", 1.0),
        Some(1.0),
        "prometheus never scraped sluice"
    );
    assert_eq!(query(&pair.b, "sluice_ready"), Some(1.0));

    let sent = tcpreplay::send(
        &pair.a,
        &pair.if_a,
        &scenario.pcap,
        ReplayParams {
            pps: 2000,
            loops: 1,
            timeout: Duration::from_secs(60),
        },
    )
    .expect("tcpreplay");
    let steered = scenario.steered_count() as f64;
    let must_pass = scenario.must_pass_count() as f64;
    assert_eq!(sent.successful as f64, steered + must_pass);

    assert_eq!(
        wait_for(&pair.b, "sluice_seen_packets_total", steered),
        Some(steered)
    );
    assert_eq!(
        wait_for(&pair.b, "sluice_recorded_packets_total", steered),
        Some(steered)
    );
    assert_eq!(
        query(&pair.b, "sum(sluice_discarded_packets_total)"),
        Some(0.0)
    );
    assert_eq!(
        query(
            &pair.b,
            "sum(sluice_seen_packets_total) - sum(sluice_recorded_packets_total) - sum(sluice_discarded_packets_total)"
        ),
        Some(0.0)
    );
    assert_eq!(
        query(
            &pair.b,
            "sum(sluice_xdp_verdict_packets_total{verdict=~\"redirect_.*\"})"
        ),
        Some(steered)
    );
    assert_eq!(
        query(
            &pair.b,
            "sum(sluice_xdp_verdict_packets_total{verdict=~\"pass_.*\"})"
        ),
        Some(must_pass)
    );
    assert_eq!(
        query(&pair.b, "sluice_received_packets_total{queue=\"0\"}"),
        Some(steered)
    );
    assert_eq!(
        query(&pair.b, "sum(sluice_tunnel_packets_total)"),
        Some(steered)
    );
    assert_eq!(
        query(&pair.b, "sluice_records_total{stream=\"raw\"}"),
        Some(steered)
    );
    assert_eq!(
        query(
            &pair.b,
            "sluice_xsk_rx_ring_full_packets_total{queue=\"0\"}"
        ),
        Some(0.0)
    );

    let (status, in_time, stats) = sluice.stop(Duration::from_secs(15)).expect("stop sluice");
    assert!(status.success() && in_time, "sluice exit {status}");
    assert_eq!(stats.seen as f64, steered);
    assert!(stats.balanced);
    prometheus
        .terminate(Duration::from_secs(10))
        .expect("stop prometheus");
}
