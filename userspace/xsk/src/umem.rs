//! The UMEM: the packet buffer area shared with the kernel, and its frame bookkeeping.
//!
//! In aligned mode the UMEM is `frame_count` chunks of `frame_size` bytes. The kernel
//! learns about free chunks through the fill ring and hands filled ones back through
//! the RX ring; the descriptor address it returns may point *into* a chunk (past the
//! kernel's `XDP_PACKET_HEADROOM` and any XDP metadata), so the chunk is recovered by
//! masking. At every moment each chunk is owned by exactly one party: our free list,
//! the fill ring, the kernel, or the RX ring / the caller of `receive`. This module
//! owns the memory and the free list; the socket moves chunks between the rings.

use std::io;
use std::ptr::NonNull;

use memmap2::{MmapMut, MmapRaw};

use crate::XskError;
use crate::sys;

/// One received packet, borrowed from the UMEM for the duration of the callback.
#[derive(Clone, Copy, Debug)]
pub struct RxFrame<'a> {
    /// The packet bytes (`desc.addr .. desc.addr + desc.len`).
    pub data: &'a [u8],
    /// The bytes of the same UMEM chunk *before* `data`. The kernel's headroom; XDP
    /// metadata placed with `bpf_xdp_adjust_meta` sits at its end (copied there by the
    /// kernel in copy mode as well).
    pub headroom: &'a [u8],
}

/// The UMEM memory area.
pub(crate) struct Umem {
    // Accessed only through raw pointers, because the kernel writes into it.
    mem: MmapRaw,
    base: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frame_count: u32,
}

// SAFETY: `base` points into `mem`, which moves with the struct; the mapping is
// process-wide. Frame slices are only handed out for chunks the caller owns.
unsafe impl Send for Umem {}
// SAFETY: `&self` methods only compute addresses or create shared slices of chunks
// the caller owns (see `frame`).
unsafe impl Sync for Umem {}

impl Umem {
    /// Allocates `frame_count * frame_size` bytes of anonymous, page-aligned memory.
    /// The geometry must have been validated (powers of two).
    pub(crate) fn new(frame_count: u32, frame_size: u32) -> Result<Self, XskError> {
        let bytes = (frame_count as usize).saturating_mul(frame_size as usize);
        let mmap =
            MmapMut::map_anon(bytes).map_err(|source| XskError::UmemAlloc { bytes, source })?;
        // Keep it as a raw mapping: we never want a `&mut [u8]` over memory the
        // kernel writes to.
        let mem = MmapRaw::from(mmap);
        let base = NonNull::new(mem.as_mut_ptr()).ok_or_else(|| XskError::UmemAlloc {
            bytes,
            source: io::Error::other("mmap returned a null pointer"),
        })?;
        Ok(Self {
            len: mem.len(),
            mem,
            base,
            frame_size,
            frame_count,
        })
    }

    /// The `XDP_UMEM_REG` argument describing this area (aligned chunks, no extra
    /// headroom: the kernel's own `XDP_PACKET_HEADROOM` already leaves room for
    /// metadata).
    pub(crate) fn registration(&self) -> sys::xdp_umem_reg {
        let mut reg: sys::xdp_umem_reg = sys::zeroed();
        reg.addr = self.base.as_ptr() as u64;
        reg.len = self.len as u64;
        reg.chunk_size = self.frame_size;
        reg.headroom = 0;
        reg.flags = 0;
        reg.tx_metadata_len = 0;
        reg
    }

    pub(crate) fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// The start address of every chunk, in ascending order.
    pub(crate) fn chunks(&self) -> impl DoubleEndedIterator<Item = u64> + use<> {
        let size = u64::from(self.frame_size);
        (0..u64::from(self.frame_count)).map(move |i| i * size)
    }

    /// The chunk a descriptor address belongs to, or `None` if it is outside the UMEM.
    pub(crate) fn chunk_of(&self, addr: u64) -> Option<u64> {
        let chunk = addr & !(u64::from(self.frame_size) - 1);
        (chunk < self.len as u64).then_some(chunk)
    }

    /// The packet `addr .. addr + len` and the headroom before it in its chunk, or
    /// `None` if the range is outside the UMEM or crosses the chunk end.
    ///
    /// # Safety
    /// The caller must own the chunk (it came out of the RX ring and has not been put
    /// back into the fill ring) for as long as the returned frame is alive, so the
    /// kernel does not write to it meanwhile.
    pub(crate) unsafe fn frame(&self, addr: u64, len: u32) -> Option<RxFrame<'_>> {
        let chunk = self.chunk_of(addr)?;
        let end = addr.checked_add(u64::from(len))?;
        if end > chunk + u64::from(self.frame_size) || end > self.len as u64 {
            return None;
        }
        // All three fit in usize: they are bounded by `self.len`.
        let (chunk, addr, len) = (chunk as usize, addr as usize, len as usize);
        let base = self.base.as_ptr();
        // SAFETY: `addr <= self.len`: the pointer stays inside the mapping.
        let data_ptr = unsafe { base.add(addr) };
        // SAFETY: `chunk <= addr <= self.len`: likewise.
        let chunk_ptr = unsafe { base.add(chunk) };
        // SAFETY: `addr + len <= self.len`, so the range is inside the mapping, which
        // lives as long as `&self`; the caller guarantees nobody writes to the chunk
        // while the slice exists.
        let data = unsafe { std::slice::from_raw_parts(data_ptr, len) };
        // SAFETY: as above, for `chunk .. addr` (same chunk, before the packet).
        let headroom = unsafe { std::slice::from_raw_parts(chunk_ptr, addr - chunk) };
        Some(RxFrame { data, headroom })
    }

    /// Length of the mapping (for diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.mem.len()
    }
}

/// Chunks we own and may hand to the fill ring. Allocated once with room for every
/// frame, so pushing never allocates.
pub(crate) struct FreeFrames {
    addrs: Vec<u64>,
    capacity: usize,
}

impl FreeFrames {
    /// A free list holding every chunk of `umem`.
    pub(crate) fn full(umem: &Umem) -> Self {
        let capacity = umem.frame_count() as usize;
        let mut addrs = Vec::with_capacity(capacity);
        // Reverse, so `pop` hands out low addresses first (purely cosmetic).
        addrs.extend(umem.chunks().rev());
        Self { addrs, capacity }
    }

    pub(crate) fn len(&self) -> usize {
        self.addrs.len()
    }

    pub(crate) fn pop(&mut self) -> Option<u64> {
        self.addrs.pop()
    }

    /// Returns a chunk to the list. A list already holding every frame means the chunk
    /// is a duplicate (a kernel bug); it is dropped instead of growing the list.
    pub(crate) fn push(&mut self, chunk: u64) {
        if self.addrs.len() < self.capacity {
            self.addrs.push(chunk);
        } else {
            debug_assert!(false, "UMEM chunk {chunk:#x} returned twice");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn chunk_masking_and_frames() {
        let umem = Umem::new(4, 2048).unwrap();
        assert_eq!(umem.len(), 8192);
        assert_eq!(umem.chunks().collect::<Vec<_>>(), vec![0, 2048, 4096, 6144]);
        // The kernel hands back addresses past the headroom (256) inside the chunk.
        assert_eq!(umem.chunk_of(2048 + 256), Some(2048));
        assert_eq!(umem.chunk_of(6144 + 2047), Some(6144));
        assert_eq!(umem.chunk_of(8192), None);

        // SAFETY: nobody else uses this UMEM.
        let frame = unsafe { umem.frame(2048 + 256, 60) }.unwrap();
        assert_eq!(frame.data.len(), 60);
        assert_eq!(frame.headroom.len(), 256);
        assert_eq!(
            frame.headroom.as_ptr_range().end,
            frame.data.as_ptr(),
            "headroom ends where data starts"
        );
        // Crossing into the next chunk or past the end is refused.
        // SAFETY: nobody else uses this UMEM.
        assert!(unsafe { umem.frame(2048 + 256, 2048) }.is_none());
        // SAFETY: see above.
        assert!(unsafe { umem.frame(6144 + 2000, 100) }.is_none());
        // SAFETY: see above.
        assert!(unsafe { umem.frame(u64::MAX, 1) }.is_none());
        // A full chunk is fine.
        // SAFETY: see above.
        let frame = unsafe { umem.frame(0, 2048) }.unwrap();
        assert_eq!((frame.data.len(), frame.headroom.len()), (2048, 0));
    }

    #[test]
    fn registration_describes_the_area() {
        let umem = Umem::new(8, 4096).unwrap();
        let reg = umem.registration();
        assert_eq!(reg.len, 8 * 4096);
        assert_eq!(reg.chunk_size, 4096);
        assert_eq!(reg.addr % 4096, 0, "page aligned");
    }

    #[test]
    fn free_list_never_grows() {
        let umem = Umem::new(4, 2048).unwrap();
        let mut free = FreeFrames::full(&umem);
        assert_eq!(free.len(), 4);
        assert_eq!(free.pop(), Some(0));
        free.push(0);
        assert_eq!(free.len(), 4);
        let cap = free.addrs.capacity();
        for _ in 0..4 {
            free.pop();
        }
        assert_eq!(free.pop(), None);
        for c in umem.chunks() {
            free.push(c);
        }
        assert_eq!(free.addrs.capacity(), cap);
    }
}
