//! The benchmark's own instruments, checked before any number is trusted: the generator
//! (live frames, or AF_PACKET where the kernel refuses them) offers exactly what it
//! reports into ceiling A (XDP count-and-drop), and both kernel-path references (tc-BPF
//! GRE decapsulation, the VXLAN device) deliver exactly the offered datagrams, byte for
//! byte, to a UDP socket in the receiver namespace. The kernel paths run at 100 kpps, so
//! test runs are longer than one live-frames batch and pages are recycled after tc
//! decapsulation rewrote them: every frame must still leave intact (the generator restores
//! its headers).
//!
//! Needs root (namespaces, XDP, tc, BPF_PROG_TEST_RUN or AF_PACKET), `ip` and `ethtool`: in
//! CI a missing prerequisite fails the test, elsewhere it is skipped with the reason
//! printed. Every traffic loop is bounded in count and time; namespaces are deleted on drop.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sluice_bench::count_drop::CountDrop;
use sluice_bench::generator::mix::{INNER_DST_V4, INNER_DST_V6};
use sluice_bench::generator::{
    Encap, GenEngine, Generator, PayloadKind, PayloadShare, TrafficMix, Tunnel,
};
use sluice_bench::kernel_path::{TcDecapPath, VxlanPath, bind_udp_in_receiver};
use sluice_bench::lab::{BenchLab, Side};
use sluice_testkit::privilege::{require_root, require_tool};

const PORT: u16 = 9_000;

/// Time bound of a paced run: well under 1 s on a quiet machine, far more while other jobs
/// compete for the cores (the assertions are on counts, not on time).
const RUN_BOUND: Duration = Duration::from_secs(60);

/// The kernel-path tests generate from the second core, away from the flat-out run of the
/// count-and-drop test on the first, when there is one.
fn kernel_path_cpu() -> usize {
    usize::from(std::thread::available_parallelism().map_or(1, |n| n.get()) > 1)
}

fn prerequisites(name: &str) -> bool {
    require_root(name) && require_tool(name, "ip") && require_tool(name, "ethtool")
}

#[test]
fn generator_offers_exactly_what_count_drop_sees() {
    if !prerequisites("bench_generator::generator_offers_exactly_what_count_drop_sees") {
        return;
    }
    let lab = BenchLab::create().expect("create lab");
    let count_drop = CountDrop::attach(&lab).expect("attach sluice_count_drop");
    let mix = TrafficMix::single(Encap::Gre, Some(42), PayloadKind::Raw { len: 18 }, PORT);
    let mut generator = Generator::new(&lab, &mix).expect("load generator");
    let frame_len = generator.frames()[0].bytes.len() as u64;
    assert_eq!(frame_len, 88);

    // Paced: 100k frames at 200 kpps (0.5 s on a quiet machine).
    let report = generator
        .run(200_000, RUN_BOUND, 100_000, 0)
        .expect("paced run");
    assert_eq!(report.offered, 100_000);
    let counts = count_drop
        .counts_settled(Duration::from_secs(2))
        .expect("read counters");
    assert_eq!(counts.packets, 100_000);
    assert_eq!(counts.bytes, 100_000 * frame_len);
    // Pacing never runs ahead of the schedule (one 1 ms chunk of slack).
    assert!(
        report.elapsed >= Duration::from_millis(495),
        "100k frames at 200 kpps took only {:?}",
        report.elapsed
    );

    // Flat out: at most 3M frames or 3 s. Without threaded NAPI the receiver's XDP runs on
    // the generator's core right after each batch, so nothing is lost.
    let flat = generator
        .run(0, Duration::from_secs(3), 3_000_000, 0)
        .expect("flat-out run");
    let counts = count_drop
        .counts_settled(Duration::from_secs(2))
        .expect("read counters");
    assert_eq!(counts.packets, 100_000 + flat.offered);
    // The veth driver agrees: every offered frame was queued to the peer, none refused.
    // Live frames arrive through its XDP transmit path; AF_PACKET frames through its
    // ordinary one, counted where the peer's XDP program ran.
    let sender = lab.veth_stats(Side::Sender).expect("ethtool -S");
    let receiver = lab.veth_stats(Side::Receiver).expect("ethtool -S");
    let queued = match flat.engine {
        GenEngine::XdpLive => sender["tx_queue_0_xdp_xmit"],
        GenEngine::AfPacket => receiver["rx_queue_0_xdp_packets"],
    };
    assert_eq!(queued, 100_000 + flat.offered, "engine {}", flat.engine);
    assert_eq!(sender["tx_queue_0_xdp_xmit_errors"], 0);
    eprintln!(
        "flat out into count_drop ({}): {} frames in {:.3} s = {:.2} Mpps, generator thread CPU {:.3} s, {} syscalls",
        flat.engine,
        flat.offered,
        flat.elapsed.as_secs_f64(),
        flat.rate_pps() / 1e6,
        flat.thread_cpu.as_secs_f64(),
        flat.test_runs
    );
}

/// Receives until `expected` datagrams arrived or `timeout` passed, then a little longer
/// to catch duplicates; returns the count, the source ports seen and the last payload.
fn receive(socket: &UdpSocket, expected: u64, timeout: Duration) -> (u64, BTreeSet<u16>, Vec<u8>) {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    let mut count = 0;
    let mut ports = BTreeSet::new();
    let mut last = Vec::new();
    while count < expected && Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                count += 1;
                ports.insert(from.port());
                last = buf[..len].to_vec();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    // Anything beyond `expected` would be a duplicate: give it a moment to show up.
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    while socket.recv_from(&mut buf).is_ok() {
        count += 1;
    }
    (count, ports, last)
}

fn mixed_gre_tunnels() -> TrafficMix {
    let mut mix = TrafficMix::single(Encap::Gre, Some(7), PayloadKind::Syslog5424, PORT);
    mix.tunnels.push(Tunnel::lab_v4(None));
    mix.tunnels.push(Tunnel::lab_v6(Some(9)));
    mix.payloads.push(PayloadShare {
        kind: PayloadKind::Syslog5424,
        weight: 1,
        dst_port: PORT,
    });
    mix.src_ports = 16;
    mix
}

/// Runs `generator` for `n` frames at 100 kpps while `socket` receives them: the frames
/// offered, and what [`receive`] returns.
fn run_into(
    generator: &mut Generator,
    socket: &UdpSocket,
    n: u64,
) -> (u64, (u64, BTreeSet<u16>, Vec<u8>)) {
    std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive(socket, n, RUN_BOUND + Duration::from_secs(10)));
        let report = generator
            .run(100_000, RUN_BOUND, n, kernel_path_cpu())
            .expect("run");
        (report.offered, receiver.join().expect("receiver thread"))
    })
}

/// Sends `N` frames of `mix` (its inner IPv6 form when `inner_v6`) through the tc-BPF GRE
/// decapsulation to a UDP socket in the receiver namespace, with the generator this kernel
/// runs; asserts that every offered frame was decapsulated and received (the kernel drops
/// a datagram with a wrong checksum before the socket sees it), and returns the source
/// ports seen and the last payload.
fn through_tc_decap(mix: TrafficMix, inner_v6: bool, frames: usize) -> (BTreeSet<u16>, Vec<u8>) {
    const N: u64 = 20_000;
    let lab = BenchLab::create().expect("create lab");
    let path = TcDecapPath::attach(&lab, &[]).expect("attach tc decap");
    let (mix, dst) = if inner_v6 {
        (mix.with_inner_v6(), IpAddr::V6(INNER_DST_V6))
    } else {
        (mix, IpAddr::V4(INNER_DST_V4))
    };
    let socket = bind_udp_in_receiver(&lab, SocketAddr::new(dst, PORT), 128 << 20)
        .expect("enter receiver")
        .expect("bind");
    let mut generator = Generator::new(&lab, &mix).expect("load generator");
    assert_eq!(generator.frames().len(), frames);
    let (offered, (received, ports, last)) = run_into(&mut generator, &socket, N);
    assert_eq!(offered, N);
    let counts = path.counts().expect("decap counters");
    assert_eq!(
        (received, counts.decapsulated, counts.failed),
        (N, N, 0),
        "inner IPv6: {inner_v6}, counters {counts:?}"
    );
    (ports, last)
}

#[test]
fn tc_decap_delivers_every_inner_datagram_to_a_udp_socket() {
    if !prerequisites("bench_generator::tc_decap_delivers_every_inner_datagram_to_a_udp_socket") {
        return;
    }
    for inner_v6 in [false, true] {
        let (ports, last) = through_tc_decap(mixed_gre_tunnels(), inner_v6, 6);
        assert_eq!(last, PayloadKind::Syslog5424.bytes());
        assert_eq!(ports, (10_000..10_016).collect::<BTreeSet<u16>>());
    }
}

#[test]
fn vxlan_device_delivers_every_inner_datagram_to_a_udp_socket() {
    if !prerequisites("bench_generator::vxlan_device_delivers_every_inner_datagram_to_a_udp_socket")
    {
        return;
    }
    const N: u64 = 20_000;
    let lab = BenchLab::create().expect("create lab");
    let _path = VxlanPath::create(&lab, 4242, &[]).expect("create VXLAN device");
    let mix = TrafficMix::single(Encap::Vxlan { vni: 4242 }, None, PayloadKind::Schema, PORT);
    let socket = bind_udp_in_receiver(
        &lab,
        SocketAddr::new(IpAddr::V4(INNER_DST_V4), PORT),
        128 << 20,
    )
    .expect("enter receiver")
    .expect("bind");
    let mut generator = Generator::new(&lab, &mix).expect("load generator");
    let (offered, (received, ports, last)) = run_into(&mut generator, &socket, N);
    assert_eq!(offered, N);
    assert_eq!(received, N);
    assert_eq!(last, PayloadKind::Schema.bytes());
    assert_eq!(ports.len(), 256);
}

#[test]
fn a_payload_series_arrives_event_by_event_with_checksums_the_kernel_accepts() {
    if !prerequisites(
        "bench_generator::a_payload_series_arrives_event_by_event_with_checksums_the_kernel_accepts",
    ) {
        return;
    }
    // Whichever engine this kernel runs: live frames write the series in `sluice_gen`,
    // whose bytes the library's tests check against the AF_PACKET engine's.
    for inner_v6 in [false, true] {
        let mix = TrafficMix::single(Encap::Gre, Some(42), PayloadKind::SchemaSeries, PORT);
        let (ports, last) = through_tc_decap(mix, inner_v6, 1);
        assert_eq!(last, sluice_testkit::acme::readings_event(20_000 - 1));
        assert_eq!(ports.len(), 256);
    }
}
