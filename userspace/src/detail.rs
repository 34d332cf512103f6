//! Labelled counters that do not fit the fixed per-thread slots of `accounting`: per
//! stream (records, batches, bytes, files), per decoder error kind, per tunnel source, and
//! per receive queue (frames, bytes, the AF_XDP socket's kernel statistics).
//!
//! Each thread counts into its own [`DetailCounters`] and publishes a copy under its own
//! mutex once per batch (never a lock per packet); readers (the metrics endpoint) merge
//! every thread's copy. Label sets are bounded: streams and error kinds are fixed at
//! start, queues are configured, and tunnels are capped ([`TunnelCounts`]).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// Per-stream totals, counted by the sink thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamTotals {
    /// Records written.
    pub records: u64,
    /// Batches written.
    pub batches: u64,
    /// Bytes before compression.
    pub uncompressed_bytes: u64,
    /// Bytes after compression (written).
    pub compressed_bytes: u64,
    /// `UInt64` values above `i64::MAX` written as null.
    pub null_overflows: u64,
}

/// Per-queue receive totals and the socket's kernel statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueTotals {
    /// Frames read from the receive ring.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// `XDP_STATISTICS.rx_dropped`.
    pub rx_dropped: u64,
    /// `rx_invalid_descs`.
    pub rx_invalid_descs: u64,
    /// `rx_ring_full`.
    pub rx_ring_full: u64,
    /// `rx_fill_ring_empty_descs`.
    pub fill_ring_empty: u64,
}

/// Packets per tunnel source, at most `cap` sources; the rest are counted as `other`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelCounts {
    cap: usize,
    by_source: Vec<(Option<IpAddr>, u64)>,
    other: u64,
    last: usize,
}

impl TunnelCounts {
    /// Counts for at most `cap` distinct sources.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// Counts `n` packets from `source` (`None`: plain UDP).
    #[inline]
    pub fn add(&mut self, source: Option<IpAddr>, n: u64) {
        // Consecutive packets mostly share a tunnel: try the last hit first.
        if let Some((s, count)) = self.by_source.get_mut(self.last)
            && *s == source
        {
            *count += n;
            return;
        }
        if let Some(i) = self.by_source.iter().position(|(s, _)| *s == source) {
            self.by_source[i].1 += n;
            self.last = i;
        } else if self.by_source.len() < self.cap {
            self.by_source.push((source, n));
            self.last = self.by_source.len() - 1;
        } else {
            self.other += n;
        }
    }

    /// Adds another thread's counts (respecting this cap).
    pub fn merge(&mut self, other: &TunnelCounts) {
        for (source, n) in &other.by_source {
            self.add(*source, *n);
        }
        self.other += other.other;
    }

    /// `(label, packets)`: the address, `none` for plain UDP, and `other`.
    pub fn labelled(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .by_source
            .iter()
            .map(|(s, n)| (s.map_or_else(|| "none".to_owned(), |ip| ip.to_string()), *n))
            .collect();
        out.push(("other".to_owned(), self.other));
        out
    }
}

/// One thread's labelled counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetailCounters {
    /// By stream name.
    pub streams: BTreeMap<String, StreamTotals>,
    /// By (stream name, error kind).
    pub decode_errors: BTreeMap<(String, &'static str), u64>,
    /// By tunnel source.
    pub tunnels: TunnelCounts,
    /// By receive queue (label: queue number, `udp` or `replay`).
    pub queues: BTreeMap<String, QueueTotals>,
}

impl DetailCounters {
    /// Empty counters with the tunnel cap.
    pub fn new(max_tunnels: usize) -> Self {
        Self {
            tunnels: TunnelCounts::new(max_tunnels),
            ..Self::default()
        }
    }

    fn merge(&mut self, other: &DetailCounters) {
        for (name, t) in &other.streams {
            let e = self.streams.entry(name.clone()).or_default();
            e.records += t.records;
            e.batches += t.batches;
            e.uncompressed_bytes += t.uncompressed_bytes;
            e.compressed_bytes += t.compressed_bytes;
            e.null_overflows += t.null_overflows;
        }
        for (key, n) in &other.decode_errors {
            *self.decode_errors.entry(key.clone()).or_default() += n;
        }
        self.tunnels.merge(&other.tunnels);
        for (queue, q) in &other.queues {
            let e = self.queues.entry(queue.clone()).or_default();
            e.packets += q.packets;
            e.bytes += q.bytes;
            e.rx_dropped += q.rx_dropped;
            e.rx_invalid_descs += q.rx_invalid_descs;
            e.rx_ring_full += q.rx_ring_full;
            e.fill_ring_empty += q.fill_ring_empty;
        }
    }
}

/// One thread's published copy.
pub type DetailSlot = Arc<Mutex<DetailCounters>>;

/// Every thread's slot.
#[derive(Clone, Debug, Default)]
pub struct DetailSet {
    slots: Arc<Mutex<Vec<DetailSlot>>>,
    max_tunnels: usize,
}

impl DetailSet {
    /// A set whose tunnel counts are capped at `max_tunnels` sources.
    pub fn new(max_tunnels: usize) -> Self {
        Self {
            slots: Arc::default(),
            max_tunnels,
        }
    }

    /// Fresh local counters for a thread (with the tunnel cap).
    pub fn local(&self) -> DetailCounters {
        DetailCounters::new(self.max_tunnels)
    }

    /// A new slot for one thread.
    pub fn register(&self) -> DetailSlot {
        let slot = Arc::new(Mutex::new(self.local()));
        if let Ok(mut slots) = self.slots.lock() {
            slots.push(Arc::clone(&slot));
        }
        slot
    }

    /// Every slot merged.
    pub fn total(&self) -> DetailCounters {
        let mut total = self.local();
        if let Ok(slots) = self.slots.lock() {
            for slot in slots.iter() {
                if let Ok(d) = slot.lock() {
                    total.merge(&d);
                }
            }
        }
        total
    }
}

/// Publishes `local` into `slot` (one lock, once per batch).
pub fn publish(slot: &DetailSlot, local: &DetailCounters) {
    if let Ok(mut shared) = slot.lock() {
        shared.clone_from(local);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn tunnels_beyond_the_cap_are_other() {
        let mut t = TunnelCounts::new(2);
        let a = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        let c = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)));
        t.add(a, 1);
        t.add(a, 1);
        t.add(None, 1);
        t.add(b, 5);
        t.add(c, 7);
        t.add(a, 1);
        assert_eq!(
            t.labelled(),
            vec![
                ("192.0.2.1".into(), 3),
                ("none".into(), 1),
                ("other".into(), 12)
            ]
        );
    }

    #[test]
    fn set_merges_every_slot() {
        let set = DetailSet::new(8);
        let one = set.register();
        let two = set.register();
        let mut local = set.local();
        local.decode_errors.insert(("flows".into(), "truncated"), 2);
        local.queues.insert(
            "0".into(),
            QueueTotals {
                packets: 3,
                ..QueueTotals::default()
            },
        );
        publish(&one, &local);
        publish(&two, &local);
        let total = set.total();
        assert_eq!(total.decode_errors[&("flows".to_owned(), "truncated")], 4);
        assert_eq!(total.queues["0"].packets, 6);
    }
}
