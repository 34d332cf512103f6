//! The scenario the end-to-end tests share: one pcap of every steered frame shape
//! followed by every must-pass shape, and what Sluice must make of it.
//!
//! `xdp_netns.rs` sends it through XDP, `replay.rs` through `sluice replay`; both compare
//! against the same expectations here, so the two paths are held to one standard. Included
//! with `mod common;` by each test file (it is not a test target itself). [`gcs_lab`] is
//! the Cloud Storage lab of `upload_gcs.rs` and `query_engine.rs`; [`bucket_checks`] what
//! `query_engine.rs` asserts about a bucket DuckDB has read.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the scenario"
)]

pub mod bucket_checks;
pub mod gcs_lab;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_common::Verdict;
use sluice_testkit::frames::{
    FrameSpec, MatrixParams, NegativeCase, NegativeKind, negative_cases, variant_matrix,
};
use sluice_testkit::records::{self, Record};
use sluice_testkit::stats::Stats;

/// `GET /metrics` from the daemon's default listener (127.0.0.1:9464) inside namespace b.
pub fn scrape_metrics(pair: &sluice_testkit::netns::NetnsPair) -> String {
    use std::io::{Read as _, Write as _};
    let body = pair
        .b
        .run_in(|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect("127.0.0.1:9464")?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })
        .expect("enter namespace b");
    body.unwrap_or_else(|e| panic!("scraping /metrics: {e}"))
}

/// The daemon under test, built by cargo for this test target.
pub fn sluice_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// The verdict the XDP program (and the replay classifier) must give a must-pass frame.
pub fn expected_verdict(kind: NegativeKind) -> Verdict {
    match kind {
        NegativeKind::GreVersion1 => Verdict::PassGreUnsupported,
        NegativeKind::GreProtocol(_) => Verdict::PassGreProtocol,
        NegativeKind::Fragment { .. } => Verdict::PassFragment,
        NegativeKind::InnerTcp => Verdict::PassInnerNotUdp,
        NegativeKind::PlainTcp { .. } | NegativeKind::IcmpEcho { .. } => Verdict::PassNotGreOrUdp,
        NegativeKind::UnsteeredPort { .. } => Verdict::PassPortNotSteered,
        NegativeKind::Truncated(_) => Verdict::PassMalformed,
        NegativeKind::Arp | NegativeKind::ThreeVlans => Verdict::PassNotIp,
    }
}

/// The frames, their pcap, and the expected outcome.
pub struct Scenario {
    /// Parameters of the matrices (MACs and addresses of a default `NetnsPair`).
    pub params: MatrixParams,
    /// Steered frames, in pcap order (frames 1..=N).
    pub steered: Vec<(String, FrameSpec)>,
    /// Must-pass frames, in pcap order (frames N+1..=N+M).
    pub must_pass: Vec<NegativeCase>,
    /// The pcap holding both.
    pub pcap: PathBuf,
}

impl Scenario {
    /// Builds the frames and writes `DIR/scenario.pcap`.
    pub fn write(dir: &Path) -> Scenario {
        let params = MatrixParams::default();
        let steered = variant_matrix(&params);
        let must_pass = negative_cases(&params);
        let pcap = dir.join("scenario.pcap");
        let frames: Vec<Vec<u8>> = steered
            .iter()
            .map(|(_, spec)| spec.build())
            .chain(must_pass.iter().map(|case| case.frame.clone()))
            .collect();
        let written = sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice))
            .expect("write scenario pcap");
        assert_eq!(written, steered.len() + must_pass.len());
        Scenario {
            params,
            steered,
            must_pass,
            pcap,
        }
    }

    /// N: frames Sluice must record.
    pub fn steered_count(&self) -> u64 {
        self.steered.len() as u64
    }

    /// M: frames Sluice must leave alone.
    pub fn must_pass_count(&self) -> u64 {
        self.must_pass.len() as u64
    }

    /// Expected records, normalized (no `received_at`) and sorted.
    pub fn expected_records(&self) -> Vec<Record> {
        records::normalize(
            self.steered
                .iter()
                .map(|(_, spec)| records::expected_record(spec)),
        )
    }

    /// Expected `passed` counters for the must-pass frames alone, by verdict name.
    pub fn expected_passed(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for case in &self.must_pass {
            *counts
                .entry(expected_verdict(case.kind).name().to_owned())
                .or_insert(0) += 1;
        }
        counts
    }
}

/// What a run left in its output directory.
pub struct CheckedOutput {
    /// All records, normalized (no `received_at`) and sorted.
    pub records: Vec<Record>,
    /// Completed record files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Reads and checks Sluice's output directory: every file path follows the layout, every
/// record is valid on its own and sits in the partition of its timestamp.
pub fn read_checked_output(dir: &Path) -> CheckedOutput {
    // Packets without a decoder are records of the `raw` stream, in its own directory.
    let dir = dir.join("raw");
    let output = records::read_output(&dir).expect("read sluice output");
    let mut bytes = 0;
    for file in &output.files {
        assert!(
            records::is_valid_file_path(&file.relative),
            "bad file path {}",
            file.relative.display()
        );
        assert!(
            !file.records.is_empty(),
            "{} is empty",
            file.relative.display()
        );
        bytes += std::fs::metadata(dir.join(&file.relative))
            .expect("stat record file")
            .len();
        let partition = file
            .relative
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut partitions = std::collections::BTreeSet::new();
        for record in &file.records {
            record
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}: {record:?}", file.relative.display()));
            partitions.insert(records::partition_of(&record.received_at).expect("timestamp"));
        }
        // A batch that straddles an hour boundary is filed under one of its hours.
        assert!(
            partitions.contains(&partition) && partitions.len() <= 2,
            "{} holds records of {partitions:?}",
            file.relative.display()
        );
    }
    CheckedOutput {
        records: records::normalize(output.records()),
        files: output.files.len() as u64,
        bytes,
    }
}

/// Compares records with expectations one by one (a readable failure names the first
/// differing record instead of dumping two 100-element vectors).
pub fn assert_same_records(actual: &[Record], expected: &[Record], what: &str) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: record {i} differs");
    }
    assert_eq!(actual.len(), expected.len(), "{what}: record count");
}

/// Stats of a run that lost nothing: seen == recorded == N, nothing dropped, balanced,
/// and the file counters match what is on disk.
pub fn assert_lossless(stats: &Stats, steered: u64, output: &CheckedOutput) {
    assert_eq!(stats.seen, steered, "seen: {stats:?}");
    assert_eq!(stats.recorded, steered, "recorded: {stats:?}");
    assert_eq!(stats.dropped_total, 0, "dropped_total: {stats:?}");
    assert_eq!(stats.dropped.values().sum::<u64>(), 0, "dropped: {stats:?}");
    assert_eq!(stats.seen, stats.recorded + stats.dropped_total);
    assert_eq!(stats.in_flight, 0, "in_flight: {stats:?}");
    assert!(stats.balanced, "the daemon reports unbalanced: {stats:?}");
    assert_eq!(
        stats.files_written, output.files,
        "files_written: {stats:?}"
    );
    assert_eq!(
        stats.bytes_written, output.bytes,
        "bytes_written: {stats:?}"
    );
}

/// Every record of every `*.ndjson.zst` file under `dir` (recursively), as JSON — for
/// decoder streams, whose columns the strict raw `Record` does not describe.
pub fn read_json_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".ndjson.zst") {
                let file = std::fs::File::open(&path).expect("open");
                let text = zstd::decode_all(file).expect("zstd");
                for line in String::from_utf8(text).expect("utf-8").lines() {
                    out.push(serde_json::from_str(line).expect("json line"));
                }
            }
        }
    }
    out
}

/// The `(first, second)` fields of every record under `dir` ([`read_json_records`]), both
/// unsigned integers, sorted: what a test compares with the packets it sent.
pub fn read_sorted_u64_pairs(dir: &Path, first: &str, second: &str) -> Vec<(u64, u64)> {
    let mut pairs: Vec<(u64, u64)> = read_json_records(dir)
        .iter()
        .map(|r| {
            (
                r[first].as_u64().expect(first),
                r[second].as_u64().expect(second),
            )
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.ffffffZ` (what Sluice writes).
pub fn rfc3339_micros(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().expect("digits");
    let days = sluice_testkit::civil::days_from_civil(n(0..4), n(5..7), n(8..10));
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1_000_000 + n(20..26)
}
