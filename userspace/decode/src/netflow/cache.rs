//! The state every worker's `netflow` decoder shares, held by the factory: templates per
//! exporter, the held packets ([`HoldQueue`]), the limits on both, and the counters.
//!
//! One exporter's packets are spread over all workers, so a template learned by one worker
//! must be seen by all, and a data packet that overtook its template packet is parked
//! where any worker can finish it. The read path (a packet whose templates are known)
//! takes two uncontended read locks (the exporter map, the exporter's templates) and
//! touches no counter; writes happen when templates change, and on the rare paths
//! (holding, releasing, expiry, refusals).
//!
//! **Bounds.** Exporters with templates are at most `max_exporters` (a new exporter's
//! templates are refused beyond), templates at most `max_templates` and
//! `max_template_bytes` over all exporters ([`template_cost`] estimates each one's memory),
//! held packets at most `max_held_bytes` ([`HoldQueue`]). Held packets do not make an
//! exporter: a flood of template-less data from any number of observation domains adds
//! no exporter state. Whatever a limit refuses is counted by limit and logged at a bounded
//! rate ([`LimitLog`]).
//!
//! **Locks.** Exporter map, then an exporter's templates; the hold queue's lock is taken
//! with neither held, and may itself read the exporter map. An exporter whose templates
//! all expired is *retired* (removed from the map, flag set while its templates are
//! write-locked); a writer that finds its exporter retired under that lock starts over
//! with a fresh one, so nothing is written into an orphan. Generations are unique over
//! all exporters, so a retired and a fresh exporter of one key never share one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use super::config::NetflowConfig;
use super::hold::{HeldPacket, HoldQueue, HoldRequest};
use super::limit::{Limit, LimitLog};
use super::stats::{Counters, NetflowState, NetflowStats};
use super::template::{FieldPlan, Template, TemplateChange};
use crate::{PacketContext, RecordSchema};

/// Whose templates these are: template ids are scoped by exporter and observation domain
/// (v9 source id), and exporters are told apart by tunnel and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExporterKey {
    /// Outer source of the GRE tunnel, `None` for plain UDP.
    pub tunnel: Option<IpAddr>,
    /// The exporter's address.
    pub src: IpAddr,
    /// v9 source id / IPFIX observation domain id.
    pub domain: u32,
}

impl ExporterKey {
    /// The key of a packet of observation domain `domain`.
    pub fn of(ctx: &PacketContext, domain: u32) -> Self {
        Self {
            tunnel: ctx.tunnel_src,
            src: ctx.src_ip,
            domain,
        }
    }
}

#[derive(Debug)]
struct TemplateEntry {
    template: Arc<Template>,
    /// Receive time (µs) of the latest packet that carried this template.
    last_seen_us: AtomicI64,
    /// What it is charged against `max_template_bytes`.
    cost: usize,
}

/// Estimated memory of a kept template: its map slot (maps are at most 7/8 full and
/// double as they grow), the shared allocation, the decoding plan and the definition,
/// with their allocation headers.
pub fn template_cost(t: &Template) -> usize {
    2 * (size_of::<(u16, TemplateEntry)>() + 1) * 8 / 7
        + 2 * size_of::<usize>()
        + size_of::<Template>()
        + t.fields.len() * size_of::<FieldPlan>()
        + t.definition.len()
        + 3 * 16
}

/// Templates kept over all exporters, against `max_templates` and `max_template_bytes`.
#[derive(Debug)]
struct TemplateBudget {
    count: AtomicUsize,
    bytes: AtomicUsize,
    max_count: usize,
    max_bytes: usize,
}

impl TemplateBudget {
    /// Charges a new template of `cost` bytes.
    fn reserve(&self, cost: usize) -> Result<(), Limit> {
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.max_count {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::MaxTemplates);
        }
        if self.grow(cost).is_err() {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::MaxTemplateBytes);
        }
        Ok(())
    }

    fn grow(&self, by: usize) -> Result<(), Limit> {
        if self
            .bytes
            .fetch_add(by, Ordering::AcqRel)
            .saturating_add(by)
            > self.max_bytes
        {
            self.bytes.fetch_sub(by, Ordering::AcqRel);
            return Err(Limit::MaxTemplateBytes);
        }
        Ok(())
    }

    /// Charges a redefinition: `new` bytes instead of `old`.
    fn resize(&self, old: usize, new: usize) -> Result<(), Limit> {
        if new <= old {
            self.bytes.fetch_sub(old - new, Ordering::AcqRel);
            return Ok(());
        }
        self.grow(new - old)
    }

    /// Uncharges a template of `cost` bytes.
    fn release(&self, cost: usize) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
    }
}

/// One exporter's templates and options state.
#[derive(Debug)]
pub struct Exporter {
    templates: RwLock<HashMap<u16, TemplateEntry>>,
    /// Set to a fresh, factory-wide unique value whenever a template becomes usable
    /// (new, redefined, or refreshed after expiring).
    generation: AtomicU64,
    /// systemInitTimeMilliseconds from options data, 0 if unknown.
    system_init_ms: AtomicU64,
    /// Sampling interval from options data, 0 if unknown.
    sampling: AtomicU64,
    retired: AtomicBool,
}

/// The templates of an exporter, read-locked for the lookups of one packet.
#[derive(Debug)]
pub struct TemplateView<'a> {
    guard: RwLockReadGuard<'a, HashMap<u16, TemplateEntry>>,
    now_us: i64,
    timeout_us: i64,
}

impl TemplateView<'_> {
    /// Template `id` if known and not expired at the packet's receive time.
    pub fn get(&self, id: u16) -> Option<&Arc<Template>> {
        let entry = self.guard.get(&id)?;
        let last = entry.last_seen_us.load(Ordering::Relaxed);
        (last.saturating_add(self.timeout_us) >= self.now_us).then_some(&entry.template)
    }
}

/// What applying a packet's template changes did.
#[derive(Clone, Copy, Debug, Default)]
struct Applied {
    /// Templates inserted (new or redefined).
    learned: u64,
    /// Templates withdrawn.
    withdrawn: u64,
    /// Templates refused by `max_templates`.
    refused_count: u64,
    /// Templates refused by `max_template_bytes`.
    refused_bytes: u64,
}

impl Exporter {
    fn new(generation: u64) -> Self {
        Self {
            templates: RwLock::default(),
            generation: AtomicU64::new(generation),
            system_init_ms: AtomicU64::new(0),
            sampling: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// The template generation (read before looking templates up).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Read access to the templates for a packet received at `now_us`.
    pub fn templates(&self, now_us: i64, timeout_us: i64) -> TemplateView<'_> {
        TemplateView {
            guard: self
                .templates
                .read()
                .unwrap_or_else(PoisonError::into_inner),
            now_us,
            timeout_us,
        }
    }

    /// systemInitTimeMilliseconds and sampling interval from options data, if known.
    pub fn options_state(&self) -> (Option<u64>, Option<u64>) {
        let known = |v: u64| (v != 0).then_some(v);
        (
            known(self.system_init_ms.load(Ordering::Relaxed)),
            known(self.sampling.load(Ordering::Relaxed)),
        )
    }

    /// Records what options data said.
    pub fn set_options_state(&self, system_init_ms: Option<u64>, sampling: Option<u64>) {
        if let Some(v) = system_init_ms {
            self.system_init_ms.store(v, Ordering::Relaxed);
        }
        if let Some(v) = sampling {
            self.sampling.store(v, Ordering::Relaxed);
        }
    }

    /// Applies a packet's template changes within `shared`'s limits, pushing the ids of
    /// templates that became usable into `usable`. `None` if the exporter was retired
    /// meanwhile (nothing changed: start over).
    fn apply(
        &self,
        changes: &[TemplateChange],
        now_us: i64,
        shared: &Shared,
        usable: &mut Vec<u16>,
    ) -> Option<Applied> {
        let timeout_us = shared.timeout_us();
        let expired_at = |last: i64| last.saturating_add(timeout_us) < now_us;
        let same = |entry: &TemplateEntry, new: &Template| {
            entry.template.kind == new.kind && entry.template.definition == new.definition
        };
        // The common case, an exporter resending what it sent before: refresh in place.
        {
            let templates = self
                .templates
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if self.retired.load(Ordering::Acquire) {
                return None;
            }
            let all_known = changes.iter().all(|change| match change {
                TemplateChange::Define(new) => {
                    templates.get(&new.id).is_some_and(|entry| same(entry, new))
                }
                _ => false,
            });
            if all_known {
                for change in changes {
                    if let TemplateChange::Define(new) = change
                        && let Some(entry) = templates.get(&new.id)
                        && expired_at(entry.last_seen_us.fetch_max(now_us, Ordering::Relaxed))
                    {
                        usable.push(new.id);
                    }
                }
                if !usable.is_empty() {
                    self.generation
                        .store(shared.next_generation(), Ordering::Release);
                }
                return Some(Applied::default());
            }
        }
        let mut templates = self
            .templates
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.retired.load(Ordering::Acquire) {
            return None;
        }
        let budget = &shared.budget;
        let mut applied = Applied::default();
        let refuse = |applied: &mut Applied, limit| match limit {
            Limit::MaxTemplates => applied.refused_count += 1,
            _ => applied.refused_bytes += 1,
        };
        for change in changes {
            match change {
                TemplateChange::Define(new) => {
                    let cost = template_cost(new);
                    let entry = || TemplateEntry {
                        template: Arc::clone(new),
                        last_seen_us: AtomicI64::new(now_us),
                        cost,
                    };
                    match templates.get(&new.id) {
                        Some(old) if same(old, new) => {
                            if expired_at(old.last_seen_us.fetch_max(now_us, Ordering::Relaxed)) {
                                usable.push(new.id);
                            }
                        }
                        Some(old) => match budget.resize(old.cost, cost) {
                            Ok(()) => {
                                templates.insert(new.id, entry());
                                applied.learned += 1;
                                usable.push(new.id);
                            }
                            Err(limit) => {
                                // The old definition is stale: forget it too.
                                if let Some(old) = templates.remove(&new.id) {
                                    budget.release(old.cost);
                                }
                                refuse(&mut applied, limit);
                            }
                        },
                        None => match budget.reserve(cost) {
                            Ok(()) => {
                                templates.insert(new.id, entry());
                                applied.learned += 1;
                                usable.push(new.id);
                            }
                            Err(limit) => refuse(&mut applied, limit),
                        },
                    }
                }
                TemplateChange::Withdraw(id) => {
                    if let Some(old) = templates.remove(id) {
                        budget.release(old.cost);
                        applied.withdrawn += 1;
                    }
                }
                TemplateChange::WithdrawAll(kind) => templates.retain(|_, entry| {
                    let keep = entry.template.kind != *kind;
                    if !keep {
                        budget.release(entry.cost);
                        applied.withdrawn += 1;
                    }
                    keep
                }),
            }
        }
        if !usable.is_empty() {
            self.generation
                .store(shared.next_generation(), Ordering::Release);
        }
        Some(applied)
    }
}

/// How often (in receive-time µs) expired templates are swept out.
const SWEEP_INTERVAL_US: i64 = 1_000_000;

/// Everything the decoders of one factory share.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: NetflowConfig,
    /// The rows' schema.
    pub schema: RecordSchema,
    exporters: RwLock<HashMap<ExporterKey, Arc<Exporter>>>,
    /// Source of exporter generations (unique, never 0: 0 means "no exporter").
    generations: AtomicU64,
    budget: TemplateBudget,
    /// The held packets.
    pub hold: HoldQueue,
    next_sweep_us: AtomicI64,
    counters: Counters,
    log: LimitLog,
}

impl Shared {
    /// Shared state for a validated `config`, logging as `stream`.
    pub fn new(config: NetflowConfig, schema: RecordSchema, stream: &str) -> Self {
        Self {
            budget: TemplateBudget {
                count: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                max_count: config.max_templates,
                max_bytes: config.template_bytes_limit(),
            },
            hold: HoldQueue::new(config.held_bytes_limit(), config.max_held_packets),
            config,
            schema,
            exporters: RwLock::default(),
            generations: AtomicU64::new(1),
            next_sweep_us: AtomicI64::new(i64::MIN),
            counters: Counters::default(),
            log: LimitLog::new(stream),
        }
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Template timeout in microseconds.
    pub fn timeout_us(&self) -> i64 {
        i64::try_from(self.config.template_timeout_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000)
    }

    /// The exporter, if it has state.
    pub fn exporter(&self, key: &ExporterKey) -> Option<Arc<Exporter>> {
        self.exporters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The exporter, created if there is room for one more.
    fn exporter_or_insert(&self, key: &ExporterKey) -> Option<Arc<Exporter>> {
        if let Some(exporter) = self.exporter(key) {
            return Some(exporter);
        }
        let mut map = self
            .exporters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(exporter) = map.get(key) {
            return Some(Arc::clone(exporter));
        }
        if map.len() >= self.config.max_exporters {
            return None;
        }
        let exporter = Arc::new(Exporter::new(self.next_generation()));
        map.insert(*key, Arc::clone(&exporter));
        Some(exporter)
    }

    fn refuse(&self, limit: Limit, n: u64) {
        if n > 0 {
            let total = self.counters.refuse(limit, n);
            self.log.refused(limit, n, total);
        }
    }

    /// Applies a packet's template changes to its exporter and wakes the held packets
    /// they complete; returns the exporter, or `None` if it has no state (its templates
    /// refused by `max_exporters`, or nothing to keep). `usable` is scratch space.
    pub fn apply(
        &self,
        key: &ExporterKey,
        changes: &[TemplateChange],
        now_us: i64,
        usable: &mut Vec<u16>,
    ) -> Option<Arc<Exporter>> {
        let defines = changes
            .iter()
            .filter(|c| matches!(c, TemplateChange::Define(_)))
            .count() as u64;
        loop {
            let exporter = if defines == 0 {
                // Withdrawals only: nothing to create an exporter for.
                self.exporter(key)?
            } else if let Some(exporter) = self.exporter_or_insert(key) {
                exporter
            } else {
                self.refuse(Limit::MaxExporters, defines);
                return None;
            };
            usable.clear();
            let Some(applied) = exporter.apply(changes, now_us, self, usable) else {
                continue;
            };
            if applied.learned > 0 {
                Counters::add(&self.counters.templates_learned, applied.learned);
            }
            if applied.withdrawn > 0 {
                Counters::add(&self.counters.templates_withdrawn, applied.withdrawn);
            }
            self.refuse(Limit::MaxTemplates, applied.refused_count);
            self.refuse(Limit::MaxTemplateBytes, applied.refused_bytes);
            self.hold.wake(*key, usable);
            return Some(exporter);
        }
    }

    fn generation_now(&self, key: &ExporterKey) -> Option<u64> {
        self.exporter(key).map(|e| e.generation())
    }

    /// Holds a copy of `payload` for `request`'s template.
    ///
    /// # Errors
    /// The [`Limit`] that refused it (counted and logged here).
    pub fn hold(&self, request: HoldRequest<'_>, payload: &[u8]) -> Result<(), Limit> {
        let key = request.key;
        match self
            .hold
            .hold(request, payload, || self.generation_now(&key))
        {
            Ok(()) => {
                Counters::add(&self.counters.packets_held, 1);
                Ok(())
            }
            Err(limit) => {
                self.refuse(limit, 1);
                Err(limit)
            }
        }
    }

    /// Parks again a released packet that still lacks a template.
    pub fn requeue(&self, request: HoldRequest<'_>, packet: HeldPacket) {
        let key = request.key;
        self.hold
            .requeue(request, packet, || self.generation_now(&key));
    }

    /// Forgets expired templates (at most once a second) and drops the held packets older
    /// than `hold_ms` (all of them when `all`); returns how many packets.
    pub fn expire(&self, now_us: i64, all: bool) -> u64 {
        self.sweep(now_us);
        let hold_us = i64::try_from(self.config.hold_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let dropped = self.hold.expire(now_us, hold_us, all);
        if dropped > 0 {
            let total = Counters::add(&self.counters.packets_expired, dropped);
            self.log.expired(dropped, total);
        }
        dropped
    }

    /// Counts options records read.
    pub fn count_options_records(&self, n: u64) {
        Counters::add(&self.counters.options_records, n);
    }

    /// Counts held packets completed by `release`.
    pub fn count_released(&self, n: u64) {
        Counters::add(&self.counters.packets_released, n);
    }

    /// Counts held packets that failed to decode once released.
    pub fn count_release_failures(&self, n: u64) {
        Counters::add(&self.counters.release_failures, n);
    }

    /// At most once a second of `now_us`: forgets expired templates and retires exporters
    /// left without any.
    fn sweep(&self, now_us: i64) {
        let due = self.next_sweep_us.load(Ordering::Relaxed);
        if now_us < due
            || self
                .next_sweep_us
                .compare_exchange(
                    due,
                    now_us.saturating_add(SWEEP_INTERVAL_US),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let timeout_us = self.timeout_us();
        let exporters: Vec<(ExporterKey, Arc<Exporter>)> = self
            .exporters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, e)| (*k, Arc::clone(e)))
            .collect();
        let mut idle = Vec::new();
        let mut expired = 0u64;
        for (key, exporter) in exporters {
            let mut templates = exporter
                .templates
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            templates.retain(|_, entry| {
                let keep = entry
                    .last_seen_us
                    .load(Ordering::Relaxed)
                    .saturating_add(timeout_us)
                    >= now_us;
                if !keep {
                    self.budget.release(entry.cost);
                    expired += 1;
                }
                keep
            });
            if templates.is_empty() {
                idle.push(key);
            }
        }
        if expired > 0 {
            Counters::add(&self.counters.templates_expired, expired);
        }
        if idle.is_empty() {
            return;
        }
        let mut map = self
            .exporters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for key in idle {
            let Some(exporter) = map.get(&key).cloned() else {
                continue;
            };
            let templates = exporter
                .templates
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if templates.is_empty() {
                exporter.retired.store(true, Ordering::Release);
                map.remove(&key);
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetflowStats {
        self.counters.snapshot()
    }

    /// The current size of the state.
    pub fn state(&self) -> NetflowState {
        NetflowState {
            exporters: self.exporter_count(),
            templates: self.budget.count.load(Ordering::Acquire),
            template_bytes: self.budget.bytes.load(Ordering::Acquire),
            held_packets: self.hold.parked(),
            held_bytes: self.hold.bytes(),
        }
    }

    /// Number of exporters with templates.
    pub fn exporter_count(&self) -> usize {
        self.exporters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netflow::template::{Dialect, parse_template_set};

    /// The template of `fields` one-byte IANA fields, parsed as from the wire.
    fn template(fields: u16) -> Arc<Template> {
        let mut record = vec![1, 0];
        record.extend_from_slice(&fields.to_be_bytes());
        for _ in 0..fields {
            record.extend_from_slice(&[0, 4, 0, 1]);
        }
        let mut changes = Vec::new();
        parse_template_set(&record, 0, record.len(), Dialect::Ipfix, &mut changes)
            .expect("template");
        match changes.pop() {
            Some(TemplateChange::Define(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    /// What docs/decoders.md says a template costs.
    #[test]
    fn a_template_costs_its_plan_definition_and_bookkeeping() {
        let twenty = template_cost(&template(20));
        assert!((600..1024).contains(&twenty), "{twenty}");
        // The largest template a 64 KiB packet can carry.
        let largest = template_cost(&template(16_375));
        assert!((300 << 10..500 << 10).contains(&largest), "{largest}");
    }
}
