//! The userspace packet parser on arbitrary frames: the XDP-twin classifier and full
//! decapsulation of captured frames and of the frames the XDP program steers.
//! It must never panic; every frame is a datagram, a pass verdict or a drop reason.
#![no_main]

use sluice::{
    config::FilterConfig,
    decap::{PortFilter, parse_captured, parse_steered},
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let filter = PortFilter::new(&FilterConfig {
        ports: vec![5000, 5001],
        plain_udp: true,
    });
    if let Ok(datagram) = parse_captured(data, &filter) {
        assert!(datagram.payload.len() <= data.len());
    }
    let all = PortFilter::new(&FilterConfig {
        ports: vec![],
        plain_udp: false,
    });
    let _ = parse_captured(data, &all);
    let _ = parse_steered(data, &filter);
});
