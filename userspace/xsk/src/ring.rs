//! Single-producer/single-consumer rings shared with the kernel.
//!
//! Every AF_XDP ring (fill, completion, RX, TX) has the same shape: a `u32` producer
//! index, a `u32` consumer index, a `u32` flags word and an array of `size` entries
//! (a power of two), all in memory mapped from the socket. Indices run freely over the
//! whole `u32` range and wrap; an entry lives at `index & (size - 1)`. One side only
//! writes the producer index, the other only the consumer index.
//!
//! This module implements both halves once, generically over the entry type:
//! [`ProducerRing`] (we produce: the fill ring) and [`ConsumerRing`] (we consume: the RX
//! and completion rings). Both keep *cached* copies of the indices so the shared cache
//! lines are touched only when the cached view runs out, and use Acquire loads of the
//! other side's index / Release stores of ours so entries are never read before they
//! are written, nor overwritten before they are read.
//!
//! Entries are accessed through raw pointers only (never `&`/`&mut` to the shared
//! array), because the kernel writes to the mapping concurrently.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::MmapRaw;

use crate::sys;

/// Byte offsets of a ring's parts inside its mapping, as reported by
/// `XDP_MMAP_OFFSETS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingOffsets {
    pub(crate) producer: u64,
    pub(crate) consumer: u64,
    pub(crate) flags: u64,
    pub(crate) desc: u64,
}

impl From<sys::xdp_ring_offset> for RingOffsets {
    fn from(o: sys::xdp_ring_offset) -> Self {
        Self {
            producer: o.producer,
            consumer: o.consumer,
            flags: o.flags,
            desc: o.desc,
        }
    }
}

impl RingOffsets {
    /// Length of the mapping needed for a ring of `size` entries of type `T`.
    pub(crate) fn map_len<T>(&self, size: u32) -> Option<usize> {
        let descs = (size as usize).checked_mul(std::mem::size_of::<T>())?;
        usize::try_from(self.desc).ok()?.checked_add(descs)
    }
}

/// The memory a ring lives in; kept alive as long as the ring.
pub(crate) enum RingMemory {
    /// A mapping of the socket (the real thing).
    Mmap(MmapRaw),
    /// Plain heap memory, for exercising the index arithmetic in unit tests.
    #[cfg(test)]
    Heap(Box<[u64]>),
}

impl RingMemory {
    fn base_and_len(&mut self) -> (*mut u8, usize) {
        match self {
            RingMemory::Mmap(m) => (m.as_mut_ptr(), m.len()),
            #[cfg(test)]
            RingMemory::Heap(b) => (
                b.as_mut_ptr().cast::<u8>(),
                b.len() * std::mem::size_of::<u64>(),
            ),
        }
    }
}

/// Pointers into one ring's memory; shared by both ring halves.
struct RawRing<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    size: u32,
    mask: u32,
    // Declared last on purpose: the pointers above are dangling once this is dropped.
    _memory: RingMemory,
    _entries: PhantomData<T>,
}

// SAFETY: the pointers target memory owned by `_memory`, which moves with the ring;
// nothing is thread-local. Mutation of the cached indices and entries needs `&mut`.
unsafe impl<T: Send> Send for RawRing<T> {}
// SAFETY: `&self` methods only perform atomic loads of the shared indices/flags.
unsafe impl<T: Sync> Sync for RawRing<T> {}

impl<T: Copy> RawRing<T> {
    /// Locates the ring's parts in `memory`. Returns `None` when the offsets do not fit
    /// in the memory or are misaligned for their types, or when `size` is not a power
    /// of two.
    fn new(mut memory: RingMemory, offsets: RingOffsets, size: u32) -> Option<Self> {
        if !size.is_power_of_two() {
            return None;
        }
        let (base, len) = memory.base_and_len();
        let field = |off: u64, bytes: usize, align: usize| -> Option<NonNull<u8>> {
            let off = usize::try_from(off).ok()?;
            if off.checked_add(bytes)? > len || (base as usize).checked_add(off)? % align != 0 {
                return None;
            }
            // SAFETY: `off + bytes <= len`, so the result stays inside the allocation.
            NonNull::new(unsafe { base.add(off) })
        };
        let word = std::mem::size_of::<AtomicU32>();
        let word_align = std::mem::align_of::<AtomicU32>();
        let producer = field(offsets.producer, word, word_align)?.cast();
        let consumer = field(offsets.consumer, word, word_align)?.cast();
        let flags = field(offsets.flags, word, word_align)?.cast();
        let desc_bytes = (size as usize).checked_mul(std::mem::size_of::<T>())?;
        let descs = field(offsets.desc, desc_bytes, std::mem::align_of::<T>())?.cast();
        Some(Self {
            producer,
            consumer,
            flags,
            descs,
            size,
            mask: size - 1,
            _memory: memory,
            _entries: PhantomData,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: checked in-bounds and aligned at construction; the memory lives as
        // long as `self`. The kernel also accesses it only atomically (READ_ONCE/
        // smp_load_acquire/smp_store_release), so an `AtomicU32` view is sound.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask < size`, and `size` entries were checked to fit.
        unsafe { self.descs.as_ptr().add((idx & self.mask) as usize) }
    }
}

/// The half of a ring we produce into (fill ring).
pub(crate) struct ProducerRing<T> {
    raw: RawRing<T>,
    /// Our producer index (published with [`submit`](Self::submit)).
    cached_prod: u32,
    /// Last seen consumer index plus `size`: the first index we may not write.
    cached_cons: u32,
}

impl<T: Copy> ProducerRing<T> {
    /// Wraps the ring in `memory`; `None` if the layout is unusable (see [`RawRing`]).
    pub(crate) fn new(memory: RingMemory, offsets: RingOffsets, size: u32) -> Option<Self> {
        RawRing::new(memory, offsets, size).map(Self::from_raw)
    }

    fn from_raw(raw: RawRing<T>) -> Self {
        let cached_prod = raw.producer().load(Ordering::Relaxed);
        let cached_cons = raw
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(raw.size);
        Self {
            raw,
            cached_prod,
            cached_cons,
        }
    }

    /// Number of entries that can be reserved; re-reads the consumer index only when the
    /// cached view shows fewer than `wanted`.
    pub(crate) fn free(&mut self, wanted: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= wanted {
            return free;
        }
        // Acquire: the consumer has finished reading the entries it released.
        self.cached_cons = self
            .raw
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.raw.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Reserves up to `n` entries (fewer if the ring has less room). Returns the first
    /// reserved index and the number reserved; write them with [`write`](Self::write)
    /// and publish with [`submit`](Self::submit).
    pub(crate) fn reserve(&mut self, n: u32) -> (u32, u32) {
        let n = n.min(self.free(n));
        let start = self.cached_prod;
        self.cached_prod = self.cached_prod.wrapping_add(n);
        (start, n)
    }

    /// Writes the entry at ring index `idx` (which must have been reserved).
    pub(crate) fn write(&mut self, idx: u32, value: T) {
        // SAFETY: `slot` is in bounds and aligned; the entry is not visible to the
        // kernel until `submit`, and raw writes never create a reference to it.
        unsafe { self.raw.slot(idx).write(value) }
    }

    /// Publishes every reserved entry to the consumer.
    pub(crate) fn submit(&mut self) {
        // Release: the entries written above are visible before the new index.
        self.raw
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries published but not yet consumed by the other side.
    pub(crate) fn pending(&self) -> u32 {
        let prod = self.raw.producer().load(Ordering::Relaxed);
        let cons = self.raw.consumer().load(Ordering::Acquire);
        prod.wrapping_sub(cons)
    }

    /// Whether the kernel asks to be woken up (`XDP_RING_NEED_WAKEUP`).
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.raw.flags().load(Ordering::Relaxed) & sys::XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring capacity.
    pub(crate) fn size(&self) -> u32 {
        self.raw.size
    }
}

/// The half of a ring we consume from (RX and completion rings).
pub(crate) struct ConsumerRing<T> {
    raw: RawRing<T>,
    /// Last seen producer index.
    cached_prod: u32,
    /// Our consumer index (published with [`release`](Self::release)).
    cached_cons: u32,
}

impl<T: Copy> ConsumerRing<T> {
    /// Wraps the ring in `memory`; `None` if the layout is unusable (see [`RawRing`]).
    pub(crate) fn new(memory: RingMemory, offsets: RingOffsets, size: u32) -> Option<Self> {
        RawRing::new(memory, offsets, size).map(Self::from_raw)
    }

    fn from_raw(raw: RawRing<T>) -> Self {
        let cached_cons = raw.consumer().load(Ordering::Relaxed);
        let cached_prod = raw.producer().load(Ordering::Acquire);
        Self {
            raw,
            cached_prod,
            cached_cons,
        }
    }

    /// Number of entries ready to be read, at most `max`; re-reads the producer index
    /// only when the cached view shows fewer than `max`.
    pub(crate) fn available(&mut self, max: u32) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready >= max {
            return max;
        }
        // Acquire: the entries are fully written before we read them.
        self.cached_prod = self.raw.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons).min(max)
    }

    /// Looks at up to `max` ready entries without consuming them. Returns the first
    /// index and the count; read them with [`read`](Self::read), then hand them back
    /// with [`release`](Self::release). Peeking again before releasing returns the same
    /// entries.
    pub(crate) fn peek(&mut self, max: u32) -> (u32, u32) {
        let n = self.available(max);
        (self.cached_cons, n)
    }

    /// Reads the entry at ring index `idx` (which must have been peeked).
    pub(crate) fn read(&self, idx: u32) -> T {
        // SAFETY: `slot` is in bounds and aligned; the producer published the entry
        // (Acquire in `available`) and will not rewrite it before `release`.
        unsafe { self.raw.slot(idx).read() }
    }

    /// Consumes `n` peeked entries, letting the producer reuse their slots.
    pub(crate) fn release(&mut self, n: u32) {
        debug_assert!(n <= self.cached_prod.wrapping_sub(self.cached_cons));
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the entries happen before the producer may reuse them.
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    const SIZE: u32 = 8;

    /// Heap-backed ring memory with the kernel's layout style: indices on separate
    /// cache lines, entries after them.
    fn heap_ring(size: u32) -> (RingMemory, RingOffsets) {
        let offsets = RingOffsets {
            producer: 0,
            consumer: 64,
            flags: 68,
            desc: 128,
        };
        let len = offsets.map_len::<u64>(size).unwrap();
        let words = len.div_ceil(8);
        (
            RingMemory::Heap(vec![0u64; words].into_boxed_slice()),
            offsets,
        )
    }

    /// Acts as the kernel: sets the shared indices directly.
    fn set_indices<T: Copy>(raw: &RawRing<T>, prod: u32, cons: u32) {
        raw.producer().store(prod, Ordering::SeqCst);
        raw.consumer().store(cons, Ordering::SeqCst);
    }

    fn producer_at(start: u32) -> ProducerRing<u64> {
        let (mem, off) = heap_ring(SIZE);
        let raw = RawRing::new(mem, off, SIZE).unwrap();
        set_indices(&raw, start, start);
        ProducerRing::from_raw(raw)
    }

    fn consumer_at(start: u32) -> ConsumerRing<u64> {
        let (mem, off) = heap_ring(SIZE);
        let raw = RawRing::new(mem, off, SIZE).unwrap();
        set_indices(&raw, start, start);
        ConsumerRing::from_raw(raw)
    }

    /// The kernel side of a producer ring: consume `n` entries and return them.
    fn kernel_consume(ring: &ProducerRing<u64>, n: u32) -> Vec<u64> {
        let cons = ring.raw.consumer().load(Ordering::SeqCst);
        let prod = ring.raw.producer().load(Ordering::SeqCst);
        assert!(prod.wrapping_sub(cons) >= n, "kernel would over-consume");
        let out = (0..n)
            // SAFETY: in-bounds slot of a live ring, published by the producer.
            .map(|i| unsafe { ring.raw.slot(cons.wrapping_add(i)).read() })
            .collect();
        ring.raw
            .consumer()
            .store(cons.wrapping_add(n), Ordering::SeqCst);
        out
    }

    /// The kernel side of a consumer ring: produce `values`.
    fn kernel_produce(ring: &ConsumerRing<u64>, values: &[u64]) {
        let prod = ring.raw.producer().load(Ordering::SeqCst);
        let cons = ring.raw.consumer().load(Ordering::SeqCst);
        assert!(
            prod.wrapping_sub(cons) as usize + values.len() <= SIZE as usize,
            "kernel would overflow the ring"
        );
        for (i, v) in values.iter().enumerate() {
            // SAFETY: in-bounds slot of a live ring, not yet published.
            unsafe { ring.raw.slot(prod.wrapping_add(i as u32)).write(*v) };
        }
        ring.raw
            .producer()
            .store(prod.wrapping_add(values.len() as u32), Ordering::SeqCst);
    }

    fn produce(ring: &mut ProducerRing<u64>, values: &[u64]) -> u32 {
        let (start, n) = ring.reserve(values.len() as u32);
        for i in 0..n {
            ring.write(start.wrapping_add(i), values[i as usize]);
        }
        ring.submit();
        n
    }

    #[test]
    fn layout_checks() {
        let (mem, off) = heap_ring(SIZE);
        assert!(
            RawRing::<u64>::new(mem, off, 6).is_none(),
            "size not power of two"
        );
        let (mem, off) = heap_ring(SIZE);
        assert!(
            RawRing::<u64>::new(mem, off, SIZE * 2).is_none(),
            "entries beyond the memory"
        );
        let (mem, mut off) = heap_ring(SIZE);
        off.consumer = 65;
        assert!(RawRing::<u64>::new(mem, off, SIZE).is_none(), "misaligned");
        let (mem, mut off) = heap_ring(SIZE);
        off.flags = u64::MAX;
        assert!(
            RawRing::<u64>::new(mem, off, SIZE).is_none(),
            "overflowing offset"
        );
        let (mem, off) = heap_ring(SIZE);
        assert!(RawRing::<u64>::new(mem, off, SIZE).is_some());
    }

    #[test]
    fn map_len() {
        let off = RingOffsets {
            producer: 0,
            consumer: 64,
            flags: 68,
            desc: 128,
        };
        assert_eq!(off.map_len::<u64>(2048), Some(128 + 2048 * 8));
        assert_eq!(off.map_len::<sys::xdp_desc>(2048), Some(128 + 2048 * 16));
    }

    #[test]
    fn producer_fills_then_partial_reservation() {
        let mut ring = producer_at(0);
        assert_eq!(ring.free(1), SIZE);
        assert_eq!(produce(&mut ring, &[1, 2, 3, 4, 5]), 5);
        assert_eq!(ring.pending(), 5);
        // Only 3 slots left: a reservation of 10 is cut down to 3.
        let (start, n) = ring.reserve(10);
        assert_eq!((start, n), (5, 3));
        for i in 0..n {
            ring.write(start + i, 100 + u64::from(i));
        }
        ring.submit();
        // Full: nothing more.
        assert_eq!(ring.reserve(1), (8, 0));
        assert_eq!(ring.pending(), SIZE);
        assert_eq!(kernel_consume(&ring, 6), vec![1, 2, 3, 4, 5, 100]);
        // The cached consumer is stale, `free` refreshes it when asked for more.
        assert_eq!(ring.free(1), 6);
        assert_eq!(produce(&mut ring, &[7, 8, 9, 10, 11, 12, 13]), 6);
        assert_eq!(
            kernel_consume(&ring, 8),
            vec![101, 102, 7, 8, 9, 10, 11, 12]
        );
    }

    #[test]
    fn producer_wraps_u32() {
        let start = u32::MAX - 2;
        let mut ring = producer_at(start);
        assert_eq!(ring.free(SIZE), SIZE);
        let (first, n) = ring.reserve(5);
        assert_eq!((first, n), (start, 5));
        for i in 0..n {
            ring.write(first.wrapping_add(i), u64::from(i));
        }
        ring.submit();
        // The producer index wrapped past zero.
        assert_eq!(ring.raw.producer().load(Ordering::SeqCst), 2);
        assert_eq!(ring.pending(), 5);
        assert_eq!(ring.reserve(100).1, 3);
        ring.submit();
        assert_eq!(ring.reserve(1).1, 0);
        assert_eq!(kernel_consume(&ring, 4), vec![0, 1, 2, 3]);
        let (first, n) = ring.reserve(100);
        assert_eq!((first, n), (5, 4));
        // Many laps around the ring and across the u32 boundary keep the count right.
        let mut ring = producer_at(u32::MAX - 100);
        for lap in 0..100u64 {
            assert_eq!(produce(&mut ring, &[lap; 3]), 3);
            assert_eq!(kernel_consume(&ring, 3), vec![lap; 3]);
            assert_eq!(ring.pending(), 0);
        }
    }

    #[test]
    fn consumer_peek_release_and_partial() {
        let mut ring = consumer_at(0);
        assert_eq!(ring.peek(4), (0, 0));
        kernel_produce(&ring, &[10, 11, 12, 13, 14]);
        // Partial: only 3 requested.
        let (start, n) = ring.peek(3);
        assert_eq!((start, n), (0, 3));
        let got: Vec<u64> = (0..n).map(|i| ring.read(start + i)).collect();
        assert_eq!(got, vec![10, 11, 12]);
        // Peeking again without release yields the same entries.
        assert_eq!(ring.peek(3), (0, 3));
        ring.release(n);
        assert_eq!(ring.raw.consumer().load(Ordering::SeqCst), 3);
        // More requested than ready: only the 2 remaining.
        let (start, n) = ring.peek(64);
        assert_eq!((start, n), (3, 2));
        assert_eq!(ring.read(start), 13);
        assert_eq!(ring.read(start + 1), 14);
        ring.release(n);
        assert_eq!(ring.peek(64), (5, 0));
    }

    #[test]
    fn consumer_wraps_u32() {
        let start = u32::MAX - 1;
        let mut ring = consumer_at(start);
        kernel_produce(&ring, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(ring.raw.producer().load(Ordering::SeqCst), 6);
        let (first, n) = ring.peek(SIZE);
        assert_eq!((first, n), (start, SIZE));
        let got: Vec<u64> = (0..n).map(|i| ring.read(first.wrapping_add(i))).collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        ring.release(5);
        assert_eq!(ring.raw.consumer().load(Ordering::SeqCst), 3);
        kernel_produce(&ring, &[9, 10, 11, 12, 13]);
        let (first, n) = ring.peek(SIZE);
        assert_eq!((first, n), (3, SIZE));
        let got: Vec<u64> = (0..n).map(|i| ring.read(first.wrapping_add(i))).collect();
        assert_eq!(got, vec![6, 7, 8, 9, 10, 11, 12, 13]);
        ring.release(n);
        assert_eq!(ring.peek(SIZE), (11, 0));
    }

    #[test]
    fn needs_wakeup_flag() {
        let ring = producer_at(0);
        assert!(!ring.needs_wakeup());
        ring.raw
            .flags()
            .store(sys::XDP_RING_NEED_WAKEUP, Ordering::SeqCst);
        assert!(ring.needs_wakeup());
    }
}
