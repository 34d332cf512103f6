//! The AF_XDP socket: setup, the receive path and teardown.
//!
//! [`XskSocket::open`] performs the kernel's setup sequence (UMEM, `socket(2)`,
//! `XDP_UMEM_REG`, ring sizes, `XDP_MMAP_OFFSETS`, ring mmaps, fill ring, `bind(2)`) and
//! [`XskSocket::receive`] moves frames RX ring → caller → free list → fill ring without
//! allocating. The struct's field order encodes the teardown order (rings unmapped,
//! then the socket closed, then the UMEM unmapped).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use memmap2::MmapOptions;

use crate::ring::{ConsumerRing, ProducerRing, RingMemory, RingOffsets};
use crate::sys;
use crate::umem::{FreeFrames, RxFrame, Umem};
use crate::{BindMode, XskConfig, XskError};

/// How long [`XskSocket::open`] keeps retrying a bind that fails with `EBUSY`. The
/// kernel releases a queue asynchronously (from a workqueue) after the previous socket
/// on it is closed, so an immediate re-open can briefly see the queue as taken.
const BIND_BUSY_RETRY: Duration = Duration::from_millis(500);
const BIND_BUSY_PAUSE: Duration = Duration::from_millis(5);

/// Counters the kernel keeps per socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStatistics {
    /// Packets dropped for reasons other than invalid descriptors (e.g. RX ring full).
    pub rx_dropped: u64,
    /// Invalid descriptors found on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors found on the TX ring (always 0 here: no TX ring).
    pub tx_invalid_descs: u64,
    /// Packets dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (frames were not handed back fast
    /// enough).
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty (always 0 here: no TX ring).
    pub tx_ring_empty_descs: u64,
}

impl From<sys::xdp_statistics> for XskStatistics {
    fn from(s: sys::xdp_statistics) -> Self {
        Self {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        }
    }
}

/// An AF_XDP socket bound to one device queue, receive-only, with its own UMEM.
pub struct XskSocket {
    // Field order is drop order and matters: the ring mappings go first, then the
    // socket is closed (which releases the kernel's UMEM references), then the UMEM
    // mapping itself is unmapped.
    rx: ConsumerRing<sys::xdp_desc>,
    fill: ProducerRing<u64>,
    /// Registered because bind requires it; unused, as nothing is transmitted.
    _completion: ConsumerRing<u64>,
    fd: OwnedFd,
    umem: Umem,
    free: FreeFrames,
    ifindex: u32,
    queue_id: u32,
    bound_mode: BindMode,
    need_wakeup: bool,
    busy_poll: AtomicBool,
}

// Sockets are opened on one thread and moved into per-queue workers.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<XskSocket>();
};

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("queue_id", &self.queue_id)
            .field("bound_mode", &self.bound_mode)
            .field("umem_bytes", &self.umem.len())
            .field("frames", &self.umem.frame_count())
            .field("ring_size", &self.fill.size())
            .field("free_frames", &self.free.len())
            .field("fill_ring_pending", &self.fill.pending())
            .finish()
    }
}

impl XskSocket {
    /// Creates the UMEM and the socket, registers the UMEM, sizes and maps the fill,
    /// completion and RX rings, fills the fill ring completely and binds to
    /// `(ifindex, queue_id)` in the configured [`BindMode`].
    ///
    /// A bind failing with `EBUSY` is retried for up to 500 ms, because the kernel
    /// frees a queue asynchronously after the previous socket on it was closed.
    pub fn open(ifindex: u32, queue_id: u32, config: &XskConfig) -> Result<Self, XskError> {
        config.validate()?;
        let umem = Umem::new(config.frame_count, config.frame_size)?;
        let fd = sys::xdp_socket().map_err(|source| XskError::Socket { source })?;
        let sock = fd.as_fd();

        sys::setsockopt(sock, sys::SOL_XDP, sys::XDP_UMEM_REG, &umem.registration()).map_err(
            |source| XskError::UmemRegister {
                frames: config.frame_count,
                frame_size: config.frame_size,
                source,
            },
        )?;

        let size = config.ring_size;
        for (ring, opt) in [
            ("fill", sys::XDP_UMEM_FILL_RING),
            ("completion", sys::XDP_UMEM_COMPLETION_RING),
            ("rx", sys::XDP_RX_RING),
        ] {
            sys::setsockopt(sock, sys::SOL_XDP, opt, &size)
                .map_err(|source| XskError::RingSize { ring, size, source })?;
        }

        let offsets = mmap_offsets(sock)?;
        let fill = ProducerRing::new(
            map_ring::<u64>(
                sock,
                "fill",
                &offsets.fr,
                size,
                sys::XDP_UMEM_PGOFF_FILL_RING,
            )?,
            offsets.fr.into(),
            size,
        )
        .ok_or(XskError::RingLayout { ring: "fill" })?;
        let completion = ConsumerRing::new(
            map_ring::<u64>(
                sock,
                "completion",
                &offsets.cr,
                size,
                sys::XDP_UMEM_PGOFF_COMPLETION_RING,
            )?,
            offsets.cr.into(),
            size,
        )
        .ok_or(XskError::RingLayout { ring: "completion" })?;
        let rx = ConsumerRing::new(
            map_ring::<sys::xdp_desc>(
                sock,
                "rx",
                &offsets.rx,
                size,
                sys::XDP_PGOFF_RX_RING as u64,
            )?,
            offsets.rx.into(),
            size,
        )
        .ok_or(XskError::RingLayout { ring: "rx" })?;

        let free = FreeFrames::full(&umem);
        let mut socket = Self {
            rx,
            fill,
            _completion: completion,
            fd,
            umem,
            free,
            ifindex,
            queue_id,
            bound_mode: config.bind_mode,
            need_wakeup: config.need_wakeup,
            busy_poll: AtomicBool::new(false),
        };
        // Fill before binding, so a zero-copy driver finds buffers as soon as it
        // attaches to the queue.
        socket.refill();
        socket.bound_mode = socket.bind(config.bind_mode)?;
        Ok(socket)
    }

    /// Binds to the queue; returns the mode actually in effect.
    fn bind(&self, mode: BindMode) -> Result<BindMode, XskError> {
        let mut addr: sys::sockaddr_xdp = zeroed_sockaddr();
        addr.sxdp_family = sys::AF_XDP as u16;
        addr.sxdp_ifindex = self.ifindex;
        addr.sxdp_queue_id = self.queue_id;
        // With neither XDP_COPY nor XDP_ZEROCOPY the kernel tries zero-copy and falls
        // back to copy mode by itself (EOPNOTSUPP from the driver is not fatal then);
        // XDP_OPTIONS tells which one it picked.
        addr.sxdp_flags = match mode {
            BindMode::Auto => 0,
            BindMode::Copy => sys::XDP_COPY,
            BindMode::ZeroCopy => sys::XDP_ZEROCOPY,
        };
        if self.need_wakeup {
            addr.sxdp_flags |= sys::XDP_USE_NEED_WAKEUP;
        }

        let started = Instant::now();
        loop {
            match sys::bind_xdp(self.fd.as_fd(), &addr) {
                Ok(()) => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && started.elapsed() < BIND_BUSY_RETRY =>
                {
                    thread::sleep(BIND_BUSY_PAUSE);
                }
                Err(source) => {
                    return Err(XskError::Bind {
                        ifindex: self.ifindex,
                        queue: self.queue_id,
                        mode,
                        source,
                    });
                }
            }
        }

        match mode {
            BindMode::Copy | BindMode::ZeroCopy => Ok(mode),
            BindMode::Auto => {
                let (opts, _) = sys::getsockopt::<sys::xdp_options>(
                    self.fd.as_fd(),
                    sys::SOL_XDP,
                    sys::XDP_OPTIONS,
                )
                .map_err(|source| XskError::Options { source })?;
                Ok(if opts.flags & sys::XDP_OPTIONS_ZEROCOPY != 0 {
                    BindMode::ZeroCopy
                } else {
                    BindMode::Copy
                })
            }
        }
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue the socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// The mode the bind succeeded in: [`BindMode::Copy`] or [`BindMode::ZeroCopy`].
    pub fn bound_mode(&self) -> BindMode {
        self.bound_mode
    }

    /// Frames in our free list, i.e. neither in the fill ring nor with the kernel.
    /// Non-zero after [`refill`](Self::refill) only when the fill ring is full.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Frames posted to the fill ring that the kernel has not taken yet.
    pub fn fill_ring_pending(&self) -> u32 {
        self.fill.pending()
    }

    /// Hands every free UMEM frame back to the fill ring; returns how many were handed
    /// over. Frames the ring has no room for stay in the free list for the next call.
    pub fn refill(&mut self) -> usize {
        let wanted = u32::try_from(self.free.len()).unwrap_or(u32::MAX);
        if wanted == 0 {
            return 0;
        }
        let (start, n) = self.fill.reserve(wanted);
        let mut written = 0;
        while written < n {
            let Some(chunk) = self.free.pop() else {
                break; // cannot happen: `n <= free.len()`
            };
            self.fill.write(start.wrapping_add(written), chunk);
            written += 1;
        }
        debug_assert_eq!(written, n);
        self.fill.submit();
        written as usize
    }

    /// Reads up to `max` descriptors from the RX ring, calls `on_frame` for each, then
    /// returns the frames to the free list and refills the fill ring. Returns the number
    /// of frames received.
    ///
    /// If `on_frame` panics, nothing is consumed: the same descriptors are delivered
    /// again by the next call (no frame is leaked or handed out twice to the kernel).
    pub fn receive<F: FnMut(RxFrame<'_>)>(&mut self, max: usize, mut on_frame: F) -> usize {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let (start, n) = self.rx.peek(max);
        for i in 0..n {
            let desc = self.rx.read(start.wrapping_add(i));
            // SAFETY: the descriptor came out of the RX ring and has not been released,
            // so its chunk is ours until it goes back to the fill ring below.
            let frame = unsafe { self.umem.frame(desc.addr, desc.len) };
            // A descriptor pointing outside its chunk would be a kernel bug; the caller
            // still sees it (empty, so it is counted as a truncated frame, not lost),
            // and its chunk is still recycled.
            on_frame(frame.unwrap_or(RxFrame {
                data: &[],
                headroom: &[],
            }));
        }
        for i in 0..n {
            let desc = self.rx.read(start.wrapping_add(i));
            if let Some(chunk) = self.umem.chunk_of(desc.addr) {
                self.free.push(chunk);
            }
        }
        if n > 0 {
            self.rx.release(n);
        }
        self.refill();
        if n == 0 && self.wants_kick() {
            sys::kick_rx(self.fd.as_fd());
        }
        n as usize
    }

    /// Whether the kernel needs a syscall to make progress: it asked for a wakeup on
    /// the fill ring, or busy polling is enabled (the application drives NAPI).
    fn wants_kick(&self) -> bool {
        (self.need_wakeup && self.fill.needs_wakeup()) || self.busy_poll.load(Ordering::Relaxed)
    }

    /// Waits until the RX ring has something or `timeout` passes (`poll(2)` with
    /// `POLLIN`, rounded up to whole milliseconds). Returns `Ok(false)` on timeout or
    /// when interrupted by a signal.
    ///
    /// The fill ring is replenished first, and `poll(2)` is also the kernel's wakeup
    /// call, so a pending `XDP_RING_NEED_WAKEUP` on the fill ring is served by it.
    pub fn wait_readable(&mut self, timeout: Duration) -> Result<bool, XskError> {
        self.refill();
        if self.rx.available(1) > 0 {
            return Ok(true);
        }
        let ms = timeout
            .as_nanos()
            .div_ceil(1_000_000)
            .min(libc::c_int::MAX as u128) as libc::c_int;
        let revents = sys::poll_one(self.fd.as_fd(), libc::POLLIN, ms)
            .map_err(|source| XskError::Poll { source })?;
        Ok(revents.is_some_and(|r| r & libc::POLLIN != 0) || self.rx.available(1) > 0)
    }

    /// `getsockopt(SOL_XDP, XDP_STATISTICS)`.
    pub fn statistics(&self) -> Result<XskStatistics, XskError> {
        let (stats, _) = sys::getsockopt::<sys::xdp_statistics>(
            self.fd.as_fd(),
            sys::SOL_XDP,
            sys::XDP_STATISTICS,
        )
        .map_err(|source| XskError::Statistics { source })?;
        // Kernels older than 5.9 fill only the first three counters; the rest stay 0.
        Ok(stats.into())
    }

    /// Enables busy polling: `SO_PREFER_BUSY_POLL` = 1, `SO_BUSY_POLL` = `usecs`,
    /// `SO_BUSY_POLL_BUDGET` = `budget`. Stops at the first failure and returns it;
    /// callers may treat errors as non-fatal. Once enabled, [`receive`](Self::receive)
    /// kicks the kernel with a non-blocking `recvfrom(2)` when the RX ring is empty.
    pub fn set_busy_poll(&self, usecs: u32, budget: u32) -> Result<(), XskError> {
        for (option, name, value) in [
            ("SO_PREFER_BUSY_POLL", sys::SO_PREFER_BUSY_POLL, 1),
            ("SO_BUSY_POLL", sys::SO_BUSY_POLL, usecs),
            ("SO_BUSY_POLL_BUDGET", sys::SO_BUSY_POLL_BUDGET, budget),
        ] {
            let v = libc::c_int::try_from(value).map_err(|_| XskError::SockOpt {
                option,
                value,
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })?;
            sys::setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, name, &v).map_err(|source| {
                XskError::SockOpt {
                    option,
                    value,
                    source,
                }
            })?;
        }
        self.busy_poll.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn zeroed_sockaddr() -> sys::sockaddr_xdp {
    sys::sockaddr_xdp {
        sxdp_family: 0,
        sxdp_flags: 0,
        sxdp_ifindex: 0,
        sxdp_queue_id: 0,
        sxdp_shared_umem_fd: 0,
    }
}

/// `getsockopt(XDP_MMAP_OFFSETS)`, insisting on the layout with the `flags` field
/// (Linux 5.4+), which need_wakeup depends on.
fn mmap_offsets(sock: BorrowedFd<'_>) -> Result<sys::xdp_mmap_offsets, XskError> {
    let (offsets, len) =
        sys::getsockopt::<sys::xdp_mmap_offsets>(sock, sys::SOL_XDP, sys::XDP_MMAP_OFFSETS)
            .map_err(|source| XskError::MmapOffsets { source })?;
    if len != std::mem::size_of::<sys::xdp_mmap_offsets>() {
        return Err(XskError::MmapOffsets {
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                format!("kernel returned {len} bytes of ring offsets (Linux 5.4+ required)"),
            ),
        });
    }
    Ok(offsets)
}

/// Maps one ring of `size` entries of `T` at page offset `pgoff` of the socket.
fn map_ring<T>(
    sock: BorrowedFd<'_>,
    ring: &'static str,
    offsets: &sys::xdp_ring_offset,
    size: u32,
    pgoff: u64,
) -> Result<RingMemory, XskError> {
    let offsets = RingOffsets::from(*offsets);
    let len = offsets
        .map_len::<T>(size)
        .ok_or(XskError::RingLayout { ring })?;
    MmapOptions::new()
        .offset(pgoff)
        .len(len)
        .populate()
        .map_raw(sock.as_raw_fd())
        .map(RingMemory::Mmap)
        .map_err(|source| XskError::RingMmap { ring, len, source })
}
