//! Freed small blocks of a Lua state kept for its next allocations of the same size.
//!
//! Every payload makes the same few objects — the event and `log` tables with their node
//! arrays, the payload's string — and the collector frees them a cycle later, dozens at a
//! time. Through mlua's allocator each of those is a call into the process's `malloc` and
//! `free`, whose per-thread caches hold only a few blocks of a size, so most of them went
//! the slow way. This cache sits in front of mlua's allocator (`lua_setallocf`): a freed
//! block of at most [`MAX_BLOCK`] bytes is kept on a list for its exact size, and the next
//! new object of that size takes it. Sizes are exact, so a block can always go back to
//! mlua's allocator as it came; reallocations pass straight through. Every size has its
//! list: most objects are a multiple of 8 bytes, but strings are not (a payload of 36 bytes
//! is a block of 61), and with lists for multiples of 8 only, each payload's string, each
//! new sender's address and each field cut out of a payload went to `malloc` and back.
//!
//! mlua's allocator counts cached blocks against the state's memory limit, so the cache is
//! small ([`MAX_CACHED`], and at most an eighth of the limit), is emptied when an
//! allocation is refused (then tried again) and after a full collection that recovers from
//! a memory error, and hands everything back before the state is closed (dropping
//! [`Attached`], which also gives the state mlua's allocator back: mlua finds its memory
//! accounting through it). While the cache is attached, mlua reports a state's memory as
//! Lua's own count of its objects (`used_memory`), cached blocks not included.

use std::{os::raw::c_void, ptr::NonNull};

use mlua::ffi;

/// Largest block kept (a `log` table's node array for up to 42 fields is 1 KiB).
const MAX_BLOCK: usize = 1024;
/// Most bytes kept at once.
const MAX_CACHED: usize = 128 * 1024;
/// Smallest block kept: room for the link.
const MIN_BLOCK: usize = 8;
/// A list for every size up to [`MAX_BLOCK`] (strings are 25 bytes and their length: a
/// payload's, a sender's address or a field `string.unpack` cut out is any size).
const LISTS: usize = MAX_BLOCK + 1;

/// A state's cache (see the module's documentation), owned by the state through
/// [`Attached`].
struct BlockCache {
    /// mlua's allocator and its state.
    inner: ffi::lua_Alloc,
    inner_ud: *mut c_void,
    /// Per size (index `size`): the first free block, whose first word links to the
    /// next one of its list.
    lists: [*mut c_void; LISTS],
    cached: usize,
    max_cached: usize,
}

/// The cache of a state, attached to it (a raw pointer: Lua holds one too, so a `Box`
/// would claim unique access it does not have).
pub(crate) struct Attached {
    cache: NonNull<BlockCache>,
    state: NonNull<ffi::lua_State>,
}

impl Attached {
    /// Puts a cache in front of `state`'s allocator, for a state whose memory limit is
    /// `memory_limit` bytes.
    ///
    /// # Safety
    /// `state` is a main thread no other thread uses, and the result is dropped (which
    /// gives the state its allocator back) before the state is closed.
    pub(crate) unsafe fn new(state: NonNull<ffi::lua_State>, memory_limit: usize) -> Self {
        let mut inner_ud = std::ptr::null_mut();
        // SAFETY: reads the state's allocator.
        let inner = unsafe { ffi::lua_getallocf(state.as_ptr(), &mut inner_ud) };
        let cache = NonNull::from(Box::leak(Box::new(BlockCache {
            inner,
            inner_ud,
            lists: [std::ptr::null_mut(); LISTS],
            cached: 0,
            max_cached: MAX_CACHED.min(memory_limit / 8),
        })));
        // SAFETY: the cache lives until `drop`, which detaches it first.
        unsafe { ffi::lua_setallocf(state.as_ptr(), cached_alloc, cache.as_ptr().cast()) };
        Self { cache, state }
    }

    /// Hands every cached block back to mlua's allocator.
    pub(crate) fn flush(&mut self) {
        // SAFETY: the cache is alive; the state is not allocating (its owner is here).
        unsafe { (*self.cache.as_ptr()).flush() }
    }
}

impl Drop for Attached {
    /// Gives the state its own allocator back, and the cached blocks to it.
    fn drop(&mut self) {
        // SAFETY: the state is alive (the caller of `new` drops this first) and not
        // running; every block was made by its allocator with its exact size. The cache
        // was made by `Box::leak` and Lua no longer reaches it.
        unsafe {
            let cache = self.cache.as_ptr();
            ffi::lua_setallocf(self.state.as_ptr(), (*cache).inner, (*cache).inner_ud);
            (*cache).flush();
            drop(Box::from_raw(cache));
        }
    }
}

// SAFETY: the cache and the state are used only by the thread that owns the state (which
// moves as a whole and is never shared).
unsafe impl Send for Attached {}

impl BlockCache {
    /// Hands every cached block back to mlua's allocator.
    ///
    /// # Safety
    /// The state is not allocating at the same time.
    unsafe fn flush(&mut self) {
        for size in 0..LISTS {
            let mut block = std::mem::replace(&mut self.lists[size], std::ptr::null_mut());
            while !block.is_null() {
                // SAFETY: a cached block's first word is the next block of its list, and
                // the block is `size` bytes made by `inner`.
                unsafe {
                    let next = block.cast::<*mut c_void>().read();
                    (self.inner)(self.inner_ud, block, size, 0);
                    block = next;
                }
            }
        }
        self.cached = 0;
    }

    /// A new block of `size` bytes: a cached one, or one from mlua's allocator (emptying
    /// the cache and trying again when it refuses).
    ///
    /// # Safety
    /// Called from the state's allocator function.
    unsafe fn take(&mut self, size: usize) -> *mut c_void {
        if let Some(list) = list_of(size) {
            let block = self.lists[list];
            if !block.is_null() {
                // SAFETY: as in `flush`.
                self.lists[list] = unsafe { block.cast::<*mut c_void>().read() };
                self.cached -= size;
                return block;
            }
        }
        // SAFETY: a new block from the state's own allocator.
        let block = unsafe { (self.inner)(self.inner_ud, std::ptr::null_mut(), 0, size) };
        if block.is_null() && self.cached > 0 {
            // SAFETY: as above; the cached blocks were counted against the limit.
            unsafe {
                self.flush();
                return (self.inner)(self.inner_ud, std::ptr::null_mut(), 0, size);
            }
        }
        block
    }

    /// Takes back `block` of `size` bytes: kept if it fits, else freed.
    ///
    /// # Safety
    /// Called from the state's allocator function with a block Lua frees.
    unsafe fn give(&mut self, block: NonNull<c_void>, size: usize) {
        match list_of(size) {
            Some(list) if self.cached + size <= self.max_cached => {
                // SAFETY: the block is at least 8 bytes, aligned for a pointer, and no
                // longer Lua's: its first word links it in.
                unsafe { block.cast::<*mut c_void>().write(self.lists[list]) };
                self.lists[list] = block.as_ptr();
                self.cached += size;
            }
            // SAFETY: made by `inner` with this size.
            _ => unsafe {
                (self.inner)(self.inner_ud, block.as_ptr(), size, 0);
            },
        }
    }
}

/// The list of blocks of `size` bytes, if such blocks are kept.
fn list_of(size: usize) -> Option<usize> {
    (MIN_BLOCK..=MAX_BLOCK).contains(&size).then_some(size)
}

/// The state's allocator while the cache is attached (Lua's `lua_Alloc` contract: free
/// when `nsize` is 0, allocate when `ptr` is null — `osize` is then a type tag — else
/// reallocate, which goes to mlua's allocator as it is).
///
/// # Safety
/// Called by Lua with the [`BlockCache`] as `ud`.
unsafe extern "C" fn cached_alloc(
    ud: *mut c_void,
    ptr: *mut c_void,
    osize: usize,
    nsize: usize,
) -> *mut c_void {
    // SAFETY: `ud` is the attached cache; Lua calls its allocator from one thread at a time.
    unsafe {
        let cache = &mut *ud.cast::<BlockCache>();
        match (NonNull::new(ptr), nsize) {
            (None, 0) => std::ptr::null_mut(),
            (Some(block), 0) => {
                cache.give(block, osize);
                std::ptr::null_mut()
            }
            (None, _) => cache.take(nsize),
            (Some(_), _) => (cache.inner)(cache.inner_ud, ptr, osize, nsize),
        }
    }
}

#[cfg(test)]
mod tests {
    use mlua::Lua;

    use super::Attached;
    use crate::lua::sandbox::main_thread;

    /// Objects of many sizes made and collected with the cache attached: once it is dropped,
    /// mlua's own count of the state's memory (back with its allocator) is Lua's count of
    /// its objects to the byte — every cached block went back, with its size — and the
    /// state goes on allocating and is closed through mlua's allocator.
    #[test]
    fn every_block_goes_back_with_its_size() {
        let lua = Lua::new();
        lua.set_memory_limit(16 << 20).expect("a limit");
        assert_eq!(lua.used_memory(), gc_count(&lua), "the counts agree before");
        let main = main_thread(&lua).expect("main thread").0;
        // SAFETY: this thread's state; the cache is dropped before the state.
        let attached = unsafe { Attached::new(main, 16 << 20) };
        lua.load(
            "local keep = {} \
             for i = 1, 30000 do \
               local t = { i, tostring(i), string.rep('x', i % 300), { i } } \
               for k = 1, i % 40 do t['k' .. k] = k end \
               keep[i % 64 + 1] = t \
             end \
             collectgarbage() collectgarbage()",
        )
        .exec()
        .expect("runs");
        let objects = lua.used_memory();
        drop(attached);
        assert_eq!(lua.used_memory(), objects, "mlua's count is Lua's again");
        lua.load("local t = {} for i = 1, 1000 do t[i] = { i } end")
            .exec()
            .expect("runs after");
        assert_eq!(lua.used_memory(), gc_count(&lua));
    }

    /// An allocation mlua's allocator refuses only because cached blocks count against the
    /// limit is made after the cache is emptied.
    #[test]
    fn a_refused_allocation_empties_the_cache_and_is_tried_again() {
        let limit = 1 << 20;
        let lua = Lua::new();
        lua.set_memory_limit(limit).expect("a limit");
        let before = lua.used_memory();
        let main = main_thread(&lua).expect("main thread").0;
        // SAFETY: this thread's state; the cache is dropped before the state.
        let attached = unsafe { Attached::new(main, limit) };
        let mut ud = std::ptr::null_mut();
        // SAFETY: the state's allocator (the cache's), called as Lua calls it, for blocks
        // no Lua object uses; every block is freed with its size.
        unsafe {
            let alloc = mlua::ffi::lua_getallocf(main.as_ptr(), &mut ud);
            let small: Vec<_> = (0..2000)
                .map(|_| alloc(ud, std::ptr::null_mut(), 0, 64))
                .collect();
            assert!(small.iter().all(|b| !b.is_null()));
            for block in small {
                alloc(ud, block, 64, 0);
            }
            // 128 000 bytes cached; this fits the limit only without them.
            let size = limit - before - 64_000;
            let big = alloc(ud, std::ptr::null_mut(), 0, size);
            assert!(
                !big.is_null(),
                "refused although the cache could be emptied"
            );
            alloc(ud, big, size, 0);
        }
        drop(attached);
        assert_eq!(lua.used_memory(), before);
    }

    /// Lua's own count of the state's memory, in bytes.
    fn gc_count(lua: &Lua) -> usize {
        let mut bytes = 0;
        // SAFETY: two reads of the collector's count.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                let kilobytes = mlua::ffi::lua_gc(state, mlua::ffi::LUA_GCCOUNT, 0);
                let rest = mlua::ffi::lua_gc(state, mlua::ffi::LUA_GCCOUNTB, 0);
                bytes = kilobytes as usize * 1024 + rest as usize;
            })
        }
        .expect("counts");
        bytes
    }
}
