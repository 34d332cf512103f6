//! The `netflow` decoders' counters (all workers of one factory) and the size of the state
//! they share, as the daemon exports them (`sluice_netflow_*`, docs/metrics.md).
//!
//! Counters are atomics touched only on the rare paths (templates changing, holding,
//! releasing, expiring, refusing), never for a packet whose templates are known.

use std::sync::atomic::{AtomicU64, Ordering};

use super::limit::Limit;

/// Counters of the shared state.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub templates_learned: AtomicU64,
    pub templates_withdrawn: AtomicU64,
    pub templates_expired: AtomicU64,
    pub options_records: AtomicU64,
    pub packets_held: AtomicU64,
    pub packets_released: AtomicU64,
    pub packets_expired: AtomicU64,
    pub release_failures: AtomicU64,
    /// By [`Limit`], in declaration order.
    refused: [AtomicU64; 5],
}

impl Counters {
    /// Counts `n` refusals by `limit`; returns the total so far.
    pub fn refuse(&self, limit: Limit, n: u64) -> u64 {
        self.refused
            .get(limit as usize)
            .map_or(0, |c| c.fetch_add(n, Ordering::Relaxed) + n)
    }

    /// Adds `n` to `counter`; returns the total so far.
    pub fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }

    /// A snapshot.
    pub fn snapshot(&self) -> NetflowStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let refused = |limit: Limit| self.refused.get(limit as usize).map_or(0, get);
        NetflowStats {
            templates_learned: get(&self.templates_learned),
            templates_withdrawn: get(&self.templates_withdrawn),
            templates_expired: get(&self.templates_expired),
            templates_refused_exporters: refused(Limit::MaxExporters),
            templates_refused_count: refused(Limit::MaxTemplates),
            templates_refused_bytes: refused(Limit::MaxTemplateBytes),
            options_records: get(&self.options_records),
            packets_held: get(&self.packets_held),
            packets_released: get(&self.packets_released),
            packets_expired: get(&self.packets_expired),
            release_failures: get(&self.release_failures),
            hold_overflows: refused(Limit::MaxHeldPackets),
            hold_refused_bytes: refused(Limit::MaxHeldBytes),
        }
    }
}

/// A snapshot of the `netflow` decoders' counters (all workers of one factory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetflowStats {
    /// Templates and options templates learned (new or redefined).
    pub templates_learned: u64,
    /// Templates removed by an IPFIX withdrawal.
    pub templates_withdrawn: u64,
    /// Templates forgotten after `template_timeout_secs` without a refresh.
    pub templates_expired: u64,
    /// Templates refused because their exporter is new and `max_exporters` exporters have
    /// templates.
    pub templates_refused_exporters: u64,
    /// Templates refused because `max_templates` are kept.
    pub templates_refused_count: u64,
    /// Templates refused because they would take the templates beyond
    /// `max_template_bytes` (a redefinition refused so also forgets the old definition).
    pub templates_refused_bytes: u64,
    /// Options data records read (they are exporter metadata, not flows: no row).
    pub options_records: u64,
    /// Packets held because a data set's template was unknown.
    pub packets_held: u64,
    /// Held packets decoded by `release`.
    pub packets_released: u64,
    /// Held packets dropped by `expire` (hold time over, or shutdown).
    pub packets_expired: u64,
    /// Held packets whose template came but that failed to decode (dropped, reported by
    /// the next `expire`).
    pub release_failures: u64,
    /// Packets not held because their exporter already held `max_held_packets`.
    pub hold_overflows: u64,
    /// Packets not held because they would take the held bytes beyond `max_held_bytes`
    /// (or beyond its half open to exporters without templates).
    pub hold_refused_bytes: u64,
}

impl NetflowStats {
    /// Refusals by `limit`.
    pub fn refused(&self, limit: Limit) -> u64 {
        match limit {
            Limit::MaxExporters => self.templates_refused_exporters,
            Limit::MaxTemplates => self.templates_refused_count,
            Limit::MaxTemplateBytes => self.templates_refused_bytes,
            Limit::MaxHeldBytes => self.hold_refused_bytes,
            Limit::MaxHeldPackets => self.hold_overflows,
        }
    }

    /// Templates refused, by the limit (its option's name) that refused them.
    pub fn templates_refused(&self) -> [(&'static str, u64); 3] {
        Limit::TEMPLATES.map(|l| (l.option(), self.refused(l)))
    }

    /// Packets not held, by the limit (its option's name) that refused them; each is also
    /// a `no_template` decode error.
    pub fn hold_refused(&self) -> [(&'static str, u64); 2] {
        Limit::HOLD.map(|l| (l.option(), self.refused(l)))
    }
}

/// How much state one factory keeps now (each bounded by an option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetflowState {
    /// Exporters with templates (`max_exporters`).
    pub exporters: usize,
    /// Templates and options templates (`max_templates`).
    pub templates: usize,
    /// Their estimated memory: decoding plans, definitions, bookkeeping
    /// (`max_template_bytes`).
    pub template_bytes: usize,
    /// Packets held, waiting for a template or ready to be released.
    pub held_packets: usize,
    /// Bytes charged for held packets: payload copies and bookkeeping, also of packets
    /// being released (`max_held_bytes`).
    pub held_bytes: usize,
}
