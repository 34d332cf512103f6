//! The final statistics file `sluice run|replay --stats-file PATH` writes on exit.
//!
//! Parsed strictly (unknown fields are an error) so that a change in the daemon's stats
//! format shows up in the tests that rely on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the stats file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Reading the file failed.
    #[error("cannot read stats file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("stats file {path} is malformed: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// `{"source":"xdp","seen":N,"recorded":N,"dropped_total":N,"dropped":{..},"passed":{..},
/// "in_flight":N,"files_written":N,"bytes_written":N,"balanced":true}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// `"xdp"`, `"udp"` or `"pcap"`-like source name.
    pub source: String,
    /// Packets steered to sluice (XDP redirects, or replayed packets the classifier took).
    pub seen: u64,
    /// Packets whose records were written.
    pub recorded: u64,
    /// Records (rows) written: a packet may hold several (NetFlow flows, repeated groups).
    #[serde(default)]
    pub records_written: u64,
    /// Sum of `dropped`.
    pub dropped_total: u64,
    /// Packets seen but not recorded, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Packets left to the kernel (or not taken by the replay classifier), by reason.
    pub passed: BTreeMap<String, u64>,
    /// Packets seen but neither recorded nor dropped yet; 0 at exit. An addition of the
    /// daemon's to the documented format, optional here.
    #[serde(default)]
    pub in_flight: u64,
    /// Record files completed.
    pub files_written: u64,
    /// Compressed bytes written.
    pub bytes_written: u64,
    /// The daemon's own check that `seen == recorded + dropped_total`.
    pub balanced: bool,
    /// The upload sink's account (`sink.kind = "gcs"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadStats>,
}

/// The `upload` object of the stats file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadStats {
    /// Objects created by this run.
    pub uploaded: u64,
    /// Uploads that found their object already there (412).
    pub already_there: u64,
    /// Spooled batches held by those objects.
    pub uploaded_batches: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Transient failures.
    pub retryable_errors: u64,
    /// Permanent failures.
    pub permanent_errors: u64,
    /// Batches the spool refused for space.
    pub refused_batches: u64,
    /// Corrupt spool files moved to quarantine.
    pub quarantined_files: u64,
    /// Batches still spooled at exit.
    pub left_spooled_files: u64,
    /// Their bytes.
    pub left_spooled_bytes: u64,
}

impl Stats {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`StatsError`] when the file is missing or malformed.
    pub fn read(path: &Path) -> Result<Stats, StatsError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatsError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StatsError::Json {
            path: path.to_owned(),
            source,
        })
    }

    /// Sum of all `passed` counters.
    pub fn passed_total(&self) -> u64 {
        self.passed.values().sum()
    }

    /// `passed[reason]`, 0 when absent.
    pub fn passed(&self, reason: &str) -> u64 {
        self.passed.get(reason).copied().unwrap_or(0)
    }

    /// True when `seen == recorded + dropped_total` and `dropped_total` is the sum of
    /// `dropped`.
    pub fn is_balanced(&self) -> bool {
        self.seen == self.recorded + self.dropped_total
            && self.dropped_total == self.dropped.values().sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"{"source":"xdp","seen":10,"recorded":8,"dropped_total":2,"dropped":{"channel_full":2},"passed":{"pass_not_ip":3,"pass_fragment":1},"files_written":1,"bytes_written":512,"balanced":true}"#;
        let stats: Stats = serde_json::from_str(text).expect("parse");
        assert_eq!(stats.seen, 10);
        assert_eq!(stats.in_flight, 0);
        assert_eq!(stats.passed_total(), 4);
        assert_eq!(stats.passed("pass_fragment"), 1);
        assert_eq!(stats.passed("pass_malformed"), 0);
        assert!(stats.is_balanced());
        let unknown = text.replace(r#""balanced":true"#, r#""balanced":true,"x":1"#);
        assert!(serde_json::from_str::<Stats>(&unknown).is_err());
    }
}
