//! The start-up self-test on the live kernel (`BPF_PROG_TEST_RUN` of the loaded program,
//! with its real maps and sockets, in a private network namespace): it passes for the
//! program as the daemon loads it, and it refuses — naming the interface, queue, frame,
//! action and verdict — when the program does not steer what the pipeline expects (here:
//! the workers would expect port 6000, the program's map holds 5000 and 5001). It must
//! also leave the verdict counters at zero after a pass, so the counters start at what the
//! interface really delivered.
//!
//! Needs root (namespaces, BPF, AF_XDP) and `ip`: in CI a missing prerequisite fails the
//! test, elsewhere it is skipped with the reason printed.

use sluice::config::{FilterConfig, SourceConfig};
use sluice::decap::PortFilter;
use sluice::source::xdp::{XdpProgram, geometry::Geometry};
use sluice_testkit::netns::NetnsPair;
use sluice_testkit::privilege::{require_root, require_tool};

const NAME: &str =
    "xdp_selftest::the_self_test_passes_for_the_loaded_program_and_refuses_a_wrong_one";

/// A small UMEM: this test receives nothing.
fn source(interface: &str) -> SourceConfig {
    SourceConfig {
        interface: interface.to_owned(),
        queues: vec![0],
        umem_frames: Some(256),
        ring_size: Some(128),
        ..SourceConfig::default()
    }
}

#[test]
fn the_self_test_passes_for_the_loaded_program_and_refuses_a_wrong_one() {
    if !(require_root(NAME) && require_tool(NAME, "ip")) {
        return;
    }
    let pair = NetnsPair::create().expect("create namespace pair");
    let interface = pair.if_b.clone();
    let outcome = pair
        .b
        .run_in(move || -> Result<(Vec<u64>, String), String> {
            let source = source(&interface);
            let loaded = PortFilter::new(&FilterConfig {
                ports: vec![5000, 5001],
                plain_udp: true,
            });
            let mut program = XdpProgram::load(&source, &loaded).map_err(|e| e.to_string())?;
            let _sockets = program.open_sockets(&source).map_err(|e| e.to_string())?;
            program
                .self_test(&source, &loaded)
                .map_err(|e| format!("self-test of the loaded program: {e}"))?;
            let after_pass = program.verdict_counts().map_err(|e| e.to_string())?;
            let other = PortFilter::new(&FilterConfig {
                ports: vec![6000],
                plain_udp: false,
            });
            let refusal = match program.self_test(&source, &other) {
                Ok(()) => {
                    return Err("a self-test with a port the program does not steer passed".into());
                }
                Err(e) => e.to_string(),
            };
            Ok((after_pass, refusal))
        })
        .expect("enter namespace b");
    let (after_pass, refusal) = outcome.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        after_pass,
        vec![0; after_pass.len()],
        "verdict counters after the self-test"
    );
    assert_eq!(
        refusal,
        format!(
            "start-up self-test failed on {} queue 0: GRE over IPv4 (key) carrying UDP to a \
             steered port: expected XDP_REDIRECT, got XDP_PASS (verdict pass_port_not_steered); \
             refusing to run while recording nothing",
            pair.if_b
        )
    );
}

const MTU_NAME: &str = "xdp_selftest::the_umem_frames_follow_the_interface_mtu";

/// The frame size is chosen from the interface's real MTU at load: 2 KiB frames at 1500,
/// 4 KiB at 3000, and a jumbo MTU whose frames fit no UMEM frame is refused, naming the
/// field and the MTU, before anything is attached.
#[test]
fn the_umem_frames_follow_the_interface_mtu() {
    if !(require_root(MTU_NAME) && require_tool(MTU_NAME, "ip")) {
        return;
    }
    let pair = NetnsPair::create().expect("create namespace pair");
    let filter = PortFilter::new(&FilterConfig {
        ports: vec![5000],
        plain_udp: false,
    });
    let mut outcomes = Vec::new();
    for mtu in [1500, 3000, 9000] {
        let status = pair
            .b
            .command("ip")
            .args(["link", "set", "dev", &pair.if_b, "mtu", &mtu.to_string()])
            .status()
            .expect("run ip");
        assert!(status.success(), "set MTU {mtu}");
        let interface = pair.if_b.clone();
        let filter = filter.clone();
        let outcome = pair
            .b
            .run_in(move || {
                let source = SourceConfig {
                    interface,
                    queues: vec![0],
                    ..SourceConfig::default()
                };
                XdpProgram::load(&source, &filter)
                    .map(|program| program.geometry())
                    .map_err(|e| e.to_string())
            })
            .expect("enter namespace b");
        outcomes.push(outcome);
    }
    assert_eq!(
        outcomes[0],
        Ok(Geometry {
            frame_size: 2048,
            frame_count: 32768,
            ring_size: 16384
        })
    );
    assert_eq!(
        outcomes[1],
        Ok(Geometry {
            frame_size: 4096,
            frame_count: 16384,
            ring_size: 8192
        })
    );
    assert_eq!(
        outcomes[2],
        Err(format!(
            "source.frame_size: interface {} has MTU 9000: its frames (up to 9022 bytes with \
             Ethernet and two VLAN headers) do not fit a 4096-byte UMEM frame, of which the \
             kernel keeps 256 bytes as headroom; the largest MTU it fits is 3818",
            pair.if_b
        ))
    );
}
