//! One flow between decoding and emission: the fixed column list every NetFlow version
//! is mapped to, the scratch record the element decoders fill, and the time arithmetic
//! that turns v5/v9/IPFIX time elements into absolute timestamps.
//!
//! Records of a packet are decoded into reused scratch records first and emitted only when
//! the whole packet decoded, so a packet is all rows or none.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::{Column, ColumnType, RecordSchema, Value};

/// The columns of every `netflow` row, in order: (name, type, nullable).
pub const COLUMNS: [(&str, ColumnType, bool); 25] = [
    ("version", ColumnType::UInt64, false),
    ("exported_at", ColumnType::Timestamp, false),
    ("observation_domain_id", ColumnType::UInt64, true),
    ("src_addr", ColumnType::IpAddr, true),
    ("dst_addr", ColumnType::IpAddr, true),
    ("src_port", ColumnType::UInt64, true),
    ("dst_port", ColumnType::UInt64, true),
    ("protocol", ColumnType::UInt64, true),
    ("packets", ColumnType::UInt64, true),
    ("bytes", ColumnType::UInt64, true),
    ("flow_start", ColumnType::Timestamp, true),
    ("flow_end", ColumnType::Timestamp, true),
    ("tcp_flags", ColumnType::UInt64, true),
    ("input_if", ColumnType::UInt64, true),
    ("output_if", ColumnType::UInt64, true),
    ("src_as", ColumnType::UInt64, true),
    ("dst_as", ColumnType::UInt64, true),
    ("next_hop", ColumnType::IpAddr, true),
    ("tos", ColumnType::UInt64, true),
    ("src_mask", ColumnType::UInt64, true),
    ("dst_mask", ColumnType::UInt64, true),
    ("sampling_interval", ColumnType::UInt64, true),
    ("engine_type", ColumnType::UInt64, true),
    ("engine_id", ColumnType::UInt64, true),
    ("extra", ColumnType::String, true),
];

/// Number of columns of a row.
pub const COLUMN_COUNT: usize = COLUMNS.len();

/// The schema of the `netflow` decoder.
pub fn schema() -> RecordSchema {
    RecordSchema {
        decoder: "netflow".into(),
        columns: COLUMNS
            .iter()
            .map(|&(name, ty, nullable)| {
                if nullable {
                    Column::nullable(name, ty)
                } else {
                    Column::required(name, ty)
                }
            })
            .collect(),
    }
}

/// A numeric value of a flow: a column, or an input to one (time elements, totals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Slot {
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    TcpFlags,
    InputIf,
    OutputIf,
    SrcAs,
    DstAs,
    Tos,
    SrcMask,
    DstMask,
    Sampling,
    EngineType,
    EngineId,
    /// packetTotalCount (86), used when packetDeltaCount is absent.
    PacketsTotal,
    /// octetTotalCount (85), used when octetDeltaCount is absent.
    BytesTotal,
    StartSecs,
    EndSecs,
    StartMillis,
    EndMillis,
    /// NTP-format timestamp (dateTimeMicroseconds).
    StartMicros,
    EndMicros,
    /// NTP-format timestamp (dateTimeNanoseconds).
    StartNanos,
    EndNanos,
    /// Milliseconds of sysUpTime (v5/v9 header anchor, IPFIX systemInitTimeMilliseconds).
    StartUptime,
    EndUptime,
    /// Microseconds before the export time (IPFIX 158/159).
    StartDelta,
    EndDelta,
    DurationMillis,
    DurationMicros,
    /// systemInitTimeMilliseconds carried in the data record itself.
    SystemInit,
}

const SLOT_COUNT: usize = Slot::SystemInit as usize + 1;

/// An address of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrSlot {
    Src,
    Dst,
    NextHop,
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;

/// One flow being decoded; reused from packet to packet.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    nums: [u64; SLOT_COUNT],
    present: u64,
    addrs: [Option<IpAddr>; 3],
    /// Enterprise-specific elements, `ent:id=hex` separated by `,` (empty: none).
    pub extra: String,
}

impl Default for FlowRecord {
    fn default() -> Self {
        Self {
            nums: [0; SLOT_COUNT],
            present: 0,
            addrs: [None; 3],
            extra: String::new(),
        }
    }
}

/// What a packet's header (and its exporter's options) tells about all its flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// 5, 9 or 10.
    pub version: u16,
    /// Export time of the packet, microseconds since the Unix epoch.
    pub exported_at: i64,
    /// v9 source id / IPFIX observation domain id; `None` for v5.
    pub domain: Option<u32>,
    /// v5/v9 header sysUptime (ms), the anchor of relative times; `None` for IPFIX.
    pub uptime_ms: Option<u32>,
    /// IPFIX: the exporter's systemInitTimeMilliseconds from options data, if known.
    pub system_init_ms: Option<u64>,
    /// The exporter's sampling interval from options data, if known.
    pub sampling: Option<u64>,
}

impl FlowRecord {
    /// Forgets every value, keeping the allocation of `extra`.
    #[inline]
    pub fn reset(&mut self) {
        self.present = 0;
        self.addrs = [None; 3];
        self.extra.clear();
    }

    /// Sets a numeric value (the last one wins when an element repeats).
    #[inline]
    pub fn set(&mut self, slot: Slot, value: u64) {
        self.nums[slot as usize] = value;
        self.present |= 1 << slot as u32;
    }

    /// A numeric value, if set.
    #[inline]
    pub fn get(&self, slot: Slot) -> Option<u64> {
        (self.present & (1 << slot as u32) != 0).then(|| self.nums[slot as usize])
    }

    /// Sets an address.
    #[inline]
    pub fn set_addr(&mut self, slot: AddrSlot, addr: IpAddr) {
        self.addrs[slot as usize] = Some(addr);
    }

    /// An address, if set.
    #[inline]
    pub fn addr(&self, slot: AddrSlot) -> Option<IpAddr> {
        self.addrs[slot as usize]
    }

    /// The row, in [`COLUMNS`] order.
    pub fn values(&self, info: &PacketInfo) -> [Value<'_>; COLUMN_COUNT] {
        let num = |slot| self.get(slot).map_or(Value::Null, Value::U64);
        let addr = |slot| self.addr(slot).map_or(Value::Null, Value::Ip);
        let time = |t: Option<i64>| t.map_or(Value::Null, Value::Timestamp);
        let (start, end) = self.times(info);
        let packets = self.get(Slot::Packets).or(self.get(Slot::PacketsTotal));
        let bytes = self.get(Slot::Bytes).or(self.get(Slot::BytesTotal));
        let sampling = self.get(Slot::Sampling).or(info.sampling);
        [
            Value::U64(u64::from(info.version)),
            Value::Timestamp(info.exported_at),
            info.domain
                .map_or(Value::Null, |d| Value::U64(u64::from(d))),
            addr(AddrSlot::Src),
            addr(AddrSlot::Dst),
            num(Slot::SrcPort),
            num(Slot::DstPort),
            num(Slot::Protocol),
            packets.map_or(Value::Null, Value::U64),
            bytes.map_or(Value::Null, Value::U64),
            time(start),
            time(end),
            num(Slot::TcpFlags),
            num(Slot::InputIf),
            num(Slot::OutputIf),
            num(Slot::SrcAs),
            num(Slot::DstAs),
            addr(AddrSlot::NextHop),
            num(Slot::Tos),
            num(Slot::SrcMask),
            num(Slot::DstMask),
            sampling.map_or(Value::Null, Value::U64),
            num(Slot::EngineType),
            num(Slot::EngineId),
            if self.extra.is_empty() {
                Value::Null
            } else {
                Value::Str(Cow::Borrowed(&self.extra))
            },
        ]
    }

    /// Flow start and end in microseconds since the Unix epoch: the most precise absolute
    /// element, else the relative ones anchored on the packet, else start/end ± duration.
    pub fn times(&self, info: &PacketInfo) -> (Option<i64>, Option<i64>) {
        let start = self.time(
            info,
            [
                Slot::StartNanos,
                Slot::StartMicros,
                Slot::StartMillis,
                Slot::StartSecs,
                Slot::StartUptime,
                Slot::StartDelta,
            ],
        );
        let end = self.time(
            info,
            [
                Slot::EndNanos,
                Slot::EndMicros,
                Slot::EndMillis,
                Slot::EndSecs,
                Slot::EndUptime,
                Slot::EndDelta,
            ],
        );
        let duration_us = self
            .get(Slot::DurationMicros)
            .or_else(|| self.get(Slot::DurationMillis)?.checked_mul(1000))
            .and_then(|d| i64::try_from(d).ok());
        match (start, end, duration_us) {
            (Some(s), None, Some(d)) => (Some(s), s.checked_add(d)),
            (None, Some(e), Some(d)) => (e.checked_sub(d), Some(e)),
            _ => (start, end),
        }
    }

    /// The first of `slots` (nanos, micros, millis, secs, uptime, delta) that is set and
    /// convertible.
    fn time(&self, info: &PacketInfo, slots: [Slot; 6]) -> Option<i64> {
        let [nanos, micros, millis, secs, uptime, delta] = slots;
        if let Some(v) = self.get(nanos).or(self.get(micros)) {
            return ntp_to_micros(v);
        }
        if let Some(ms) = self.get(millis) {
            return i64::try_from(ms).ok()?.checked_mul(1000);
        }
        if let Some(s) = self.get(secs) {
            return i64::try_from(s).ok()?.checked_mul(1_000_000);
        }
        if let Some(t) = self.get(uptime) {
            return match info.uptime_ms {
                // v5/v9: the export's sysUptime and the flow's are both in ms since the
                // exporter's boot, modulo 2^32; the age is their difference taken as a
                // signed 32-bit value, so a wrap of sysUptime between flow and export is
                // harmless and a timestamp slightly ahead of sysUptime (a known IOS bug)
                // is not read as 49 days old.
                Some(now) => {
                    let age_ms = i64::from(now.wrapping_sub(t as u32) as i32);
                    info.exported_at.checked_sub(age_ms * 1000)
                }
                // IPFIX: relative to systemInitTimeMilliseconds (the record's, else the
                // exporter's from options data).
                None => {
                    let init = self.get(Slot::SystemInit).or(info.system_init_ms)?;
                    let ms = i64::try_from(init.checked_add(t)?).ok()?;
                    ms.checked_mul(1000)
                }
            };
        }
        if let Some(d) = self.get(delta) {
            return info.exported_at.checked_sub(i64::try_from(d).ok()?);
        }
        None
    }
}

/// An NTP-format timestamp (RFC 7011 dateTimeMicroseconds/Nanoseconds: seconds since 1900
/// in the high 32 bits, a binary fraction in the low 32) in Unix microseconds.
fn ntp_to_micros(v: u64) -> Option<i64> {
    let secs = i64::try_from(v >> 32).ok()? - NTP_UNIX_OFFSET_SECS;
    let frac_us = ((v & 0xffff_ffff) * 1_000_000) >> 32;
    secs.checked_mul(1_000_000)?
        .checked_add(i64::try_from(frac_us).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: u16, uptime_ms: Option<u32>, system_init_ms: Option<u64>) -> PacketInfo {
        PacketInfo {
            version,
            exported_at: 1_767_225_600_000_000,
            domain: None,
            uptime_ms,
            system_init_ms,
            sampling: None,
        }
    }

    #[test]
    fn schema_has_unique_snake_case_names_and_two_required_columns() {
        let s = schema();
        assert_eq!(s.decoder, "netflow");
        assert_eq!(s.columns.len(), 25);
        let required: Vec<&str> = s
            .columns
            .iter()
            .filter(|c| !c.nullable)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(required, ["version", "exported_at"]);
        for (i, c) in s.columns.iter().enumerate() {
            assert_eq!(s.index_of(&c.name), Some(i));
        }
    }

    #[test]
    fn uptime_times_are_anchored_on_the_header_and_survive_a_wrap() {
        let mut r = FlowRecord::default();
        r.set(Slot::StartUptime, 9_000);
        r.set(Slot::EndUptime, 9_900);
        let i = info(9, Some(10_000), None);
        assert_eq!(
            r.times(&i),
            (Some(1_767_225_599_000_000), Some(1_767_225_599_900_000))
        );
        // sysUptime wrapped after the flow ended.
        r.set(Slot::StartUptime, u64::from(u32::MAX - 499));
        r.set(Slot::EndUptime, u64::from(u32::MAX));
        let i = info(9, Some(500), None);
        assert_eq!(
            r.times(&i),
            (Some(1_767_225_599_000_000), Some(1_767_225_599_499_000))
        );
        // End slightly ahead of sysUptime: in the future, not 49 days ago.
        r.set(Slot::EndUptime, 600);
        assert_eq!(r.times(&i).1, Some(1_767_225_600_100_000));
    }

    #[test]
    fn ipfix_relative_times_need_system_init() {
        let mut r = FlowRecord::default();
        r.set(Slot::StartUptime, 1_000);
        assert_eq!(r.times(&info(10, None, None)), (None, None));
        assert_eq!(
            r.times(&info(10, None, Some(1_767_225_500_000))).0,
            Some(1_767_225_501_000_000)
        );
        r.set(Slot::SystemInit, 1_767_225_000_000);
        assert_eq!(
            r.times(&info(10, None, Some(1_767_225_500_000))).0,
            Some(1_767_225_001_000_000)
        );
    }

    #[test]
    fn absolute_times_prefer_precision_and_durations_fill_the_gap() {
        let mut r = FlowRecord::default();
        r.set(Slot::StartSecs, 1_767_225_600);
        r.set(Slot::StartMillis, 1_767_225_600_250);
        r.set(Slot::DurationMillis, 1_500);
        let i = info(10, None, None);
        assert_eq!(
            r.times(&i),
            (Some(1_767_225_600_250_000), Some(1_767_225_601_750_000))
        );
        // NTP: 2026-01-01T00:00:00Z plus half a second.
        let ntp = ((1_767_225_600u64 + 2_208_988_800) << 32) | 0x8000_0000;
        r.set(Slot::EndMicros, ntp);
        assert_eq!(r.times(&i).1, Some(1_767_225_600_500_000));
        r.reset();
        r.set(Slot::EndDelta, 2_000_000);
        r.set(Slot::DurationMicros, 1);
        assert_eq!(
            r.times(&i),
            (Some(1_767_225_597_999_999), Some(1_767_225_598_000_000))
        );
        r.reset();
        r.set(Slot::StartMillis, u64::MAX);
        assert_eq!(r.times(&i), (None, None));
    }

    #[test]
    fn values_prefer_delta_counters_and_record_sampling() {
        let mut r = FlowRecord::default();
        r.set(Slot::PacketsTotal, 7);
        r.set(Slot::BytesTotal, 700);
        r.set(Slot::Bytes, 500);
        let mut i = info(10, None, None);
        i.sampling = Some(100);
        let v = r.values(&i);
        assert_eq!(v[8], Value::U64(7));
        assert_eq!(v[9], Value::U64(500));
        assert_eq!(v[21], Value::U64(100));
        assert_eq!(v[24], Value::Null);
        r.set(Slot::Sampling, 10);
        r.extra.push_str("9:1=ff");
        let v = r.values(&i);
        assert_eq!(v[21], Value::U64(10));
        assert_eq!(v[24], Value::Str(Cow::Borrowed("9:1=ff")));
    }
}
