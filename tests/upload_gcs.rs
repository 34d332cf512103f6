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

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::gcs_lab::{
    BUCKET, Lab, METRICS_PORT, ddl_of, expected_table, gcs_section, mixed_traffic, send, stop,
    utc_hour,
};
use common::sluice_binary;
use sluice_testkit::daemon::{self, ConfigSpec, RunFiles};
use sluice_testkit::duckdb::{self as duck, HiveTable};
use sluice_testkit::frames::{FrameSpec, MatrixParams, variant_matrix};
use sluice_testkit::gcs::wait_until;
use sluice_testkit::netns::NetnsPair;
use sluice_testkit::records::Record;
use sluice_upload::spool::manifest::{Manifest, OBJECTS_DIR, UPLOADED_SUFFIX};

const NAME: &str = "upload_gcs";

/// Root, tools, the emulator, pyarrow and duckdb; `None` (after saying why) outside CI.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    common::gcs_lab::prerequisites(NAME)
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

/// The value of an unlabelled sample (or one with exactly `labels`) in a scrape.
fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
    let (sluice, _) = lab.start(&spec, "run");
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
    let stats = stop(sluice);
    let last_hour = utc_hour();

    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!(
        (stats.seen, stats.recorded, stats.dropped_total),
        (COUNT as u64, COUNT as u64, 0)
    );
    let upload = stats.upload.clone().expect("upload account");
    assert_eq!(upload.left_spooled_files, 0, "{upload:?}");
    let objects = lab.download_all(&lab.path("objects"));
    // Batches are combined into objects: every batch is in exactly one of them.
    assert_eq!(
        upload.uploaded + upload.already_there,
        objects.len() as u64,
        "{objects:?}"
    );
    assert_eq!(upload.uploaded_batches, stats.files_written, "{upload:?}");
    assert!(objects.len() as u64 <= stats.files_written, "{objects:?}");
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
    let (sluice, _) = lab.start(&spec, "ddl-run");
    let (pcap, _) = traffic(lab.dir.path(), "ddl", 0, 10);
    send(&lab.pair, &pcap, 1000, 10);
    std::thread::sleep(Duration::from_millis(500));
    let _ = stop(sluice);
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
    let stats = stop(sluice);
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

/// Spooled batches that an object the killed run had uploaded still lists: its manifest
/// was renamed `.uploaded` but the process died before all its batches were removed. The
/// restart removes them without uploading them again (docs/upload.md, "Exactly once
/// across crashes").
fn batches_of_uploaded_objects(spool: &Path) -> usize {
    let Ok(manifests) = std::fs::read_dir(spool.join(OBJECTS_DIR)) else {
        return 0;
    };
    manifests
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(UPLOADED_SUFFIX))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| Manifest::decode(&bytes).ok())
        .map(|manifest| {
            manifest
                .batch_files
                .iter()
                .filter(|file| spool.join(file).exists())
                .count()
        })
        .sum()
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
    let retired_at_restart = batches_of_uploaded_objects(&spool);

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
    let stats = stop(second);
    assert!(stats.is_balanced());
    assert!(
        spooled_at_kill > 0,
        "batches were still spooled (uploads in flight) when the process was killed; log:\n{}",
        daemon::log_tail(&files.log, 20)
    );
    let upload = stats.upload.clone().expect("upload account");
    assert!(
        upload.uploaded_batches + retired_at_restart as u64 >= spooled_at_kill as u64,
        "the restart uploaded what the killed run left: {upload:?}, {spooled_at_kill} \
         spooled, {retired_at_restart} of them in objects uploaded before the kill; \
         the restart's log:\n{}",
        daemon::log_tail(&files2.log, 30)
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
    let stats = stop(sluice);
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
    let (sluice, _) = lab.start(&spec, "grace-1");
    lab.emulator.stop();
    const COUNT: usize = 2000;
    let (pcap, sent) = traffic(lab.dir.path(), "grace", 0, COUNT);
    send(&lab.pair, &pcap, 4000, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    let stats = stop(sluice);
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
    let (again, _) = lab.start(&spec, "grace-2");
    let stats2 = stop(again);
    let upload2 = stats2.upload.clone().expect("upload account");
    assert_eq!(
        (upload2.uploaded_batches, upload2.left_spooled_files),
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
