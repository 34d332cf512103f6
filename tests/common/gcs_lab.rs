//! The Cloud Storage lab the upload tests share: a namespace pair whose receiving side runs
//! `sluice run` with `sink.kind = "gcs"` against a real emulator (fake-gcs-server) on its
//! own loopback, the traffic they send through XDP, and the ways they read the bucket back
//! (an independent Python reader of every object, the bucket's layout for DuckDB, the
//! `bigquery-ddl` statement's columns and what DuckDB must see for the records sent).
//!
//! `upload_gcs.rs` drives one appliance through outages, crashes and full spools;
//! `query_engine.rs` reads what it uploads with DuckDB, also from two appliances writing
//! into one bucket (it builds that topology from the free functions here: [`gcs_section_at`],
//! [`xdp_gcs_config`], [`start_in`], [`download_tree_from`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_testkit::daemon::{self, ConfigSpec, RunFiles, RunningSluice};
use sluice_testkit::duckdb::{self as duck, HiveTable};
use sluice_testkit::frames::{FrameSpec, MatrixParams, variant_matrix};
use sluice_testkit::gcs::{Emulator, emulator_binary};
use sluice_testkit::netns::{Netns, NetnsPair};
use sluice_testkit::privilege::{require, require_root, require_tool};
use sluice_testkit::records::{self, Record};
use sluice_testkit::stats::Stats;
use sluice_testkit::tcpreplay::{self, ReplayParams};

use super::sluice_binary;

/// The bucket every lab's emulator has.
pub const BUCKET: &str = "sluice-e2e";
/// The object prefix of every lab's config.
pub const PREFIX: &str = "e2e";
/// The emulator's address on the receiving namespace's loopback.
pub const EMULATOR_ADDRESS: &str = "127.0.0.1";
/// The daemon's default metrics port, on the receiving namespace's loopback.
pub const METRICS_PORT: u16 = 9464;

/// Root, tools, the emulator, pyarrow and duckdb for test `name`; the emulator binary and
/// the venv's Python, or `None` (after saying why) outside CI.
pub fn prerequisites(name: &str) -> Option<(PathBuf, PathBuf)> {
    if !(require_root(name) && ["ip", "tcpreplay"].iter().all(|t| require_tool(name, t))) {
        return None;
    }
    let emulator = emulator_binary();
    let python = sluice_testkit::python::venv_python(&["pyarrow", "duckdb"]);
    let found = require(
        name,
        emulator.is_some(),
        "needs fake-gcs-server (run `cargo xtask setup`)",
    ) && require(
        name,
        python.is_some(),
        "needs the venv with pyarrow and duckdb (run `cargo xtask setup`)",
    );
    if !found {
        return None;
    }
    emulator.zip(python)
}

/// `count` frames with payloads `<tag>-<n>`, each on the next GRE variant of the test
/// kit's matrix in turn (IPv4/IPv6 outer and inner, four tunnel sources of each family,
/// with and without key, checksum, sequence and VLAN tags, ports 5000 and 5001).
pub fn mixed_specs(tag: &str, count: usize) -> Vec<FrameSpec> {
    let params = MatrixParams {
        include_plain: false,
        ..MatrixParams::default()
    };
    let variants: Vec<FrameSpec> = variant_matrix(&params)
        .into_iter()
        .map(|(_, spec)| spec)
        .collect();
    (0..count)
        .map(|i| {
            let mut spec = variants[i % variants.len()].clone();
            spec.inner.payload = format!("{tag}-{i:07}").into_bytes();
            spec
        })
        .collect()
}

/// `specs` as the pcap `<dir>/<tag>-mixed.pcap`; returns it and the records Sluice must
/// write for them.
pub fn write_traffic(dir: &Path, tag: &str, specs: &[FrameSpec]) -> (PathBuf, Vec<Record>) {
    let frames: Vec<Vec<u8>> = specs.iter().map(FrameSpec::build).collect();
    let pcap = dir.join(format!("{tag}-mixed.pcap"));
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");
    (pcap, specs.iter().map(records::expected_record).collect())
}

/// [`mixed_specs`] as a pcap in `dir`, and the records Sluice must write for them.
pub fn mixed_traffic(dir: &Path, tag: &str, count: usize) -> (PathBuf, Vec<Record>) {
    write_traffic(dir, tag, &mixed_specs(tag, count))
}

/// Sends `pcap` (`count` frames) at `pps` from `pair`'s sending side; every frame must go
/// out.
pub fn send(pair: &NetnsPair, pcap: &Path, pps: u32, count: usize) {
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

/// The `[sink.gcs]` body for the emulator, with quick retries.
pub fn gcs_section(spool: &Path, extra: &str) -> String {
    gcs_section_at(EMULATOR_ADDRESS, spool, extra)
}

/// The `[sink.gcs]` body for an emulator at `http://<address>`, with quick retries and
/// objects made within a second (so that uploads happen while a test runs).
pub fn gcs_section_at(address: &str, spool: &Path, extra: &str) -> String {
    format!(
        "bucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\nendpoint = \"http://{address}\"\n\
         credentials = \"anonymous\"\nspool_dir = \"{}\"\nconcurrency = 4\n\
         attempt_timeout_secs = 5\nbackoff_min_ms = 100\nbackoff_max_ms = 2000\n\
         shutdown_grace_secs = 20\nobject_max_age_secs = 1\n{extra}",
        spool.display()
    )
}

/// XDP on `interface`, port 5000 only, no plain UDP, `format`, uploading with `gcs` (a
/// `[sink.gcs]` body); `unused_dir` fills the directory sink's path, which a gcs sink
/// ignores.
pub fn xdp_gcs_config(interface: &str, unused_dir: &Path, format: &str, gcs: String) -> ConfigSpec {
    let mut spec = ConfigSpec::xdp(interface, unused_dir);
    spec.ports = vec![5000];
    spec.plain_udp = false;
    spec.format = Some(format.to_owned());
    spec.gcs = Some(gcs);
    spec
}

/// Starts `sluice run` in `netns` with the config text `config`, its files named `run` in
/// `dir`, and waits until it is ready.
pub fn start_in(netns: &Netns, dir: &Path, config: &str, run: &str) -> (RunningSluice, RunFiles) {
    let files = RunFiles::in_dir(dir, run);
    std::fs::write(&files.config, config).expect("config");
    let mut sluice = daemon::start_run(&sluice_binary(), netns, &files).expect("start");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    (sluice, files)
}

/// Every object under the prefix, downloaded into `into` under its name without the
/// prefix (`<stream>/dt=.../hour=.../<name>`): the bucket's layout, for DuckDB. Returns
/// the object names (with the prefix).
pub fn download_tree_from(emulator: &Emulator, into: &Path) -> Vec<String> {
    let objects = emulator.list(BUCKET, &format!("{PREFIX}/"));
    for (name, size) in &objects {
        let bytes = emulator.download(BUCKET, name);
        assert_eq!(bytes.len() as u64, *size, "{name}");
        let path = into.join(name.trim_start_matches(&format!("{PREFIX}/")));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("object dir");
        }
        std::fs::write(&path, bytes).expect("write object");
    }
    objects.into_iter().map(|(name, _)| name).collect()
}

/// One test's namespaces, emulator and files.
pub struct Lab {
    /// The work directory (configs, logs, spool, emulator data, downloads).
    pub dir: sluice_testkit::scratch::TempDir,
    /// The sender (`a`) and the appliance (`b`), whose loopback has the emulator.
    pub pair: NetnsPair,
    /// The emulator, holding [`BUCKET`].
    pub emulator: Emulator,
    /// The venv's interpreter (pyarrow, duckdb).
    pub python: PathBuf,
}

impl Lab {
    /// A new lab for test `test` (which names its work directory).
    pub fn new(test: &str, emulator_binary: &Path, python: PathBuf) -> Lab {
        let dir = sluice_testkit::scratch::tempdir(&format!("gcs-{test}")).expect("tempdir");
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

    /// `<dir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The lab's config in `format`, spooling to `spool`, `extra` appended to `[sink.gcs]`.
    pub fn config(&self, format: &str, spool: &Path, extra: &str) -> ConfigSpec {
        xdp_gcs_config(
            &self.pair.if_b,
            &self.path("unused-directory"),
            format,
            gcs_section(spool, extra),
        )
    }

    /// Starts `spec` in the appliance namespace, its files named `run`.
    pub fn start(&self, spec: &ConfigSpec, run: &str) -> (RunningSluice, RunFiles) {
        self.start_toml(&spec.to_toml(), run)
    }

    /// Starts the config text `config` in the appliance namespace, its files named `run`.
    pub fn start_toml(&self, config: &str, run: &str) -> (RunningSluice, RunFiles) {
        start_in(&self.pair.b, self.dir.path(), config, run)
    }

    /// Every object under the prefix, downloaded into `dir`; returns their names.
    pub fn download_all(&self, into: &Path) -> Vec<String> {
        std::fs::create_dir_all(into).expect("download dir");
        let objects = self.emulator.list(BUCKET, &format!("{PREFIX}/"));
        for (i, (name, size)) in objects.iter().enumerate() {
            let bytes = self.emulator.download(BUCKET, name);
            assert_eq!(bytes.len() as u64, *size, "{name}");
            let file = name.rsplit('/').next().unwrap_or("object");
            std::fs::write(into.join(format!("{i:05}-{file}")), bytes).expect("write object");
        }
        objects.into_iter().map(|(name, _)| name).collect()
    }

    /// Every object under the prefix, downloaded into `into` in the bucket's layout (see
    /// [`download_tree_from`]); returns their names.
    pub fn download_tree(&self, into: &Path) -> Vec<String> {
        download_tree_from(&self.emulator, into)
    }

    /// The payloads of every record in the downloaded objects, read by Python.
    pub fn read_payloads(&self, dir: &Path) -> Vec<String> {
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

    /// `/metrics` of the daemon in the appliance namespace, or "" when unreachable.
    pub fn scrape(&self, port: u16) -> String {
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

/// SIGTERM (which flushes and uploads everything), a clean exit within 60 s, and the
/// stats the run left.
pub fn stop(sluice: RunningSluice) -> Stats {
    sluice
        .stop_cleanly(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The current UTC hour (0-23).
pub fn utc_hour() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs / 3600 % 24).unwrap_or(0)
}

/// The `bigquery-ddl` statement for `config`, and its columns (partition columns
/// included) with their BigQuery types, in order, of every table together (see
/// [`ddl_tables`] for a config with several streams).
pub fn ddl_of(config: &Path) -> (String, Vec<(String, String)>) {
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

/// The columns of each table of a `bigquery-ddl` statement (partition columns included),
/// by table name without the dataset (the stream's name).
pub fn ddl_tables(ddl: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in ddl.lines() {
        if let Some(rest) = line.strip_prefix("CREATE EXTERNAL TABLE `") {
            let table = rest.trim_end_matches('`');
            let stream = table.rsplit('.').next().unwrap_or(table).to_owned();
            tables.insert(stream.clone(), Vec::new());
            current = Some(stream);
            continue;
        }
        let column = line
            .trim()
            .trim_end_matches(',')
            .strip_prefix('`')
            .and_then(|rest| rest.split_once("` "));
        if let (Some(stream), Some((name, ty))) = (&current, column) {
            tables
                .entry(stream.clone())
                .or_default()
                .push((name.to_owned(), ty.to_owned()));
        }
    }
    tables
}

/// The DDL's columns with the DuckDB types they must be read as.
pub fn duckdb_columns(ddl_columns: &[(String, String)]) -> Vec<(String, String)> {
    ddl_columns
        .iter()
        .map(|(name, bigquery)| {
            let duck = duck::duckdb_type(bigquery)
                .unwrap_or_else(|| panic!("no DuckDB type for {name} {bigquery}"));
            (name.clone(), duck.to_owned())
        })
        .collect()
}

/// What DuckDB must see in the bucket for `expected` records received in hour `hour`.
pub fn expected_table(
    ddl_columns: &[(String, String)],
    expected: &[Record],
    hour: u32,
) -> HiveTable {
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
        columns: duckdb_columns(ddl_columns),
        groups,
        rows: expected.len() as u64,
        payload_bytes: expected.iter().map(|r| r.payload_len as u64).sum(),
        dst_ports,
    }
}
