//! Encoders of NetFlow v5, v9 and IPFIX export packets, byte by byte, for the tests, the
//! benchmark and the fuzz target (and any tool that needs a known export packet).
//!
//! They encode exactly what they are given — a template that does not match its records, a
//! reserved set id or a wrong length is as easy to write as a good packet — so decoding
//! errors can be provoked on purpose. Lengths (IPFIX message and set lengths, the v9 record
//! count) are filled in by [`MessageBuilder::finish`].

use std::net::{IpAddr, Ipv4Addr};

/// A field specifier of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// Element id (without the enterprise bit).
    pub id: u16,
    /// Length, or `0xffff` for an IPFIX variable-length field.
    pub len: u16,
    /// Private enterprise number (IPFIX only): sets the enterprise bit.
    pub enterprise: Option<u32>,
}

impl FieldSpec {
    /// An IANA element.
    pub const fn new(id: u16, len: u16) -> Self {
        Self {
            id,
            len,
            enterprise: None,
        }
    }

    /// An enterprise-specific element.
    pub const fn enterprise(enterprise: u32, id: u16, len: u16) -> Self {
        Self {
            id,
            len,
            enterprise: Some(enterprise),
        }
    }
}

/// The header of a v5 packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V5Header {
    /// Milliseconds since the exporter booted.
    pub sys_uptime_ms: u32,
    /// Export time, seconds since the Unix epoch.
    pub unix_secs: u32,
    /// Residual nanoseconds of the export time.
    pub unix_nsecs: u32,
    /// Sequence number of the first flow.
    pub flow_sequence: u32,
    /// Type of flow-switching engine.
    pub engine_type: u8,
    /// Slot number of the engine.
    pub engine_id: u8,
    /// Sampling mode (2 high bits) and interval (14 low bits).
    pub sampling_interval: u16,
}

/// One v5 flow record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V5Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Next hop.
    pub next_hop: Ipv4Addr,
    /// Input interface index.
    pub input: u16,
    /// Output interface index.
    pub output: u16,
    /// Packets.
    pub packets: u32,
    /// Bytes (layer 3).
    pub bytes: u32,
    /// sysUptime (ms) at the first packet.
    pub first_ms: u32,
    /// sysUptime (ms) at the last packet.
    pub last_ms: u32,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Cumulative OR of TCP flags.
    pub tcp_flags: u8,
    /// IP protocol.
    pub protocol: u8,
    /// IP type of service.
    pub tos: u8,
    /// Source AS.
    pub src_as: u16,
    /// Destination AS.
    pub dst_as: u16,
    /// Source prefix length.
    pub src_mask: u8,
    /// Destination prefix length.
    pub dst_mask: u8,
}

/// A v5 packet: header (with `count` = `flows.len()`) and records.
pub fn v5_packet(header: &V5Header, flows: &[V5Flow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 48 * flows.len());
    out.extend_from_slice(&5u16.to_be_bytes());
    out.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    out.extend_from_slice(&header.sys_uptime_ms.to_be_bytes());
    out.extend_from_slice(&header.unix_secs.to_be_bytes());
    out.extend_from_slice(&header.unix_nsecs.to_be_bytes());
    out.extend_from_slice(&header.flow_sequence.to_be_bytes());
    out.push(header.engine_type);
    out.push(header.engine_id);
    out.extend_from_slice(&header.sampling_interval.to_be_bytes());
    for f in flows {
        out.extend_from_slice(&f.src.octets());
        out.extend_from_slice(&f.dst.octets());
        out.extend_from_slice(&f.next_hop.octets());
        out.extend_from_slice(&f.input.to_be_bytes());
        out.extend_from_slice(&f.output.to_be_bytes());
        out.extend_from_slice(&f.packets.to_be_bytes());
        out.extend_from_slice(&f.bytes.to_be_bytes());
        out.extend_from_slice(&f.first_ms.to_be_bytes());
        out.extend_from_slice(&f.last_ms.to_be_bytes());
        out.extend_from_slice(&f.src_port.to_be_bytes());
        out.extend_from_slice(&f.dst_port.to_be_bytes());
        out.push(0); // pad1
        out.push(f.tcp_flags);
        out.push(f.protocol);
        out.push(f.tos);
        out.extend_from_slice(&f.src_as.to_be_bytes());
        out.extend_from_slice(&f.dst_as.to_be_bytes());
        out.push(f.src_mask);
        out.push(f.dst_mask);
        out.extend_from_slice(&[0, 0]); // pad2
    }
    out
}

/// The values of one data record, in template order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordWriter {
    bytes: Vec<u8>,
}

impl RecordWriter {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// A 1-byte value.
    pub fn u8(mut self, v: u8) -> Self {
        self.bytes.push(v);
        self
    }

    /// A 2-byte value.
    pub fn u16(mut self, v: u16) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A 4-byte value.
    pub fn u32(mut self, v: u32) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// An 8-byte value.
    pub fn u64(mut self, v: u64) -> Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// An address: 4 bytes for IPv4, 16 for IPv6.
    pub fn ip(mut self, addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => self.bytes.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => self.bytes.extend_from_slice(&a.octets()),
        }
        self
    }

    /// Raw bytes of a fixed-length field.
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.bytes.extend_from_slice(v);
        self
    }

    /// An IPFIX variable-length value: a 1-byte length below 255, else 255 and a 2-byte
    /// length (`long` forces the 3-byte form, which RFC 7011 allows for any length).
    pub fn varlen(mut self, v: &[u8], long: bool) -> Self {
        if v.len() < 255 && !long {
            self.bytes.push(v.len() as u8);
        } else {
            self.bytes.push(255);
            self.bytes
                .extend_from_slice(&(v.len() as u16).to_be_bytes());
        }
        self.bytes.extend_from_slice(v);
        self
    }

    /// The encoded record.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// A v9 or IPFIX export packet, set by set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageBuilder {
    version: u16,
    bytes: Vec<u8>,
    records: u16,
}

impl MessageBuilder {
    /// A NetFlow v9 packet.
    pub fn v9(sys_uptime_ms: u32, unix_secs: u32, sequence: u32, source_id: u32) -> Self {
        let mut bytes = Vec::with_capacity(1500);
        bytes.extend_from_slice(&9u16.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes()); // count, filled by finish
        bytes.extend_from_slice(&sys_uptime_ms.to_be_bytes());
        bytes.extend_from_slice(&unix_secs.to_be_bytes());
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&source_id.to_be_bytes());
        Self {
            version: 9,
            bytes,
            records: 0,
        }
    }

    /// An IPFIX message.
    pub fn ipfix(export_time: u32, sequence: u32, observation_domain: u32) -> Self {
        let mut bytes = Vec::with_capacity(1500);
        bytes.extend_from_slice(&10u16.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes()); // length, filled by finish
        bytes.extend_from_slice(&export_time.to_be_bytes());
        bytes.extend_from_slice(&sequence.to_be_bytes());
        bytes.extend_from_slice(&observation_domain.to_be_bytes());
        Self {
            version: 10,
            bytes,
            records: 0,
        }
    }

    fn field(&mut self, f: &FieldSpec) {
        match f.enterprise {
            Some(enterprise) if self.version == 10 => {
                self.bytes.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
                self.bytes.extend_from_slice(&f.len.to_be_bytes());
                self.bytes.extend_from_slice(&enterprise.to_be_bytes());
            }
            _ => {
                self.bytes.extend_from_slice(&f.id.to_be_bytes());
                self.bytes.extend_from_slice(&f.len.to_be_bytes());
            }
        }
    }

    /// A set with this id and body, as given (no padding).
    pub fn raw_set(mut self, set_id: u16, body: &[u8]) -> Self {
        self.bytes.extend_from_slice(&set_id.to_be_bytes());
        self.bytes
            .extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        self.bytes.extend_from_slice(body);
        self
    }

    fn open_set(&mut self, set_id: u16) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&set_id.to_be_bytes());
        self.bytes.extend_from_slice(&[0, 0]);
        start
    }

    fn close_set(&mut self, start: usize, pad_to_4: bool) {
        while pad_to_4 && !(self.bytes.len() - start).is_multiple_of(4) {
            self.bytes.push(0);
        }
        let len = (self.bytes.len() - start) as u16;
        self.bytes[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// A template set (v9 set 0, IPFIX set 2) of `(template id, fields)`.
    pub fn template_set(mut self, templates: &[(u16, &[FieldSpec])]) -> Self {
        let start = self.open_set(if self.version == 9 { 0 } else { 2 });
        for (id, fields) in templates {
            self.bytes.extend_from_slice(&id.to_be_bytes());
            self.bytes
                .extend_from_slice(&(fields.len() as u16).to_be_bytes());
            for f in *fields {
                self.field(f);
            }
            self.records += 1;
        }
        self.close_set(start, false);
        self
    }

    /// An options template set (v9 set 1, IPFIX set 3) with one options template;
    /// padded to 32 bits as RFC 3954 asks for v9.
    pub fn options_template_set(
        mut self,
        id: u16,
        scope: &[FieldSpec],
        options: &[FieldSpec],
    ) -> Self {
        let v9 = self.version == 9;
        let start = self.open_set(if v9 { 1 } else { 3 });
        self.bytes.extend_from_slice(&id.to_be_bytes());
        if v9 {
            self.bytes
                .extend_from_slice(&((scope.len() * 4) as u16).to_be_bytes());
            self.bytes
                .extend_from_slice(&((options.len() * 4) as u16).to_be_bytes());
        } else {
            self.bytes
                .extend_from_slice(&((scope.len() + options.len()) as u16).to_be_bytes());
            self.bytes
                .extend_from_slice(&(scope.len() as u16).to_be_bytes());
        }
        for f in scope.iter().chain(options) {
            self.field(f);
        }
        self.records += 1;
        self.close_set(start, v9);
        self
    }

    /// An IPFIX withdrawal of template `ids` (field count 0), in a template set, or an
    /// options template set when `options`. Id 2 (3 for options) withdraws them all.
    pub fn withdrawal_set(mut self, options: bool, ids: &[u16]) -> Self {
        let start = self.open_set(if options { 3 } else { 2 });
        for id in ids {
            self.bytes.extend_from_slice(&id.to_be_bytes());
            self.bytes.extend_from_slice(&[0, 0]);
        }
        self.close_set(start, false);
        self
    }

    /// A data set of template `template_id` with these encoded records, unpadded.
    pub fn data_set(self, template_id: u16, records: &[Vec<u8>]) -> Self {
        self.data_set_padded(template_id, records, false)
    }

    /// A data set, padded with zeros to a multiple of 4 bytes when `pad_to_4`.
    pub fn data_set_padded(
        mut self,
        template_id: u16,
        records: &[Vec<u8>],
        pad_to_4: bool,
    ) -> Self {
        let start = self.open_set(template_id);
        for r in records {
            self.bytes.extend_from_slice(r);
            self.records += 1;
        }
        self.close_set(start, pad_to_4);
        self
    }

    /// The packet, with the IPFIX length or v9 count filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let field = if self.version == 9 {
            self.records
        } else {
            self.bytes.len() as u16
        };
        self.bytes[2..4].copy_from_slice(&field.to_be_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipfix_template_and_data_bytes_are_exact() {
        let fields = [FieldSpec::new(8, 4), FieldSpec::enterprise(9, 1, 0xffff)];
        let record = RecordWriter::new()
            .ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
            .varlen(&[0xab], false)
            .finish();
        let p = MessageBuilder::ipfix(0x0102_0304, 7, 42)
            .template_set(&[(256, &fields)])
            .data_set(256, &[record])
            .finish();
        #[rustfmt::skip]
        let expected = [
            0, 10, 0, 46, 1, 2, 3, 4, 0, 0, 0, 7, 0, 0, 0, 42,
            0, 2, 0, 20, 1, 0, 0, 2, 0, 8, 0, 4, 0x80, 1, 0xff, 0xff, 0, 0, 0, 9,
            1, 0, 0, 10, 192, 0, 2, 1, 1, 0xab,
        ];
        assert_eq!(p, expected);
    }

    #[test]
    fn v9_counts_records_and_pads_options_templates() {
        let p = MessageBuilder::v9(1, 2, 3, 4)
            .options_template_set(300, &[FieldSpec::new(1, 4)], &[FieldSpec::new(34, 4)])
            .finish();
        assert_eq!(&p[2..4], &[0, 1]);
        // 4 set header + 6 template header + 2 fields * 4 = 18, padded to 20.
        assert_eq!(&p[20..24], &[0, 1, 0, 20]);
        assert_eq!(p.len(), 40);
    }
}
