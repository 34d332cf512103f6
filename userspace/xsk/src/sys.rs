//! Raw kernel interface: the few constants `libc` 0.2 lacks, and thin, typed wrappers
//! around `setsockopt(2)`/`getsockopt(2)`/`bind(2)`.
//!
//! `libc` already provides `AF_XDP`, `SOL_XDP`, `XDP_*`, `sockaddr_xdp`,
//! `xdp_umem_reg`, `xdp_mmap_offsets`, `xdp_statistics`, `xdp_options` and
//! `xdp_desc` for Linux, so only the busy-poll socket options are defined here.
//! Keeping every raw call in this module means the `unsafe` for the FFI lives in one
//! place, and the rest of the crate deals with `io::Result`.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub(crate) use libc::{
    AF_XDP, SOL_XDP, XDP_COPY, XDP_MMAP_OFFSETS, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY,
    XDP_PGOFF_RX_RING, XDP_RING_NEED_WAKEUP, XDP_RX_RING, XDP_STATISTICS, XDP_UMEM_COMPLETION_RING,
    XDP_UMEM_FILL_RING, XDP_UMEM_PGOFF_COMPLETION_RING, XDP_UMEM_PGOFF_FILL_RING, XDP_UMEM_REG,
    XDP_USE_NEED_WAKEUP, XDP_ZEROCOPY, sockaddr_xdp, xdp_desc, xdp_mmap_offsets, xdp_options,
    xdp_ring_offset, xdp_statistics, xdp_umem_reg,
};

// `libc` 0.2 only exports these for Android/Emscripten. The values are the
// asm-generic ones from include/uapi/asm-generic/socket.h, used by x86, arm, arm64,
// riscv, powerpc, s390 and loongarch (only alpha, mips, parisc and sparc differ).
/// `SO_BUSY_POLL`: busy-poll budget in microseconds for blocking reads/poll.
pub(crate) const SO_BUSY_POLL: libc::c_int = 46;
/// `SO_PREFER_BUSY_POLL`: prefer busy polling over softirq processing.
pub(crate) const SO_PREFER_BUSY_POLL: libc::c_int = 69;
/// `SO_BUSY_POLL_BUDGET`: maximum number of packets per busy-poll round.
pub(crate) const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

#[cfg(not(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv32",
    target_arch = "riscv64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "loongarch64",
)))]
compile_error!("sluice-xsk: check the SO_BUSY_POLL* values for this architecture");

/// Size of `T` as a `socklen_t`; every option struct used here is a few dozen bytes.
fn socklen_of<T>() -> libc::socklen_t {
    // Option structs are tiny (at most 96 bytes), the cast cannot truncate.
    mem::size_of::<T>() as libc::socklen_t
}

/// `socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)`.
pub(crate) fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain system call without pointer arguments.
    let fd = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marker for the plain-old-data option types passed to `{set,get}sockopt`: any bit
/// pattern is a valid value (so the kernel may fill them) and they contain no pointers.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or primitive) types valid for every bit pattern.
pub(crate) unsafe trait Pod: Copy {}
// SAFETY: primitive integers are valid for every bit pattern.
unsafe impl Pod for libc::c_int {}
// SAFETY: primitive integers are valid for every bit pattern.
unsafe impl Pod for u32 {}
// SAFETY: `#[repr(C)]` struct of integers.
unsafe impl Pod for xdp_umem_reg {}
// SAFETY: `#[repr(C)]` struct of integers.
unsafe impl Pod for xdp_mmap_offsets {}
// SAFETY: `#[repr(C)]` struct of integers.
unsafe impl Pod for xdp_statistics {}
// SAFETY: `#[repr(C)]` struct of integers.
unsafe impl Pod for xdp_options {}

/// An all-zero value of a [`Pod`] type.
pub(crate) fn zeroed<T: Pod>() -> T {
    // SAFETY: `Pod` guarantees that every bit pattern, including all zeroes, is valid.
    unsafe { mem::zeroed() }
}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(crate) fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised `T` of exactly the given length,
    // and the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            socklen_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, level, name, &value, &len)`; returns the value (zero-filled where the
/// kernel wrote less) and the number of bytes the kernel wrote.
pub(crate) fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut value: T = zeroed();
    let mut len = socklen_of::<T>();
    // SAFETY: `value` is a writable `T` of `len` bytes, `len` is a writable socklen_t;
    // the kernel writes at most `len` bytes and any bit pattern is a valid `T` (`Pod`).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((value, len as usize))
}

/// `bind(fd, &addr, sizeof addr)` for an AF_XDP address.
pub(crate) fn bind_xdp(fd: BorrowedFd<'_>, addr: &sockaddr_xdp) -> io::Result<()> {
    // SAFETY: `addr` is a live `sockaddr_xdp` and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const sockaddr_xdp).cast::<libc::sockaddr>(),
            socklen_of::<sockaddr_xdp>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)`: the documented way to kick the
/// kernel's RX processing (need_wakeup, busy polling) without blocking.
pub(crate) fn kick_rx(fd: BorrowedFd<'_>) {
    // SAFETY: a zero-length receive with null buffer/address pointers; the kernel
    // dereferences none of them.
    let _ = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    // Errors (EAGAIN, EBUSY, ENOBUFS, ...) are expected and harmless: the kick is a hint.
}

/// `poll(2)` on one descriptor for `events`; returns the `revents`, or `None` on timeout
/// or when interrupted by a signal.
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<Option<libc::c_short>> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is a single valid, writable pollfd and we pass nfds = 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(None);
        }
        return Err(err);
    }
    if rc == 0 {
        return Ok(None);
    }
    Ok(Some(pfd.revents))
}
