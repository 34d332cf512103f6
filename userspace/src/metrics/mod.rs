//! Prometheus metrics (names and labels as docs/metrics.md): a registry refreshed from the
//! pipeline's published counters on every scrape, and the small HTTP server that serves
//! it with `/healthz` and `/readyz`.
//!
//! Nothing here is on the packet path: threads publish their counters once per batch
//! (`accounting`, `detail`), and a scrape reads the published copies.

mod modes;
mod netflow;
mod server;
mod upload;

use prometheus::{
    Encoder as _, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sluice_common::Verdict;

pub use modes::LinkModes;
pub use netflow::NetflowSnapshot;
pub use server::{MetricsServer, ServerError};

use crate::{
    accounting::{DropReason, LocalCounters},
    detail::DetailCounters,
};

/// Everything a scrape reports, read from the published counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Packets handed to Sluice.
    pub seen: u64,
    /// Summed per-thread counters.
    pub totals: LocalCounters,
    /// XDP verdict counters by `Verdict` index (empty without XDP).
    pub verdicts: Vec<u64>,
    /// Labelled counters.
    pub detail: DetailCounters,
    /// Attached, bound and writable.
    pub ready: bool,
    /// The uploader's counters (`sink.kind = "gcs"`).
    pub upload: Option<sluice_upload::UploadSnapshot>,
    /// XDP attach and AF_XDP bind modes in effect.
    pub modes: LinkModes,
    /// The `netflow` streams' shared state.
    pub netflow: Vec<NetflowSnapshot>,
}

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    ready: IntGauge,
    modes: modes::ModeGauges,
    verdicts: IntCounterVec,
    received_packets: IntCounterVec,
    received_bytes: IntCounterVec,
    xsk_rx_dropped: IntCounterVec,
    xsk_invalid_descs: IntCounterVec,
    xsk_ring_full: IntCounterVec,
    xsk_fill_empty: IntCounterVec,
    seen: IntCounter,
    recorded: IntCounter,
    discarded: IntCounterVec,
    in_flight: IntGauge,
    records: IntCounterVec,
    decode_errors: IntCounterVec,
    tunnels: IntCounterVec,
    batches: IntCounterVec,
    batch_uncompressed: IntCounterVec,
    batch_compressed: IntCounterVec,
    files: IntCounterVec,
    null_overflows: IntCounterVec,
    /// The upload stage's families (spool depth, uploads by outcome, retries, latency).
    /// Registered always, so dashboards and alerts see them; they stay at zero while the
    /// sink is the local directory (nothing is spooled or uploaded).
    spool_files: IntGauge,
    spool_bytes: IntGauge,
    spool_quarantined: IntCounter,
    spool_refused: IntCounter,
    uploads: IntCounterVec,
    uploaded_bytes: IntCounter,
    upload_objects: IntCounter,
    upload_object_batches: IntCounter,
    upload_objects_pending: IntGauge,
    upload_retries: IntCounter,
    upload_duration: std::sync::Arc<upload::SnapshotHistogram>,
    /// The `netflow` decoders' state families.
    netflow: netflow::NetflowMetrics,
    /// The HTTP endpoint's own connections (`server`).
    connections: server::ConnectionCounters,
}

/// Outcomes of an upload (`sluice_uploads_total{outcome}`).
pub const UPLOAD_OUTCOMES: [&str; 4] = ["ok", "exists", "retryable_error", "permanent_error"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Raises a counter to `value` (counters only go up; a lower value is ignored).
/// Registers a collector the registry shares with its owner.
struct SharedCollector(std::sync::Arc<upload::SnapshotHistogram>);

impl prometheus::core::Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

fn raise(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

impl Metrics {
    /// Registers every metric; `streams` (name and decode error kinds) and `queues`
    /// pre-create their label values so a dashboard sees zeros, not gaps, from the start.
    pub fn new(
        streams: &[(String, Vec<&'static str>)],
        queues: &[String],
    ) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new("sluice_build_info", "The running build (value 1)."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let ready = IntGauge::new("sluice_ready", "1 when attached, bound and writable.")?;
        registry.register(Box::new(ready.clone()))?;
        let modes = modes::ModeGauges::register(&registry, &crate::kernel::release())?;
        let seen = IntCounter::new("sluice_seen_packets_total", "Packets handed to Sluice.")?;
        registry.register(Box::new(seen.clone()))?;
        let recorded = IntCounter::new(
            "sluice_recorded_packets_total",
            "Packets whose records were written.",
        )?;
        registry.register(Box::new(recorded.clone()))?;
        let in_flight = IntGauge::new(
            "sluice_in_flight_packets",
            "Packets seen, neither recorded nor discarded yet.",
        )?;
        registry.register(Box::new(in_flight.clone()))?;
        let spool_files = IntGauge::new("sluice_spool_files", "Batches in the spool.")?;
        registry.register(Box::new(spool_files.clone()))?;
        let spool_bytes = IntGauge::new("sluice_spool_bytes", "Bytes in the spool.")?;
        registry.register(Box::new(spool_bytes.clone()))?;
        let upload_retries = IntCounter::new(
            "sluice_upload_retries_total",
            "Upload attempts beyond the first.",
        )?;
        registry.register(Box::new(upload_retries.clone()))?;
        let spool_quarantined = IntCounter::new(
            "sluice_spool_quarantined_files_total",
            "Corrupt spool files moved to quarantine.",
        )?;
        registry.register(Box::new(spool_quarantined.clone()))?;
        let spool_refused = IntCounter::new(
            "sluice_spool_refused_batches_total",
            "Batches the spool refused for space (their packets: discarded, spool_full).",
        )?;
        registry.register(Box::new(spool_refused.clone()))?;
        let uploaded_bytes = IntCounter::new(
            "sluice_uploaded_bytes_total",
            "Bytes of objects that reached the bucket.",
        )?;
        registry.register(Box::new(uploaded_bytes.clone()))?;
        let upload_objects = IntCounter::new(
            "sluice_upload_objects_total",
            "Objects that reached the bucket (each combines one or more spooled batches).",
        )?;
        registry.register(Box::new(upload_objects.clone()))?;
        let upload_object_batches = IntCounter::new(
            "sluice_upload_object_batches_total",
            "Spooled batches held by the objects that reached the bucket.",
        )?;
        registry.register(Box::new(upload_object_batches.clone()))?;
        let upload_objects_pending = IntGauge::new(
            "sluice_upload_objects_pending",
            "Objects whose batches are decided (manifest written) and not yet uploaded.",
        )?;
        registry.register(Box::new(upload_objects_pending.clone()))?;
        let upload_duration = std::sync::Arc::new(upload::SnapshotHistogram::upload_duration()?);
        registry.register(Box::new(SharedCollector(std::sync::Arc::clone(
            &upload_duration,
        ))))?;
        let uploads = counter_vec(
            &registry,
            "sluice_uploads_total",
            "Uploads by outcome.",
            &["outcome"],
        )?;
        for outcome in UPLOAD_OUTCOMES {
            uploads.with_label_values(&[outcome]);
        }
        let m = Self {
            netflow: netflow::NetflowMetrics::register(&registry)?,
            connections: server::ConnectionCounters::register(&registry)?,
            modes,
            verdicts: counter_vec(
                &registry,
                "sluice_xdp_verdict_packets_total",
                "XDP program decisions, summed over CPUs.",
                &["verdict"],
            )?,
            received_packets: counter_vec(
                &registry,
                "sluice_received_packets_total",
                "Frames read per receive queue.",
                &["queue"],
            )?,
            received_bytes: counter_vec(
                &registry,
                "sluice_received_bytes_total",
                "Bytes read per receive queue.",
                &["queue"],
            )?,
            xsk_rx_dropped: counter_vec(
                &registry,
                "sluice_xsk_rx_dropped_packets_total",
                "AF_XDP rx_dropped: no free UMEM frame, or frame too large.",
                &["queue"],
            )?,
            xsk_invalid_descs: counter_vec(
                &registry,
                "sluice_xsk_rx_invalid_descs_total",
                "AF_XDP rx_invalid_descs.",
                &["queue"],
            )?,
            xsk_ring_full: counter_vec(
                &registry,
                "sluice_xsk_rx_ring_full_packets_total",
                "AF_XDP rx_ring_full: receive ring full.",
                &["queue"],
            )?,
            xsk_fill_empty: counter_vec(
                &registry,
                "sluice_xsk_fill_ring_empty_total",
                "AF_XDP rx_fill_ring_empty_descs: fill ring starvation.",
                &["queue"],
            )?,
            discarded: counter_vec(
                &registry,
                "sluice_discarded_packets_total",
                "Packets seen but not recorded, by reason.",
                &["reason"],
            )?,
            records: counter_vec(
                &registry,
                "sluice_records_total",
                "Records written, by stream.",
                &["stream"],
            )?,
            decode_errors: counter_vec(
                &registry,
                "sluice_decode_errors_total",
                "Payloads a decoder refused.",
                &["stream", "kind"],
            )?,
            tunnels: counter_vec(
                &registry,
                "sluice_tunnel_packets_total",
                "Seen packets per tunnel source (none: plain UDP; other: beyond the cap).",
                &["tunnel_src"],
            )?,
            batches: counter_vec(
                &registry,
                "sluice_batches_total",
                "Batches written, by stream.",
                &["stream"],
            )?,
            batch_uncompressed: counter_vec(
                &registry,
                "sluice_batch_uncompressed_bytes_total",
                "Batch bytes before compression.",
                &["stream"],
            )?,
            batch_compressed: counter_vec(
                &registry,
                "sluice_batch_compressed_bytes_total",
                "Batch bytes after compression.",
                &["stream"],
            )?,
            files: counter_vec(
                &registry,
                "sluice_files_written_total",
                "Files written by the sink.",
                &["stream"],
            )?,
            null_overflows: counter_vec(
                &registry,
                "sluice_null_overflow_values_total",
                "UInt64 values above INT64's range written as null (BigQuery has no unsigned 64-bit type).",
                &["stream"],
            )?,
            registry,
            ready,
            seen,
            recorded,
            in_flight,
            spool_files,
            spool_bytes,
            spool_quarantined,
            spool_refused,
            uploads,
            uploaded_bytes,
            upload_objects,
            upload_object_batches,
            upload_objects_pending,
            upload_retries,
            upload_duration,
        };
        for reason in DropReason::ALL {
            m.discarded.with_label_values(&[reason.name()]);
        }
        for (stream, kinds) in streams {
            for vec in [
                &m.records,
                &m.batches,
                &m.batch_uncompressed,
                &m.batch_compressed,
                &m.files,
                &m.null_overflows,
            ] {
                vec.with_label_values(&[stream.as_str()]);
            }
            for kind in kinds {
                m.decode_errors.with_label_values(&[stream.as_str(), kind]);
            }
        }
        for verdict in Verdict::ALL {
            m.verdicts.with_label_values(&[verdict.name()]);
        }
        m.tunnels.with_label_values(&["other"]);
        for queue in queues {
            for vec in [
                &m.received_packets,
                &m.received_bytes,
                &m.xsk_rx_dropped,
                &m.xsk_invalid_descs,
                &m.xsk_ring_full,
                &m.xsk_fill_empty,
            ] {
                vec.with_label_values(&[queue.as_str()]);
            }
        }
        Ok(m)
    }

    /// Refreshes every metric from a snapshot.
    pub fn update(&self, s: &Snapshot) {
        self.ready.set(i64::from(s.ready));
        self.modes.update(&s.modes);
        raise(&self.seen, s.seen);
        raise(&self.recorded, s.totals.recorded);
        let dropped = s.totals.dropped_total();
        self.in_flight.set(
            i64::try_from(s.seen.saturating_sub(s.totals.recorded + dropped)).unwrap_or(i64::MAX),
        );
        for reason in DropReason::ALL {
            raise(
                &self.discarded.with_label_values(&[reason.name()]),
                s.totals.dropped[reason as usize],
            );
        }
        for verdict in Verdict::ALL {
            if let Some(n) = s.verdicts.get(verdict as usize) {
                raise(&self.verdicts.with_label_values(&[verdict.name()]), *n);
            }
        }
        for (queue, q) in &s.detail.queues {
            let label = [queue.as_str()];
            raise(&self.received_packets.with_label_values(&label), q.packets);
            raise(&self.received_bytes.with_label_values(&label), q.bytes);
            raise(&self.xsk_rx_dropped.with_label_values(&label), q.rx_dropped);
            raise(
                &self.xsk_invalid_descs.with_label_values(&label),
                q.rx_invalid_descs,
            );
            raise(
                &self.xsk_ring_full.with_label_values(&label),
                q.rx_ring_full,
            );
            raise(
                &self.xsk_fill_empty.with_label_values(&label),
                q.fill_ring_empty,
            );
        }
        for (stream, t) in &s.detail.streams {
            let label = [stream.as_str()];
            raise(&self.records.with_label_values(&label), t.records);
            raise(&self.batches.with_label_values(&label), t.batches);
            raise(&self.files.with_label_values(&label), t.batches);
            raise(
                &self.batch_uncompressed.with_label_values(&label),
                t.uncompressed_bytes,
            );
            raise(
                &self.batch_compressed.with_label_values(&label),
                t.compressed_bytes,
            );
            raise(
                &self.null_overflows.with_label_values(&label),
                t.null_overflows,
            );
        }
        for ((stream, kind), n) in &s.detail.decode_errors {
            raise(
                &self
                    .decode_errors
                    .with_label_values(&[stream.as_str(), kind]),
                *n,
            );
        }
        self.netflow.update(&s.netflow);
        for (tunnel, n) in s.detail.tunnels.labelled() {
            raise(&self.tunnels.with_label_values(&[tunnel.as_str()]), n);
        }
        if let Some(u) = &s.upload {
            let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.spool_files.set(gauge(u.spool.files));
            self.spool_bytes.set(gauge(u.spool.bytes));
            raise(&self.spool_quarantined, u.spool.quarantined);
            raise(&self.spool_refused, u.spool.refused);
            for outcome in sluice_upload::UploadOutcome::ALL {
                raise(
                    &self.uploads.with_label_values(&[outcome.label()]),
                    u.uploads(outcome),
                );
            }
            raise(&self.uploaded_bytes, u.uploaded_bytes);
            raise(&self.upload_objects, u.objects);
            raise(&self.upload_object_batches, u.object_batches);
            self.upload_objects_pending
                .set(gauge(u.spool.planned_objects));
            raise(&self.upload_retries, u.retries);
            self.upload_duration.set(&u.duration);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            out = format!("# encoding failed: {e}\n").into_bytes();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detail::{QueueTotals, StreamTotals};

    #[test]
    fn renders_every_reason_and_the_values_of_a_snapshot() -> Result<(), prometheus::Error> {
        let m = Metrics::new(
            &[("raw".into(), vec![]), ("flows".into(), vec!["truncated"])],
            &["0".into()],
        )?;
        let mut s = Snapshot {
            seen: 10,
            ready: true,
            detail: DetailCounters::new(8),
            ..Snapshot::default()
        };
        s.totals.recorded = 7;
        s.totals.dropped[DropReason::RingFull as usize] = 2;
        s.verdicts = vec![9, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        s.detail.queues.insert(
            "0".into(),
            QueueTotals {
                packets: 10,
                bytes: 840,
                ..QueueTotals::default()
            },
        );
        s.detail.streams.insert(
            "flows".into(),
            StreamTotals {
                records: 70,
                batches: 1,
                uncompressed_bytes: 9000,
                compressed_bytes: 900,
                null_overflows: 2,
            },
        );
        s.detail
            .decode_errors
            .insert(("flows".into(), "truncated"), 1);
        s.detail.tunnels.add(None, 1);
        m.update(&s);
        m.update(&s);
        let text = String::from_utf8_lossy(&m.render()).into_owned();
        for line in [
            "sluice_seen_packets_total 10",
            "sluice_recorded_packets_total 7",
            "sluice_in_flight_packets 1",
            "sluice_ready 1",
            "sluice_discarded_packets_total{reason=\"ring_full\"} 2",
            "sluice_discarded_packets_total{reason=\"decode_error\"} 0",
            "sluice_xdp_verdict_packets_total{verdict=\"redirect_gre\"} 9",
            "sluice_xdp_verdict_packets_total{verdict=\"pass_not_gre_or_udp\"} 4",
            "sluice_received_packets_total{queue=\"0\"} 10",
            "sluice_received_bytes_total{queue=\"0\"} 840",
            "sluice_records_total{stream=\"flows\"} 70",
            "sluice_records_total{stream=\"raw\"} 0",
            "sluice_decode_errors_total{kind=\"truncated\",stream=\"flows\"} 1",
            "sluice_tunnel_packets_total{tunnel_src=\"none\"} 1",
            "sluice_batch_compressed_bytes_total{stream=\"flows\"} 900",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("sluice_build_info{version=\""));
        Ok(())
    }

    /// docs/metrics.md is the contract dashboards and alerts are written against: every
    /// metric it lists is exported, and every exported metric is listed.
    #[test]
    fn every_documented_metric_is_exported_and_every_exported_one_documented()
    -> Result<(), prometheus::Error> {
        let doc = include_str!("../../../docs/metrics.md");
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `sluice_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let m = Metrics::new(
            &[("raw".into(), vec![]), ("flows".into(), vec!["truncated"])],
            &["0".into()],
        )?;
        // The mode families have a series only once the source has attached, the
        // `netflow` ones once a snapshot lists a `netflow` stream.
        m.update(&Snapshot {
            modes: LinkModes {
                interface: "eth0".into(),
                xdp: Some(("native", "auto")),
                queues: vec![(0, "copy", "auto")],
            },
            netflow: vec![NetflowSnapshot {
                stream: "flows".into(),
                ..NetflowSnapshot::default()
            }],
            ..Snapshot::default()
        });
        let text = String::from_utf8_lossy(&m.render()).into_owned();
        let exported: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE sluice_"))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect();
        let documented: std::collections::BTreeSet<String> =
            documented.into_iter().map(str::to_owned).collect();
        assert_eq!(exported, documented);
        Ok(())
    }
}
