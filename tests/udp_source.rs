//! The plain UDP socket source (`source.kind = "udp"`), for hosts without XDP: datagrams
//! over IPv4 and IPv6 between two test namespaces become exactly one record each, with the
//! sender's address and port and the local address from IP_PKTINFO, and seen = recorded.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use sluice_testkit::{
    daemon::{self, ConfigSpec, RunFiles, SourceSpec},
    netns::{ADDR_V4_A, ADDR_V4_B, ADDR_V6_A, ADDR_V6_B, NetnsPair},
    privilege, records,
};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const PER_FAMILY: usize = 200;

#[test]
fn udp_source_records_every_datagram() {
    if !privilege::require_root("udp_source_records_every_datagram") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let dir = std::env::temp_dir().join(format!("sluice-udp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("out");
    let files = RunFiles::in_dir(&dir, "udp");
    let v4 = SocketAddr::new(ADDR_V4_B.into(), 5000);
    let v6 = SocketAddr::new(ADDR_V6_B.into(), 5001);
    let spec = ConfigSpec {
        source: SourceSpec::Udp {
            listen: vec![v4.to_string(), v6.to_string()],
        },
        ..ConfigSpec::xdp("unused", &out)
    };
    spec.write(&files.config).expect("config");
    let mut sluice = daemon::start_run(SLUICE.as_ref(), &pair.b, &files).expect("start");
    sluice.wait_ready(Duration::from_secs(20)).expect("ready");

    let sent: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = pair
        .a
        .run_in(move || {
            let s4 = UdpSocket::bind(SocketAddr::new(ADDR_V4_A.into(), 40_000)).expect("bind v4");
            let s6 = UdpSocket::bind(SocketAddr::new(ADDR_V6_A.into(), 40_001)).expect("bind v6");
            let mut sent = Vec::new();
            for i in 0..PER_FAMILY {
                for (socket, to) in [(&s4, v4), (&s6, v6)] {
                    let payload = format!("datagram {i} to {to}").into_bytes();
                    socket.send_to(&payload, to).expect("send");
                    sent.push((socket.local_addr().expect("addr"), to, payload));
                }
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            sent
        })
        .expect("send in namespace a");
    std::thread::sleep(Duration::from_millis(500));
    let (status, in_time, stats) = sluice.stop(Duration::from_secs(10)).expect("stop");
    assert!(status.success() && in_time, "exit {status:?}");

    let total = (2 * PER_FAMILY) as u64;
    assert_eq!(stats.seen, total);
    assert_eq!(stats.recorded, total);
    assert_eq!(stats.dropped_total, 0, "{:?}", stats.dropped);
    assert!(stats.balanced);

    let got = records::read_output(&out.join("raw"))
        .expect("output")
        .records();
    let mut got: Vec<(String, u16, String, u16, String)> = got
        .into_iter()
        .map(|r| {
            assert_eq!((r.tunnel_src, r.tunnel_dst, r.gre_key), (None, None, None));
            (r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.payload)
        })
        .collect();
    let mut want: Vec<(String, u16, String, u16, String)> = sent
        .iter()
        .map(|(from, to, payload)| {
            use base64::Engine as _;
            (
                from.ip().to_string(),
                from.port(),
                to.ip().to_string(),
                to.port(),
                base64::engine::general_purpose::STANDARD.encode(payload),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).expect("clean up");
}
