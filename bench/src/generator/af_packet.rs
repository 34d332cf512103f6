//! The AF_PACKET engine, for kernels that refuse live frames: a raw packet socket bound
//! to the sender's veth sends the mix's prebuilt frames in batches with `sendmmsg`,
//! `PACKET_QDISC_BYPASS` set so each frame goes straight to the veth's transmit function.
//!
//! - The socket is opened on the generator thread, inside the sender namespace, with
//!   protocol 0: it receives nothing.
//! - A batch is [`BATCH`] slots, each holding a copy of a frame (copied again only when the
//!   slot's frame changes) whose inner UDP source port and checksum are patched in place
//!   for each send ([`PortVariation`]): four bytes written per frame. A frame of a payload
//!   series ([`SeriesVariation`]) is copied afresh for every send and then given the
//!   series' event for its number.
//! - Offered frames are the frames `sendmmsg` reports accepted, i.e. handed to the veth.
//!   A veth that cannot queue a frame (its peer's ring is full) refuses it with ENOBUFS,
//!   and a full socket send buffer gives EAGAIN: that is back-pressure, not loss. The
//!   refused frame is sent again after [`BACKOFF`], until the run's deadline, and never
//!   counted, so the receiver sees exactly the offered frames. Under overload this engine
//!   therefore slows down where live frames would lose frames at the veth.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use super::pacing::{ChunkSender, Sent};
use super::ports::PortVariation;
use super::series::SeriesVariation;
use super::{GenError, MixFrame};

/// Frames per `sendmmsg` call.
const BATCH: usize = 128;
/// Pause after the veth or the socket refused a frame for back-pressure.
const BACKOFF: Duration = Duration::from_micros(50);
/// Send buffer asked for (`SO_SNDBUFFORCE`), so that frames still queued towards the
/// receiver rarely stop the sender.
const SEND_BUFFER: libc::c_int = 8 << 20;

/// The engine's state kept between runs: how each frame's source port varies, and how
/// many frames it has sent (the `n` of `src_port + n % src_ports`).
pub(super) struct AfPacket {
    variations: Vec<Option<PortVariation>>,
    series: Vec<Option<SeriesVariation>>,
    sequence: u64,
}

impl AfPacket {
    /// The engine for `frames`, source ports `src_port..src_port + src_ports`; `series`
    /// has each frame's payload series, if it carries one.
    pub(super) fn new(
        frames: &[MixFrame],
        src_port: u16,
        src_ports: u16,
        series: Vec<Option<SeriesVariation>>,
    ) -> Self {
        let variations = frames
            .iter()
            .map(|f| PortVariation::for_frame(&f.bytes, f.inner_udp_offset, src_port, src_ports))
            .collect();
        Self {
            variations,
            series,
            sequence: 0,
        }
    }

    /// The chunk sender of one run over `frames` through `socket`.
    pub(super) fn sender<'a>(
        &'a mut self,
        socket: &'a PacketSocket,
        frames: &'a [MixFrame],
    ) -> AfPacketSender<'a> {
        let stride = frames.iter().map(|f| f.bytes.len()).max().unwrap_or(0);
        AfPacketSender {
            socket,
            frames,
            variations: &self.variations,
            series: &self.series,
            sequence: &mut self.sequence,
            slots: vec![0u8; stride * BATCH],
            stride,
            slot_frame: vec![None; BATCH],
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                BATCH
            ],
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            headers: vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; BATCH],
            offered: 0,
        }
    }
}

/// A raw `AF_PACKET` socket bound to one interface, qdisc bypassed.
pub(super) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket in the calling thread's network namespace, bound to `ifindex`.
    ///
    /// # Errors
    /// [`GenError::Socket`] naming the step that failed.
    pub(super) fn open(ifindex: u32) -> Result<Self, GenError> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(socket_error("socket(AF_PACKET, SOCK_RAW)"));
        }
        // SAFETY: `raw` is a descriptor just created and owned by nobody else.
        let socket = Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        };
        socket.set_option(
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            1,
            "PACKET_QDISC_BYPASS",
        )?;
        // Without CAP_NET_ADMIN only SO_SNDBUF, capped by net.core.wmem_max, is allowed.
        if socket
            .set_option(
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                SEND_BUFFER,
                "SO_SNDBUFFORCE",
            )
            .is_err()
        {
            socket.set_option(libc::SOL_SOCKET, libc::SO_SNDBUF, SEND_BUFFER, "SO_SNDBUF")?;
        }
        let address = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            // Protocol 0: bound for sending only, no frame is ever queued to the socket.
            sll_protocol: 0,
            sll_ifindex: i32::try_from(ifindex).map_err(|_| GenError::Socket {
                what: "ifindex",
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })?,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: a valid sockaddr_ll and its exact size.
        let bound = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(socket_error("bind to the sender's veth"));
        }
        Ok(socket)
    }

    fn set_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
        what: &'static str,
    ) -> Result<(), GenError> {
        // SAFETY: a valid c_int and its exact size.
        let set = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set == 0 {
            Ok(())
        } else {
            Err(socket_error(what))
        }
    }
}

fn socket_error(what: &'static str) -> GenError {
    GenError::Socket {
        what,
        source: io::Error::last_os_error(),
    }
}

/// Sends chunks through one socket from [`BATCH`] reusable slots.
pub(super) struct AfPacketSender<'a> {
    socket: &'a PacketSocket,
    frames: &'a [MixFrame],
    variations: &'a [Option<PortVariation>],
    series: &'a [Option<SeriesVariation>],
    sequence: &'a mut u64,
    /// `BATCH` slots of `stride` bytes.
    slots: Vec<u8>,
    stride: usize,
    /// The frame each slot holds a copy of.
    slot_frame: Vec<Option<usize>>,
    /// One per slot: its length is the slot's frame's; its pointer is set before each call.
    iovecs: Vec<libc::iovec>,
    /// One per slot, pointing at its iovec before each call.
    headers: Vec<libc::mmsghdr>,
    /// Frames accepted so far in this run.
    offered: u64,
}

impl AfPacketSender<'_> {
    /// Makes the first `count` slots the next `count` frames to send: copies of frame
    /// `index`, with the ports (and the series' events) of frames
    /// `sequence..sequence + count`.
    fn fill(&mut self, index: usize, count: usize) {
        let frame = &self.frames[index].bytes;
        let variation = self.variations[index].as_ref();
        let series = self.series.get(index).and_then(Option::as_ref);
        for slot in 0..count {
            let bytes = &mut self.slots[slot * self.stride..][..frame.len()];
            let sequence = *self.sequence + slot as u64;
            if self.slot_frame[slot] != Some(index) || series.is_some() {
                bytes.copy_from_slice(frame);
                self.iovecs[slot].iov_len = frame.len();
                self.slot_frame[slot] = Some(index);
            }
            if let Some(variation) = variation {
                variation.apply(bytes, sequence);
            }
            if let Some(series) = series {
                series.apply(bytes, sequence);
            }
        }
    }

    /// One `sendmmsg` of the first `count` slots, without blocking: the frames accepted,
    /// or the error of the first frame when none was.
    fn send_slots(&mut self, count: usize) -> io::Result<usize> {
        let count = count.min(BATCH);
        // The pointers are taken afresh for every call, after the slots were written.
        let slots = self.slots.as_mut_ptr();
        for (slot, iovec) in self.iovecs.iter_mut().enumerate().take(count) {
            // SAFETY: slot < BATCH, so the offset stays inside `slots` (BATCH × stride).
            iovec.iov_base = unsafe { slots.add(slot * self.stride) }.cast();
        }
        let iovecs = self.iovecs.as_mut_ptr();
        for (slot, header) in self.headers.iter_mut().enumerate().take(count) {
            // SAFETY: slot < BATCH = iovecs.len().
            header.msg_hdr.msg_iov = unsafe { iovecs.add(slot) };
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `count` ≤ BATCH headers, each pointing at one iovec that points at a
        // slot holding `iov_len` initialised bytes; all alive and not otherwise borrowed
        // during the call, which only reads them (and writes `msg_len`).
        let sent = unsafe {
            libc::sendmmsg(
                self.socket.fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }
}

impl ChunkSender for AfPacketSender<'_> {
    fn send(&mut self, index: usize, repeat: u64, deadline: Instant) -> Result<Sent, GenError> {
        let mut sent = Sent::default();
        let batch = BATCH as u64;
        while sent.frames < repeat {
            let count = (repeat - sent.frames).min(batch) as usize;
            // Refilled before every call: after a partial send the refused frames go
            // again with the ports of the frames they now are.
            self.fill(index, count);
            let result = self.send_slots(count);
            sent.syscalls += 1;
            let refused = match result {
                // Nothing accepted, no error: as good as back-pressure.
                Ok(0) => true,
                Ok(accepted) => {
                    let accepted = accepted as u64;
                    sent.frames += accepted;
                    self.offered += accepted;
                    *self.sequence += accepted;
                    false
                }
                Err(e) if back_pressure(&e) => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(source) => {
                    return Err(GenError::Send {
                        offered: self.offered,
                        source,
                    });
                }
            };
            if refused {
                // Wait for the veth's peer or the send buffer to drain, within the run.
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(BACKOFF);
            }
        }
        Ok(sent)
    }
}

/// ENOBUFS (the veth refused the frame: its peer's ring is full) or EAGAIN (the socket's
/// send buffer is full).
fn back_pressure(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN))
}
