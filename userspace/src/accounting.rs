//! Where every packet went: drop reasons, per-stage counters, and the final balance.
//!
//! The promise is exact: packets seen = packets recorded + packets dropped, each drop under
//! a named [`DropReason`]. Hot-path stages keep plain local counters and publish them to a
//! shared [`StageCounters`] slot once per batch (never an atomic per packet); readers sum
//! the slots.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sluice_common::{VERDICT_COUNT, Verdict};

/// Why a packet that reached Sluice did not become a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// The AF_XDP receive ring was full (kernel `rx_ring_full`).
    RingFull = 0,
    /// The kernel had no free UMEM frame for the packet, or it was larger than a frame (`rx_dropped`).
    XskRxDropped,
    /// The XDP program redirected the packet but it never reached a socket ring.
    RedirectError,
    /// Every worker was busy and the frame queue was full.
    WorkerQueueFull,
    /// Headers shorter than they claim.
    Truncated,
    /// Headers that are invalid (bad version or length fields).
    Malformed,
    /// The GRE header carried a checksum (C bit) that does not match the packet: corrupted
    /// on the way (the kernel's own GRE path drops these too).
    GreChecksum,
    /// The XDP program steered a frame that its userspace twin ([`crate::decap::classify`])
    /// would have passed: the two classifiers disagree. Never expected; alerted on.
    ClassifierMismatch,
    /// The UDP socket's receive buffer overflowed (kernel `SO_RXQ_OVFL`).
    SocketOverflow,
    /// The batch holding the record could not be written.
    SinkError,
    /// The payload did not fit its decoder (or, NetFlow, its template never came).
    DecodeError,
    /// The spool refused the batch: its byte limit, or the disk, is full.
    SpoolFull,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 12;
    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::RingFull,
        DropReason::XskRxDropped,
        DropReason::RedirectError,
        DropReason::WorkerQueueFull,
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::GreChecksum,
        DropReason::ClassifierMismatch,
        DropReason::SocketOverflow,
        DropReason::SinkError,
        DropReason::DecodeError,
        DropReason::SpoolFull,
    ];

    /// Stable snake_case name used in logs, reports and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::RingFull => "ring_full",
            DropReason::XskRxDropped => "xsk_rx_dropped",
            DropReason::RedirectError => "redirect_error",
            DropReason::WorkerQueueFull => "worker_queue_full",
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::GreChecksum => "gre_checksum",
            DropReason::ClassifierMismatch => "classifier_mismatch",
            DropReason::SocketOverflow => "socket_overflow",
            DropReason::SinkError => "sink_error",
            DropReason::DecodeError => "decode_error",
            DropReason::SpoolFull => "spool_full",
        }
    }
}

/// Plain counters owned by one thread; published with [`StageCounters::publish`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalCounters {
    /// Packets that entered this stage (frames received, datagrams read, pcap packets read).
    pub received: u64,
    /// Packets not steered to Sluice (replay classifier), by verdict index.
    pub passed: [u64; VERDICT_COUNT as usize],
    /// Packets decoded into a batch.
    pub encoded: u64,
    /// Packets whose records were written (or that decoded to no record, e.g. a
    /// NetFlow template-only packet).
    pub recorded: u64,
    /// Records (rows) written: a packet may hold many (NetFlow flows, repeated groups).
    pub records: u64,
    /// Batches written, and their compressed bytes.
    pub files_written: u64,
    /// Compressed bytes written.
    pub bytes_written: u64,
    /// Drops by reason.
    pub dropped: [u64; DropReason::COUNT],
}

impl LocalCounters {
    /// Counts `n` drops under `reason`.
    #[inline]
    pub fn drop_n(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason as usize] += n;
    }

    /// Counts a packet left to the kernel / not steered.
    #[inline]
    pub fn pass(&mut self, verdict: Verdict) {
        self.passed[verdict as usize] += 1;
    }

    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &LocalCounters) {
        self.received += other.received;
        self.encoded += other.encoded;
        self.recorded += other.recorded;
        self.records += other.records;
        self.files_written += other.files_written;
        self.bytes_written += other.bytes_written;
        for (a, b) in self.passed.iter_mut().zip(other.passed) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

const SLOT_LEN: usize = 6 + VERDICT_COUNT as usize + DropReason::COUNT;

/// A shared, lock-free copy of one thread's [`LocalCounters`], refreshed once per batch.
#[derive(Debug)]
pub struct StageCounters {
    values: [AtomicU64; SLOT_LEN],
}

impl Default for StageCounters {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl StageCounters {
    /// Stores the owner's current totals (the owner is the only writer).
    pub fn publish(&self, local: &LocalCounters) {
        let head = [
            local.received,
            local.encoded,
            local.recorded,
            local.files_written,
            local.bytes_written,
            local.records,
        ];
        let all = head.iter().chain(&local.passed).chain(&local.dropped);
        for (slot, value) in self.values.iter().zip(all) {
            slot.store(*value, Ordering::Relaxed);
        }
    }

    /// Reads the last published totals.
    pub fn snapshot(&self) -> LocalCounters {
        let v: Vec<u64> = self
            .values
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        let mut out = LocalCounters {
            received: v[0],
            encoded: v[1],
            recorded: v[2],
            files_written: v[3],
            bytes_written: v[4],
            records: v[5],
            ..LocalCounters::default()
        };
        let passed = &v[6..6 + VERDICT_COUNT as usize];
        out.passed.copy_from_slice(passed);
        out.dropped
            .copy_from_slice(&v[6 + VERDICT_COUNT as usize..]);
        out
    }
}

/// The account of a run, printed at exit and in the periodic log line, and written as
/// JSON by `--stats-file`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// `xdp`, `udp` or `replay`.
    pub source: &'static str,
    /// Packets steered to Sluice.
    pub seen: u64,
    /// Packets written as records.
    pub recorded: u64,
    /// Records written (a packet may hold several).
    pub records_written: u64,
    /// All drops.
    pub dropped_total: u64,
    /// Drops by reason (every reason listed, zero or not).
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Packets left to the kernel (XDP) or not matching the filter (replay), by verdict.
    pub passed: std::collections::BTreeMap<&'static str, u64>,
    /// Packets seen but not yet recorded or dropped (in batches still open); 0 at exit.
    pub in_flight: u64,
    /// Record files written.
    pub files_written: u64,
    /// Compressed bytes written.
    pub bytes_written: u64,
    /// seen == recorded + dropped_total.
    pub balanced: bool,
    /// The upload sink's account (`sink.kind = "gcs"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<crate::upload::UploadSummary>,
}

impl Report {
    /// Builds a report; `seen` comes from the source (XDP counters, datagrams, pcap).
    pub fn new(
        source: &'static str,
        seen: u64,
        totals: &LocalCounters,
        passed_by_verdict: &[u64],
    ) -> Self {
        let dropped_total = totals.dropped_total();
        let dropped = DropReason::ALL
            .iter()
            .map(|r| (r.name(), totals.dropped[*r as usize]))
            .collect();
        let passed = Verdict::ALL
            .iter()
            .filter(|v| !v.is_redirect())
            .map(|v| {
                (
                    v.name(),
                    passed_by_verdict.get(*v as usize).copied().unwrap_or(0),
                )
            })
            .collect();
        Self {
            source,
            seen,
            recorded: totals.recorded,
            records_written: totals.records,
            dropped_total,
            dropped,
            passed,
            in_flight: seen.saturating_sub(totals.recorded + dropped_total),
            files_written: totals.files_written,
            bytes_written: totals.bytes_written,
            balanced: seen == totals.recorded + dropped_total,
            upload: None,
        }
    }

    /// A one-line human summary for logs.
    pub fn summary(&self) -> String {
        let drops: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        format!(
            "seen={} recorded={} records={} dropped={} [{}] in_flight={} files={} bytes={}",
            self.seen,
            self.recorded,
            self.records_written,
            self.dropped_total,
            drops.join(" "),
            self.in_flight,
            self.files_written,
            self.bytes_written
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_snapshot_round_trip() {
        let mut local = LocalCounters {
            received: 7,
            encoded: 5,
            recorded: 4,
            files_written: 1,
            bytes_written: 99,
            records: 6,
            ..LocalCounters::default()
        };
        local.drop_n(DropReason::Malformed, 2);
        local.pass(Verdict::PassFragment);
        let shared = StageCounters::default();
        shared.publish(&local);
        assert_eq!(shared.snapshot(), local);
    }

    #[test]
    fn report_balances_exactly() {
        let mut totals = LocalCounters {
            recorded: 10,
            ..LocalCounters::default()
        };
        totals.drop_n(DropReason::RingFull, 3);
        let r = Report::new("xdp", 13, &totals, &[0; VERDICT_COUNT as usize]);
        assert!(r.balanced);
        assert_eq!(r.dropped["ring_full"], 3);
        assert_eq!(r.dropped.len(), DropReason::COUNT);
        let r = Report::new("xdp", 14, &totals, &[0; VERDICT_COUNT as usize]);
        assert!(!r.balanced);
        assert_eq!(r.in_flight, 1);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
