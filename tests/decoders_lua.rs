//! The `lua` decoder through the whole appliance.
//!
//! - The ACME-SENSOR v2 events of docs/decoders.md, wrapped in GRE, go twice into Sluice:
//!   to port 5140, decoded by the `schema` decoder with the document's layout, and to port
//!   5141, decoded by the Vector-style script `docs/examples/acme-sensor-v2.lua`. The two
//!   streams' records must be the same, packet by packet (each payload has its own inner
//!   source port), and both refuse the same payloads. Through XDP in a namespace pair
//!   (root) and through `sluice replay` of the same pcap (anywhere).
//! - Four scripts that misbehave on some payloads — a loop without end, allocation
//!   without end, a wrong type, an error — each on its own port: every bad payload is one
//!   `decode_error` under its kind (`/metrics`), every good one is recorded, the accounting
//!   balances, and the daemon exits cleanly on SIGTERM.
//!
//! The XDP tests need root, `ip` and `tcpreplay`: in CI a missing prerequisite fails the
//! test, elsewhere it is skipped with the reason printed.

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::{read_json_records, read_sorted_u64_pairs, scrape_metrics, sluice_binary};
use sluice_testkit::{
    daemon::{self, ConfigSpec, RunFiles},
    frames::lab_gre_udp_frame,
    netns::NetnsPair,
    pcap::write_pcap,
    privilege::{require_root, require_tool},
    stats::Stats,
    tcpreplay,
};

use sluice_testkit::acme::{LUA_DECODER as ACME_DECODER, LUA_SCRIPT as ACME_SCRIPT};

const SCHEMA_PORT: u16 = 5140;
const LUA_PORT: u16 = 5141;
/// Inner source ports: payload `i` comes from `FIRST_SRC_PORT + i`.
const FIRST_SRC_PORT: u16 = 20_000;

/// The scenario's files in `dir`: the pcap (each payload to both ports), the layout and
/// the script, and a config for `interface` writing to `out`.
struct AcmeRun {
    pcap: std::path::PathBuf,
    payloads: Vec<Vec<u8>>,
}

fn acme_scenario(dir: &Path, interface: &str, out: &Path, config_path: &Path) -> AcmeRun {
    let payloads = sluice_testkit::acme::payloads(450);
    let frames: Vec<Vec<u8>> = payloads
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let src_port = FIRST_SRC_PORT + i as u16;
            [
                lab_gre_udp_frame(SCHEMA_PORT, src_port, p),
                lab_gre_udp_frame(LUA_PORT, src_port, p),
            ]
        })
        .collect();
    let pcap = dir.join("acme.pcap");
    write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");
    std::fs::write(
        dir.join("acme-sensor-v2.toml"),
        sluice_testkit::acme::layout_toml().expect("the layout is in docs/decoders.md"),
    )
    .expect("layout");
    std::fs::write(dir.join("acme-sensor-v2.lua"), ACME_SCRIPT).expect("script");
    let mut spec = ConfigSpec::xdp(interface, out);
    spec.ports = vec![SCHEMA_PORT, LUA_PORT];
    let config = spec.to_toml()
        + &format!(
            "\n[[decoder]]\nname = \"acme\"\nports = [{SCHEMA_PORT}]\n\
             schema = {{ file = \"acme-sensor-v2.toml\" }}\n\n{ACME_DECODER}"
        );
    std::fs::write(config_path, config).expect("config");
    AcmeRun { pcap, payloads }
}

/// A stream's records by inner source port, without the destination port and the receive
/// time (what differs between the two streams' copies of a payload).
fn by_source_port(out: &Path, stream: &str) -> BTreeMap<u64, Vec<serde_json::Value>> {
    let mut records: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
    for mut r in read_json_records(&out.join(stream)) {
        let object = r.as_object_mut().expect("a record is an object");
        let dst_port = object.remove("dst_port").and_then(|p| p.as_u64());
        assert!(
            object.remove("received_at").is_some(),
            "{stream}: received_at"
        );
        let want = if stream == "acme" {
            SCHEMA_PORT
        } else {
            LUA_PORT
        };
        assert_eq!(dst_port, Some(u64::from(want)));
        let src_port = object["src_port"].as_u64().expect("src_port");
        records.entry(src_port).or_default().push(r);
    }
    records
}

/// Both streams' records are the same, packet by packet; returns (packets with records,
/// records) of one stream.
fn assert_streams_agree(out: &Path, what: &str) -> (usize, usize) {
    let schema = by_source_port(out, "acme");
    let lua = by_source_port(out, "acme_lua");
    assert_eq!(
        schema.keys().collect::<Vec<_>>(),
        lua.keys().collect::<Vec<_>>(),
        "{what}: the same packets have records"
    );
    for (port, rows) in &schema {
        assert_eq!(
            &lua[port], rows,
            "{what}: records of the packet from port {port}"
        );
    }
    (schema.len(), schema.values().map(Vec::len).sum())
}

/// Checks a run's stats: every frame seen, the packets both decoders refuse dropped
/// (twice each: once per stream), everything else recorded.
fn assert_acme_stats(stats: &Stats, run: &AcmeRun, what: &str) -> u64 {
    let frames = 2 * run.payloads.len() as u64;
    let dropped = stats.dropped.get("decode_error").copied().unwrap_or(0);
    assert_eq!(
        dropped % 2,
        0,
        "{what}: each refused payload twice: {stats:?}"
    );
    assert_eq!(
        (stats.seen, stats.recorded + dropped, stats.dropped_total),
        (frames, frames, dropped),
        "{what}: {stats:?}"
    );
    assert!(stats.balanced && stats.is_balanced(), "{what}: {stats:?}");
    dropped / 2
}

fn replay(dir: &Path, name: &str, config: &Path, pcap: &Path) -> Stats {
    let mut files = RunFiles::in_dir(dir, name);
    files.config = config.to_owned();
    let (status, stats) = daemon::replay(&sluice_binary(), &files, pcap, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("sluice replay: {e}"));
    assert!(
        status.success(),
        "sluice replay: {status}; log:\n{}",
        daemon::log_tail(&files.log, 40)
    );
    stats
}

#[test]
fn the_lua_stream_records_what_the_schema_stream_records_through_replay() {
    let dir = sluice_testkit::scratch::tempdir("lua-replay").expect("tempdir");
    let out = dir.path().join("records");
    let config = dir.path().join("sluice.toml");
    let run = acme_scenario(dir.path(), "replay0", &out, &config);
    let stats = replay(dir.path(), "replay", &config, &run.pcap);
    let refused = assert_acme_stats(&stats, &run, "replay");
    let (packets, records) = assert_streams_agree(&out, "replay");
    // The scenario has good events of every type and refused ones.
    assert!(
        refused >= 20 && packets >= 200 && records > packets,
        "{refused} {packets} {records}"
    );
    assert_eq!(
        stats.recorded,
        2 * (run.payloads.len() as u64 - refused),
        "{stats:?}"
    );
}

/// `sluice_decode_errors_total` by (stream, kind), the non-zero ones.
fn decode_errors(metrics: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("sluice_decode_errors_total{kind=\"") else {
            continue;
        };
        let (kind, rest) = rest.split_once("\",stream=\"").expect("labels");
        let (stream, value) = rest.split_once("\"} ").expect("value");
        let value: u64 = value.trim().parse().expect("number");
        if value > 0 {
            out.insert((stream.to_owned(), kind.to_owned()), value);
        }
    }
    out
}

fn xdp_prerequisites(name: &str) -> bool {
    require_root(name) && ["ip", "tcpreplay"].iter().all(|t| require_tool(name, t))
}

/// Starts `sluice run` on `pair`, sends `pcap` (`frames` frames) from namespace a, scrapes
/// `/metrics` and stops the daemon.
fn run_xdp(pair: &NetnsPair, files: &RunFiles, pcap: &Path, frames: u64) -> (Stats, String) {
    let mut sluice = daemon::start_run(&sluice_binary(), &pair.b, files).expect("start sluice run");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    tcpreplay::send_all(
        &pair.a,
        &pair.if_a,
        pcap,
        frames,
        1000,
        Duration::from_secs(120),
    )
    .expect("tcpreplay");
    std::thread::sleep(Duration::from_secs(1));
    let metrics = scrape_metrics(pair);
    let stats = sluice
        .stop_cleanly(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    (stats, metrics)
}

#[test]
fn the_lua_stream_records_what_the_schema_stream_records_through_xdp() {
    const NAME: &str =
        "decoders_lua::the_lua_stream_records_what_the_schema_stream_records_through_xdp";
    if !xdp_prerequisites(NAME) {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("lua-xdp").expect("tempdir");
    let pair = NetnsPair::create().expect("namespaces");
    let out = dir.path().join("records");
    let files = RunFiles::in_dir(dir.path(), "xdp");
    let run = acme_scenario(dir.path(), &pair.if_b, &out, &files.config);
    let frames = 2 * run.payloads.len() as u64;
    let (stats, metrics) = run_xdp(&pair, &files, &run.pcap, frames);
    let refused = assert_acme_stats(&stats, &run, "xdp");
    let (packets, records) = assert_streams_agree(&out, "xdp");
    assert!(refused >= 20 && packets >= 200 && records > packets);
    // Every refused payload once per stream: the script's as `lua_error`.
    let errors = decode_errors(&metrics);
    let schema_errors: u64 = errors
        .iter()
        .filter(|((stream, _), _)| stream == "acme")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(schema_errors, refused, "{errors:?}");
    assert_eq!(
        errors
            .iter()
            .filter(|((stream, _), _)| stream == "acme_lua")
            .collect::<Vec<_>>(),
        [(&("acme_lua".to_owned(), "lua_error".to_owned()), &refused)],
    );

    // The same pcap through `sluice replay` gives the same records.
    let replay_out = dir.path().join("replay-records");
    let replay_config = dir.path().join("replay.toml");
    acme_scenario(dir.path(), &pair.if_b, &replay_out, &replay_config);
    let replay_stats = replay(dir.path(), "replay", &replay_config, &run.pcap);
    assert_eq!(
        (
            replay_stats.seen,
            replay_stats.recorded,
            replay_stats.dropped_total
        ),
        (stats.seen, stats.recorded, stats.dropped_total)
    );
    for stream in ["acme", "acme_lua"] {
        assert_eq!(
            by_source_port(&replay_out, stream),
            by_source_port(&out, stream),
            "replay vs xdp: {stream}"
        );
    }
}

/// The misbehaving scripts: (stream, port, what it does with a payload `bad`, extra
/// options, the error kind).
const MISBEHAVING: [(&str, u16, &str, &str, &str); 4] = [
    ("loops", 6001, "while true do end", "", "lua_budget"),
    (
        "hogs",
        6002,
        "local t = {} while true do t[#t + 1] = string.rep('x', 10000) .. #t end",
        "max_memory_bytes = 2097152, max_call_cpu_ms = 1000, ",
        "lua_memory",
    ),
    ("mistypes", 6003, "n = 'not a number'", "", "bad_field"),
    (
        "fails",
        6004,
        "error('cannot parse this payload')",
        "",
        "lua_error",
    ),
];

/// Good payloads per stream (decoded to one record, `n` = their length) and bad ones.
const GOOD: usize = 12;
const BAD: usize = 4;

/// The misbehaving scenario in `dir`: scripts, config, pcap (good and bad payloads
/// interleaved). Returns the pcap and the number of frames.
fn misbehaving_scenario(
    dir: &Path,
    interface: &str,
    out: &Path,
    config_path: &Path,
) -> (std::path::PathBuf, u64) {
    let mut spec = ConfigSpec::xdp(interface, out);
    spec.ports = MISBEHAVING.iter().map(|m| m.1).collect();
    let mut config = spec.to_toml();
    let mut frames = Vec::new();
    for (stream, port, bad, extra, _) in MISBEHAVING {
        let script = format!(
            "function process(event, emit)\n\
               local n = #event.log.message\n\
               if event.log.message == 'bad' then\n    {bad}\n  end\n\
               event.log.n = n\n\
               emit(event)\n\
             end\n"
        );
        std::fs::write(dir.join(format!("{stream}.lua")), script).expect("script");
        config += &format!(
            "\n[[decoder]]\nname = \"{stream}\"\nports = [{port}]\n\
             lua = {{ file = \"{stream}.lua\", {extra}columns = [{{ name = \"n\", type = \"u16\" }}] }}\n"
        );
        for i in 0..GOOD + BAD {
            let payload = if i % 4 == 3 {
                b"bad".to_vec()
            } else {
                vec![b'g'; 10 + i]
            };
            frames.push(lab_gre_udp_frame(port, FIRST_SRC_PORT + i as u16, &payload));
        }
    }
    std::fs::write(config_path, config).expect("config");
    let pcap = dir.join("misbehaving.pcap");
    write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");
    (pcap, frames.len() as u64)
}

/// Every good payload of every stream recorded, with its length.
fn assert_good_records(out: &Path) {
    for (stream, ..) in MISBEHAVING {
        let got = read_sorted_u64_pairs(&out.join(stream), "src_port", "n");
        let want: Vec<(u64, u64)> = (0..GOOD + BAD)
            .filter(|i| i % 4 != 3)
            .map(|i| (u64::from(FIRST_SRC_PORT) + i as u64, 10 + i as u64))
            .collect();
        assert_eq!(got, want, "{stream}");
    }
}

fn assert_misbehaving_stats(stats: &Stats, frames: u64, what: &str) {
    let streams = MISBEHAVING.len() as u64;
    assert_eq!(
        (
            stats.seen,
            stats.recorded,
            stats.records_written,
            stats.dropped_total,
            stats.dropped.get("decode_error").copied()
        ),
        (
            frames,
            streams * GOOD as u64,
            streams * GOOD as u64,
            streams * BAD as u64,
            Some(streams * BAD as u64)
        ),
        "{what}: {stats:?}"
    );
    assert!(stats.balanced && stats.is_balanced(), "{what}: {stats:?}");
}

#[test]
fn misbehaving_scripts_are_counted_and_the_daemon_goes_on_through_replay() {
    let dir = sluice_testkit::scratch::tempdir("lua-misbehaving").expect("tempdir");
    let out = dir.path().join("records");
    let config = dir.path().join("sluice.toml");
    let (pcap, frames) = misbehaving_scenario(dir.path(), "replay0", &out, &config);
    let stats = replay(dir.path(), "replay", &config, &pcap);
    assert_misbehaving_stats(&stats, frames, "replay");
    assert_good_records(&out);
    // Each stream's first error is in the log, with its kind and the script's message.
    let log = std::fs::read_to_string(dir.path().join("replay.log")).unwrap_or_default();
    for needle in [
        "lua_budget: field None at offset 0: CPU time budget exhausted (max_call_cpu_ms = 50)",
        "lua_memory: field None at offset 0: out of memory",
        "bad_field: field Some(\"n\") at offset 0: expected an integer, got a string",
        "lua_error: field None at offset 0: fails.lua:4: cannot parse this payload",
    ] {
        assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
    }
}

#[test]
fn misbehaving_scripts_are_counted_and_the_daemon_goes_on_through_xdp() {
    const NAME: &str =
        "decoders_lua::misbehaving_scripts_are_counted_and_the_daemon_goes_on_through_xdp";
    if !xdp_prerequisites(NAME) {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("lua-misbehaving-xdp").expect("tempdir");
    let pair = NetnsPair::create().expect("namespaces");
    let out = dir.path().join("records");
    let files = RunFiles::in_dir(dir.path(), "xdp");
    let (pcap, frames) = misbehaving_scenario(dir.path(), &pair.if_b, &out, &files.config);
    let (stats, metrics) = run_xdp(&pair, &files, &pcap, frames);
    assert_misbehaving_stats(&stats, frames, "xdp");
    assert_good_records(&out);
    let want: BTreeMap<(String, String), u64> = MISBEHAVING
        .iter()
        .map(|(stream, _, _, _, kind)| ((stream.to_string(), kind.to_string()), BAD as u64))
        .collect();
    assert_eq!(decode_errors(&metrics), want);
}
