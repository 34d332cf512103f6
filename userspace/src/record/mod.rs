//! Records: what one packet (or one element of it: a flow, a reading) becomes. Every
//! record is the packet's provenance (`sluice_decode::PacketContext`) followed by its
//! decoder's typed columns, written by the sink format's encoder (`sluice_formats`).

pub mod timestamp;

use sluice_decode::PacketContext;

use crate::decap::Datagram;
use timestamp::UnixMicros;

/// The provenance of a datagram received at `received_at`.
pub fn packet_context(received_at: UnixMicros, d: &Datagram<'_>) -> PacketContext {
    PacketContext {
        received_at,
        tunnel_src: d.tunnel.map(|t| t.src),
        tunnel_dst: d.tunnel.map(|t| t.dst),
        gre_key: d.tunnel.and_then(|t| t.key),
        src_ip: d.src,
        src_port: d.src_port,
        dst_ip: d.dst,
        dst_port: d.dst_port,
    }
}
