//! Privileged test: actual reception through the socket.
//!
//! The real XDP program lives in another crate and is embedded in the `sluice`
//! binary, so this test brings its own minimal stand-in, hand-assembled to keep the
//! crate free of a BPF toolchain: it redirects into an XSKMAP keyed by
//! `rx_queue_index`. It is attached in generic (SKB) mode to `vxb` through a BPF link,
//! frames are injected on `vxa` with an AF_PACKET socket, and the test checks each
//! payload and that no UMEM frame leaks while many more packets than frames pass through.
//!
//! XDP metadata (`bpf_xdp_adjust_meta`) is not tested: Sluice's program never writes to a
//! frame, and some kernels refuse the helper outright (6.18.44-fc: "program of this type
//! cannot use helper bpf_xdp_adjust_meta#54" at load).

#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{VethNs, ifindex, privileged};
use sluice_xsk::{BindMode, XskConfig, XskSocket};

const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental

// --- minimal bpf(2) plumbing -----------------------------------------------------------

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;

/// A zeroed `union bpf_attr` large enough for the commands used here.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn new() -> Self {
        Self([0; 128])
    }
    fn u32(mut self, off: usize, v: u32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &BpfAttr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised bpf_attr buffer of the given size; the
    // pointers stored in it (if any) point to live data owned by the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const BpfAttr,
            mem::size_of::<BpfAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn bpf_fd(cmd: libc::c_long, attr: &BpfAttr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)? as libc::c_int;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One eBPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// The stand-in XDP program (see the module docs).
fn xdp_program(xskmap_fd: i32) -> Vec<u64> {
    const MOV64_X: u8 = 0xbf;
    const MOV64_K: u8 = 0xb7;
    const LDX_W: u8 = 0x61;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const LD_IMM64: u8 = 0x18;
    const PSEUDO_MAP_FD: u8 = 1;
    const REDIRECT_MAP: i32 = 51;
    const XDP_PASS: i32 = 2;
    // struct xdp_md offsets
    const RX_QUEUE_INDEX: i16 = 16;

    vec![
        insn(MOV64_X, 6, 1, 0, 0),                      // 0: r6 = ctx
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, xskmap_fd), // 1: r1 = &xskmap
        0,                                              // 2:  (imm64 high)
        insn(LDX_W, 2, 6, RX_QUEUE_INDEX, 0),           // 3: r2 = queue
        insn(MOV64_K, 3, 0, 0, XDP_PASS),               // 4: r3 = fallback
        insn(CALL, 0, 0, 0, REDIRECT_MAP),              // 5: redirect_map
        insn(EXIT, 0, 0, 0, 0),                         // 6: return r0
    ]
}

/// XSKMAP + program, attached to `ifindex` in SKB mode while this lives.
struct XdpAttached {
    _link: OwnedFd,
    _prog: OwnedFd,
    map: OwnedFd,
}

impl XdpAttached {
    fn attach(ifindex: u32) -> Self {
        let map = bpf_fd(
            BPF_MAP_CREATE,
            &BpfAttr::new()
                .u32(0, BPF_MAP_TYPE_XSKMAP)
                .u32(4, 4) // key_size
                .u32(8, 4) // value_size
                .u32(12, 4), // max_entries
        )
        .expect("create XSKMAP");
        let prog = xdp_program(map.as_raw_fd());
        let license = b"GPL\0";
        let mut log = vec![0u8; 64 * 1024];
        let attr = BpfAttr::new()
            .u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, prog.len() as u32)
            .u64(8, prog.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1) // log_level
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64)
            .u32(68, BPF_XDP); // expected_attach_type
        let prog_fd = bpf_fd(BPF_PROG_LOAD, &attr).unwrap_or_else(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            panic!(
                "load XDP program: {e}\nverifier log:\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        });
        let link = bpf_fd(
            BPF_LINK_CREATE,
            &BpfAttr::new()
                .u32(0, prog_fd.as_raw_fd() as u32)
                .u32(4, ifindex)
                .u32(8, BPF_XDP)
                .u32(12, XDP_FLAGS_SKB_MODE),
        )
        .expect("attach XDP program (generic mode)");
        Self {
            _link: link,
            _prog: prog_fd,
            map,
        }
    }

    fn insert(&self, queue: u32, xsk: &XskSocket) {
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            &BpfAttr::new()
                .u32(0, self.map.as_raw_fd() as u32)
                .u64(8, &key as *const u32 as u64)
                .u64(16, &value as *const u32 as u64),
        )
        .expect("insert socket into XSKMAP");
    }
}

// --- traffic -----------------------------------------------------------------------

/// AF_PACKET socket sending raw Ethernet frames out of one interface.
struct Injector {
    fd: OwnedFd,
    ifindex: u32,
}

impl Injector {
    fn new(ifindex: u32) -> Self {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: freshly created descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self { fd, ifindex }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `sll` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            frame.len() as isize,
            "sendto: {}",
            io::Error::last_os_error()
        );
    }
}

/// Ethernet broadcast frame with a recognisable, sequence-numbered payload.
fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0xff; 6]); // dst: broadcast
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src: locally administered
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push(f.len() as u8);
    }
    f
}

/// Whether `data` is one of the test frames (and not link chatter from the kernel).
fn is_ours(data: &[u8]) -> bool {
    data.len() >= 14 && data[12..14] == ETHERTYPE.to_be_bytes()
}

#[test]
fn receives_frames_and_returns_every_umem_frame() {
    if !privileged("receives_frames_and_returns_every_umem_frame") {
        return;
    }
    let ns = VethNs::new();
    ns.run(|| {
        let (vxa, vxb) = (ifindex("vxa"), ifindex("vxb"));
        let cfg = XskConfig {
            frame_count: 64,
            frame_size: 2048,
            ring_size: 32,
            bind_mode: BindMode::Copy,
            need_wakeup: true,
        };
        let mut xsk = XskSocket::open(vxb, 0, &cfg).expect("open");
        let xdp = XdpAttached::attach(vxb);
        xdp.insert(0, &xsk);
        let tx = Injector::new(vxa);

        // Far more packets than UMEM frames, in batches the rings can absorb: any
        // leaked frame would eventually starve the fill ring.
        const BATCH: u32 = 16;
        const ROUNDS: u32 = 40;
        let mut next_expected = 0u32;
        for round in 0..ROUNDS {
            for i in 0..BATCH {
                let seq = round * BATCH + i;
                tx.send(&test_frame(seq, 60 + (seq as usize % 200)));
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            let round_end = (round + 1) * BATCH;
            while next_expected < round_end {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: only {} of {BATCH} frames",
                    next_expected - round * BATCH
                );
                if !xsk.wait_readable(Duration::from_millis(100)).expect("poll") {
                    continue;
                }
                xsk.receive(8, |frame| {
                    if !is_ours(frame.data) {
                        return;
                    }
                    let expected = test_frame(next_expected, 60 + (next_expected as usize % 200));
                    assert_eq!(
                        frame.data,
                        &expected[..],
                        "payload of frame {next_expected}"
                    );
                    next_expected += 1;
                });
            }
            assert_eq!(next_expected, round_end, "round {round}: extra frames");
            // Drain stray frames (if any), so the kernel holds none right now.
            while xsk.receive(usize::MAX, |_| {}) > 0 {}
            // Every frame is either back in the fill ring or in the free list.
            assert_eq!(
                xsk.fill_ring_pending() as usize + xsk.free_frames(),
                cfg.frame_count as usize,
                "round {round}: frames leaked"
            );
            assert_eq!(
                xsk.fill_ring_pending(),
                cfg.ring_size,
                "fill ring replenished"
            );
        }
        assert_eq!(next_expected, BATCH * ROUNDS);
        let stats = xsk.statistics().expect("statistics");
        assert_eq!(stats.rx_dropped, 0, "{stats:?}");
        assert_eq!(stats.rx_fill_ring_empty_descs, 0, "{stats:?}");
        assert_eq!(stats.rx_invalid_descs, 0, "{stats:?}");

        // Overrun: a burst larger than the fill ring with nobody receiving. The kernel
        // drops what it cannot place; the frames it did place come back intact.
        for seq in 0..(cfg.ring_size * 2) {
            tx.send(&test_frame(seq, 64));
        }
        let (mut total, mut ours) = (0, 0);
        while xsk.wait_readable(Duration::from_millis(200)).expect("poll") {
            total += xsk.receive(usize::MAX, |frame| {
                if is_ours(frame.data) {
                    assert_eq!(frame.data.len(), 64);
                    ours += 1;
                }
            });
        }
        // The fill ring (and RX ring) hold ring_size frames: that many got through.
        assert!(total >= cfg.ring_size as usize, "{total} received");
        assert!(ours <= cfg.ring_size as usize, "{ours} of ours received");
        if total == ours {
            assert_eq!(
                ours, cfg.ring_size as usize,
                "exactly one fill ring's worth"
            );
        }
        let stats = xsk.statistics().expect("statistics");
        assert!(
            stats.rx_fill_ring_empty_descs > 0 || stats.rx_dropped > 0,
            "{stats:?}"
        );
        assert_eq!(
            xsk.fill_ring_pending() as usize + xsk.free_frames(),
            cfg.frame_count as usize,
            "frames leaked after overrun"
        );
        drop(xdp);
    });
}
