//! The appliance end to end into Cloud Storage: GRE frames through XDP and AF_XDP in a
//! network namespace, `sluice run` with `sink.kind = "gcs"`, and a real emulator
//! (fake-gcs-server) on that namespace's loopback. Every object is downloaded and read by
//! an independent reader (Python: gzip + json from the standard library, pyarrow for
//! Parquet) and compared with the packets sent, one by one.
//!
//! Covers the happy path (gzip NDJSON, CSV and Parquet, over a mix of tunnels, keys and
//! ports; for Parquet the `bigquery-ddl` column types are checked against the Parquet
//! schema, and DuckDB reads the bucket as one hive-partitioned table whose columns, types
//! and aggregates must be the DDL's and what was sent), a ~30 s outage during traffic, a SIGKILL while
//! uploads are in flight (then a restart), a full spool with the emulator down, and the
//! start-up errors (unknown bucket, unreachable endpoint, unwritable spool directory).
//!
//! Needs root, `ip`, `tcpreplay`, the emulator and the venv's pyarrow and duckdb (`cargo
//! xtask setup`). Under `CI=true` a missing prerequisite fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_testkit::daemon::{self, ConfigSpec, RunFiles, RunningSluice};
use sluice_testkit::duckdb::{self as duck, HiveTable};
use sluice_testkit::frames::{FrameSpec, MatrixParams, variant_matrix};
use sluice_testkit::gcs::{Emulator, emulator_binary, wait_until};
use sluice_testkit::netns::NetnsPair;
use sluice_testkit::privilege::{require, require_root, require_tool};
use sluice_testkit::records::{self, Record};
use sluice_testkit::stats::Stats;
use sluice_testkit::tcpreplay::{self, ReplayParams};

const NAME: &str = "upload_gcs";
const BUCKET: &str = "sluice-e2e";
/// The emulator's address on the receiving namespace's loopback.
const EMULATOR_ADDRESS: &str = "127.0.0.1";
/// The daemon's default metrics port, on the receiving namespace's loopback.
const METRICS_PORT: u16 = 9464;

fn sluice_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// Root, tools, the emulator, pyarrow and duckdb; `None` (after saying why) outside CI.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    if !(require_root(NAME) && ["ip", "tcpreplay"].iter().all(|t| require_tool(NAME, t))) {
        return None;
    }
    let emulator = emulator_binary();
    let python = sluice_testkit::python::venv_python(&["pyarrow", "duckdb"]);
    let found = require(
        NAME,
        emulator.is_some(),
        "needs fake-gcs-server (run `cargo xtask setup`)",
    ) && require(
        NAME,
        python.is_some(),
        "needs the venv with pyarrow and duckdb (run `cargo xtask setup`)",
    );
    if !found {
        return None;
    }
    emulator.zip(python)
}

/// A GRE frame (IPv4 outer, key) carrying `payload` to port 5000.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut spec: FrameSpec = variant_matrix(&MatrixParams::default())
        .into_iter()
        .find(|(label, _)| label == "gre-o4-i4-vlan0--K-")
        .map(|(_, spec)| spec)
        .expect("the matrix has a keyed IPv4 GRE variant");
    spec.inner.dst_port = 5000;
    spec.inner.payload = payload.to_vec();
    spec.build()
}

/// `count` unique payloads `<tag>-<n>`, each on the next GRE variant of the test kit's
/// matrix in turn (IPv4/IPv6 outer and inner, with and without key, checksum, sequence and
/// VLAN tags, ports 5000 and 5001), as a pcap in `dir`; returns the records Sluice must
/// write for them.
fn mixed_traffic(dir: &Path, tag: &str, count: usize) -> (PathBuf, Vec<Record>) {
    let params = MatrixParams {
        include_plain: false,
        ..MatrixParams::default()
    };
    let variants: Vec<FrameSpec> = variant_matrix(&params)
        .into_iter()
        .map(|(_, spec)| spec)
        .collect();
    let specs: Vec<FrameSpec> = (0..count)
        .map(|i| {
            let mut spec = variants[i % variants.len()].clone();
            spec.inner.payload = format!("{tag}-{i:07}").into_bytes();
            spec
        })
        .collect();
    let frames: Vec<Vec<u8>> = specs.iter().map(FrameSpec::build).collect();
    let pcap = dir.join(format!("{tag}-mixed.pcap"));
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");
    (pcap, specs.iter().map(records::expected_record).collect())
}

/// `count` unique payloads `<tag>-<n>`, starting at `first`, as a pcap in `dir`.
fn traffic(dir: &Path, tag: &str, first: usize, count: usize) -> (PathBuf, Vec<String>) {
    let payloads: Vec<String> = (first..first + count)
        .map(|i| format!("{tag}-{i:07}"))
        .collect();
    let frames: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p.as_bytes())).collect();
    let pcap = dir.join(format!("{tag}-{first}.pcap"));
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");
    (pcap, payloads)
}

fn send(pair: &NetnsPair, pcap: &Path, pps: u32, count: usize) {
    let sent = tcpreplay::send(
        &pair.a,
        &pair.if_a,
        pcap,
        ReplayParams {
            pps,
            loops: 1,
            timeout: Duration::from_secs(120),
        },
    )
    .expect("tcpreplay");
    assert_eq!(sent.successful, count as u64, "{sent:?}");
}

/// Sends `pcap` at `pps` from the sending namespace on a thread of its own (tcpreplay,
/// bounded by the capture's length); the handle says whether tcpreplay succeeded.
fn send_in_background(
    pair: &NetnsPair,
    pcap: PathBuf,
    pps: u32,
) -> std::thread::JoinHandle<std::io::Result<bool>> {
    let (netns, interface) = (pair.a.name().to_owned(), pair.if_a.clone());
    std::thread::spawn(move || {
        let pps = pps.to_string();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "tcpreplay",
                "-q",
                "--pps",
                &pps,
                "-i",
            ])
            .arg(&interface)
            .arg(&pcap)
            .output()
            .map(|out| out.status.success())
    })
}

/// The `[sink.gcs]` body for the emulator, with quick retries.
fn gcs_section(spool: &Path, extra: &str) -> String {
    format!(
        "bucket = \"{BUCKET}\"\nprefix = \"e2e\"\nendpoint = \"http://{EMULATOR_ADDRESS}\"\n\
         credentials = \"anonymous\"\nspool_dir = \"{}\"\nconcurrency = 4\n\
         attempt_timeout_secs = 5\nbackoff_min_ms = 100\nbackoff_max_ms = 2000\n\
         shutdown_grace_secs = 20\n{extra}",
        spool.display()
    )
}

/// One test's namespaces, emulator and files.
struct Lab {
    dir: sluice_testkit::scratch::TempDir,
    pair: NetnsPair,
    emulator: Emulator,
    python: PathBuf,
}

impl Lab {
    fn new(test: &str, emulator_binary: &Path, python: PathBuf) -> Lab {
        let dir = sluice_testkit::scratch::tempdir(&format!("{NAME}-{test}")).expect("tempdir");
        let pair = NetnsPair::create().expect("namespaces");
        let emulator = Emulator::start_in(
            Some(pair.b.name()),
            emulator_binary,
            EMULATOR_ADDRESS,
            &dir.path().join("emulator"),
            &[BUCKET],
        );
        Lab {
            dir,
            pair,
            emulator,
            python,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, format: &str, spool: &Path, extra: &str) -> ConfigSpec {
        let mut spec = ConfigSpec::xdp(&self.pair.if_b, &self.path("unused-directory"));
        spec.ports = vec![5000];
        spec.plain_udp = false;
        spec.format = Some(format.to_owned());
        spec.gcs = Some(gcs_section(spool, extra));
        spec
    }

    fn start(&self, spec: &ConfigSpec, run: &str) -> (RunningSluice, RunFiles) {
        let files = RunFiles::in_dir(self.dir.path(), run);
        spec.write(&files.config).expect("config");
        let mut sluice = daemon::start_run(&sluice_binary(), &self.pair.b, &files).expect("start");
        sluice
            .wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        (sluice, files)
    }

    /// Every object under the prefix, downloaded into `dir`; returns their names.
    fn download_all(&self, into: &Path) -> Vec<String> {
        std::fs::create_dir_all(into).expect("download dir");
        let objects = self.emulator.list(BUCKET, "e2e/");
        for (i, (name, size)) in objects.iter().enumerate() {
            let bytes = self.emulator.download(BUCKET, name);
            assert_eq!(bytes.len() as u64, *size, "{name}");
            let file = name.rsplit('/').next().unwrap_or("object");
            std::fs::write(into.join(format!("{i:05}-{file}")), bytes).expect("write object");
        }
        objects.into_iter().map(|(name, _)| name).collect()
    }

    /// Every object under the prefix, downloaded into `into` under its name without the
    /// prefix (`<stream>/dt=.../hour=.../<name>`): the bucket's layout, for DuckDB.
    fn download_tree(&self, into: &Path) {
        for (name, size) in self.emulator.list(BUCKET, "e2e/") {
            let bytes = self.emulator.download(BUCKET, &name);
            assert_eq!(bytes.len() as u64, size, "{name}");
            let path = into.join(name.trim_start_matches("e2e/"));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("object dir");
            }
            std::fs::write(&path, bytes).expect("write object");
        }
    }

    /// The payloads of every record in the downloaded objects, read by Python.
    fn read_payloads(&self, dir: &Path) -> Vec<String> {
        let script = self.path("read_objects.py");
        std::fs::write(&script, READER).expect("script");
        let out = Command::new(&self.python)
            .arg(&script)
            .arg(dir)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "reader failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut payloads: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        payloads.sort();
        payloads
    }

    fn scrape(&self, port: u16) -> String {
        let name = self.pair.b.name().to_owned();
        sluice_testkit::netns::run_in_named(&name, || http_get(port, "/metrics"))
            .expect("enter namespace")
            .unwrap_or_default()
    }
}

/// Reads each downloaded object with an independent reader and prints one payload per
/// line (Parquet: pyarrow; `.ndjson.gz`: gzip + json; `.csv.gz`: gzip + csv).
const READER: &str = r#"
import base64, csv, gzip, io, json, os, sys
import pyarrow.parquet as pq
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    path = os.path.join(d, name)
    if name.endswith(".parquet"):
        table = pq.read_table(path)
        for p in table.column("payload").to_pylist():
            print(p.decode())
    elif name.endswith(".ndjson.gz"):
        with gzip.open(path, "rt") as f:
            for line in f:
                print(base64.b64decode(json.loads(line)["payload"]).decode())
    elif name.endswith(".csv.gz"):
        with gzip.open(path, "rt", newline="") as f:
            for row in csv.DictReader(f):
                print(base64.b64decode(row["payload"]).decode())
    else:
        sys.exit("unexpected object " + name)
"#;

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// The value of an unlabelled sample (or one with exactly `labels`) in a scrape.
fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn stop(sluice: RunningSluice, files: &RunFiles) -> Stats {
    let (status, in_time, stats) = sluice
        .stop(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        in_time && status.success(),
        "sluice exit on SIGTERM: {status} (in time: {in_time}); log:\n{}",
        daemon::log_tail(&files.log, 40)
    );
    stats
}

fn assert_exactly_once(mut got: Vec<String>, sent: &[String], what: &str) {
    got.sort();
    let mut want = sent.to_vec();
    want.sort();
    if got != want {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for p in &got {
            *counts.entry(p).or_default() += 1;
        }
        for p in &want {
            *counts.entry(p).or_default() -= 1;
        }
        let wrong: Vec<_> = counts.iter().filter(|(_, n)| **n != 0).take(10).collect();
        panic!(
            "{what}: {} records read, {} packets sent; first differences (+extra/-missing): {wrong:?}",
            got.len(),
            want.len()
        );
    }
}

/// The current UTC hour (0-23).
fn utc_hour() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs / 3600 % 24).unwrap_or(0)
}

/// Sends a mix of tunnels, keys and ports through XDP into the bucket and checks that
/// every packet became exactly one record in an object of the right name; returns the
/// lab (its objects still in the emulator), the records that were sent and the UTC hours
/// the run started and ended in.
fn happy_path(format: &str, extension: &str) -> Option<(Lab, Vec<Record>, (u32, u32))> {
    let (emulator, python) = prerequisites()?;
    let lab = Lab::new(format, &emulator, python);
    let spool = lab.path("spool");
    let mut spec = lab.config(format, &spool, "");
    spec.ports = vec![5000, 5001];
    let (sluice, files) = lab.start(&spec, "run");
    const COUNT: usize = 4000;
    let (pcap, expected) = mixed_traffic(lab.dir.path(), format, COUNT);
    let sent: Vec<String> = expected
        .iter()
        .map(|r| {
            let bytes = base64_decode(&r.payload);
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect();
    let first_hour = utc_hour();
    send(&lab.pair, &pcap, 4000, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let stats = stop(sluice, &files);
    let last_hour = utc_hour();

    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(
        (stats.seen, stats.recorded, stats.dropped_total),
        (COUNT as u64, COUNT as u64, 0)
    );
    let upload = stats.upload.clone().expect("upload account");
    assert_eq!(upload.left_spooled_files, 0, "{upload:?}");
    let objects = lab.download_all(&lab.path("objects"));
    assert_eq!(objects.len() as u64, stats.files_written, "{objects:?}");
    assert_eq!(upload.uploaded + upload.already_there, stats.files_written);
    for name in &objects {
        assert!(
            name.starts_with("e2e/raw/dt=") && name.contains("/hour=") && name.ends_with(extension),
            "object name {name}"
        );
    }
    assert_exactly_once(
        lab.read_payloads(&lab.path("objects")),
        &sent,
        "objects vs packets",
    );
    Some((lab, expected, (first_hour, last_hour)))
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64 payload")
}

#[test]
fn ndjson_gzip_objects_hold_exactly_the_packets_sent() {
    happy_path("ndjson_gzip", ".ndjson.gz");
}

#[test]
fn csv_gzip_objects_hold_exactly_the_packets_sent() {
    happy_path("csv_gzip", ".csv.gz");
}

/// The `bigquery-ddl` statement for `config`, and its columns (partition columns
/// included) with their BigQuery types, in order.
fn ddl_of(config: &Path) -> (String, Vec<(String, String)>) {
    let out = Command::new(sluice_binary())
        .args(["bigquery-ddl", "--dataset", "proj.telemetry", "--config"])
        .arg(config)
        .output()
        .expect("bigquery-ddl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ddl = String::from_utf8_lossy(&out.stdout).into_owned();
    let columns = ddl
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            let rest = l.strip_prefix('`')?;
            let (name, ty) = rest.split_once("` ")?;
            Some((name.to_owned(), ty.to_owned()))
        })
        .collect();
    (ddl, columns)
}

/// What DuckDB must see in the bucket for `expected` records received in hour `hour`.
fn expected_table(ddl_columns: &[(String, String)], expected: &[Record], hour: u32) -> HiveTable {
    let columns = ddl_columns
        .iter()
        .map(|(name, bigquery)| {
            let duck = duck::duckdb_type(bigquery)
                .unwrap_or_else(|| panic!("no DuckDB type for {name} {bigquery}"));
            (name.clone(), duck.to_owned())
        })
        .collect();
    let mut groups = BTreeMap::new();
    for r in expected {
        *groups
            .entry(duck::group_key(r.tunnel_src.as_deref(), r.gre_key, hour))
            .or_default() += 1;
    }
    let mut dst_ports: Vec<u16> = expected.iter().map(|r| r.dst_port).collect();
    dst_ports.sort_unstable();
    dst_ports.dedup();
    HiveTable {
        columns,
        groups,
        rows: expected.len() as u64,
        payload_bytes: expected.iter().map(|r| r.payload_len as u64).sum(),
        dst_ports,
    }
}

/// Parquet read back by pyarrow; the `bigquery-ddl` statement's column types are the ones
/// BigQuery derives from the Parquet schema pyarrow sees; DuckDB reads the downloaded
/// bucket as one hive-partitioned table (`dt`, `hour`) with exactly the DDL's columns and
/// types, and its counts per tunnel, key and hour, payload bytes and inner destination
/// ports are what was sent.
#[test]
fn parquet_objects_hold_exactly_the_packets_sent_and_match_the_ddl() {
    let Some((lab, expected, (first_hour, last_hour))) = happy_path("parquet", ".parquet") else {
        return;
    };
    let spec = lab.config("parquet", &lab.path("spool"), "");
    let config = lab.path("ddl.toml");
    spec.write(&config).expect("config");
    let (_, ddl_columns) = ddl_of(&config);
    lab.download_tree(&lab.path("bucket"));
    let table = duck::read_hive_parquet(&lab.python, &lab.path("bucket/raw"))
        .unwrap_or_else(|e| panic!("{e}"));
    let want = expected_table(&ddl_columns, &expected, first_hour);
    if first_hour == last_hour {
        assert_eq!(table, want);
    } else {
        // The run straddled an hour: the records are split between the two hours.
        let later = expected_table(&ddl_columns, &expected, last_hour);
        assert_eq!(
            (
                &table.columns,
                table.rows,
                table.payload_bytes,
                &table.dst_ports
            ),
            (
                &want.columns,
                want.rows,
                want.payload_bytes,
                &want.dst_ports
            )
        );
        let per_tunnel = |t: &HiveTable| {
            let mut sums: BTreeMap<String, u64> = BTreeMap::new();
            for (key, n) in &t.groups {
                let tunnel = key.rsplit_once('|').map_or(key.as_str(), |(t, _)| t);
                *sums.entry(tunnel.to_owned()).or_default() += n;
            }
            sums
        };
        assert_eq!(per_tunnel(&table), per_tunnel(&want));
        assert!(
            table
                .groups
                .keys()
                .all(|k| want.groups.contains_key(k) || later.groups.contains_key(k)),
            "{table:?}"
        );
    }
}

/// The DDL of the default-format (Parquet) gcs config, and the Parquet schema pyarrow
/// sees in a file Sluice wrote for it, agree column by column.
#[test]
fn parquet_ddl_types_match_the_parquet_schema() {
    let Some((emulator, python)) = prerequisites() else {
        return;
    };
    let lab = Lab::new("ddl", &emulator, python.clone());
    // The daemon's default format: the config names none.
    let spec = ConfigSpec {
        format: None,
        ..lab.config("parquet", &lab.path("spool"), "")
    };
    let config = lab.path("ddl.toml");
    spec.write(&config).expect("config");
    let (ddl, columns) = ddl_of(&config);
    assert!(
        ddl.contains("CREATE EXTERNAL TABLE `proj.telemetry.raw`"),
        "{ddl}"
    );
    assert!(
        ddl.contains("uris = ['gs://sluice-e2e/e2e/raw/*']"),
        "{ddl}"
    );
    assert!(
        ddl.contains("hive_partition_uri_prefix = 'gs://sluice-e2e/e2e/raw'"),
        "{ddl}"
    );
    assert!(ddl.contains("format = 'PARQUET'"), "{ddl}");
    // Column → BigQuery type, as the DDL says and as pyarrow's schema implies.
    let ddl_types: BTreeMap<String, String> = columns
        .into_iter()
        .filter(|(name, _)| name != "dt" && name != "hour")
        .collect();
    // A file of the same stream and format, written by sluice itself.
    let (sluice, files) = lab.start(&spec, "ddl-run");
    let (pcap, _) = traffic(lab.dir.path(), "ddl", 0, 10);
    send(&lab.pair, &pcap, 1000, 10);
    std::thread::sleep(Duration::from_millis(500));
    let _ = stop(sluice, &files);
    lab.download_all(&lab.path("ddl-objects"));
    let script = lab.path("schema.py");
    std::fs::write(&script, SCHEMA_TYPES).expect("script");
    let out = Command::new(&python)
        .arg(&script)
        .arg(lab.path("ddl-objects"))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parquet_types: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect();
    assert_eq!(ddl_types, parquet_types);
}

/// The BigQuery type of each Parquet column (the mapping BigQuery documents for Parquet
/// external tables), from the first downloaded object's schema.
const SCHEMA_TYPES: &str = r#"
import os, sys
import pyarrow as pa, pyarrow.parquet as pq
d = sys.argv[1]
name = sorted(n for n in os.listdir(d) if n.endswith(".parquet"))[0]
schema = pq.read_schema(os.path.join(d, name))
def bq(t):
    if pa.types.is_timestamp(t): return "TIMESTAMP"
    if pa.types.is_integer(t): return "INT64"
    if pa.types.is_floating(t): return "FLOAT64"
    if pa.types.is_boolean(t): return "BOOL"
    if pa.types.is_string(t) or pa.types.is_large_string(t): return "STRING"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t): return "BYTES"
    return "UNKNOWN:" + str(t)
for f in schema:
    print(f.name, bq(f.type))
"#;

/// The emulator goes away for ~30 s while traffic flows: batches wait in the spool, the
/// uploader retries, and when it is back every record arrives exactly once.
#[test]
fn an_outage_loses_nothing_and_duplicates_nothing() {
    let Some((emulator, python)) = prerequisites() else {
        return;
    };
    let mut lab = Lab::new("outage", &emulator, python);
    let spool = lab.path("spool");
    let spec = lab.config("ndjson_gzip", &spool, "");
    let (sluice, files) = lab.start(&spec, "outage");
    // 40 s of traffic at 250 pps; the emulator is down from ~5 s to ~35 s.
    const COUNT: usize = 10_000;
    let (pcap, sent) = traffic(lab.dir.path(), "outage", 0, COUNT);
    let sender = send_in_background(&lab.pair, pcap, 250);
    std::thread::sleep(Duration::from_secs(5));
    lab.emulator.stop();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(25));
    let during = lab.scrape(METRICS_PORT);
    let spooled = sample(&during, "sluice_spool_files").unwrap_or(0.0);
    let retryable =
        sample(&during, "sluice_uploads_total{outcome=\"retryable_error\"}").unwrap_or(0.0);
    assert!(
        spooled > 0.0,
        "batches wait in the spool during the outage:\n{during}"
    );
    assert!(retryable > 0.0, "failed attempts are counted:\n{during}");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed()));
    lab.emulator.restart();
    let sender_ok = sender.join().expect("sender thread").expect("tcpreplay");
    assert!(sender_ok, "tcpreplay failed");
    // The spool empties once the emulator is back.
    assert!(
        wait_until(Duration::from_secs(60), || {
            sample(&lab.scrape(METRICS_PORT), "sluice_spool_files") == Some(0.0)
        }),
        "spool did not empty; log:\n{}",
        daemon::log_tail(&files.log, 30)
    );
    let after = lab.scrape(METRICS_PORT);
    assert!(
        sample(&after, "sluice_upload_retries_total").unwrap_or(0.0) > 0.0,
        "{after}"
    );
    let stats = stop(sluice, &files);
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(stats.seen, COUNT as u64, "{stats:?}");
    // The outage must cost nothing downstream of the receive path: no batch refused or
    // lost by the sink. (A receive-side drop, named in the stats, is not this test's
    // subject; it is reported, and then the bucket must hold exactly what was recorded.)
    for reason in ["sink_error", "spool_full"] {
        assert_eq!(
            stats.dropped.get(reason).copied().unwrap_or(0),
            0,
            "{stats:?}"
        );
    }
    if stats.recorded != COUNT as u64 {
        eprintln!(
            "note: receive-side drops during the outage test: {:?}",
            stats.dropped
        );
    }
    let upload = stats.upload.clone().expect("upload account");
    assert!(
        upload.retries > 0 && upload.retryable_errors > 0,
        "{upload:?}"
    );
    assert_eq!(upload.left_spooled_files, 0);
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    assert!(
        log.contains("retry") || log.contains("retrying"),
        "log shows retries"
    );
    lab.download_all(&lab.path("objects"));
    let got = lab.read_payloads(&lab.path("objects"));
    if stats.recorded == COUNT as u64 {
        assert_exactly_once(got, &sent, "after outage");
    } else {
        // Exactly the recorded packets, each once, all of them ones that were sent.
        let unique: std::collections::BTreeSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "duplicates after the outage");
        assert_eq!(got.len() as u64, stats.recorded, "{stats:?}");
        assert!(got.iter().all(|p| sent.contains(p)), "a record nobody sent");
    }
}

/// SIGKILL while uploads are in flight (the emulator is down, so everything committed is
/// still spooled), then a restart: every batch that was spooled arrives exactly once.
/// What SIGKILL may lose is bounded by the batch age: only batches still open in memory,
/// i.e. packets received in the last `batch.max_age_ms` before the kill.
#[test]
fn sigkill_loses_at_most_the_open_batches_and_the_restart_uploads_the_spool() {
    let Some((emulator, python)) = prerequisites() else {
        return;
    };
    let mut lab = Lab::new("crash", &emulator, python);
    let spool = lab.path("spool");
    let spec = lab.config("ndjson_gzip", &spool, "");
    let (first, files) = lab.start(&spec, "crash-1");
    // Part one is sent and given far more than max_age_ms (200 ms) to be spooled.
    const FIRST: usize = 3000;
    let (pcap, sent_first) = traffic(lab.dir.path(), "crash", 0, FIRST);
    lab.emulator.stop();
    send(&lab.pair, &pcap, 3000, FIRST);
    std::thread::sleep(Duration::from_secs(2));
    // Part two is still arriving when the process is killed.
    const SECOND: usize = 3000;
    let (pcap2, sent_second) = traffic(lab.dir.path(), "crash", FIRST, SECOND);
    lab.emulator.restart();
    let sender = send_in_background(&lab.pair, pcap2, 2000);
    std::thread::sleep(Duration::from_millis(800));
    let pid = first.pid().expect("pid");
    // SAFETY: kill(2) on the PID of the daemon this test started and still holds.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let _ = sender.join();
    drop(first);
    let spooled_at_kill = std::fs::read_dir(&spool)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".spool"))
                .count()
        })
        .unwrap_or(0);

    // The restart uploads what the first run spooled (and records nothing new).
    let (second, files2) = lab.start(&spec, "crash-2");
    assert!(
        wait_until(Duration::from_secs(60), || {
            std::fs::read_dir(&spool)
                .map(|d| {
                    !d.filter_map(Result::ok)
                        .any(|e| e.file_name().to_string_lossy().ends_with(".spool"))
                })
                .unwrap_or(false)
        }),
        "spool of the killed run not emptied; log:\n{}",
        daemon::log_tail(&files2.log, 30)
    );
    let stats = stop(second, &files2);
    assert!(stats.is_balanced());
    assert!(
        spooled_at_kill > 0,
        "batches were still spooled (uploads in flight) when the process was killed; log:\n{}",
        daemon::log_tail(&files.log, 20)
    );
    let upload = stats.upload.clone().expect("upload account");
    assert!(
        upload.uploaded + upload.already_there >= spooled_at_kill as u64,
        "the restart uploaded what the killed run left: {upload:?}, {spooled_at_kill} spooled"
    );
    lab.download_all(&lab.path("objects"));
    let got = lab.read_payloads(&lab.path("objects"));
    // Nothing twice, nothing invented.
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "duplicates after the restart");
    // Everything of part one arrived: it was spooled long before the kill.
    let got_set: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let missing_first: Vec<_> = sent_first
        .iter()
        .filter(|p| !got_set.contains(p.as_str()))
        .take(5)
        .collect();
    assert!(
        missing_first.is_empty(),
        "spooled before the kill but lost: {missing_first:?}"
    );
    // Of part two, what is missing is a tail: packets of the last max_age_ms (200 ms,
    // plus up to one stats/seal tick) before the kill, at 2000 pps ≈ 400 + slack.
    let lost_second = sent_second
        .iter()
        .filter(|p| !got_set.contains(p.as_str()))
        .count();
    let received_second = SECOND - lost_second;
    assert!(received_second > 0, "part two was arriving before the kill");
    let sent_before_kill = (800 * 2000 / 1000).min(SECOND);
    let lost_before_kill = sent_before_kill.saturating_sub(received_second);
    assert!(
        lost_before_kill <= 2000 * 600 / 1000,
        "lost {lost_before_kill} packets sent before the kill: more than the open batches hold"
    );
}

/// A tiny spool with the emulator down: new batches are refused as `spool_full`, the
/// process keeps running, seen = recorded + dropped, and uploads resume when it returns.
#[test]
fn a_full_spool_drops_counted_batches_and_recovers() {
    let Some((emulator, python)) = prerequisites() else {
        return;
    };
    let mut lab = Lab::new("full", &emulator, python);
    let spool = lab.path("spool");
    let spec = lab.config("ndjson_gzip", &spool, "spool_byte_limit = 60000\n");
    let (sluice, files) = lab.start(&spec, "full");
    lab.emulator.stop();
    const COUNT: usize = 20_000;
    let (pcap, sent) = traffic(lab.dir.path(), "full", 0, COUNT);
    send(&lab.pair, &pcap, 5000, COUNT);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        std::fs::read_to_string(&files.log)
            .unwrap_or_default()
            .contains("spool full"),
        "the log says the spool is full"
    );
    lab.emulator.restart();
    // Room again: more traffic is recorded and uploaded.
    const MORE: usize = 500;
    let (pcap2, sent2) = traffic(lab.dir.path(), "full", COUNT, MORE);
    std::thread::sleep(Duration::from_secs(3));
    send(&lab.pair, &pcap2, 2000, MORE);
    std::thread::sleep(Duration::from_secs(1));
    let stats = stop(sluice, &files);
    assert!(stats.is_balanced(), "{stats:?}");
    let spool_full = stats.dropped.get("spool_full").copied().unwrap_or(0);
    assert!(spool_full > 0, "{stats:?}");
    assert_eq!(stats.seen, (COUNT + MORE) as u64);
    assert_eq!(stats.recorded + spool_full, stats.seen, "{stats:?}");
    let upload = stats.upload.clone().expect("upload account");
    assert!(upload.refused_batches > 0);
    assert_eq!(upload.left_spooled_files, 0, "{upload:?}");
    lab.download_all(&lab.path("objects"));
    let got = lab.read_payloads(&lab.path("objects"));
    assert_eq!(
        got.len() as u64,
        stats.recorded,
        "every recorded packet is in the bucket"
    );
    let got_set: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    assert!(
        sent2.iter().all(|p| got_set.contains(p.as_str())),
        "recovered after the outage"
    );
    assert!(got.iter().all(|p| sent.contains(p) || sent2.contains(p)));
}

/// Misconfigurations are one clear line at start, before any packet is taken.
#[test]
fn bad_bucket_endpoint_or_spool_dir_is_one_error_line_at_start() {
    let Some((emulator, python)) = prerequisites() else {
        return;
    };
    let lab = Lab::new("bad", &emulator, python);
    let cases = [
        (
            "bucket",
            gcs_section(&lab.path("spool-a"), "").replace(BUCKET, "no-such-bucket"),
            "bucket \"no-such-bucket\" does not exist at http://127.0.0.1 (HTTP 404)",
        ),
        (
            "endpoint",
            gcs_section(&lab.path("spool-b"), "").replace("http://127.0.0.1", "http://127.0.0.9"),
            "cannot reach Cloud Storage endpoint http://127.0.0.9",
        ),
        (
            "spool",
            gcs_section(Path::new("/proc/sluice-spool"), ""),
            "sink.gcs.spool_dir: spool directory /proc/sluice-spool is not writable",
        ),
    ];
    for (what, gcs, expected) in cases {
        let mut spec = lab.config("ndjson_gzip", &lab.path("unused"), "");
        spec.gcs = Some(gcs);
        let files = RunFiles::in_dir(lab.dir.path(), what);
        spec.write(&files.config).expect("config");
        let out = lab
            .pair
            .b
            .command(&sluice_binary().to_string_lossy())
            .args(["run", "--config"])
            .arg(&files.config)
            .output()
            .expect("run sluice");
        assert_eq!(out.status.code(), Some(2), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{what}: {stderr}");
        assert!(errors[0].contains(expected), "{what}: {}", errors[0]);
    }
}

/// SIGTERM during an outage: the daemon uploads for `shutdown_grace_secs`, then exits and
/// leaves the rest spooled; the next start uploads it, exactly once.
#[test]
fn sigterm_during_an_outage_leaves_the_rest_spooled_for_the_next_start() {
    let Some((emulator, python)) = prerequisites() else {
        return;
    };
    let mut lab = Lab::new("grace", &emulator, python);
    let spool = lab.path("spool");
    let mut spec = lab.config("ndjson_gzip", &spool, "");
    spec.gcs = Some(
        gcs_section(&spool, "").replace("shutdown_grace_secs = 20", "shutdown_grace_secs = 2"),
    );
    let (sluice, files) = lab.start(&spec, "grace-1");
    lab.emulator.stop();
    const COUNT: usize = 2000;
    let (pcap, sent) = traffic(lab.dir.path(), "grace", 0, COUNT);
    send(&lab.pair, &pcap, 4000, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    let stats = stop(sluice, &files);
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exit bounded by the grace period: {took:?}"
    );
    assert!(stats.is_balanced());
    assert_eq!(stats.recorded, COUNT as u64, "{stats:?}");
    let upload = stats.upload.clone().expect("upload account");
    assert_eq!(upload.uploaded, 0);
    assert_eq!(upload.left_spooled_files, stats.files_written, "{upload:?}");

    lab.emulator.restart();
    let (again, files2) = lab.start(&spec, "grace-2");
    let stats2 = stop(again, &files2);
    let upload2 = stats2.upload.clone().expect("upload account");
    assert_eq!(
        (
            upload2.uploaded + upload2.already_there,
            upload2.left_spooled_files
        ),
        (stats.files_written, 0),
        "{upload2:?}"
    );
    lab.download_all(&lab.path("objects"));
    assert_exactly_once(
        lab.read_payloads(&lab.path("objects")),
        &sent,
        "after restart",
    );
}
