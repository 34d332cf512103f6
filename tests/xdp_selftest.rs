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
use sluice::source::xdp::XdpProgram;
use sluice_testkit::netns::NetnsPair;
use sluice_testkit::privilege::{require_root, require_tool};

const NAME: &str =
    "xdp_selftest::the_self_test_passes_for_the_loaded_program_and_refuses_a_wrong_one";

/// A small UMEM: this test receives nothing.
fn source(interface: &str) -> SourceConfig {
    SourceConfig {
        interface: interface.to_owned(),
        queues: vec![0],
        umem_frames: 256,
        ring_size: 128,
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
