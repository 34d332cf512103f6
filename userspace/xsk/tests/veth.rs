//! Privileged test: open AF_XDP sockets on a veth inside a throw-away network namespace.
//!
//! Checks setup (copy and auto mode), the initial fill ring, zeroed statistics,
//! bind errors, and that dropping a socket releases the queue and UMEM (re-open works).
//! No traffic is sent here (see `rx.rs` for reception).

#![allow(clippy::unwrap_used)] // tests may panic

mod common;

use std::time::Duration;

use common::{VethNs, ifindex, privileged};
use sluice_xsk::{BindMode, XskConfig, XskError, XskSocket, XskStatistics};

fn config(frame_count: u32, frame_size: u32, ring_size: u32, bind_mode: BindMode) -> XskConfig {
    XskConfig {
        frame_count,
        frame_size,
        ring_size,
        bind_mode,
        need_wakeup: true,
    }
}

/// Opens on `vxb` queue 0 and checks the invariants of a freshly opened socket.
fn open_and_check(ifindex: u32, cfg: &XskConfig) -> XskSocket {
    let mut xsk = XskSocket::open(ifindex, 0, cfg)
        .unwrap_or_else(|e| panic!("open {:?}: {e}", cfg.bind_mode));
    assert_eq!(xsk.queue_id(), 0);
    assert_eq!(xsk.ifindex(), ifindex);
    assert_eq!(xsk.bound_mode(), BindMode::Copy, "veth has no zero-copy");
    assert_eq!(xsk.statistics().unwrap(), XskStatistics::default());

    let in_fill = cfg.ring_size.min(cfg.frame_count);
    assert_eq!(
        xsk.fill_ring_pending(),
        in_fill,
        "fill ring full after open"
    );
    assert_eq!(xsk.free_frames(), (cfg.frame_count - in_fill) as usize);
    // Nothing more fits, nothing arrives.
    assert_eq!(xsk.refill(), 0);
    assert_eq!(xsk.receive(64, |_| panic!("no traffic was sent")), 0);
    assert!(!xsk.wait_readable(Duration::from_millis(5)).unwrap());
    assert!(!xsk.wait_readable(Duration::ZERO).unwrap());
    assert_eq!(xsk.fill_ring_pending(), in_fill);
    xsk
}

#[test]
fn open_on_veth() {
    if !privileged("open_on_veth") {
        return;
    }
    let ns = VethNs::new();
    eprintln!("network namespace {}", ns.name());
    ns.run(|| {
        let vxb = ifindex("vxb");

        let copy = config(1024, 2048, 512, BindMode::Copy);
        let auto = config(1024, 2048, 512, BindMode::Auto);
        let full = config(256, 4096, 256, BindMode::Auto); // ring_size == frame_count

        // Copy, then auto; each drop must release the queue for the next open.
        drop(open_and_check(vxb, &copy));
        drop(open_and_check(vxb, &auto));
        drop(open_and_check(vxb, &full));
        drop(open_and_check(vxb, &XskConfig::default()));
        // Dropping released everything: open again, twice in a row.
        drop(open_and_check(vxb, &copy));
        drop(open_and_check(vxb, &copy));

        // While one socket holds the queue, a second bind is refused with EBUSY.
        let held = open_and_check(vxb, &copy);
        match XskSocket::open(vxb, 0, &copy) {
            Err(XskError::Bind {
                ifindex,
                queue: 0,
                mode: BindMode::Copy,
                source,
            }) => {
                assert_eq!(ifindex, vxb);
                assert_eq!(source.raw_os_error(), Some(libc::EBUSY), "{source}");
            }
            other => panic!("second bind to a taken queue: {other:?}"),
        }
        // Busy-poll tuning works on a bound socket as root.
        held.set_busy_poll(20, 64).unwrap();
        drop(held);

        // veth cannot do zero-copy: forced zero-copy fails, auto fell back (above).
        match XskSocket::open(vxb, 0, &config(1024, 2048, 512, BindMode::ZeroCopy)) {
            Err(e @ XskError::Bind { .. }) => {
                let XskError::Bind { mode, source, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*mode, BindMode::ZeroCopy);
                assert_eq!(source.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
                assert!(e.to_string().contains("zero-copy"), "{e}");
            }
            other => panic!("zero-copy on veth: {other:?}"),
        }

        // veth has a single RX queue by default: queue 5 does not exist.
        match XskSocket::open(vxb, 5, &copy) {
            Err(XskError::Bind { queue: 5, .. }) => {}
            other => panic!("bind to a missing queue: {other:?}"),
        }

        // A failed open leaks nothing either: the queue is still free.
        drop(open_and_check(vxb, &auto));
    });
}

#[test]
fn invalid_config_fails_before_any_syscall() {
    // Needs no privileges: validation runs first.
    let bad = config(1000, 2048, 512, BindMode::Copy);
    assert!(matches!(
        XskSocket::open(1, 0, &bad),
        Err(XskError::FrameCountNotPowerOfTwo { frame_count: 1000 })
    ));
}
