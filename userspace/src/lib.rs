//! Sluice: GRE-encapsulated UDP in, compressed records out.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice"));
