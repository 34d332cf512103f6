//! NetFlow v5 export packets as a router sends them (30 flows each, sysUptime-relative
//! times), and the exporter's packet context. Shared by `decode_netflow` (the decoder
//! alone) and `formats` (its rows through every file format), so both measure the same
//! flows.

use std::net::{IpAddr, Ipv4Addr};

use sluice_decode::{
    PacketContext,
    netflow::encode::{V5Flow, V5Header, v5_packet},
};

/// Flows per export packet.
pub const FLOWS: u32 = 30;
/// The export time of every packet (2026-01-01T00:00:00Z).
pub const EXPORT_SECS: u32 = 1_767_225_600;
/// The exporter's uptime at export.
pub const UPTIME_MS: u32 = 86_400_000;

/// The exporter's packets: over GRE from 192.0.2.10, to the collector port 2055.
pub fn exporter_ctx() -> PacketContext {
    PacketContext {
        received_at: i64::from(EXPORT_SECS) * 1_000_000,
        tunnel_src: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        tunnel_dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        gre_key: None,
        src_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        src_port: 50_000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        dst_port: 2055,
    }
}

/// Host `i` (mod 250) of the /24 `net`.
pub fn addr(i: u32, net: [u8; 3]) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], (i % 250) as u8 + 1)
}

/// Export packet number `packet` of a stream: flows `packet * FLOWS ..` (every flow of
/// the stream differs in addresses, ports and counters).
pub fn v5_export(packet: u32) -> Vec<u8> {
    let header = V5Header {
        sys_uptime_ms: UPTIME_MS,
        unix_secs: EXPORT_SECS,
        unix_nsecs: 250_000_000,
        flow_sequence: 1 + packet * FLOWS,
        ..V5Header::default()
    };
    let flows: Vec<V5Flow> = (packet * FLOWS..(packet + 1) * FLOWS)
        .map(|i| V5Flow {
            src: addr(i, [192, 0, 2]),
            dst: addr(i * 7, [203, 0, 113]),
            next_hop: Ipv4Addr::new(198, 51, 100, 254),
            input: 1,
            output: 2,
            packets: 1 + i * 3,
            bytes: 64 + i * 900,
            first_ms: UPTIME_MS - 60_000 + i,
            last_ms: UPTIME_MS - 1_000 + i,
            src_port: 40_000 + i as u16,
            dst_port: 443,
            tcp_flags: 0x1b,
            protocol: 6,
            tos: 0,
            src_as: 64_500,
            dst_as: 64_501,
            src_mask: 24,
            dst_mask: 24,
        })
        .collect();
    v5_packet(&header, &flows)
}
