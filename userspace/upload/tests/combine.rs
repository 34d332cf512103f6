//! Objects of many batches, against a real Cloud Storage emulator: real batch files of
//! every format (made by `sluice_formats`' encoders) are combined per stream, hour and
//! run, and every record reaches the bucket exactly once — in the normal course, and
//! across a SIGKILL while objects are being combined and uploaded.
//!
//! Needs root (the emulator listens on port 80) and the emulator (`cargo xtask setup`);
//! see `support/mod.rs`. Under `CI=true` a missing prerequisite fails the test.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic here is a failed test"
)]

mod support;

use std::borrow::Cow;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parquet::file::reader::{FileReader as _, SerializedFileReader};
use sluice_decode::{DecoderFactory as _, PacketContext, RowSink as _, Value, raw::RawFactory};
use sluice_formats::{BatchEncoder as _, FileEncoder, Format, FormatConfig};
use sluice_upload::{Spool, UploadConfig, Uploader};
use support::{
    CrashChild, Emulator, config, open_spool, prerequisites, scratch, settled_listing, wait_until,
};

/// One committed batch: its object name and the records it holds, as text.
struct Committed {
    name: String,
    records: Vec<String>,
}

fn context(i: u64) -> PacketContext {
    PacketContext {
        received_at: 1_795_316_645_000_000 + i as i64,
        tunnel_src: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        tunnel_dst: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
        gre_key: Some(7),
        src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        src_port: 40_000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        dst_port: 5000,
    }
}

/// A batch of `rows` records whose payloads name the batch and row (`pad` bytes of
/// filler make it larger).
fn encode(format: Format, batch: u64, rows: u64, pad: usize) -> Vec<u8> {
    let factory = RawFactory::default();
    let mut encoder = FileEncoder::new(&FormatConfig::new(format), factory.schema()).unwrap();
    for row in 0..rows {
        let mut payload = format!("batch {batch} row {row} ").into_bytes();
        let mut state = (batch << 20 | row).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        payload.extend((0..pad).map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        }));
        let len = payload.len() as u64;
        encoder.row(
            &context(row),
            &[Value::U64(len), Value::Bytes(Cow::Owned(payload))],
        );
    }
    encoder.finish().unwrap()
}

/// The records of a file (a batch or a combined object), one string per record; CSV
/// files must start with exactly one header line, which is left out.
fn records(format: Format, bytes: &[u8]) -> Vec<String> {
    match format {
        Format::NdjsonGzip | Format::CsvGzip => {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_string(&mut text)
                .unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if format == Format::CsvGzip {
                let header = lines.remove(0);
                assert!(header.starts_with("received_at,"), "{header}");
                assert!(!lines.contains(&header), "a second header line");
            }
            lines
        }
        Format::Parquet => {
            let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
            reader
                .get_row_iter(None)
                .unwrap()
                .map(|row| row.unwrap().to_string())
                .collect()
        }
        Format::NdjsonZstd => unreachable!("not used here"),
    }
}

fn name(test: &str, format: Format, hour: u32, run: &str, worker: u32, seq: u64) -> String {
    format!(
        "sluice/{test}/raw/dt=2026-11-22/hour={hour:02}/host-0a1b2c3d-{run}-{worker}-{seq:08}.{}",
        format.extension()
    )
}

/// Downloads every object under `sluice/{test}/` and returns (name, size, records).
fn bucket_records(
    emulator: &Emulator,
    bucket: &str,
    test: &str,
    format: Format,
) -> Vec<(String, u64, Vec<String>)> {
    emulator
        .list(bucket, &format!("sluice/{test}/"))
        .into_iter()
        .map(|(name, size)| {
            let bytes = emulator.download(bucket, &name);
            let records = records(format, &bytes);
            (name, size, records)
        })
        .collect()
}

/// Every committed record is in exactly one object, and each object's records come
/// from batches of one hour and run, in commit order.
fn assert_exactly_once(objects: &[(String, u64, Vec<String>)], committed: &[Committed]) {
    let mut got: Vec<&String> = objects.iter().flat_map(|(_, _, r)| r).collect();
    let mut want: Vec<&String> = committed.iter().flat_map(|c| &c.records).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "records in the bucket vs committed");
    assert!(
        got == want,
        "the bucket's records differ from the committed ones"
    );
    for (object, _, records) in objects {
        let first = committed
            .iter()
            .position(|c| c.records.first() == records.first())
            .unwrap_or_else(|| panic!("{object}: its first record starts no batch"));
        let folder = |n: &str| n.rsplit_once('/').map(|(f, _)| f.to_owned());
        let run = |n: &str| {
            n.rsplit('/')
                .next()
                .map(|f| f.splitn(4, '-').take(3).collect::<Vec<_>>().join("-"))
        };
        let mut at = 0;
        for c in &committed[first..] {
            if at == records.len() {
                break;
            }
            if folder(&c.name) != folder(&committed[first].name)
                || run(&c.name) != run(&committed[first].name)
            {
                continue;
            }
            assert_eq!(
                &records[at..at + c.records.len()],
                c.records.as_slice(),
                "{object}: batch {} is not whole and in order",
                c.name
            );
            at += c.records.len();
        }
        assert_eq!(at, records.len(), "{object}: records from another group");
    }
}

fn combine_config(address: &str, bucket: &str, spool_dir: &Path, target: u64) -> UploadConfig {
    let mut c = config(address, bucket, spool_dir);
    c.object_max_age_secs = 2;
    c.object_target_bytes = Some(target);
    c
}

#[test]
fn batches_become_objects_per_stream_hour_and_run_with_every_record_once() {
    const TEST: &str = "combine";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.9", &dir.path().join("gcs"), &["combine"]);
    for format in [Format::Parquet, Format::NdjsonGzip, Format::CsvGzip] {
        let test = format!("{TEST}-{}", format.name());
        let sample = encode(format, 0, 50, 40).len() as u64;
        // About four batches per object.
        let config = combine_config(
            "127.0.83.9",
            "combine",
            &dir.path().join(format!("spool-{}", format.name())),
            sample * 4 + sample / 2,
        );
        let spool = open_spool(&config);
        let mut committed = Vec::new();
        let mut commit = |spool: &Spool, i: u64| {
            // Two hours, two runs, two workers.
            let hour = if i.is_multiple_of(5) { 4 } else { 3 };
            let run = if i.is_multiple_of(7) {
                "0badf00d"
            } else {
                "00c0ffee"
            };
            let name = name(&test, format, hour, run, (i % 2) as u32, i);
            let bytes = encode(format, i, 50, 40);
            spool.commit(&name, &bytes).unwrap();
            committed.push(Committed {
                records: records(format, &bytes),
                name,
            });
        };
        // Half spooled before the uploader starts (as after a restart), half while it runs.
        for i in 0..20 {
            commit(&spool, i);
        }
        let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
        for i in 20..40 {
            commit(&spool, i);
        }
        assert!(
            wait_until(Duration::from_secs(30), || spool.is_empty()),
            "{format:?}: the spool did not empty"
        );
        let report = uploader.shutdown();
        assert!(report.drained);
        let objects = bucket_records(&emulator, "combine", &test, format);
        let m = report.metrics;
        assert_eq!(m.objects, objects.len() as u64, "{m:?}");
        assert_eq!(m.object_batches, 40, "{m:?}");
        assert_eq!(
            (m.ok, m.exists, m.retryable_error),
            (m.objects, 0, 0),
            "{m:?}"
        );
        assert_eq!(m.spool.quarantined, 0);
        // 40 batches in 4 groups (two hours × two runs) of 3 to 23 batches: far fewer
        // objects than batches, each at most the target unless it is one batch.
        assert!(
            (4..=16).contains(&objects.len()),
            "{format:?}: {} objects: {:?}",
            objects.len(),
            objects.iter().map(|o| &o.0).collect::<Vec<_>>()
        );
        for (object, size, _) in &objects {
            assert!(
                *size <= config.object_target() || !object.contains("-x"),
                "{object}: {size} bytes"
            );
        }
        assert_exactly_once(&objects, &committed);
        eprintln!(
            "{format:?}: 40 batches became {} objects ({} bytes on average)",
            objects.len(),
            objects.iter().map(|o| o.1).sum::<u64>() / objects.len() as u64
        );
    }
}

/// Not a test of its own: the child process of
/// [`sigkill_while_combining_loses_nothing_spooled_and_writes_nothing_twice`], which
/// re-runs this test binary with `SLUICE_COMBINE_CRASH_CHILD` set.
#[test]
fn combine_crash_child_process() {
    let Ok(spec) = std::env::var("SLUICE_COMBINE_CRASH_CHILD") else {
        return;
    };
    support::init_logging();
    let mut parts = spec.splitn(4, '|');
    let (address, bucket, target, spool_dir) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap(),
    );
    let mut config = combine_config(address, bucket, Path::new(spool_dir), target);
    config.concurrency = 2;
    let spool = open_spool(&config);
    let _uploader = Uploader::start(&config, spool).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    panic!("the crash child was not killed within 60 s");
}

#[test]
fn sigkill_while_combining_loses_nothing_spooled_and_writes_nothing_twice() {
    const TEST: &str = "combine-crash";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.10", &dir.path().join("gcs"), &["crash"]);
    let spool_dir = dir.path().join("spool");
    let format = Format::NdjsonGzip;
    // Incompressible enough that combining and uploading take a while: ~150 KiB batches,
    // eight per object.
    let sample = encode(format, 0, 300, 500).len() as u64;
    let target = sample * 8 + sample / 2;
    let config = combine_config("127.0.83.10", "crash", &spool_dir, target);
    let mut committed = Vec::new();
    {
        let spool = open_spool(&config);
        for i in 0..240 {
            let name = name(TEST, format, 3, "00c0ffee", (i % 3) as u32, i);
            let bytes = encode(format, i, 300, 500);
            spool.commit(&name, &bytes).unwrap();
            committed.push(Committed {
                records: records(format, &bytes),
                name,
            });
        }
    }
    let child = CrashChild::spawn(
        dir.path(),
        "combine_crash_child_process",
        "SLUICE_COMBINE_CRASH_CHILD",
        format!("127.0.83.10|crash|{target}|{}", spool_dir.display()),
    );
    assert!(
        wait_until(Duration::from_secs(60), || emulator
            .list("crash", &format!("sluice/{TEST}/"))
            .len()
            >= 8),
        "the child uploaded less than 8 objects in 60 s: {}",
        child.log()
    );
    child.kill();
    let listed = settled_listing(&emulator, "crash", &format!("sluice/{TEST}/"));
    let before: std::collections::BTreeSet<String> =
        listed.into_iter().map(|(name, _)| name).collect();
    let in_progress = std::fs::read_dir(&spool_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-object")
        })
        .count();
    let manifests = std::fs::read_dir(spool_dir.join("objects"))
        .unwrap()
        .count();

    let spool = open_spool(&config);
    eprintln!(
        "killed with {} objects in the bucket, {manifests} manifests and {in_progress} objects being assembled; {} batches spooled",
        before.len(),
        spool.stats().files
    );
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    assert!(wait_until(Duration::from_secs(60), || spool.is_empty()));
    let m = uploader.shutdown().metrics;
    assert_eq!((m.retryable_error, m.permanent_error), (0, 0), "{m:?}");
    assert_eq!(m.spool.quarantined, 0);
    let objects = bucket_records(&emulator, "crash", TEST, format);
    // Objects planned before the kill keep their names: none is written twice under two.
    assert!(before.iter().all(|n| objects.iter().any(|o| &o.0 == n)));
    assert_exactly_once(&objects, &committed);
    eprintln!(
        "after the restart: {} objects, {} created now, {} found already there (412)",
        objects.len(),
        m.ok,
        m.exists
    );
    // No temporaries or manifests are left.
    assert_eq!(
        std::fs::read_dir(spool_dir.join("objects"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_batch_its_format_will_not_join_is_uploaded_on_its_own() {
    const TEST: &str = "combine-alone";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.11", &dir.path().join("gcs"), &["alone"]);
    let format = Format::CsvGzip;
    let config = combine_config("127.0.83.11", "alone", &dir.path().join("spool"), 1 << 30);
    let spool = open_spool(&config);
    let mut committed = Vec::new();
    for i in 0..4 {
        let name = name(TEST, format, 3, "00c0ffee", 0, i);
        let bytes = if i == 1 {
            // As an older version wrote CSV: the header line in the same gzip member as
            // the rows, which cannot be joined without decompressing.
            let current = encode(format, i, 5, 10);
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(current.as_slice())
                .read_to_end(&mut text)
                .unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, &text).unwrap();
            gz.finish().unwrap()
        } else {
            encode(format, i, 5, 10)
        };
        spool.commit(&name, &bytes).unwrap();
        committed.push(Committed {
            records: records(format, &bytes),
            name,
        });
    }
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    let report = uploader.shutdown();
    assert!(report.drained, "{report:?}");
    assert_eq!(report.metrics.spool.quarantined, 0);
    let objects = bucket_records(&emulator, "alone", TEST, format);
    let mut names: Vec<&str> = objects.iter().map(|o| o.0.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            // Named when planned, with four batches; the name stays when one leaves.
            committed[0].name.replace(".csv.gz", "-x4.csv.gz").as_str(),
            committed[1].name.as_str()
        ]
    );
    let mut got: Vec<&String> = objects.iter().flat_map(|o| &o.2).collect();
    let mut want: Vec<&String> = committed.iter().flat_map(|c| &c.records).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
