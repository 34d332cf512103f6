//! Packet sources: the XDP/AF_XDP kernel-bypass path, plain UDP sockets, and pcap replay.
//! Each one only receives and copies; everything after that is the shared pipeline.

pub mod replay;
pub mod udp;
#[cfg(feature = "xdp")]
pub mod xdp;
