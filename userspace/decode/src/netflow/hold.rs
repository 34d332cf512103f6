//! Packets whose data sets arrived before their template, held for every worker's decoder,
//! at a cost per packet that does not grow with what is held.
//!
//! A held packet is parked in a slab and linked into two lists: the arrival order (oldest
//! first, for expiry) and the list of the (exporter, template id) it waits for. When that
//! template becomes usable, its waiting list is moved whole to the *ready* list, from
//! which the next `release` of any worker takes it; expiry pops from the oldest end. So
//! holding, waking, taking and expiring cost O(1) per packet (plus one map lookup), and no
//! operation looks at packets it does not move.
//!
//! Everything held is charged against `max_held_bytes` (payload copy and bookkeeping,
//! [`PARKED_OVERHEAD`]) until it is decoded or dropped; a packet being released stays
//! charged, so the bound holds also while workers decode. Exporters with no template yet
//! (strangers: a flood of template-less data, or an exporter that has not sent its
//! templates) may use half of the bytes, so that exporters whose templates are known can
//! always hold the packets that overtook their template packet. An exporter holds at most
//! `max_held_packets`.
//!
//! A hold must not miss the wake of its template: the holder reads the exporter's template
//! generation under the queue's lock, and a template change bumps the generation before it
//! takes the lock to wake. A packet whose exporter's generation moved since its templates
//! were looked up goes straight to the ready list (its release looks again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::cache::ExporterKey;
use super::limit::Limit;
use crate::PacketContext;

/// A held packet, owned by the worker that took it out to release it.
#[derive(Debug)]
pub struct HeldPacket {
    /// Where it came from (its exporter key, its receive time).
    pub ctx: PacketContext,
    /// A copy of the payload.
    pub payload: Box<[u8]>,
    /// Bytes charged against `max_held_bytes` until it is finished or requeued.
    cost: usize,
}

impl HeldPacket {
    /// Bytes it is charged.
    pub fn cost(&self) -> usize {
        self.cost
    }
}

const NIL: u32 = u32::MAX;
/// Index of the arrival-order links in [`Slot::links`].
const ORDER: usize = 0;
/// Index of the links of the waiting or ready list.
const WAIT: usize = 1;

#[derive(Clone, Copy, Debug)]
struct Links {
    prev: u32,
    next: u32,
}

const UNLINKED: Links = Links {
    prev: NIL,
    next: NIL,
};

/// A doubly linked list threaded through the slab.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

#[derive(Debug)]
struct Parked {
    packet: HeldPacket,
    key: ExporterKey,
    template_id: u16,
    /// Held while its exporter had no template: charged to the strangers' half.
    stranger: bool,
    /// In the ready list (its template arrived) rather than a waiting list.
    ready: bool,
}

#[derive(Debug)]
struct Slot {
    parked: Option<Parked>,
    links: [Links; 2],
}

/// Bytes a held packet costs beyond its payload: its slot (the slab may be twice the
/// size of what it holds), its entries in the waiting and per-exporter maps (at most 7/8
/// full, doubling as they grow), its free-list entry and the payload's allocation header.
pub const PARKED_OVERHEAD: usize = 2 * size_of::<Slot>()
    + 2 * (size_of::<((ExporterKey, u16), List)>() + 1) * 8 / 7
    + 2 * (size_of::<(ExporterKey, u32)>() + 1) * 8 / 7
    + 2 * size_of::<u32>()
    + 16;

fn push_back(slots: &mut [Slot], list: &mut List, i: u32, k: usize) {
    slots[i as usize].links[k] = Links {
        prev: list.tail,
        next: NIL,
    };
    if list.tail == NIL {
        list.head = i;
    } else {
        slots[list.tail as usize].links[k].next = i;
    }
    list.tail = i;
}

fn unlink(slots: &mut [Slot], list: &mut List, i: u32, k: usize) {
    let Links { prev, next } = slots[i as usize].links[k];
    if prev == NIL {
        list.head = next;
    } else {
        slots[prev as usize].links[k].next = next;
    }
    if next == NIL {
        list.tail = prev;
    } else {
        slots[next as usize].links[k].prev = prev;
    }
    slots[i as usize].links[k] = UNLINKED;
}

/// The queue's state, under its lock.
#[derive(Debug)]
struct Queue {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Every parked packet, oldest first.
    order: List,
    /// Packets whose template arrived, for `release`.
    ready: List,
    ready_len: usize,
    /// Packets by the (exporter, template id) they wait for.
    waiting: HashMap<(ExporterKey, u16), List>,
    per_exporter: HashMap<ExporterKey, u32>,
    parked: usize,
    /// Charged bytes: parked packets and packets being released.
    bytes: usize,
    /// Charged bytes of parked strangers.
    stranger_bytes: usize,
}

impl Queue {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            order: EMPTY,
            ready: EMPTY,
            ready_len: 0,
            waiting: HashMap::new(),
            per_exporter: HashMap::new(),
            parked: 0,
            bytes: 0,
            stranger_bytes: 0,
        }
    }

    /// Parks `parked` (its bytes already charged to `bytes`).
    fn insert(&mut self, parked: Parked) {
        let (key, template_id, ready, stranger, cost) = (
            parked.key,
            parked.template_id,
            parked.ready,
            parked.stranger,
            parked.packet.cost,
        );
        let slot = Slot {
            parked: Some(parked),
            links: [UNLINKED; 2],
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                // At most `max_held_bytes / PARKED_OVERHEAD` slots: far below u32::MAX.
                let i = u32::try_from(self.slots.len()).unwrap_or(NIL - 1);
                self.slots.push(slot);
                i
            }
        };
        push_back(&mut self.slots, &mut self.order, i, ORDER);
        if ready {
            push_back(&mut self.slots, &mut self.ready, i, WAIT);
            self.ready_len += 1;
        } else {
            let list = self.waiting.entry((key, template_id)).or_insert(EMPTY);
            push_back(&mut self.slots, list, i, WAIT);
        }
        *self.per_exporter.entry(key).or_insert(0) += 1;
        if stranger {
            self.stranger_bytes += cost;
        }
        self.parked += 1;
    }

    /// Unparks slot `i` (its bytes stay charged: the caller decides).
    fn remove(&mut self, i: u32) -> Option<Parked> {
        let parked = self.slots.get_mut(i as usize)?.parked.take()?;
        unlink(&mut self.slots, &mut self.order, i, ORDER);
        if parked.ready {
            unlink(&mut self.slots, &mut self.ready, i, WAIT);
            self.ready_len -= 1;
        } else {
            let wait_key = (parked.key, parked.template_id);
            if let Some(mut list) = self.waiting.get(&wait_key).copied() {
                unlink(&mut self.slots, &mut list, i, WAIT);
                if list.head == NIL {
                    self.waiting.remove(&wait_key);
                } else {
                    self.waiting.insert(wait_key, list);
                }
            }
        }
        if let Some(n) = self.per_exporter.get_mut(&parked.key) {
            *n -= 1;
            if *n == 0 {
                self.per_exporter.remove(&parked.key);
            }
        }
        if parked.stranger {
            self.stranger_bytes -= parked.packet.cost;
        }
        self.free.push(i);
        self.parked -= 1;
        Some(parked)
    }

    /// Moves the packets waiting for `(key, template_id)` to the ready list.
    fn wake(&mut self, key: ExporterKey, template_id: u16) {
        let Some(list) = self.waiting.remove(&(key, template_id)) else {
            return;
        };
        let mut i = list.head;
        while i != NIL {
            let slot = &mut self.slots[i as usize];
            if let Some(parked) = slot.parked.as_mut() {
                parked.ready = true;
            }
            self.ready_len += 1;
            i = slot.links[WAIT].next;
        }
        if self.ready.tail == NIL {
            self.ready = list;
        } else {
            self.slots[self.ready.tail as usize].links[WAIT].next = list.head;
            self.slots[list.head as usize].links[WAIT].prev = self.ready.tail;
            self.ready.tail = list.tail;
        }
    }

    fn oldest_received_at(&self) -> Option<i64> {
        let slot = self.slots.get(self.order.head as usize)?;
        slot.parked.as_ref().map(|p| p.packet.ctx.received_at)
    }
}

/// Where a packet to hold comes from, and what its decoder saw.
#[derive(Clone, Copy, Debug)]
pub struct HoldRequest<'a> {
    /// Its exporter.
    pub key: ExporterKey,
    /// The template its first template-less data set needs.
    pub template_id: u16,
    /// The exporter's template generation when its templates were looked up (0: no
    /// exporter).
    pub generation: u64,
    /// The packet.
    pub ctx: &'a PacketContext,
}

/// The held packets of one factory.
#[derive(Debug)]
pub struct HoldQueue {
    queue: Mutex<Queue>,
    max_bytes: usize,
    max_per_exporter: u32,
    /// Mirrors of the queue's sizes, for the lock-free checks of `release` and `expire`
    /// and for the gauges (stale by at most one operation).
    ready: AtomicUsize,
    parked: AtomicUsize,
    bytes: AtomicUsize,
    /// Receive time of the oldest parked packet, `i64::MAX` when none.
    oldest_us: AtomicI64,
}

impl HoldQueue {
    /// An empty queue of at most `max_bytes`, `max_per_exporter` packets per exporter.
    pub fn new(max_bytes: usize, max_per_exporter: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::new()),
            max_bytes,
            max_per_exporter: u32::try_from(max_per_exporter).unwrap_or(u32::MAX),
            ready: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            oldest_us: AtomicI64::new(i64::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every critical section leaves the lists consistent before it can panic.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, q: &Queue) {
        self.ready.store(q.ready_len, Ordering::Release);
        self.parked.store(q.parked, Ordering::Release);
        self.bytes.store(q.bytes, Ordering::Release);
        self.oldest_us.store(
            q.oldest_received_at().unwrap_or(i64::MAX),
            Ordering::Release,
        );
    }

    /// Holds a copy of `payload`, unless a limit refuses it (then nothing is copied).
    /// `generation_now` gives the exporter's current template generation (`None`: the
    /// exporter has no state); it is called under the queue's lock.
    ///
    /// # Errors
    /// The [`Limit`] that refused it.
    pub fn hold(
        &self,
        request: HoldRequest<'_>,
        payload: &[u8],
        generation_now: impl FnOnce() -> Option<u64>,
    ) -> Result<(), Limit> {
        let cost = payload.len() + PARKED_OVERHEAD;
        let mut q = self.lock();
        let current = generation_now();
        let stranger = current.is_none();
        if q.per_exporter.get(&request.key).copied().unwrap_or(0) >= self.max_per_exporter {
            return Err(Limit::MaxHeldPackets);
        }
        let over_total = q.bytes + cost > self.max_bytes;
        let over_share = stranger && q.stranger_bytes + cost > self.max_bytes / 2;
        if over_total || over_share {
            return Err(Limit::MaxHeldBytes);
        }
        q.bytes += cost;
        q.insert(Parked {
            packet: HeldPacket {
                ctx: *request.ctx,
                payload: payload.into(),
                cost,
            },
            key: request.key,
            template_id: request.template_id,
            stranger,
            ready: current.unwrap_or(0) != request.generation,
        });
        self.publish(&q);
        Ok(())
    }

    /// Parks again a packet taken by [`HoldQueue::take_ready`] that still lacks a
    /// template. No limit applies: it is still charged.
    pub fn requeue(
        &self,
        request: HoldRequest<'_>,
        packet: HeldPacket,
        generation_now: impl FnOnce() -> Option<u64>,
    ) {
        let mut q = self.lock();
        let current = generation_now();
        q.insert(Parked {
            packet,
            key: request.key,
            template_id: request.template_id,
            stranger: current.is_none(),
            ready: current.unwrap_or(0) != request.generation,
        });
        self.publish(&q);
    }

    /// Makes the packets of `key` waiting for any of `template_ids` ready. Called after
    /// the exporter's generation moved.
    pub fn wake(&self, key: ExporterKey, template_ids: &[u16]) {
        if template_ids.is_empty() {
            return;
        }
        let mut q = self.lock();
        for &id in template_ids {
            q.wake(key, id);
        }
        self.publish(&q);
    }

    /// Whether some packet is ready (without locking; may be stale).
    pub fn has_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) > 0
    }

    /// Takes every ready packet into `out`. They stay charged until
    /// [`HoldQueue::finish`] or [`HoldQueue::requeue`].
    pub fn take_ready(&self, out: &mut Vec<HeldPacket>) {
        let mut q = self.lock();
        while q.ready.head != NIL {
            let head = q.ready.head;
            match q.remove(head) {
                Some(parked) => out.push(parked.packet),
                // A slot in a list always holds a packet; never loop on a broken list.
                None => break,
            }
        }
        self.publish(&q);
    }

    /// Uncharges `cost` bytes of taken packets that were decoded or dropped.
    pub fn finish(&self, cost: usize) {
        if cost == 0 {
            return;
        }
        let mut q = self.lock();
        q.bytes -= cost.min(q.bytes);
        self.publish(&q);
    }

    /// Drops the packets received more than `hold_us` before `now_us` (all of them when
    /// `all`), oldest first; returns how many.
    pub fn expire(&self, now_us: i64, hold_us: i64, all: bool) -> u64 {
        let oldest = self.oldest_us.load(Ordering::Acquire);
        let due = |received_at: i64| all || now_us.saturating_sub(received_at) > hold_us;
        if self.parked.load(Ordering::Acquire) == 0 || (oldest != i64::MAX && !due(oldest)) {
            return 0;
        }
        let mut q = self.lock();
        let mut dropped = 0;
        while let Some(received_at) = q.oldest_received_at() {
            if !due(received_at) {
                break;
            }
            let head = q.order.head;
            let Some(parked) = q.remove(head) else {
                break;
            };
            q.bytes -= parked.packet.cost.min(q.bytes);
            dropped += 1;
        }
        self.publish(&q);
        dropped
    }

    /// Packets parked (waiting or ready; not those being released).
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Bytes charged (parked packets and packets being released).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn key(domain: u32) -> ExporterKey {
        ExporterKey {
            tunnel: None,
            src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            domain,
        }
    }

    fn ctx(received_at: i64) -> PacketContext {
        PacketContext {
            received_at,
            tunnel_src: None,
            tunnel_dst: None,
            gre_key: None,
            src_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            src_port: 1,
            dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            dst_port: 4739,
        }
    }

    fn hold(
        q: &HoldQueue,
        domain: u32,
        template_id: u16,
        at: i64,
        known: bool,
    ) -> Result<(), Limit> {
        let c = ctx(at);
        // A known exporter is at generation 1 at lookup and hold; a stranger has none.
        let request = HoldRequest {
            key: key(domain),
            template_id,
            generation: u64::from(known),
            ctx: &c,
        };
        // The payload says where it came from, to check what comes back.
        let payload = [domain.to_be_bytes(), [0, 0, 0, template_id as u8]].concat();
        q.hold(request, &payload, || known.then_some(1))
    }

    fn taken(q: &HoldQueue) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        q.take_ready(&mut out);
        let cost: usize = out.iter().map(HeldPacket::cost).sum();
        q.finish(cost);
        out.iter()
            .map(|p| {
                let domain =
                    u32::from_be_bytes([p.payload[0], p.payload[1], p.payload[2], p.payload[3]]);
                (domain, p.payload[7])
            })
            .collect()
    }

    /// Checks the lists against each other: every parked packet is in the order list
    /// once and in exactly one of the ready or waiting lists.
    fn check(q: &HoldQueue) {
        let g = q.lock();
        let walk = |list: List, k: usize| {
            let mut out = Vec::new();
            let (mut i, mut prev) = (list.head, NIL);
            while i != NIL {
                assert_eq!(g.slots[i as usize].links[k].prev, prev);
                out.push(i);
                prev = i;
                i = g.slots[i as usize].links[k].next;
            }
            assert_eq!(list.tail, prev);
            out
        };
        let order = walk(g.order, ORDER);
        let mut in_lists = walk(g.ready, WAIT);
        assert_eq!(in_lists.len(), g.ready_len);
        for (&(k, id), &list) in &g.waiting {
            let members = walk(list, WAIT);
            assert!(!members.is_empty());
            for &i in &members {
                let p = g.slots[i as usize].parked.as_ref().expect("parked");
                assert_eq!((p.key, p.template_id, p.ready), (k, id, false));
            }
            in_lists.extend(members);
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        in_lists.sort_unstable();
        assert_eq!(sorted, in_lists);
        assert_eq!(order.len(), g.parked);
        assert_eq!(g.parked + g.free.len(), g.slots.len());
        let per: u32 = g.per_exporter.values().sum();
        assert_eq!(per as usize, g.parked);
    }

    #[test]
    fn a_template_wakes_only_the_packets_waiting_for_it_in_arrival_order() {
        let q = HoldQueue::new(1 << 20, 100);
        for (domain, id, at) in [(1, 256, 0), (1, 257, 1), (2, 256, 2), (1, 256, 3)] {
            hold(&q, domain, id, at, true).expect("held");
        }
        check(&q);
        assert!(!q.has_ready());
        q.wake(key(1), &[256]);
        check(&q);
        assert!(q.has_ready());
        assert_eq!(taken(&q), [(1, 0), (1, 0)]);
        assert_eq!(q.parked(), 2);
        check(&q);
        q.wake(key(2), &[300, 256]);
        q.wake(key(1), &[257]);
        assert_eq!(taken(&q), [(2, 0), (1, 1)]);
        assert_eq!((q.parked(), q.bytes()), (0, 0));
        check(&q);
    }

    #[test]
    fn a_packet_whose_exporter_changed_since_its_lookup_is_ready_at_once() {
        let q = HoldQueue::new(1 << 20, 100);
        let c = ctx(0);
        let request = HoldRequest {
            key: key(1),
            template_id: 256,
            generation: 1,
            ctx: &c,
        };
        q.hold(request, &[0; 8], || Some(2)).expect("held");
        assert!(q.has_ready());
        // No exporter at lookup (generation 0), one since: ready too.
        q.hold(
            HoldRequest {
                generation: 0,
                ..request
            },
            &[0; 8],
            || Some(2),
        )
        .expect("held");
        assert_eq!(taken(&q).len(), 2);
        check(&q);
    }

    #[test]
    fn expiry_pops_the_oldest_from_any_list() {
        let q = HoldQueue::new(1 << 20, 100);
        for (domain, at) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            hold(&q, domain, 256, at, true).expect("held");
        }
        q.wake(key(2), &[256]);
        // Exactly `hold_us` old stays.
        assert_eq!(q.expire(20, 10, false), 0);
        assert_eq!(q.expire(31, 10, false), 2);
        check(&q);
        assert!(!q.has_ready(), "the ready packet of domain 2 expired");
        assert_eq!(q.parked(), 2);
        assert_eq!(q.expire(31, 10, true), 2);
        assert_eq!((q.parked(), q.bytes()), (0, 0));
        check(&q);
        // Slots are reused.
        hold(&q, 5, 256, 50, true).expect("held");
        assert_eq!(q.lock().slots.len(), 4);
        check(&q);
    }

    #[test]
    fn bytes_are_bounded_and_strangers_get_half() {
        let cost = 8 + PARKED_OVERHEAD;
        let q = HoldQueue::new(4 * cost, 100);
        assert_eq!(hold(&q, 1, 256, 0, false), Ok(()));
        assert_eq!(hold(&q, 2, 256, 0, false), Ok(()));
        // A third stranger would pass the strangers' half.
        assert_eq!(hold(&q, 3, 256, 0, false), Err(Limit::MaxHeldBytes));
        assert_eq!(hold(&q, 4, 256, 0, true), Ok(()));
        assert_eq!(hold(&q, 5, 256, 0, true), Ok(()));
        assert_eq!(hold(&q, 6, 256, 0, true), Err(Limit::MaxHeldBytes));
        assert_eq!((q.parked(), q.bytes()), (4, 4 * cost));
        check(&q);
        // Taken packets stay charged until finished.
        q.wake(key(4), &[256]);
        let mut out = Vec::new();
        q.take_ready(&mut out);
        assert_eq!((q.parked(), q.bytes()), (3, 4 * cost));
        assert_eq!(hold(&q, 6, 256, 0, true), Err(Limit::MaxHeldBytes));
        q.finish(out[0].cost());
        assert_eq!(hold(&q, 6, 256, 0, true), Ok(()));
        check(&q);
    }

    #[test]
    fn an_exporter_holds_at_most_its_share_of_packets() {
        let q = HoldQueue::new(1 << 20, 2);
        assert_eq!(hold(&q, 1, 256, 0, true), Ok(()));
        assert_eq!(hold(&q, 1, 257, 0, true), Ok(()));
        assert_eq!(hold(&q, 1, 258, 0, true), Err(Limit::MaxHeldPackets));
        assert_eq!(hold(&q, 2, 258, 0, true), Ok(()));
        q.wake(key(1), &[256]);
        assert_eq!(taken(&q), [(1, 0)]);
        assert_eq!(hold(&q, 1, 258, 0, true), Ok(()));
        check(&q);
    }

    #[test]
    fn a_requeued_packet_waits_for_its_next_template() {
        let q = HoldQueue::new(1 << 20, 100);
        hold(&q, 1, 256, 0, true).expect("held");
        q.wake(key(1), &[256]);
        let mut out = Vec::new();
        q.take_ready(&mut out);
        let packet = out.pop().expect("taken");
        let cost = packet.cost();
        let c = packet.ctx;
        let request = HoldRequest {
            key: key(1),
            template_id: 257,
            generation: 1,
            ctx: &c,
        };
        q.requeue(request, packet, || Some(1));
        assert_eq!((q.parked(), q.bytes(), q.has_ready()), (1, cost, false));
        check(&q);
        q.wake(key(1), &[256]);
        assert!(!q.has_ready());
        q.wake(key(1), &[257]);
        assert_eq!(taken(&q), [(1, 0)]);
        assert_eq!((q.parked(), q.bytes()), (0, 0));
    }

    /// A template wakes its own exporter's packet among 100 000 others, which stay.
    #[test]
    fn waking_one_exporter_among_many_takes_only_its_packet() {
        let q = HoldQueue::new(usize::MAX / 2, 100);
        for domain in 0..100_000 {
            hold(&q, domain, 256, i64::from(domain), false).expect("held");
        }
        hold(&q, 7, 300, 100_000, true).expect("held");
        q.wake(key(7), &[300]);
        assert_eq!(taken(&q), [(7, 44)]);
        assert_eq!(q.parked(), 100_000);
        assert_eq!(q.expire(100_000, 50_000, false), 50_000);
        check(&q);
    }
}
