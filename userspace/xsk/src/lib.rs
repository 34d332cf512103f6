//! AF_XDP sockets, UMEM and rings for Sluice, on `libc` + `memmap2` only.
//!
//! Sluice's XDP program redirects packets into an `XSKMAP` keyed by RX queue; on the
//! other side of that map sits one [`XskSocket`] per queue. This crate is that other
//! side: it owns the packet memory (UMEM), the rings shared with the kernel, and the
//! receive loop, and nothing else (no TX, no shared UMEM), which keeps it small enough
//! to audit. It exists as a crate of its own so the `unsafe` needed for kernel-shared
//! memory is confined here behind a safe API.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_xsk::{XskConfig, XskSocket};
//!
//! # fn main() -> Result<(), sluice_xsk::XskError> {
//! let mut xsk = XskSocket::open(2, 0, &XskConfig::default())?;
//! loop {
//!     if xsk.wait_readable(Duration::from_millis(100))? {
//!         xsk.receive(64, |frame| {
//!             let _packet = frame.data;
//!             let _meta = &frame.headroom[frame.headroom.len().saturating_sub(40)..];
//!         });
//!     }
//! }
//! # }
//! ```
//!
//! Modules: [`config`](XskConfig) (geometry and validation), `ring` (generic
//! producer/consumer rings with cached indices), `umem` (packet memory and free list),
//! `socket` (setup, receive path, teardown), `sys` (raw kernel interface) and
//! [`error`](XskError).

mod config;
mod error;
mod ring;
mod socket;
mod sys;
mod umem;

pub use config::{BindMode, XskConfig};
pub use error::XskError;
pub use socket::{XskSocket, XskStatistics};
pub use umem::RxFrame;
