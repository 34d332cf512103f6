//! An independent decoder: what Wireshark's tshark sees in a pcap, reduced per frame to
//! the fields Sluice records.
//!
//! Comparing Sluice's records with tshark's decode catches mistakes that a test built on
//! our own frame encoder would share with it (both could agree on a wrong offset). tshark
//! is run as
//! `tshark -n -r FILE -T fields -E occurrence=a -E aggregator=, -e frame.number -e frame.protocols -e ip.src ...`
//! with checksum validation on, and `-d udp.port==P,data` for the steered ports so that a
//! port-based dissector (5001 is CPFI's) cannot claim the payload. The inner packet is
//! the last `ip`/`ipv6` layer in `frame.protocols`; the tunnel is the IP layer right
//! before `gre`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::summary::PacketSummary;

/// The fields requested from tshark, in output column order.
pub const FIELDS: [&str; 16] = [
    "frame.number",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "gre.key",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "ip.checksum.status",
    "udp.checksum.status",
    "gre.checksum.status",
    "tcp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
];

/// Why tshark could not be run or its output not understood.
#[derive(Debug, thiserror::Error)]
pub enum TsharkError {
    /// tshark could not be started.
    #[error("cannot run tshark: {source}")]
    Spawn {
        /// The underlying error.
        source: std::io::Error,
    },
    /// tshark exited non-zero.
    #[error("tshark -r {path} failed ({status}): {stderr}")]
    Failed {
        /// The pcap.
        path: PathBuf,
        /// Exit status.
        status: String,
        /// Standard error.
        stderr: String,
    },
    /// A line of output did not parse.
    #[error("tshark output line {line}: {reason}: {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
        /// The line.
        text: String,
    },
}

/// One frame as tshark decoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsharkPacket {
    /// 1-based frame number.
    pub frame_number: u64,
    /// `frame.protocols`, split at `:`.
    pub protocols: Vec<String>,
    /// Source of the IP layer right before `gre`.
    pub tunnel_src: Option<IpAddr>,
    /// Destination of the IP layer right before `gre`.
    pub tunnel_dst: Option<IpAddr>,
    /// The GRE key, if the frame has one.
    pub gre_key: Option<u32>,
    /// Source of the last IP layer.
    pub src_ip: Option<IpAddr>,
    /// Destination of the last IP layer.
    pub dst_ip: Option<IpAddr>,
    /// Last UDP source port.
    pub src_port: Option<u16>,
    /// Last UDP destination port.
    pub dst_port: Option<u16>,
    /// Last `udp.length` − 8.
    pub payload_len: Option<usize>,
    /// Checksums tshark did not find good, as `layer=status` (0 bad, 2 unverified).
    pub bad_checksums: Vec<String>,
}

impl TsharkPacket {
    /// The summary when the frame has an inner IP layer and UDP; tunnel fields only with GRE.
    pub fn summary(&self) -> Option<PacketSummary> {
        Some(PacketSummary {
            tunnel_src: self.tunnel_src,
            tunnel_dst: self.tunnel_dst,
            gre_key: self.gre_key,
            src_ip: self.src_ip?,
            src_port: self.src_port?,
            dst_ip: self.dst_ip?,
            dst_port: self.dst_port?,
            payload_len: self.payload_len?,
        })
    }
}

/// Decodes `pcap`, treating UDP to `data_ports` as opaque data.
///
/// # Errors
/// [`TsharkError`] when tshark fails or its output does not parse.
pub fn decode(pcap: &Path, data_ports: &[u16]) -> Result<Vec<TsharkPacket>, TsharkError> {
    let mut command = Command::new("tshark");
    command.arg("-n").arg("-r").arg(pcap);
    for layer in ["ip", "udp", "tcp"] {
        command.args(["-o", &format!("{layer}.check_checksum:TRUE")]);
    }
    for port in data_ports {
        command.args(["-d", &format!("udp.port=={port},data")]);
    }
    command.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for field in FIELDS {
        command.args(["-e", field]);
    }
    let output = command
        .output()
        .map_err(|source| TsharkError::Spawn { source })?;
    if !output.status.success() {
        return Err(TsharkError::Failed {
            path: pcap.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            parse_line(line).map_err(|reason| TsharkError::Parse {
                line: i + 1,
                reason,
                text: line.to_owned(),
            })
        })
        .collect()
}

/// Parses one line of `-T fields` output with the columns of [`FIELDS`].
///
/// # Errors
/// A description of what is wrong.
pub fn parse_line(line: &str) -> Result<TsharkPacket, String> {
    let columns: Vec<&str> = line.split('\t').collect();
    if columns.len() != FIELDS.len() {
        return Err(format!(
            "{} columns, expected {}",
            columns.len(),
            FIELDS.len()
        ));
    }
    let values = |i: usize| -> Vec<&str> {
        if columns[i].is_empty() {
            Vec::new()
        } else {
            columns[i].split(',').collect()
        }
    };
    let frame_number = columns[0]
        .parse()
        .map_err(|e| format!("frame.number: {e}"))?;
    let protocols: Vec<String> = columns[1].split(':').map(str::to_owned).collect();

    let addrs = |i: usize, field: &str| -> Result<Vec<IpAddr>, String> {
        values(i)
            .iter()
            .map(|v| v.parse().map_err(|e| format!("{field} {v:?}: {e}")))
            .collect()
    };
    let (ip_src, ip_dst) = (addrs(2, "ip.src")?, addrs(3, "ip.dst")?);
    let (ip6_src, ip6_dst) = (addrs(4, "ipv6.src")?, addrs(5, "ipv6.dst")?);

    // Walk the protocol stack, numbering the ip and ipv6 layers to index their values.
    let mut layers: Vec<(Option<IpAddr>, Option<IpAddr>)> = Vec::new();
    let mut tunnel = None;
    let (mut n4, mut n6) = (0, 0);
    for protocol in &protocols {
        match protocol.as_str() {
            "ip" => {
                layers.push((ip_src.get(n4).copied(), ip_dst.get(n4).copied()));
                n4 += 1;
            }
            "ipv6" => {
                layers.push((ip6_src.get(n6).copied(), ip6_dst.get(n6).copied()));
                n6 += 1;
            }
            "gre" if tunnel.is_none() => tunnel = layers.last().copied(),
            _ => {}
        }
    }
    let (src_ip, dst_ip) = layers.last().copied().unwrap_or((None, None));

    let gre_key = values(6)
        .first()
        .map(|v| parse_u32(v).map_err(|e| format!("gre.key {v:?}: {e}")))
        .transpose()?;
    let last_u16 = |i: usize, field: &str| -> Result<Option<u16>, String> {
        values(i)
            .last()
            .map(|v| v.parse().map_err(|e| format!("{field} {v:?}: {e}")))
            .transpose()
    };
    let src_port = last_u16(7, "udp.srcport")?;
    let dst_port = last_u16(8, "udp.dstport")?;
    let payload_len = last_u16(9, "udp.length")?
        .map(|len| {
            usize::from(len)
                .checked_sub(8)
                .ok_or_else(|| format!("udp.length {len} < 8"))
        })
        .transpose()?;

    let mut bad_checksums = Vec::new();
    for (i, field) in FIELDS.iter().enumerate().skip(10) {
        let layer = field.split('.').next().unwrap_or(field);
        for status in values(i) {
            if status != "1" {
                bad_checksums.push(format!("{layer}={status}"));
            }
        }
    }

    Ok(TsharkPacket {
        frame_number,
        protocols,
        tunnel_src: tunnel.and_then(|t| t.0),
        tunnel_dst: tunnel.and_then(|t| t.1),
        gre_key,
        src_ip,
        dst_ip,
        src_port,
        dst_port,
        payload_len,
        bad_checksums,
    })
}

/// Parses `0x`-prefixed hex or decimal.
fn parse_u32(text: &str) -> Result<u32, std::num::ParseIntError> {
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{MatrixParams, NegativeKind, negative_cases, variant_matrix};
    use crate::privilege::require_tool;

    #[test]
    fn parses_a_gre_line_with_outer_v6_and_inner_v4() {
        let line = "17\teth:ethertype:ipv6:gre:ip:udp:data\t203.0.113.26\t203.0.113.202\t\
                    2001:db8:2::a:1\t2001:db8:2:ff::2\t0x0000002a\t40016\t5000\t72\t1\t1\t1\t\t\t";
        let packet = parse_line(line).expect("parse");
        assert_eq!(packet.frame_number, 17);
        assert_eq!(
            packet.tunnel_src,
            Some("2001:db8:2::a:1".parse().expect("ip"))
        );
        assert_eq!(
            packet.tunnel_dst,
            Some("2001:db8:2:ff::2".parse().expect("ip"))
        );
        assert_eq!(packet.gre_key, Some(42));
        assert_eq!(packet.src_ip, Some("203.0.113.26".parse().expect("ip")));
        assert_eq!(packet.dst_ip, Some("203.0.113.202".parse().expect("ip")));
        assert_eq!(
            (packet.src_port, packet.dst_port),
            (Some(40016), Some(5000))
        );
        assert_eq!(packet.payload_len, Some(64));
        assert!(packet.bad_checksums.is_empty());
    }

    #[test]
    fn plain_udp_line_has_no_tunnel_and_bad_checksums_are_reported() {
        let line = "3\teth:ethertype:ip:udp\t203.0.113.1\t203.0.113.2\t\t\t\t1\t2\t8\t0\t2\t\t\t\t";
        let packet = parse_line(line).expect("parse");
        assert_eq!(packet.tunnel_src, None);
        assert_eq!(packet.gre_key, None);
        assert_eq!(packet.payload_len, Some(0));
        assert_eq!(packet.bad_checksums, vec!["ip=0", "udp=2"]);
        assert!(parse_line("1\teth").is_err());
    }

    #[test]
    fn tshark_decodes_the_variant_matrix_exactly_as_specified() {
        let name = "tshark::tshark_decodes_the_variant_matrix_exactly_as_specified";
        if !require_tool(name, "tshark") {
            return;
        }
        let params = MatrixParams::default();
        let matrix = variant_matrix(&params);
        let negatives = negative_cases(&params);
        let frames: Vec<Vec<u8>> = matrix
            .iter()
            .map(|(_, spec)| spec.build())
            .chain(negatives.iter().map(|case| case.frame.clone()))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("matrix.pcap");
        crate::pcap::write_pcap(&path, frames.iter().map(Vec::as_slice)).expect("write pcap");

        let packets = decode(&path, &params.dst_ports).expect("tshark");
        assert_eq!(packets.len(), matrix.len() + negatives.len());
        for (i, ((label, spec), packet)) in matrix.iter().zip(&packets).enumerate() {
            assert_eq!(packet.frame_number, i as u64 + 1, "{label}");
            assert_eq!(packet.summary(), Some(PacketSummary::from(spec)), "{label}");
            assert_eq!(packet.bad_checksums, Vec::<String>::new(), "{label}");
            let gre = spec.tunnel.as_ref();
            let gre_layers = packet.protocols.iter().filter(|p| *p == "gre").count();
            assert_eq!(gre_layers, usize::from(gre.is_some()), "{label}");
        }
        for (case, packet) in negatives.iter().zip(&packets[matrix.len()..]) {
            let label = &case.label;
            let has = |p: &str| packet.protocols.iter().any(|x| x == p);
            match case.kind {
                NegativeKind::InnerTcp | NegativeKind::PlainTcp { .. } => {
                    assert!(has("tcp") && !has("udp"), "{label}: {:?}", packet.protocols);
                    assert!(packet.bad_checksums.is_empty(), "{label}");
                }
                NegativeKind::IcmpEcho { .. } => {
                    assert!(has("icmp") || has("icmpv6"), "{label}");
                    assert!(packet.bad_checksums.is_empty(), "{label}");
                }
                NegativeKind::Arp => assert!(has("arp"), "{label}"),
                NegativeKind::GreProtocol(0x88be) => assert!(has("erspan"), "{label}"),
                NegativeKind::GreProtocol(_) => {
                    assert_eq!(packet.dst_port, Some(params.dst_ports[1]), "{label}");
                    assert!(packet.bad_checksums.is_empty(), "{label}");
                }
                NegativeKind::UnsteeredPort { .. } => {
                    assert_eq!(packet.dst_port, Some(params.unsteered_port), "{label}");
                }
                NegativeKind::ThreeVlans => {
                    let vlans = packet
                        .protocols
                        .iter()
                        .filter(|p| *p == "vlan" || *p == "ieee8021ad")
                        .count();
                    assert_eq!(vlans, 3, "{label}");
                }
                NegativeKind::Fragment { ipv6: true, .. } => {
                    assert!(has("ipv6.fraghdr"), "{label}");
                }
                _ => {}
            }
        }
    }
}
