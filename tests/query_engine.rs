//! What lands in the bucket, checked with a real query engine (issue 11). Sluice's objects
//! are meant to be queried by BigQuery as hive-partitioned external tables, with the
//! schema `sluice bigquery-ddl` declares. BigQuery cannot run here; DuckDB (the venv's,
//! pinned by `cargo xtask setup`) reads hive-partitioned Parquet, gzip NDJSON and gzip CSV
//! the same way, so these tests send traffic through XDP into `sluice run` with a gcs sink
//! against the emulator (fake-gcs-server), stop the daemon with SIGTERM (which uploads
//! everything), download the bucket in its layout and read it with DuckDB
//! (`sluice_testkit::duckdb`), with the DDL's column types:
//!
//! - per format (Parquet, gzip NDJSON, gzip CSV), over tunnels of both IP families with and
//!   without keys: the columns and types DuckDB sees are the DDL's, the column names in the
//!   files are the DDL's, every `BYTES` value decodes to its `payload_len` bytes, and
//!   `count(*)` per tunnel, key and hour, `sum(payload_len)` and the inner destination
//!   ports are what was sent;
//! - NetFlow from softflowd (v5, v9, IPFIX, one GRE tunnel each) into the `flows` stream as
//!   Parquet: bytes, packets and flows per tunnel and 5-tuple, by a DuckDB `GROUP BY`,
//!   equal nfdump's reading of the same exports;
//! - two appliances, one bucket (the scale-out deployment: several machines behind a load
//!   balancer, each terminating its own tunnels, all writing under one prefix): two
//!   daemons in namespaces of their own reach one emulator in a third namespace
//!   (`NetnsHub`); their object names never collide, and DuckDB reads the bucket as one
//!   table whose aggregates are what both received, each object holding only its own
//!   appliance's tunnels.
//!
//! No test assumes one object per batch: the bucket is only read once the daemons have
//! exited. Needs root, `ip`, `tcpreplay`, the emulator, the venv's pyarrow and duckdb, and
//! for the NetFlow test softflowd, nfcapd, nfdump and tcpdump (`cargo xtask setup`). Under
//! `CI=true` a missing prerequisite fails the test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::bucket_checks::{
    RunWindow, assert_lossless_upload, assert_object_names, assert_raw_details, assert_raw_table,
    file_columns_of, map_diff, utc_partition,
};
use common::gcs_lab::{
    BUCKET, Lab, ddl_tables, download_tree_from, duckdb_columns, gcs_section_at, mixed_specs, send,
    start_in, stop, write_traffic, xdp_gcs_config,
};
use sluice_testkit::daemon::ConfigSpec;
use sluice_testkit::duckdb::{self as duck, HiveSource, ObjectFormat};
use sluice_testkit::frames::{FrameSpec, GreTunnel, OuterIp};
use sluice_testkit::gcs::Emulator;
use sluice_testkit::netflow_peers::{Export, FlowKey, PeerLab, TOOLS};
use sluice_testkit::netns::{HUB_SERVICE_V4, NetnsHub, NetnsPair};
use sluice_testkit::privilege::require_tool;
use sluice_testkit::records::Record;
use sluice_testkit::stats::Stats;

const NAME: &str = "query_engine";
/// Inner destination ports of the raw traffic (all steered).
const PORTS: [u16; 3] = [5000, 5001, 5002];

/// `count` frames of the test kit's GRE matrix (four IPv4 and four IPv6 tunnel sources,
/// keyed and unkeyed, inner IPv4 and IPv6), with inner destination ports cycling over
/// [`PORTS`] and payloads of varied lengths, so that the sums mean something.
fn raw_specs(tag: &str, count: usize) -> Vec<FrameSpec> {
    let mut specs = mixed_specs(tag, count);
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.inner.dst_port = PORTS[i % PORTS.len()];
        spec.inner
            .payload
            .extend(std::iter::repeat_n(b'.', i * 7 % 53));
    }
    // What the tests claim to cover, kept true if the matrix changes.
    let families: BTreeSet<bool> = specs
        .iter()
        .filter_map(|s| s.tunnel.as_ref().map(|t| t.outer.src().is_ipv6()))
        .collect();
    let keyed: BTreeSet<bool> = specs
        .iter()
        .filter_map(|s| s.tunnel.as_ref().map(|t| t.key.is_some()))
        .collect();
    assert_eq!(
        (families.len(), keyed.len()),
        (2, 2),
        "IPv4 and IPv6 tunnels, with and without key"
    );
    specs
}

/// The `bigquery-ddl` statement of the config text `config` (written to `path`): its text
/// and each table's columns with their BigQuery types.
fn ddl_for(config: &str, path: &Path) -> (String, BTreeMap<String, Vec<(String, String)>>) {
    std::fs::write(path, config).expect("config");
    let (ddl, _) = common::gcs_lab::ddl_of(path);
    let tables = ddl_tables(&ddl);
    (ddl, tables)
}

/// Mixed tunnels through XDP into the bucket in `format`; DuckDB reads the downloaded
/// bucket with the DDL's types and finds what was sent.
fn bucket_reads_as_sent(format: ObjectFormat) {
    let Some((emulator, python)) = common::gcs_lab::prerequisites(NAME) else {
        return;
    };
    let started = std::time::Instant::now();
    let what = format.sink_format();
    let lab = Lab::new(&format!("query-{what}"), &emulator, python);
    let mut spec = lab.config(what, &lab.path("spool"), "");
    spec.ports = PORTS.to_vec();
    let (ddl, tables) = ddl_for(&spec.to_toml(), &lab.path("ddl.toml"));
    let ddl_format = match format {
        ObjectFormat::Parquet => "format = 'PARQUET'",
        ObjectFormat::NdjsonGzip => "format = 'NEWLINE_DELIMITED_JSON'",
        ObjectFormat::CsvGzip => "format = 'CSV'",
    };
    assert!(ddl.contains(ddl_format), "{what}: {ddl}");
    let raw_columns = tables.get("raw").cloned().expect("the DDL has a raw table");

    const COUNT: usize = 3000;
    let specs = raw_specs(what, COUNT);
    let (pcap, expected) = write_traffic(lab.dir.path(), what, &specs);
    let (sluice, _) = lab.start(&spec, "run");
    let first = utc_partition();
    send(&lab.pair, &pcap, 3000, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let stats = stop(sluice);
    let window = RunWindow {
        first,
        last: utc_partition(),
    };
    assert_lossless_upload(&stats, COUNT, what);

    let bucket = lab.path("bucket");
    let objects = lab.download_tree(&bucket);
    assert_object_names(&objects, "raw", format.extension(), what);
    let source = HiveSource {
        root: &bucket.join("raw"),
        format,
        ddl_columns: &raw_columns,
    };
    let table = duck::read_hive(&lab.python, &source).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_raw_table(&table, &raw_columns, &expected, &window, what);
    assert_raw_details(&lab.python, &source, &window, what);
    eprintln!(
        "{what}: {} objects, {} rows, {} tunnel/key/hour groups, {:?}",
        objects.len(),
        table.rows,
        table.groups.len(),
        started.elapsed()
    );
}

#[test]
fn parquet_bucket_reads_in_duckdb_as_the_ddl_declares_and_sums_to_what_was_sent() {
    bucket_reads_as_sent(ObjectFormat::Parquet);
}

#[test]
fn ndjson_gzip_bucket_reads_in_duckdb_as_the_ddl_declares_and_sums_to_what_was_sent() {
    bucket_reads_as_sent(ObjectFormat::NdjsonGzip);
}

#[test]
fn csv_gzip_bucket_reads_in_duckdb_as_the_ddl_declares_and_sums_to_what_was_sent() {
    bucket_reads_as_sent(ObjectFormat::CsvGzip);
}

const EXPORTS: [Export; 4] = [Export::V5, Export::V9, Export::Ipfix, Export::IpfixMillis];

/// The tunnel an export version travels in (one per version, keyed).
fn export_tunnel(index: usize) -> GreTunnel {
    GreTunnel {
        outer: OuterIp::V4 {
            src: Ipv4Addr::new(192, 0, 2, 10 + index as u8),
            dst: Ipv4Addr::new(192, 0, 2, 1),
            options_words: 0,
        },
        checksum: false,
        key: Some(100 + index as u32),
        sequence: None,
    }
}

/// Flows, packets and bytes per tunnel and 5-tuple (the flow's own ports, not the export
/// packet's `src_port`/`dst_port`).
const FLOWS_PER_FIVE_TUPLE: &str = "SELECT tunnel_src, src_addr, dst_addr, netflow_src_port, \
    netflow_dst_port, protocol, count(*), sum(packets), sum(bytes) FROM t GROUP BY ALL";

/// Flows, packets and bytes of one 5-tuple.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FlowSums {
    flows: u64,
    packets: u64,
    bytes: u64,
}

/// softflowd exports the kit's sample traffic as NetFlow v5, v9 and IPFIX (nfcapd/nfdump
/// read each), each export goes through its own GRE tunnel into `sluice run` with a
/// `netflow` decoder uploading Parquet; DuckDB's `GROUP BY` of the `flows` table per
/// tunnel and 5-tuple gives nfdump's flows, packets and bytes.
#[test]
fn netflow_in_the_bucket_sums_per_five_tuple_as_nfdump_reads_the_exports() {
    let Some((emulator, python)) = common::gcs_lab::prerequisites(NAME) else {
        return;
    };
    if !TOOLS.iter().all(|t| require_tool(NAME, t)) {
        return;
    }
    let started = std::time::Instant::now();
    let lab = Lab::new("query-netflow", &emulator, python);
    let traffic_pcap = lab.path("traffic.pcap");
    sluice_testkit::netflow_peers::write_traffic_pcap(
        &traffic_pcap,
        &sluice_testkit::netflow_peers::sample_traffic(),
    )
    .expect("traffic pcap");
    // The real exporter and collector, in namespaces of their own.
    let runs: Vec<_> = {
        let mut peers = PeerLab::create().expect("peer lab");
        EXPORTS
            .iter()
            .map(|export| peers.run(&traffic_pcap, *export).expect("peer run"))
            .collect()
    };
    let mut specs = Vec::new();
    let mut ports = BTreeSet::new();
    for (i, run) in runs.iter().enumerate() {
        assert!(
            !run.datagrams.is_empty(),
            "{:?}: nothing exported",
            run.export
        );
        ports.extend(run.datagrams.iter().map(|d| d.dst_port));
        specs.extend(run.frames_in(&export_tunnel(i)));
    }
    let frames: Vec<Vec<u8>> = specs.iter().map(FrameSpec::build).collect();
    let pcap = lab.path("exports-in-gre.pcap");
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");

    let mut spec = lab.config("parquet", &lab.path("spool"), "");
    spec.ports = ports.iter().copied().collect();
    let port_list = spec
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let config = spec.to_toml()
        + &format!("\n[[decoder]]\nname = \"flows\"\nports = [{port_list}]\nnetflow = {{}}\n");
    let (_, tables) = ddl_for(&config, &lab.path("ddl.toml"));
    let flow_columns = tables
        .get("flows")
        .cloned()
        .expect("the DDL has a flows table");

    let (sluice, _) = lab.start_toml(&config, "netflow");
    send(&lab.pair, &pcap, 500, frames.len());
    std::thread::sleep(Duration::from_millis(500));
    let stats = stop(sluice);
    assert_lossless_upload(&stats, frames.len(), "netflow");
    let want_flows: usize = runs.iter().map(|r| r.nfdump.len()).sum();
    assert_eq!(
        stats.records_written, want_flows as u64,
        "flows recorded vs nfdump's: {stats:?}"
    );

    let bucket = lab.path("bucket");
    let objects = lab.download_tree(&bucket);
    assert_object_names(&objects, "flows", ".parquet", "netflow");
    let source = HiveSource {
        root: &bucket.join("flows"),
        format: ObjectFormat::Parquet,
        ddl_columns: &flow_columns,
    };
    let out = duck::query(&lab.python, &source, &[FLOWS_PER_FIVE_TUPLE])
        .unwrap_or_else(|e| panic!("netflow: {e}"));
    assert_eq!(
        out.columns,
        duckdb_columns(&flow_columns),
        "the flows table's columns and types in DuckDB (left) vs the DDL (right)"
    );
    let ddl_names = file_columns_of(&flow_columns);
    assert_eq!(
        out.file_columns, ddl_names,
        "column names in the Parquet files (left) vs the DDL (right)"
    );

    // DuckDB's sums per (tunnel, 5-tuple).
    let mut ours: BTreeMap<(String, FlowKey), FlowSums> = BTreeMap::new();
    for row in &out.results[0] {
        let text = |i: usize| row[i].as_str().unwrap_or_else(|| panic!("{row:?}"));
        let num = |i: usize| row[i].as_u64().unwrap_or_else(|| panic!("{row:?}"));
        let ip = |i: usize| {
            text(i)
                .parse::<IpAddr>()
                .unwrap_or_else(|e| panic!("{e}: {row:?}"))
        };
        let key = FlowKey {
            src: ip(1),
            dst: ip(2),
            src_port: u16::try_from(num(3)).expect("port"),
            dst_port: u16::try_from(num(4)).expect("port"),
            protocol: u8::try_from(num(5)).expect("protocol"),
        };
        let sums = FlowSums {
            flows: num(6),
            packets: num(7),
            bytes: num(8),
        };
        assert!(
            ours.insert((text(0).to_owned(), key), sums).is_none(),
            "{row:?} twice"
        );
    }
    // nfdump's, per export's tunnel.
    let mut theirs: BTreeMap<(String, FlowKey), FlowSums> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let tunnel = export_tunnel(i).outer.src().to_string();
        for flow in &run.nfdump {
            let sums = theirs.entry((tunnel.clone(), flow.key)).or_default();
            sums.flows += 1;
            sums.packets += flow.packets;
            sums.bytes += flow.bytes;
        }
    }
    let diff = map_diff(&ours, &theirs);
    assert!(
        diff.is_empty(),
        "{} of {} (tunnel, 5-tuple) groups differ ((tunnel, key), DuckDB, nfdump): {diff:#?}",
        diff.len(),
        theirs.len()
    );
    eprintln!(
        "netflow: {} export frames, {} flows in {} (tunnel, 5-tuple) groups, {} objects, {:?}",
        frames.len(),
        want_flows,
        theirs.len(),
        objects.len(),
        started.elapsed()
    );
}

/// Rows and payload bytes per object host (`<host>-...` in the object's name: the
/// appliance that wrote it), tunnel and key.
const ROWS_PER_OBJECT_HOST: &str = "SELECT split_part(parse_filename(filename), '-', 1), \
    tunnel_src, gre_key, count(*), sum(payload_len) FROM files GROUP BY ALL";

/// One appliance of the scale-out test: its namespaces, host name and traffic.
struct Appliance {
    pair: NetnsPair,
    host: &'static str,
    specs: Vec<FrameSpec>,
    expected: Vec<Record>,
    pcap: PathBuf,
}

/// Two `sluice run`s, each in its own receiving namespace with its own sender, its own
/// `sink.host`, spool and tunnels, upload into one bucket under one prefix on an emulator
/// that both reach over veths (a third namespace, `NetnsHub`). No object name collides,
/// and DuckDB reads the bucket as one table with what both received.
#[test]
fn two_appliances_write_one_bucket_that_reads_as_one_table() {
    let Some((emulator_binary, python)) = common::gcs_lab::prerequisites(NAME) else {
        return;
    };
    let started = std::time::Instant::now();
    let dir = sluice_testkit::scratch::tempdir("gcs-query-two").expect("tempdir");
    // Each appliance terminates its own tunnels: the matrix's tunnel sources ending in an
    // odd number (192.0.2.1, .3, 2001:db8:2::a:1, ::a:3) go to the first, the rest to the
    // second.
    const COUNT: usize = 4000;
    let all = raw_specs("two", COUNT);
    let odd = |spec: &FrameSpec| match spec.tunnel.as_ref().map(|t| t.outer.src()) {
        Some(IpAddr::V4(a)) => a.octets()[3] % 2 == 1,
        Some(IpAddr::V6(a)) => a.segments()[7] % 2 == 1,
        None => unreachable!("every raw spec is tunnelled"),
    };
    let appliances: Vec<Appliance> = [("edge1", true), ("edge2", false)]
        .into_iter()
        .map(|(host, parity)| {
            let specs: Vec<FrameSpec> = all.iter().filter(|s| odd(s) == parity).cloned().collect();
            let (pcap, expected) = write_traffic(dir.path(), host, &specs);
            Appliance {
                pair: NetnsPair::create().expect("namespaces"),
                host,
                specs,
                expected,
                pcap,
            }
        })
        .collect();
    // Declared after the pairs and before the daemons: dropped (deleted) after the
    // emulator in it is stopped and before the pairs.
    let hub = NetnsHub::create(&[&appliances[0].pair.b, &appliances[1].pair.b]).expect("hub");
    let emulator = Emulator::start_in(
        Some(hub.name()),
        &emulator_binary,
        &HUB_SERVICE_V4.to_string(),
        &dir.path().join("emulator"),
        &[BUCKET],
    );
    let (ddl, tables) = {
        let spec = appliance_config(&appliances[0], dir.path());
        ddl_for(&spec.to_toml(), &dir.path().join("ddl.toml"))
    };
    assert!(ddl.contains("format = 'PARQUET'"), "{ddl}");
    let raw_columns = tables.get("raw").cloned().expect("the DDL has a raw table");

    let running: Vec<_> = appliances
        .iter()
        .map(|a| {
            let spec = appliance_config(a, dir.path());
            start_in(&a.pair.b, dir.path(), &spec.to_toml(), a.host)
        })
        .collect();
    let first = utc_partition();
    std::thread::scope(|scope| {
        for a in &appliances {
            scope.spawn(move || send(&a.pair, &a.pcap, 2000, a.specs.len()));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let stats: Vec<Stats> = running
        .into_iter()
        .map(|(sluice, _)| stop(sluice))
        .collect();
    let window = RunWindow {
        first,
        last: utc_partition(),
    };
    for (a, stats) in appliances.iter().zip(&stats) {
        assert_lossless_upload(stats, a.specs.len(), a.host);
    }

    let bucket = dir.path().join("bucket");
    let objects = download_tree_from(&emulator, &bucket);
    drop(emulator);
    drop(hub);
    assert_object_names(&objects, "raw", ".parquet", "two appliances");
    // Every object is one appliance's by name, and both wrote some.
    let mut by_host: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for name in &objects {
        let file = name.rsplit('/').next().unwrap_or(name);
        let hosts: Vec<&str> = appliances
            .iter()
            .map(|a| a.host)
            .filter(|h| file.starts_with(&format!("{h}-")))
            .collect();
        assert_eq!(hosts.len(), 1, "{name}: not exactly one appliance's name");
        by_host.entry(hosts[0]).or_default().push(name);
    }
    assert_eq!(
        by_host.keys().copied().collect::<Vec<_>>(),
        ["edge1", "edge2"],
        "both appliances' objects: {objects:?}"
    );
    let distinct: BTreeSet<&String> = objects.iter().collect();
    assert_eq!(distinct.len(), objects.len(), "{objects:?}");

    // One table: the aggregates of both appliances' records together.
    let source = HiveSource {
        root: &bucket.join("raw"),
        format: ObjectFormat::Parquet,
        ddl_columns: &raw_columns,
    };
    let both: Vec<Record> = appliances
        .iter()
        .flat_map(|a| a.expected.iter().cloned())
        .collect();
    let table = duck::read_hive(&python, &source).unwrap_or_else(|e| panic!("{e}"));
    assert_raw_table(&table, &raw_columns, &both, &window, "two appliances");
    assert_raw_details(&python, &source, &window, "two appliances");
    // And each appliance's objects hold exactly its own tunnels' records.
    let out =
        duck::query(&python, &source, &[ROWS_PER_OBJECT_HOST]).unwrap_or_else(|e| panic!("{e}"));
    let mut got: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for row in &out.results[0] {
        let key = (
            row[0].as_str().expect("host").to_owned(),
            duck::group_key(row[1].as_str(), row[2].as_u64().map(|k| k as u32), 0),
        );
        let sums = (
            row[3].as_u64().expect("count"),
            row[4].as_u64().expect("sum"),
        );
        got.insert(key, sums);
    }
    let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for a in &appliances {
        for r in &a.expected {
            let key = (
                a.host.to_owned(),
                duck::group_key(r.tunnel_src.as_deref(), r.gre_key, 0),
            );
            let sums = want.entry(key).or_default();
            sums.0 += 1;
            sums.1 += r.payload_len as u64;
        }
    }
    let diff = map_diff(&got, &want);
    assert!(
        diff.is_empty(),
        "(count, sum(payload_len)) per object host and tunnel_src|gre_key differs \
         ((host, key), DuckDB, sent): {diff:?}"
    );
    eprintln!(
        "two appliances: {} + {} frames, objects {:?}, {:?}",
        appliances[0].specs.len(),
        appliances[1].specs.len(),
        by_host
            .iter()
            .map(|(h, o)| (*h, o.len()))
            .collect::<Vec<_>>(),
        started.elapsed()
    );
}

/// The appliance's config: XDP on its receiving veth, Parquet, its own host name and
/// spool, uploading to the emulator in the hub.
fn appliance_config(a: &Appliance, dir: &Path) -> ConfigSpec {
    let mut spec = xdp_gcs_config(
        &a.pair.if_b,
        &dir.join("unused-directory"),
        "parquet",
        gcs_section_at(
            &HUB_SERVICE_V4.to_string(),
            &dir.join(format!("spool-{}", a.host)),
            "",
        ),
    );
    spec.ports = PORTS.to_vec();
    spec.host = Some(a.host.to_owned());
    spec
}
