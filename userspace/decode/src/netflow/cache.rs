//! The state every worker's `netflow` decoder shares, held by the factory: templates and
//! held packets per exporter, and the decoder's counters.
//!
//! One exporter's packets are spread over all workers, so a template learned by one worker
//! must be seen by all, and a data packet that overtook its template packet is parked
//! where any worker can finish it. The read path (a packet whose templates are known)
//! takes two uncontended read locks (the exporter map, the exporter's templates) and
//! touches no counter; writes happen when templates change, and on the rare paths
//! (holding, releasing, expiry).
//!
//! Lock order: exporter map, then an exporter's templates, then its pending queue. An
//! exporter whose templates all expired and that holds nothing is *retired* (removed from
//! the map, flag set while both of its locks are held); a writer that finds its exporter
//! retired after writing starts over with a fresh one, so nothing is written into an
//! orphan.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use super::config::NetflowConfig;
use super::template::{Template, TemplateChange};
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
}

/// A packet whose data sets wait for a template.
#[derive(Debug)]
pub struct HeldPacket {
    /// Where it came from (its exporter key, its receive time).
    pub ctx: PacketContext,
    /// A copy of the payload.
    pub payload: Box<[u8]>,
    /// The exporter's template generation when its templates were looked up: only a
    /// newer generation can complete it.
    pub generation: u64,
}

/// One exporter's templates, options state and held packets.
#[derive(Debug, Default)]
pub struct Exporter {
    templates: RwLock<HashMap<u16, TemplateEntry>>,
    /// Bumped whenever a template becomes usable (new, redefined, or refreshed after
    /// expiring).
    generation: AtomicU64,
    /// systemInitTimeMilliseconds from options data, 0 if unknown.
    system_init_ms: AtomicU64,
    /// Sampling interval from options data, 0 if unknown.
    sampling: AtomicU64,
    pending: Mutex<VecDeque<HeldPacket>>,
    pending_len: AtomicUsize,
    retired: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves consistent data (plain inserts and removes).
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

impl Exporter {
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

    /// Applies a packet's template changes.
    fn apply(&self, changes: &[TemplateChange], now_us: i64, timeout_us: i64) -> Applied {
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
            let all_known = changes.iter().all(|change| match change {
                TemplateChange::Define(new) => {
                    templates.get(&new.id).is_some_and(|entry| same(entry, new))
                }
                _ => false,
            });
            if all_known {
                let mut revived = false;
                for change in changes {
                    if let TemplateChange::Define(new) = change
                        && let Some(entry) = templates.get(&new.id)
                    {
                        revived |=
                            expired_at(entry.last_seen_us.fetch_max(now_us, Ordering::Relaxed));
                    }
                }
                if revived {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                return Applied {
                    usable: revived,
                    ..Applied::default()
                };
            }
        }
        let mut templates = self
            .templates
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut learned, mut withdrawn, mut usable) = (0, 0, false);
        for change in changes {
            match change {
                TemplateChange::Define(new) => match templates.get(&new.id) {
                    Some(entry) if same(entry, new) => {
                        usable |=
                            expired_at(entry.last_seen_us.fetch_max(now_us, Ordering::Relaxed));
                    }
                    _ => {
                        templates.insert(
                            new.id,
                            TemplateEntry {
                                template: Arc::clone(new),
                                last_seen_us: AtomicI64::new(now_us),
                            },
                        );
                        learned += 1;
                        usable = true;
                    }
                },
                TemplateChange::Withdraw(id) => {
                    withdrawn += u64::from(templates.remove(id).is_some());
                }
                TemplateChange::WithdrawAll(kind) => {
                    let before = templates.len();
                    templates.retain(|_, entry| entry.template.kind != *kind);
                    withdrawn += (before - templates.len()) as u64;
                }
            }
        }
        if usable {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Applied {
            learned,
            withdrawn,
            usable,
        }
    }
}

/// What applying a packet's template changes did.
#[derive(Clone, Copy, Debug, Default)]
struct Applied {
    /// Templates inserted (new or redefined).
    learned: u64,
    /// Templates withdrawn.
    withdrawn: u64,
    /// Some template became usable (learned, or refreshed after it had expired): held
    /// packets may now complete.
    usable: bool,
}

/// Counters of the shared state, updated on the rare paths only.
#[derive(Debug, Default)]
struct Counters {
    templates_learned: AtomicU64,
    templates_withdrawn: AtomicU64,
    templates_expired: AtomicU64,
    options_records: AtomicU64,
    packets_held: AtomicU64,
    packets_released: AtomicU64,
    packets_expired: AtomicU64,
    release_failures: AtomicU64,
    hold_overflows: AtomicU64,
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
    /// Packets refused because their exporter already held `max_held_packets`.
    pub hold_overflows: u64,
}

/// How often (in receive-time µs) expired templates are swept out.
const SWEEP_INTERVAL_US: i64 = 1_000_000;

/// Why a packet could not be held.
#[derive(Debug)]
pub enum HoldRefused {
    /// The exporter's queue is full.
    Full,
}

/// Everything the decoders of one factory share.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: NetflowConfig,
    /// The rows' schema.
    pub schema: RecordSchema,
    exporters: RwLock<HashMap<ExporterKey, Arc<Exporter>>>,
    /// Bumped on every template change that can complete a held packet and on every
    /// hold: a decoder's `release` rescans only after it moved.
    change_gen: AtomicU64,
    pending_total: AtomicUsize,
    next_sweep_us: AtomicI64,
    counters: Counters,
}

impl Shared {
    /// Shared state for a validated `config`.
    pub fn new(config: NetflowConfig, schema: RecordSchema) -> Self {
        Self {
            config,
            schema,
            exporters: RwLock::default(),
            change_gen: AtomicU64::new(0),
            pending_total: AtomicUsize::new(0),
            next_sweep_us: AtomicI64::new(i64::MIN),
            counters: Counters::default(),
        }
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

    fn exporter_or_insert(&self, key: &ExporterKey) -> Arc<Exporter> {
        if let Some(exporter) = self.exporter(key) {
            return exporter;
        }
        Arc::clone(
            self.exporters
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(*key)
                .or_default(),
        )
    }

    /// Applies a packet's template changes to its exporter, and returns the exporter.
    pub fn apply(
        &self,
        key: &ExporterKey,
        changes: &[TemplateChange],
        now_us: i64,
    ) -> Arc<Exporter> {
        loop {
            let exporter = self.exporter_or_insert(key);
            let applied = exporter.apply(changes, now_us, self.timeout_us());
            if exporter.retired.load(Ordering::Acquire) {
                continue;
            }
            if applied.usable {
                self.change_gen.fetch_add(1, Ordering::AcqRel);
            }
            if applied.learned > 0 {
                self.counters
                    .templates_learned
                    .fetch_add(applied.learned, Ordering::Relaxed);
            }
            if applied.withdrawn > 0 {
                self.counters
                    .templates_withdrawn
                    .fetch_add(applied.withdrawn, Ordering::Relaxed);
            }
            return exporter;
        }
    }

    /// Parks `held` in its exporter's queue (at most `max_held_packets`).
    ///
    /// # Errors
    /// [`HoldRefused::Full`] when the queue is full.
    pub fn hold(&self, key: &ExporterKey, mut held: HeldPacket) -> Result<(), HoldRefused> {
        loop {
            let exporter = self.exporter_or_insert(key);
            let mut queue = lock(&exporter.pending);
            if exporter.retired.load(Ordering::Acquire) {
                // Its generation belongs to the retired state: retry at the first release.
                held.generation = u64::MAX;
                continue;
            }
            if queue.len() >= self.config.max_held_packets {
                self.counters.hold_overflows.fetch_add(1, Ordering::Relaxed);
                return Err(HoldRefused::Full);
            }
            queue.push_back(held);
            exporter.pending_len.fetch_add(1, Ordering::AcqRel);
            self.pending_total.fetch_add(1, Ordering::AcqRel);
            self.counters.packets_held.fetch_add(1, Ordering::Relaxed);
            self.change_gen.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        }
    }

    /// Whether any packet is held, and the change generation (see `change_gen`).
    pub fn pending_and_generation(&self) -> (bool, u64) {
        (
            self.pending_total.load(Ordering::Acquire) > 0,
            self.change_gen.load(Ordering::Acquire),
        )
    }

    /// Exporters holding packets, into `out`.
    pub fn exporters_with_pending(&self, out: &mut Vec<Arc<Exporter>>) {
        out.clear();
        out.extend(
            self.exporters
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|e| e.pending_len.load(Ordering::Acquire) > 0)
                .cloned(),
        );
    }

    /// Takes out of `exporter`'s queue the packets a template change may complete: each is
    /// then owned by the caller, which completes, drops or requeues it.
    pub fn take_ready(&self, exporter: &Exporter, out: &mut Vec<HeldPacket>) {
        let generation = exporter.generation();
        let mut queue = lock(&exporter.pending);
        let before = queue.len();
        let mut kept = VecDeque::with_capacity(before);
        for held in queue.drain(..) {
            if held.generation == generation {
                kept.push_back(held);
            } else {
                out.push(held);
            }
        }
        *queue = kept;
        let taken = before - queue.len();
        exporter.pending_len.fetch_sub(taken, Ordering::AcqRel);
        self.pending_total.fetch_sub(taken, Ordering::AcqRel);
    }

    /// Puts back a packet taken by [`Shared::take_ready`] that still lacks a template
    /// (no bound: it was already counted in the queue).
    pub fn requeue(&self, key: &ExporterKey, mut held: HeldPacket) {
        loop {
            let exporter = self.exporter_or_insert(key);
            let mut queue = lock(&exporter.pending);
            if exporter.retired.load(Ordering::Acquire) {
                held.generation = u64::MAX;
                continue;
            }
            queue.push_back(held);
            exporter.pending_len.fetch_add(1, Ordering::AcqRel);
            self.pending_total.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }

    /// Drops `exporter`'s held packets received more than `hold_us` before `now_us` (all
    /// of them when `all`); returns how many.
    pub fn drop_expired(&self, exporter: &Exporter, now_us: i64, hold_us: i64, all: bool) -> u64 {
        let mut queue = lock(&exporter.pending);
        let before = queue.len();
        queue.retain(|held| !all && now_us.saturating_sub(held.ctx.received_at) <= hold_us);
        let dropped = before - queue.len();
        exporter.pending_len.fetch_sub(dropped, Ordering::AcqRel);
        self.pending_total.fetch_sub(dropped, Ordering::AcqRel);
        self.counters
            .packets_expired
            .fetch_add(dropped as u64, Ordering::Relaxed);
        dropped as u64
    }

    /// Counts options records read.
    pub fn count_options_records(&self, n: u64) {
        self.counters
            .options_records
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts held packets completed by `release`.
    pub fn count_released(&self, n: u64) {
        self.counters
            .packets_released
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts held packets that failed to decode once released.
    pub fn count_release_failure(&self) {
        self.counters
            .release_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// At most once a second of `now_us`: forgets expired templates and retires exporters
    /// left with neither templates nor held packets.
    pub fn sweep(&self, now_us: i64) {
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
        for (key, exporter) in exporters {
            let mut templates = exporter
                .templates
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let before = templates.len();
            templates.retain(|_, entry| {
                entry
                    .last_seen_us
                    .load(Ordering::Relaxed)
                    .saturating_add(timeout_us)
                    >= now_us
            });
            self.counters
                .templates_expired
                .fetch_add((before - templates.len()) as u64, Ordering::Relaxed);
            if templates.is_empty() && exporter.pending_len.load(Ordering::Acquire) == 0 {
                idle.push(key);
            }
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
            let queue = lock(&exporter.pending);
            if templates.is_empty() && queue.is_empty() {
                exporter.retired.store(true, Ordering::Release);
                map.remove(&key);
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetflowStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetflowStats {
            templates_learned: get(&c.templates_learned),
            templates_withdrawn: get(&c.templates_withdrawn),
            templates_expired: get(&c.templates_expired),
            options_records: get(&c.options_records),
            packets_held: get(&c.packets_held),
            packets_released: get(&c.packets_released),
            packets_expired: get(&c.packets_expired),
            release_failures: get(&c.release_failures),
            hold_overflows: get(&c.hold_overflows),
        }
    }

    /// Number of exporters with state (for tests).
    pub fn exporter_count(&self) -> usize {
        self.exporters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Number of held packets (for tests).
    pub fn held_count(&self) -> usize {
        self.pending_total.load(Ordering::Acquire)
    }
}
