//! A global allocator that counts allocations, so a bench can show (and assert) that the
//! code it measures allocates nothing per packet or per record once its buffers have
//! grown. It forwards to the system allocator, as the daemon uses it (`realloc` included,
//! which Lua's allocator calls for every growing table). One copy shared by every bench that counts, included with
//! `#[path = "support/counting_alloc.rs"] mod counting_alloc;`: a bench is its own crate,
//! and the allocator must be declared in it.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

/// Forwards to the system allocator, counting every `alloc` and `realloc`.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations per call of `f`, averaged over `rounds` calls. Warm `f` up first (one
/// call that grows its buffers): this measures the steady state.
pub fn allocations_per_call(rounds: u32, mut f: impl FnMut()) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        f();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / f64::from(rounds)
}
