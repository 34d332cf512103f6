//! The start-up self-test: proof, on the live kernel, that the loaded program steers what
//! the pipeline expects, before the program is attached and before systemd is told the
//! service is ready.
//!
//! An appliance that starts, says "ready" and records nothing (as the first release did on
//! Linux 6.1) is worse than one that refuses to start. So for every configured queue the
//! real program, with its real maps (port set, settings, and the XSKMAP holding our
//! sockets), runs on synthetic frames through `BPF_PROG_TEST_RUN` with an XDP context
//! naming the interface and the queue:
//! - GRE over IPv4 with a key, and GRE over IPv6 with checksum, key and sequence number,
//!   both carrying UDP to a steered port, must be redirected, unchanged, and the workers'
//!   parser must read from them the tunnel and the ports they were built with;
//! - SSH (TCP to port 22) must be passed to the kernel, unchanged;
//! - with `filter.plain_udp`, plain UDP to a steered port must be redirected too.
//!
//! The frames use documentation addresses only. The test runs bump the program's verdict
//! counters; the caller zeroes them afterwards, so the counters start at what the
//! interface really delivered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use sluice_common::Verdict;

use crate::decap::{self, PortFilter, Tunnel};

/// `XDP_PASS` and `XDP_REDIRECT` (uapi `enum xdp_action`).
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// A synthetic frame and what the program must do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// What the frame is, for messages.
    pub label: &'static str,
    /// The frame.
    pub frame: Vec<u8>,
    /// What must happen to it.
    pub expect: Expect,
}

/// The expected outcome of a [`Probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Redirected to the queue's socket; the parser reads this tunnel and ports from it.
    Steered {
        /// The tunnel (`None`: plain UDP).
        tunnel: Option<Tunnel>,
        /// UDP source port.
        src_port: u16,
        /// UDP destination port.
        dst_port: u16,
    },
    /// Passed to the kernel.
    Passed,
}

/// Why the self-test refused to start.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// The kernel refused to run the program on a test frame.
    #[error(
        "start-up self-test on {interface} queue {queue}: Linux {release} refused to run the \
         XDP program on a test frame ({message}); the self-test needs BPF_PROG_TEST_RUN with \
         an XDP context (Linux 5.15, or a kernel with it backported)"
    )]
    TestRun {
        /// Interface.
        interface: String,
        /// Queue.
        queue: u32,
        /// The kernel release.
        release: String,
        /// The error from the kernel.
        message: String,
    },
    /// The program did something other than what the pipeline expects.
    #[error(
        "start-up self-test failed on {interface} queue {queue}: {label}: expected {expected}, \
         got {got}; refusing to run while recording nothing"
    )]
    Wrong {
        /// Interface.
        interface: String,
        /// Queue.
        queue: u32,
        /// The probe.
        label: &'static str,
        /// What should have happened.
        expected: String,
        /// What happened.
        got: String,
    },
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], protocol: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

fn udp_datagram(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ethernet(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

const INNER_SRC: [u8; 4] = [198, 51, 100, 7];
const INNER_DST: [u8; 4] = [203, 0, 113, 7];
const PAYLOAD: &[u8] = b"sluice start-up self-test";
const SRC_PORT: u16 = 40_000;

fn inner_udp(dst_port: u16) -> Vec<u8> {
    let udp = udp_datagram(SRC_PORT, dst_port, PAYLOAD);
    let mut ip = ipv4_header(INNER_SRC, INNER_DST, 17, udp.len());
    ip.extend_from_slice(&udp);
    ip
}

/// The probes for a port filter: every frame the pipeline must get, and one it must not.
pub fn probes(filter: &PortFilter) -> Vec<Probe> {
    let port = filter.first_steered_port();
    let steered = |tunnel| Expect::Steered {
        tunnel,
        src_port: SRC_PORT,
        dst_port: port,
    };
    let mut out = Vec::with_capacity(4);

    // GRE over IPv4, key present.
    let key = 0x51ce_0001u32;
    let mut gre = vec![0x20, 0x00, 0x08, 0x00];
    gre.extend_from_slice(&key.to_be_bytes());
    gre.extend_from_slice(&inner_udp(port));
    let (o4s, o4d) = ([192, 0, 2, 10], [192, 0, 2, 11]);
    let mut packet = ipv4_header(o4s, o4d, 47, gre.len());
    packet.extend_from_slice(&gre);
    out.push(Probe {
        label: "GRE over IPv4 (key) carrying UDP to a steered port",
        frame: ethernet(0x0800, &packet),
        expect: steered(Some(Tunnel {
            src: IpAddr::V4(Ipv4Addr::from(o4s)),
            dst: IpAddr::V4(Ipv4Addr::from(o4d)),
            key: Some(key),
        })),
    });

    // GRE over IPv6 with checksum, key and sequence number: the 40-byte IPv6 tunnel
    // addresses are what no longer fit the XDP metadata of older kernels.
    let key6 = 0x51ce_0006u32;
    let mut gre = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0];
    gre.extend_from_slice(&key6.to_be_bytes());
    gre.extend_from_slice(&7u32.to_be_bytes());
    gre.extend_from_slice(&inner_udp(port));
    // A valid checksum: the workers verify it, as the kernel's GRE path does.
    let checksum = !decap::ones_complement_sum(&gre);
    gre[4..6].copy_from_slice(&checksum.to_be_bytes());
    let o6s = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    let o6d = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);
    let mut packet = ipv6_header(o6s, o6d, 47, gre.len());
    packet.extend_from_slice(&gre);
    out.push(Probe {
        label: "GRE over IPv6 (checksum, key, sequence) carrying UDP to a steered port",
        frame: ethernet(0x86dd, &packet),
        expect: steered(Some(Tunnel {
            src: IpAddr::V6(o6s),
            dst: IpAddr::V6(o6d),
            key: Some(key6),
        })),
    });

    if filter.plain_udp() {
        out.push(Probe {
            label: "plain UDP to a steered port",
            frame: ethernet(0x0800, &inner_udp(port)),
            expect: steered(None),
        });
    }

    // SSH: a TCP SYN to port 22 must reach the kernel.
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&50_000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&22u16.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x02;
    let mut packet = ipv4_header([192, 0, 2, 10], [192, 0, 2, 11], 6, tcp.len());
    packet.extend_from_slice(&tcp);
    out.push(Probe {
        label: "SSH (TCP to port 22)",
        frame: ethernet(0x0800, &packet),
        expect: Expect::Passed,
    });
    out
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it: no metadata (`data` = `data_meta` =
/// 0), `data_end` = the frame's length, then the ingress interface and receive queue the
/// program sees.
fn xdp_context(frame_len: usize, ifindex: u32, queue: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[16..20].copy_from_slice(&queue.to_ne_bytes());
    ctx
}

fn action_name(action: u32) -> String {
    match action {
        0 => "XDP_ABORTED".into(),
        1 => "XDP_DROP".into(),
        2 => "XDP_PASS".into(),
        3 => "XDP_TX".into(),
        4 => "XDP_REDIRECT".into(),
        other => format!("action {other}"),
    }
}

/// Which verdict counter moved between two readings, for the message.
fn moved_verdict(before: &[u64], after: &[u64]) -> Option<&'static str> {
    Verdict::ALL
        .iter()
        .find(|v| after.get(**v as usize) > before.get(**v as usize))
        .map(|v| v.name())
}

/// Runs every probe on every queue. `verdicts` reads the program's counters (to name the
/// verdict of a wrong pass).
pub fn run(
    program: &Xdp,
    interface: &str,
    ifindex: u32,
    queues: &[u32],
    filter: &PortFilter,
    release: &str,
    verdicts: impl Fn() -> Vec<u64>,
) -> Result<(), SelfTestError> {
    let probes = probes(filter);
    for &queue in queues {
        for probe in &probes {
            let ctx = xdp_context(probe.frame.len(), ifindex, queue);
            let wrong = |expected: &str, got: String| SelfTestError::Wrong {
                interface: interface.to_owned(),
                queue,
                label: probe.label,
                expected: expected.to_owned(),
                got,
            };
            let before = verdicts();
            let mut out = vec![0u8; probe.frame.len() + 256];
            let result = program.test_run(TestRunOptions {
                data_in: Some(&probe.frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::new()
            });
            let result = match result {
                Ok(result) => result,
                Err(e) => {
                    return Err(SelfTestError::TestRun {
                        interface: interface.to_owned(),
                        queue,
                        release: release.to_owned(),
                        message: super::error_with_sources(&e),
                    });
                }
            };
            let want = match probe.expect {
                Expect::Steered { .. } => XDP_REDIRECT,
                Expect::Passed => XDP_PASS,
            };
            if result.return_value != want {
                let verdict = moved_verdict(&before, &verdicts())
                    .map(|v| format!(" (verdict {v})"))
                    .unwrap_or_default();
                return Err(wrong(
                    &action_name(want),
                    format!("{}{verdict}", action_name(result.return_value)),
                ));
            }
            let out_len = (result.data_size_out as usize).min(out.len());
            if out[..out_len] != probe.frame[..] {
                return Err(wrong(
                    "the frame unchanged",
                    format!("a frame of {out_len} bytes that differs"),
                ));
            }
            if let Expect::Steered {
                tunnel,
                src_port,
                dst_port,
            } = probe.expect
            {
                match decap::parse_steered(&probe.frame, filter) {
                    Ok(d)
                        if d.tunnel == tunnel
                            && d.src_port == src_port
                            && d.dst_port == dst_port => {}
                    Ok(d) => {
                        return Err(wrong(
                            &format!("tunnel {tunnel:?}, ports {src_port}->{dst_port}"),
                            format!(
                                "tunnel {:?}, ports {}->{} from the parser",
                                d.tunnel, d.src_port, d.dst_port
                            ),
                        ));
                    }
                    Err(reason) => {
                        return Err(wrong(
                            "a datagram from the parser",
                            format!("a drop ({})", reason.name()),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilterConfig;

    fn filter(ports: Vec<u16>, plain_udp: bool) -> PortFilter {
        PortFilter::new(&FilterConfig { ports, plain_udp })
    }

    #[test]
    fn steered_probes_parse_to_what_they_expect_and_ssh_is_not_ours() {
        for f in [filter(vec![4739, 2055], true), filter(vec![], false)] {
            for probe in probes(&f) {
                match probe.expect {
                    Expect::Steered {
                        tunnel,
                        src_port,
                        dst_port,
                    } => {
                        let d = decap::parse_steered(&probe.frame, &f);
                        let d = d.map(|d| (d.tunnel, d.src_port, d.dst_port, d.payload.to_vec()));
                        assert_eq!(
                            d,
                            Ok((tunnel, src_port, dst_port, PAYLOAD.to_vec())),
                            "{}",
                            probe.label
                        );
                        assert!(f.steers(dst_port));
                    }
                    Expect::Passed => assert_eq!(
                        decap::classify(&probe.frame, &f),
                        Err(Verdict::PassNotGreOrUdp),
                        "{}",
                        probe.label
                    ),
                }
            }
        }
        assert_eq!(probes(&filter(vec![2055], true)).len(), 4);
        assert_eq!(probes(&filter(vec![2055], false)).len(), 3);
    }

    #[test]
    fn the_context_names_interface_and_queue() {
        let ctx = xdp_context(98, 7, 3);
        assert_eq!(&ctx[..4], &[0u8; 4]);
        assert_eq!(ctx[4..8], 98u32.to_ne_bytes());
        assert_eq!(&ctx[8..12], &[0u8; 4]);
        assert_eq!(ctx[12..16], 7u32.to_ne_bytes());
        assert_eq!(ctx[16..20], 3u32.to_ne_bytes());
        assert_eq!(ctx[20..], [0u8; 4]);
    }

    #[test]
    fn the_moved_counter_names_the_verdict() {
        let before = vec![0; Verdict::ALL.len()];
        let mut after = before.clone();
        after[Verdict::PassNoSocket as usize] = 1;
        assert_eq!(moved_verdict(&before, &after), Some("pass_no_socket"));
        assert_eq!(moved_verdict(&before, &before), None);
    }
}
