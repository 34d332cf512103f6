//! UDP payloads the generator offers: raw bytes and a realistic payload for each decoder,
//! so a benchmark of the full pipeline exercises the same decode work as production.
//!
//! Every payload is deterministic (the same kind gives the same bytes; a series the same
//! bytes for the same frame number), so a run can be checked record by record.

use std::net::Ipv4Addr;

use sluice_decode::netflow::encode::{V5Flow, V5Header, v5_packet};

/// What the inner UDP datagram carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// `len` bytes `0, 1, 2, …` (mod 251), for the raw decoder.
    Raw {
        /// Payload length in bytes (the inner UDP payload; ≤ 1400).
        len: usize,
    },
    /// An ACME-SENSOR v2 "readings" event with two readings: the 36-byte example of
    /// docs/decoders.md ("The `schema` decoder", layout `acme-sensor-v2.toml`), which
    /// decodes to two records. Configure the `schema` decoder with that layout, or the `lua`
    /// decoder with docs/examples/acme-sensor-v2.lua (the same two records).
    Schema,
    /// A sensor's successive readings events: the n-th frame the generator sends carries
    /// `sluice_testkit::acme::readings_event(n)`, the [`PayloadKind::Schema`] event with its
    /// sequence number, time and two values changing (see `series.rs`); [`Self::bytes`] is
    /// the first. The same decoders and records per packet as `Schema`, but each packet is a
    /// new event, as from real devices.
    SchemaSeries,
    /// A NetFlow v5 export packet with `flows` flow records (24 + 48 × flows bytes; 1–30).
    NetflowV5 {
        /// Flow records in the packet.
        flows: u8,
    },
    /// One RFC 5424 syslog message (structured data included), 137 bytes.
    Syslog5424,
    /// One RFC 3164 (BSD) syslog message, 79 bytes.
    Syslog3164,
}

/// The RFC 5424 message of [`PayloadKind::Syslog5424`].
pub const SYSLOG_5424: &str = "<165>1 2026-11-22T06:25:25.123Z sensor-7.example.net sluiced 4711 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] link eth0 up";

/// The RFC 3164 message of [`PayloadKind::Syslog3164`].
pub const SYSLOG_3164: &str =
    "<34>Nov 22 06:25:25 sensor-7 su[4711]: 'su root' failed for alice on /dev/pts/8";

impl PayloadKind {
    /// The payload bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            PayloadKind::Raw { len } => (0..*len).map(|i| (i % 251) as u8).collect(),
            PayloadKind::Schema => sluice_testkit::acme::READINGS_EVENT.to_vec(),
            PayloadKind::SchemaSeries => sluice_testkit::acme::readings_event(0).to_vec(),
            PayloadKind::NetflowV5 { flows } => netflow_v5(*flows),
            PayloadKind::Syslog5424 => SYSLOG_5424.as_bytes().to_vec(),
            PayloadKind::Syslog3164 => SYSLOG_3164.as_bytes().to_vec(),
        }
    }

    /// A short name for tables and logs (`raw-64`, `schema`, `netflow-v5x10`, ...).
    pub fn label(&self) -> String {
        match self {
            PayloadKind::Raw { len } => format!("raw-{len}"),
            PayloadKind::Schema => "schema".to_owned(),
            PayloadKind::SchemaSeries => "schema-series".to_owned(),
            PayloadKind::NetflowV5 { flows } => format!("netflow-v5x{flows}"),
            PayloadKind::Syslog5424 => "syslog-5424".to_owned(),
            PayloadKind::Syslog3164 => "syslog-3164".to_owned(),
        }
    }

    /// How many records the matching decoder makes of one payload (raw: 1, schema: 2,
    /// NetFlow v5: one per flow, syslog: 1).
    pub fn records_per_packet(&self) -> u64 {
        match self {
            PayloadKind::Schema | PayloadKind::SchemaSeries => 2,
            PayloadKind::NetflowV5 { flows } => u64::from(*flows),
            _ => 1,
        }
    }
}

/// A v5 packet of `flows` records from documentation addresses.
fn netflow_v5(flows: u8) -> Vec<u8> {
    let header = V5Header {
        sys_uptime_ms: 3_600_000,
        unix_secs: 1_795_069_525,
        unix_nsecs: 0,
        flow_sequence: 4711,
        engine_type: 0,
        engine_id: 1,
        sampling_interval: 0,
    };
    let records: Vec<V5Flow> = (0..flows)
        .map(|i| V5Flow {
            src: Ipv4Addr::new(192, 0, 2, 10 + i),
            dst: Ipv4Addr::new(198, 51, 100, 200),
            next_hop: Ipv4Addr::new(203, 0, 113, 1),
            input: 1,
            output: 2,
            packets: 10 + u32::from(i),
            bytes: 1500 * (10 + u32::from(i)),
            first_ms: 3_590_000,
            last_ms: 3_599_000,
            src_port: 40_000 + u16::from(i),
            dst_port: 443,
            tcp_flags: 0x1b,
            protocol: 6,
            tos: 0,
            src_as: 64_496,
            dst_as: 64_511,
            src_mask: 24,
            dst_mask: 24,
        })
        .collect();
    v5_packet(&header, &records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_are_as_documented() {
        assert_eq!(PayloadKind::Raw { len: 64 }.bytes().len(), 64);
        assert_eq!(PayloadKind::Raw { len: 300 }.bytes()[251..253], [0, 1]);
        assert_eq!(PayloadKind::Schema.bytes().len(), 36);
        assert_eq!(PayloadKind::NetflowV5 { flows: 10 }.bytes().len(), 24 + 480);
        assert_eq!(PayloadKind::Syslog5424.bytes().len(), SYSLOG_5424.len());
        assert_eq!(PayloadKind::Syslog3164.bytes().len(), SYSLOG_3164.len());
        assert_eq!(PayloadKind::NetflowV5 { flows: 3 }.records_per_packet(), 3);
        assert_eq!(PayloadKind::Schema.label(), "schema");
    }
}
