//! The plain UDP socket source, for hosts where XDP is not available: one thread per
//! listen address reads datagrams in batches with `recvmmsg(2)` and hands them to the
//! same workers. The kernel's receive-buffer overflows are counted (`SO_RXQ_OVFL`) as
//! `socket_overflow` drops, and each datagram's local address comes from `IP_PKTINFO`.

use std::{
    mem::{MaybeUninit, size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    detail::{self, DetailCounters, DetailSlot, QueueTotals},
    pipeline::{FRAMES_PER_BATCH, FrameSender, frames::FrameOrigin},
    record::timestamp::now_micros,
};

const BATCH: usize = 64;
const BUFFER: usize = 65_536;
const CONTROL: usize = 128;

/// How often the counters are published (not per `recvmmsg`: each publication takes a
/// lock and copies the labelled counters).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Why a UDP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("source.udp_listen {addr}: {what}: {source}")]
pub struct UdpSourceError {
    /// The listen address.
    pub addr: SocketAddr,
    /// The step that failed.
    pub what: &'static str,
    /// The error.
    pub source: std::io::Error,
}

/// A bound UDP socket ready to receive.
#[derive(Debug)]
pub struct UdpListener {
    socket: UdpSocket,
    local: SocketAddr,
}

fn set_int(fd: i32, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: `value` outlives the call and the length matches its type.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl UdpListener {
    /// Binds `addr` with a `recv_buffer`-byte receive buffer.
    pub fn bind(addr: SocketAddr, recv_buffer: u32) -> Result<Self, UdpSourceError> {
        let err = |what| move |source| UdpSourceError { addr, what, source };
        let socket = UdpSocket::bind(addr).map_err(err("bind"))?;
        let fd = socket.as_raw_fd();
        let size = i32::try_from(recv_buffer).unwrap_or(i32::MAX);
        // SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN; plain SO_RCVBUF otherwise.
        if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size).map_err(err("SO_RCVBUF"))?;
        }
        set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).map_err(err("SO_RXQ_OVFL"))?;
        match addr {
            SocketAddr::V4(_) => set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
            SocketAddr::V6(_) => set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1),
        }
        .map_err(err("PKTINFO"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(err("SO_RCVTIMEO"))?;
        let local = socket.local_addr().map_err(err("getsockname"))?;
        Ok(Self { socket, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives until `stop` is set, then returns. Publishes its counters every 100 ms and
    /// at the end.
    pub fn run(
        self,
        frames: FrameSender,
        stop: Arc<AtomicBool>,
        counters: Arc<StageCounters>,
        details: DetailSlot,
        mut detail: DetailCounters,
    ) {
        let mut local = LocalCounters::default();
        let mut totals = QueueTotals::default();
        let mut buffers = vec![0u8; BATCH * BUFFER];
        let mut controls = vec![0u8; BATCH * CONTROL];
        let mut names: Vec<libc::sockaddr_storage> =
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut batch = frames.empty_batch();
        // The headers point into `buffers`, `names`, `controls` and `iovecs`, none of which
        // is resized or moved after this: built once, with the lengths the kernel
        // overwrites reset before every call.
        let mut iovecs: Vec<libc::iovec> = buffers
            .chunks_mut(BUFFER)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|i| {
                // SAFETY: mmsghdr is plain data; every pointer is set below.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (&raw mut names[i]).cast();
                m.msg_hdr.msg_iov = &raw mut iovecs[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = controls[i * CONTROL..].as_mut_ptr().cast();
                m
            })
            .collect();
        let mut last_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if last_publish.elapsed() >= PUBLISH_EVERY {
                counters.publish(&local);
                detail.queues.insert("udp".to_owned(), totals);
                detail::publish(&details, &detail);
                last_publish = Instant::now();
            }
            for m in &mut msgs {
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                m.msg_hdr.msg_controllen = CONTROL;
                m.msg_hdr.msg_flags = 0;
                m.msg_len = 0;
            }
            // No more than the batch has room for, so that a batch held for the backlog
            // fills to exactly FRAMES_PER_BATCH.
            let room = FRAMES_PER_BATCH.saturating_sub(batch.len()).clamp(1, BATCH);
            // SAFETY: every header points at live buffers of the stated sizes.
            let n = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    room as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    tracing::error!(addr = %self.local, error = %e, "recvmmsg failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
                // No datagram for a while: a batch held for the backlog goes once the
                // workers have caught up (held, not dropped, while they have not).
                if !batch.is_empty() && !frames.backlogged() {
                    batch = frames.send_or_drop(batch, &mut local);
                }
                continue;
            }
            let now = now_micros();
            for (i, msg) in msgs.iter().take(n as usize).enumerate() {
                local.received += 1;
                let (dst_ip, overflow) = read_control(&msg.msg_hdr);
                if let Some(total) = overflow {
                    // Cumulative since the socket was created.
                    local.dropped[DropReason::SocketOverflow as usize] = u64::from(total);
                }
                if msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    local.drop_n(DropReason::Truncated, 1);
                    continue;
                }
                let Some(src) = sockaddr_to_std(&names[i]) else {
                    local.drop_n(DropReason::Malformed, 1);
                    continue;
                };
                let dst = SocketAddr::new(dst_ip.unwrap_or(self.local.ip()), self.local.port());
                let len = (msg.msg_len as usize).min(BUFFER);
                let data = &buffers[i * BUFFER..i * BUFFER + len];
                totals.packets += 1;
                totals.bytes += len as u64;
                batch.push(data, now, FrameOrigin::Socket { src, dst });
            }
            // While the workers are behind, a batch is handed over only once it is full
            // (`FrameSender::backlogged`).
            if !batch.is_empty() && (batch.len() >= FRAMES_PER_BATCH || !frames.backlogged()) {
                batch = frames.send_or_drop(batch, &mut local);
            }
        }
        if !batch.is_empty() {
            frames.send_blocking(batch, &mut local);
        }
        counters.publish(&local);
        detail.queues.insert("udp".to_owned(), totals);
        detail::publish(&details, &detail);
    }
}

/// Local destination address (IP_PKTINFO / IPV6_PKTINFO) and the socket's overflow count.
fn read_control(hdr: &libc::msghdr) -> (Option<IpAddr>, Option<u32>) {
    let mut dst = None;
    let mut overflow = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_* walk within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL {
                overflow = Some(std::ptr::read_unaligned(data.cast::<u32>()));
            } else if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    (dst, overflow)
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            let mut sin = MaybeUninit::<libc::sockaddr_in>::uninit();
            // SAFETY: the family says the storage holds a sockaddr_in; sizes fit.
            let sin = unsafe {
                std::ptr::copy_nonoverlapping(
                    (storage as *const libc::sockaddr_storage).cast::<u8>(),
                    sin.as_mut_ptr().cast::<u8>(),
                    size_of::<libc::sockaddr_in>(),
                );
                sin.assume_init()
            };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        libc::AF_INET6 => {
            let mut sin6 = MaybeUninit::<libc::sockaddr_in6>::uninit();
            // SAFETY: the family says the storage holds a sockaddr_in6; sizes fit.
            let sin6 = unsafe {
                std::ptr::copy_nonoverlapping(
                    (storage as *const libc::sockaddr_storage).cast::<u8>(),
                    sin6.as_mut_ptr().cast::<u8>(),
                    size_of::<libc::sockaddr_in6>(),
                );
                sin6.assume_init()
            };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}
