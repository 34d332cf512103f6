//! NetFlow v5: a fixed 24-byte header and fixed 48-byte IPv4 flow records, no templates,
//! so a v5 packet is decoded entirely on its own.

use std::net::{IpAddr, Ipv4Addr};

use super::record::{AddrSlot, FlowRecord, PacketInfo, Slot};
use super::wire::{BAD_LENGTH, TRUNCATED, take, u8_at, u16_at, u32_at};
use crate::{DecodeError, FieldName, detail};

/// Bytes of the v5 header.
pub const HEADER_LEN: usize = 24;
/// Bytes of one v5 flow record.
pub const RECORD_LEN: usize = 48;

fn v4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

/// Decodes a v5 packet into `records` (grown as needed); returns the packet info and the
/// number of records filled.
///
/// # Errors
/// `truncated` when the packet is shorter than its header and `count` records,
/// `bad_length` when it is longer.
pub fn decode(
    payload: &[u8],
    records: &mut Vec<FlowRecord>,
) -> Result<(PacketInfo, usize), DecodeError> {
    take(payload, 0, HEADER_LEN, "header")?;
    let count = usize::from(u16_at(payload, 2, "count")?);
    let uptime = u32_at(payload, 4, "sys_uptime")?;
    let secs = u32_at(payload, 8, "unix_secs")?;
    let nsecs = u32_at(payload, 12, "unix_nsecs")?;
    let engine_type = u8_at(payload, 20, "engine_type")?;
    let engine_id = u8_at(payload, 21, "engine_id")?;
    let sampling = u16_at(payload, 22, "sampling_interval")?;
    let expected = HEADER_LEN + count * RECORD_LEN;
    if payload.len() != expected {
        let kind = if payload.len() < expected {
            TRUNCATED
        } else {
            BAD_LENGTH
        };
        return Err(DecodeError::new(
            kind,
            FieldName::Static("count"),
            2,
            detail!(
                "{} records need {} bytes, the packet has {}",
                count,
                expected,
                payload.len()
            ),
        ));
    }
    // The low 14 bits are the interval, the high 2 the sampling mode.
    let interval = u64::from(sampling & 0x3fff);
    let info = PacketInfo {
        version: 5,
        exported_at: i64::from(secs) * 1_000_000 + i64::from(nsecs / 1000),
        domain: None,
        uptime_ms: Some(uptime),
        system_init_ms: None,
        sampling: (interval != 0).then_some(interval),
    };
    if records.len() < count {
        records.resize_with(count, FlowRecord::default);
    }
    for (i, rec) in records.iter_mut().take(count).enumerate() {
        let r = take(payload, HEADER_LEN + i * RECORD_LEN, RECORD_LEN, "record")?;
        let be16 = |at: usize| u64::from(u16::from_be_bytes([r[at], r[at + 1]]));
        let be32 =
            |at: usize| u64::from(u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]));
        rec.reset();
        rec.set_addr(AddrSlot::Src, v4(&r[0..4]));
        rec.set_addr(AddrSlot::Dst, v4(&r[4..8]));
        rec.set_addr(AddrSlot::NextHop, v4(&r[8..12]));
        rec.set(Slot::InputIf, be16(12));
        rec.set(Slot::OutputIf, be16(14));
        rec.set(Slot::Packets, be32(16));
        rec.set(Slot::Bytes, be32(20));
        rec.set(Slot::StartUptime, be32(24));
        rec.set(Slot::EndUptime, be32(28));
        rec.set(Slot::SrcPort, be16(32));
        rec.set(Slot::DstPort, be16(34));
        rec.set(Slot::TcpFlags, u64::from(r[37]));
        rec.set(Slot::Protocol, u64::from(r[38]));
        rec.set(Slot::Tos, u64::from(r[39]));
        rec.set(Slot::SrcAs, be16(40));
        rec.set(Slot::DstAs, be16(42));
        rec.set(Slot::SrcMask, u64::from(r[44]));
        rec.set(Slot::DstMask, u64::from(r[45]));
        rec.set(Slot::EngineType, u64::from(engine_type));
        rec.set(Slot::EngineId, u64::from(engine_id));
    }
    Ok((info, count))
}
