//! The comparable essence of one steered packet, derived independently from a
//! [`FrameSpec`] (what we sent), a tshark decode (what Wireshark sees) and a sluice record
//! (what the daemon wrote).
//!
//! Three sources agreeing field by field is the end-to-end check: addresses are compared
//! as parsed [`IpAddr`]s so text forms cannot hide a difference, and the derived ordering
//! lets tests sort both sides before comparing them.

use std::net::IpAddr;

use crate::frames::FrameSpec;

/// Tunnel endpoints, GRE key, inner 5-tuple (UDP implied) and payload length.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketSummary {
    /// Outer source address (None for plain UDP).
    pub tunnel_src: Option<IpAddr>,
    /// Outer destination address (None for plain UDP).
    pub tunnel_dst: Option<IpAddr>,
    /// GRE key (None without K bit or tunnel).
    pub gre_key: Option<u32>,
    /// Inner source address.
    pub src_ip: IpAddr,
    /// Inner UDP source port.
    pub src_port: u16,
    /// Inner destination address.
    pub dst_ip: IpAddr,
    /// Inner UDP destination port.
    pub dst_port: u16,
    /// UDP payload length in bytes.
    pub payload_len: usize,
}

impl From<&FrameSpec> for PacketSummary {
    fn from(spec: &FrameSpec) -> Self {
        let tunnel = spec.tunnel.as_ref();
        PacketSummary {
            tunnel_src: tunnel.map(|t| t.outer.src()),
            tunnel_dst: tunnel.map(|t| t.outer.dst()),
            gre_key: tunnel.and_then(|t| t.key),
            src_ip: spec.inner.src,
            src_port: spec.inner.src_port,
            dst_ip: spec.inner.dst,
            dst_port: spec.inner.dst_port,
            payload_len: spec.inner.payload.len(),
        }
    }
}
