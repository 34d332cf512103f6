//! The Sluice benchmark (issue 6): everything `cargo xtask bench` needs to offer known
//! traffic at a chosen rate and measure what each receiver makes of it.
//!
//! - [`lab`]: two network namespaces joined by a veth, plus threaded-NAPI knobs.
//! - [`generator`]: the packet generator (`BPF_PROG_TEST_RUN` with live frames, or AF_PACKET
//!   where the kernel refuses them) and the traffic mix it sends (GRE / VXLAN / plain UDP,
//!   raw and decoder payloads).
//! - [`count_drop`]: ceiling A, an XDP program that counts and drops.
//! - [`kernel_path`]: the kernel-stack references: tc-BPF GRE decapsulation and the VXLAN
//!   device, both delivering inner UDP to sockets in the receiver namespace.
//!
//! The eBPF programs (ebpf/sluice-bench-ebpf) are built by build.rs and embedded here.

pub mod count_drop;
pub mod generator;
pub mod harness;
pub mod kernel_path;
pub mod lab;

/// The eBPF object built from ebpf/sluice-bench-ebpf by build.rs.
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice-bench"));
