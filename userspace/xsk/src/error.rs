//! Error type of the crate.
//!
//! Setting up an AF_XDP socket is a long chain of system calls (UMEM allocation,
//! `socket(2)`, a handful of `setsockopt(2)`/`getsockopt(2)`, three `mmap(2)` and
//! `bind(2)`), and each of them fails for different, often environmental, reasons
//! (memlock limit, capabilities, driver support, a busy queue). [`XskError`] keeps
//! the errno *and* which step failed with which parameters, so an operator can act
//! on the message without reading the code. Messages for the usual suspects carry a
//! hint (e.g. `ENOBUFS` on UMEM registration means the memlock limit).

use std::io;

use crate::BindMode;

/// Everything that can go wrong while creating or operating an [`XskSocket`](crate::XskSocket).
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// [`XskConfig::frame_count`](crate::XskConfig::frame_count) is not a non-zero power of two.
    #[error("invalid XSK config: frame_count {frame_count} is not a non-zero power of two")]
    FrameCountNotPowerOfTwo {
        /// The rejected value.
        frame_count: u32,
    },

    /// [`XskConfig::frame_size`](crate::XskConfig::frame_size) is neither 2048 nor 4096.
    #[error("invalid XSK config: frame_size {frame_size} must be 2048 or 4096")]
    InvalidFrameSize {
        /// The rejected value.
        frame_size: u32,
    },

    /// [`XskConfig::ring_size`](crate::XskConfig::ring_size) is not a non-zero power of two.
    #[error("invalid XSK config: ring_size {ring_size} is not a non-zero power of two")]
    RingSizeNotPowerOfTwo {
        /// The rejected value.
        ring_size: u32,
    },

    /// The rings are larger than the UMEM: the fill ring could never be filled, and
    /// the RX ring could hold more descriptors than there are frames.
    #[error(
        "invalid XSK config: ring_size {ring_size} is larger than frame_count {frame_count} \
         (the fill ring could never be filled)"
    )]
    RingLargerThanUmem {
        /// The configured ring size.
        ring_size: u32,
        /// The configured number of UMEM frames.
        frame_count: u32,
    },

    /// Allocating the anonymous mapping backing the UMEM failed.
    #[error("allocating the UMEM ({bytes} bytes) failed: {source}")]
    UmemAlloc {
        /// Size of the requested mapping in bytes.
        bytes: usize,
        /// The error of `mmap(2)`.
        source: io::Error,
    },

    /// `socket(AF_XDP, SOCK_RAW, 0)` failed.
    #[error("creating the AF_XDP socket failed: {source}{}", socket_hint(.source))]
    Socket {
        /// The error of `socket(2)`.
        source: io::Error,
    },

    /// `setsockopt(SOL_XDP, XDP_UMEM_REG)` failed.
    #[error(
        "registering the UMEM ({frames} frames of {frame_size} bytes) failed: {source}{}",
        umem_hint(.source)
    )]
    UmemRegister {
        /// Number of frames of the UMEM.
        frames: u32,
        /// Size of one frame (chunk) in bytes.
        frame_size: u32,
        /// The error of `setsockopt(2)`.
        source: io::Error,
    },

    /// Setting the size of one of the rings (`XDP_UMEM_FILL_RING`,
    /// `XDP_UMEM_COMPLETION_RING`, `XDP_RX_RING`) failed.
    #[error("setting the size of the {ring} ring to {size} entries failed: {source}")]
    RingSize {
        /// Which ring: `"fill"`, `"completion"` or `"rx"`.
        ring: &'static str,
        /// The requested number of entries.
        size: u32,
        /// The error of `setsockopt(2)`.
        source: io::Error,
    },

    /// `getsockopt(SOL_XDP, XDP_MMAP_OFFSETS)` failed or returned a layout this
    /// crate does not understand (kernels older than 5.4).
    #[error("querying the ring mmap offsets (XDP_MMAP_OFFSETS) failed: {source}")]
    MmapOffsets {
        /// The error of `getsockopt(2)`, or `Unsupported` for an old layout.
        source: io::Error,
    },

    /// Mapping one of the rings into memory failed.
    #[error("mapping the {ring} ring ({len} bytes) failed: {source}")]
    RingMmap {
        /// Which ring: `"fill"`, `"completion"` or `"rx"`.
        ring: &'static str,
        /// Length of the requested mapping in bytes.
        len: usize,
        /// The error of `mmap(2)`.
        source: io::Error,
    },

    /// The kernel reported ring offsets that do not fit in the mapping or are misaligned.
    #[error("the kernel reported an unusable memory layout for the {ring} ring")]
    RingLayout {
        /// Which ring: `"fill"`, `"completion"` or `"rx"`.
        ring: &'static str,
    },

    /// `bind(2)` to the interface queue failed.
    #[error(
        "binding the AF_XDP socket to ifindex {ifindex} queue {queue} in {mode} mode failed: \
         {source}{}",
        bind_hint(.source)
    )]
    Bind {
        /// Interface index the socket was to be bound to.
        ifindex: u32,
        /// Queue id the socket was to be bound to.
        queue: u32,
        /// The requested bind mode.
        mode: BindMode,
        /// The error of `bind(2)`.
        source: io::Error,
    },

    /// `getsockopt(SOL_XDP, XDP_OPTIONS)` failed (used to learn which mode
    /// [`BindMode::Auto`] ended up in).
    #[error("querying the bound mode (XDP_OPTIONS) failed: {source}")]
    Options {
        /// The error of `getsockopt(2)`.
        source: io::Error,
    },

    /// `poll(2)` on the socket failed.
    #[error("poll(2) on the AF_XDP socket failed: {source}")]
    Poll {
        /// The error of `poll(2)`.
        source: io::Error,
    },

    /// `getsockopt(SOL_XDP, XDP_STATISTICS)` failed.
    #[error("reading the AF_XDP statistics (XDP_STATISTICS) failed: {source}")]
    Statistics {
        /// The error of `getsockopt(2)`.
        source: io::Error,
    },

    /// Setting a `SOL_SOCKET` option (busy-poll tuning) failed.
    #[error("setting socket option {option} to {value} failed: {source}{}", sockopt_hint(.source))]
    SockOpt {
        /// Name of the option, e.g. `"SO_BUSY_POLL"`.
        option: &'static str,
        /// The value that was to be set.
        value: u32,
        /// The error of `setsockopt(2)`.
        source: io::Error,
    },
}

fn socket_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (AF_XDP sockets need CAP_NET_RAW; run as root or grant the capability)"
        }
        Some(libc::EAFNOSUPPORT) => " (the kernel was built without CONFIG_XDP_SOCKETS)",
        _ => "",
    }
}

fn umem_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOBUFS) | Some(libc::EPERM) | Some(libc::ENOMEM) => {
            " (this usually means the UMEM is larger than RLIMIT_MEMLOCK and the process \
             lacks CAP_IPC_LOCK: raise the memlock limit (ulimit -l / LimitMEMLOCK=) or grant \
             CAP_IPC_LOCK; EPERM can also mean a missing CAP_NET_RAW)"
        }
        Some(libc::EINVAL) => {
            " (the kernel rejected the UMEM geometry: chunk size, alignment or length)"
        }
        _ => "",
    }
}

fn bind_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) => " (the driver does not support zero-copy AF_XDP)",
        Some(libc::EBUSY) => {
            " (another AF_XDP socket is bound to this queue, or the driver is busy)"
        }
        Some(libc::EINVAL) => " (the queue id is probably out of range for this interface)",
        Some(libc::ENODEV) | Some(libc::ENXIO) => " (no such interface in this network namespace)",
        Some(libc::EPERM) => " (missing CAP_NET_RAW)",
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
            " (the kernel could not allocate the buffer pool; check RLIMIT_MEMLOCK/CAP_IPC_LOCK)"
        }
        _ => "",
    }
}

fn sockopt_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => " (values above the sysctl defaults need CAP_NET_ADMIN)",
        Some(libc::ENOPROTOOPT) => " (the kernel does not know this option)",
        _ => "",
    }
}
