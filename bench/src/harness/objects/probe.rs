//! What the objects mode reads about a running daemon besides its stats file: the upload
//! counters on its `/metrics` endpoint (scraped inside the receiver namespace, where the
//! endpoint listens on the loopback), what is left in its spool, and what the bucket holds
//! in the end. The CPU time of its uploader threads (`sluice-upload`, the dispatcher, and
//! `sluice-upload-rt`, its tokio runtime's workers and blocking pool) is read with
//! [`crate::harness::threads::ThreadCpu`], shared with the packet-rate rows.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_testkit::netns::Netns;

/// The daemon's metrics port (its default `[metrics] listen`, 127.0.0.1:9464).
pub const METRICS_PORT: u16 = 9464;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] sluice_testkit::netns::NetnsError),
    /// The request failed.
    #[error("GET http://127.0.0.1:{port}/metrics: {source}")]
    Http {
        /// The port.
        port: u16,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The answer lacks a counter.
    #[error("/metrics: {0}")]
    Format(String),
}

/// The upload counters of one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadCounters {
    /// `sluice_upload_objects_total`.
    pub objects: u64,
    /// `sluice_upload_object_batches_total`.
    pub object_batches: u64,
    /// `sluice_uploaded_bytes_total`.
    pub uploaded_bytes: u64,
    /// `sluice_upload_objects_pending`.
    pub objects_pending: u64,
    /// `sluice_spool_files`.
    pub spool_files: u64,
}

/// The unlabelled sample `name` of Prometheus text: `name value` on a line of its own.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// Reads the upload counters out of a `/metrics` body.
///
/// # Errors
/// The name of the first counter that is missing (a daemon without the gcs sink has none).
pub fn parse_metrics(text: &str) -> Result<UploadCounters, String> {
    let counter = |name: &str| -> Result<u64, String> {
        sample(text, name)
            .map(|value| value as u64)
            .ok_or_else(|| format!("no {name}"))
    };
    Ok(UploadCounters {
        objects: counter("sluice_upload_objects_total")?,
        object_batches: counter("sluice_upload_object_batches_total")?,
        uploaded_bytes: counter("sluice_uploaded_bytes_total")?,
        objects_pending: counter("sluice_upload_objects_pending")?,
        spool_files: counter("sluice_spool_files")?,
    })
}

/// One `GET path` on 127.0.0.1:`port` of the calling thread's namespace, bounded by 5 s;
/// the body of a 200 answer.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        let status = head.lines().next().unwrap_or_default();
        return Err(std::io::Error::other(format!("answered {status:?}")));
    }
    Ok(body.to_owned())
}

/// Scrapes the daemon's `/metrics` inside `netns`.
///
/// # Errors
/// [`ProbeError`].
pub fn scrape(netns: &Netns, port: u16) -> Result<UploadCounters, ProbeError> {
    let body = netns
        .run_in(|| http_get(port, "/metrics"))?
        .map_err(|source| ProbeError::Http { port, source })?;
    parse_metrics(&body).map_err(ProbeError::Format)
}

/// Files left in a spool directory after the daemon stopped, at any depth (manifests,
/// quarantine, temporaries), except its lock file.
///
/// # Errors
/// When the directory cannot be read.
pub fn spool_leftovers(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut left = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path != dir.join(".lock") {
                left.push(path);
            }
        }
    }
    left.sort();
    Ok(left)
}

/// What a bucket listing holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketSummary {
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Spooled batches they hold: `N` for an object named `...-x<N>.<ext>`, else 1.
    pub batches: u64,
    /// Objects holding the most batches the uploader puts in one
    /// ([`super::MAX_BATCHES`]).
    pub at_batch_cap: u64,
}

/// Batches in the object `name` (docs/upload.md, "Names").
pub fn batches_in_object(name: &str) -> u64 {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.split('.').next().unwrap_or(file);
    stem.rsplit_once("-x")
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// Sums a listing of (name, size).
pub fn summarize(listing: &[(String, u64)]) -> BucketSummary {
    listing
        .iter()
        .fold(BucketSummary::default(), |sum, (name, size)| {
            let batches = batches_in_object(name);
            BucketSummary {
                objects: sum.objects + 1,
                bytes: sum.bytes + size,
                batches: sum.batches + batches,
                at_batch_cap: sum.at_batch_cap + u64::from(batches >= super::MAX_BATCHES),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_counters_are_read_from_prometheus_text() {
        let text = "# HELP sluice_upload_objects_total Objects.\n\
                    # TYPE sluice_upload_objects_total counter\n\
                    sluice_upload_objects_total 12\n\
                    sluice_upload_objects_pending 1\n\
                    sluice_upload_object_batches_total 345\n\
                    sluice_uploaded_bytes_total 3.3554432e+08\n\
                    sluice_uploads_total{outcome=\"ok\"} 12\n\
                    sluice_spool_files 7\n\
                    sluice_spool_files_other 9\n";
        assert_eq!(
            parse_metrics(text),
            Ok(UploadCounters {
                objects: 12,
                object_batches: 345,
                uploaded_bytes: 335_544_320,
                objects_pending: 1,
                spool_files: 7,
            })
        );
        assert_eq!(
            parse_metrics("sluice_upload_objects_total 1\n"),
            Err("no sluice_upload_object_batches_total".into())
        );
    }

    #[test]
    fn object_names_tell_their_batches() {
        assert_eq!(
            batches_in_object(
                "b/raw/dt=2026-11-22/hour=03/probe1-3f2a9c1e-00c0ffee-2-00000017-x12.parquet"
            ),
            12
        );
        assert_eq!(
            batches_in_object(
                "b/raw/dt=2026-11-22/hour=03/bench-3f2a9c1e-00c0ffee-2-00000017.parquet"
            ),
            1
        );
        assert_eq!(batches_in_object("p/raw/host-x1-a-00000001.ndjson.gz"), 1);
        assert_eq!(batches_in_object("p/raw/h-00000001-x3.ndjson.gz"), 3);
        let listing = vec![
            ("p/raw/h-1-x3.parquet".to_owned(), 100),
            ("p/raw/h-4.parquet".to_owned(), 20),
            ("p/raw/h-5-x1024.parquet".to_owned(), 1000),
        ];
        assert_eq!(
            summarize(&listing),
            BucketSummary {
                objects: 3,
                bytes: 1120,
                batches: 1028,
                at_batch_cap: 1,
            }
        );
    }

    #[test]
    fn spool_leftovers_skip_only_the_lock() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join(".lock"), b"").expect("lock");
        std::fs::create_dir(dir.path().join("objects")).expect("objects dir");
        assert_eq!(
            spool_leftovers(dir.path()).expect("read"),
            Vec::<PathBuf>::new()
        );
        std::fs::write(dir.path().join("objects/a.object"), b"m").expect("manifest");
        assert_eq!(
            spool_leftovers(dir.path()).expect("read"),
            vec![dir.path().join("objects/a.object")]
        );
    }
}
