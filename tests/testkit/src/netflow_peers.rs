//! Real NetFlow peers for the `netflow` decoder: softflowd turns a pcap of known traffic
//! into NetFlow v5, v9 or IPFIX export packets, nfcapd stores what it receives, nfdump
//! reads it back, and tcpdump captures the export packets on the wire — so the decoder can
//! be checked against an independent implementation, flow by flow.
//!
//! Everything runs in a [`NetnsPair`]: softflowd in `a` exports to nfcapd on
//! `198.51.100.2:<port>` in `b`, where tcpdump also captures `udp port <port>`. Each run is
//! bounded: softflowd reads a finite file (`-r`, which exports every flow at end of file)
//! and is killed after [`SOFTFLOWD_TIMEOUT`]; the capture is waited for until it holds the
//! number of packets softflowd says it sent; nfcapd and tcpdump are stopped by PID
//! (SIGTERM, then SIGKILL). The namespaces are deleted when the [`PeerLab`] drops.
//!
//! - [`sample_traffic`] is the deterministic traffic (TCP and UDP, both directions,
//!   IPv4 and IPv6, documentation addresses only), [`expected_flows`] what a flow meter
//!   must make of it, [`write_traffic_pcap`] the file softflowd reads.
//! - [`PeerLab::run`] returns the captured export ([`ExportDatagram`]: whole Ethernet frame,
//!   addresses, ports, UDP payload) and nfdump's flows ([`NfdumpFlow`]).
//! - [`capture_sample_export`] does all of it for the sample traffic and returns just the
//!   export packets: wrap them in GRE ([`ExportDatagram::udp`] gives the
//!   [`UdpDatagram`] of a [`crate::frames::FrameSpec`]) to send real exports through the
//!   daemon.
//!
//! softflowd 1.1.0 with `-r` and a control socket blocks in `accept()` before reading the
//! file (an uninitialised `pollfd`), hence `-c none`; `-a` takes times from the pcap rather
//! than the clock, so runs are reproducible.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use crate::cleanup::{CleanupError, ProcessGuard};
use crate::frames::layers::{
    self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Fragment, IPPROTO_TCP, IPPROTO_UDP,
};
use crate::frames::{FrameSpec, GreTunnel, UdpDatagram};
use crate::netns::{ADDR_V4_B, MAC_A, MAC_B, NetnsError, NetnsPair};
use crate::pcap::{FIRST_TIMESTAMP, PcapError, read_pcap};

/// The tools a run needs, for `privilege::require_tool`.
pub const TOOLS: [&str; 4] = ["softflowd", "nfcapd", "nfdump", "tcpdump"];
/// softflowd is killed if it has not exported the whole file by then.
pub const SOFTFLOWD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long tcpdump and nfcapd get to start, and the capture to complete.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// First UDP port the exports are sent to (one port per run of a lab).
pub const FIRST_EXPORT_PORT: u16 = 9995;

/// Why a peer run failed.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    /// The namespaces could not be made.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A pcap could not be written or read.
    #[error(transparent)]
    Pcap(#[from] PcapError),
    /// A child process could not be stopped.
    #[error(transparent)]
    Cleanup(#[from] CleanupError),
    /// A file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tool exited with an error.
    #[error("{tool} failed ({status}): {output}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// Its exit status.
        status: String,
        /// Its output.
        output: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// A tool's output could not be understood.
    #[error("cannot parse {what}: {text}")]
    Parse {
        /// Which output.
        what: &'static str,
        /// The offending text.
        text: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PeersError {
    let what = what.into();
    move |source| PeersError::Io { what, source }
}

/// The 5-tuple of one direction of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol (6 or 17).
    pub protocol: u8,
}

/// One packet of the sample traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficPacket {
    /// Capture time since the Unix epoch.
    pub timestamp: Duration,
    /// Its direction of flow.
    pub key: FlowKey,
    /// IP total length (IPv4) or header + payload length (IPv6): what flow meters count.
    pub ip_len: u64,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// What a flow meter must report for one direction of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedFlow {
    /// The direction.
    pub key: FlowKey,
    /// Packets.
    pub packets: u64,
    /// Bytes (layer 3).
    pub bytes: u64,
    /// Time of the first packet.
    pub first: Duration,
    /// Time of the last packet.
    pub last: Duration,
    /// OR of the TCP flags.
    pub tcp_flags: u8,
}

/// A deterministic pseudo-random sequence (64-bit LCG), so the traffic is the same on
/// every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

const MAC_CLIENT: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0c, 0x01];
const MAC_SERVER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0c, 0x02];
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH_ACK: u8 = 0x18;
const TCP_ACK: u8 = 0x10;

fn packet(timestamp: Duration, key: FlowKey, tcp_flags: u8, payload_len: usize) -> TrafficPacket {
    let payload = vec![0x5a; payload_len];
    let segment = if key.protocol == IPPROTO_TCP {
        layers::tcp(
            key.src,
            key.dst,
            key.src_port,
            key.dst_port,
            1,
            tcp_flags,
            &payload,
        )
    } else {
        layers::udp(key.src, key.dst, key.src_port, key.dst_port, &payload)
    };
    let ip = layers::ip(key.src, key.dst, key.protocol, Fragment::NONE, &segment);
    let (ethertype, src_mac, dst_mac) = match key.src {
        IpAddr::V4(_) => (ETHERTYPE_IPV4, MAC_CLIENT, MAC_SERVER),
        IpAddr::V6(_) => (ETHERTYPE_IPV6, MAC_CLIENT, MAC_SERVER),
    };
    TrafficPacket {
        timestamp,
        key,
        ip_len: ip.len() as u64,
        tcp_flags,
        frame: layers::ethernet(src_mac, dst_mac, &[], ethertype, &ip),
    }
}

fn reverse(key: FlowKey) -> FlowKey {
    FlowKey {
        src: key.dst,
        dst: key.src,
        src_port: key.dst_port,
        dst_port: key.src_port,
        protocol: key.protocol,
    }
}

/// A TCP connection: handshake, `exchanges` request/response rounds, both FINs.
fn tcp_connection(
    rng: &mut Lcg,
    out: &mut Vec<TrafficPacket>,
    start: Duration,
    key: FlowKey,
    exchanges: u64,
) {
    let mut t = start;
    let mut step = |rng: &mut Lcg| {
        t += Duration::from_micros(500 + rng.below(150_000));
        t
    };
    let back = reverse(key);
    out.push(packet(step(rng), key, TCP_SYN, 0));
    out.push(packet(step(rng), back, TCP_SYN | TCP_ACK, 0));
    for _ in 0..exchanges {
        let request = rng.below(600) as usize;
        out.push(packet(step(rng), key, TCP_PSH_ACK, request));
        for _ in 0..=rng.below(3) {
            let response = 1 + rng.below(1400) as usize;
            out.push(packet(step(rng), back, TCP_PSH_ACK, response));
        }
        out.push(packet(step(rng), key, TCP_ACK, 0));
    }
    out.push(packet(step(rng), key, TCP_FIN | TCP_ACK, 0));
    out.push(packet(step(rng), back, TCP_FIN | TCP_ACK, 0));
}

/// `queries` UDP datagrams from `key`, each answered unless `one_way`.
fn udp_exchange(
    rng: &mut Lcg,
    out: &mut Vec<TrafficPacket>,
    start: Duration,
    key: FlowKey,
    queries: u64,
    one_way: bool,
) {
    let mut t = start;
    for _ in 0..queries {
        t += Duration::from_micros(1_000 + rng.below(300_000));
        out.push(packet(t, key, 0, 20 + rng.below(200) as usize));
        if !one_way {
            t += Duration::from_micros(200 + rng.below(20_000));
            out.push(packet(t, reverse(key), 0, 40 + rng.below(1200) as usize));
        }
    }
}

/// The sample traffic, sorted by time: 16 IPv4 TCP connections (ports 80, 443, 8080, 22),
/// 10 IPv4 UDP exchanges (DNS, and one-way syslog), 4 IPv6 TCP connections and 3 IPv6 DNS
/// exchanges, with varied packet counts and sizes, starting over 3 s from
/// [`FIRST_TIMESTAMP`]. Clients are in 192.0.2.0/24 and 2001:db8:1::/64, servers in
/// 203.0.113.0/24 and 2001:db8:113::/64.
pub fn sample_traffic() -> Vec<TrafficPacket> {
    let mut rng = Lcg(0x51ce_f10e);
    let mut out = Vec::new();
    let start = |rng: &mut Lcg| FIRST_TIMESTAMP + Duration::from_micros(rng.below(3_000_000));
    for i in 0..16u8 {
        let key = FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i)),
            dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + i % 4)),
            src_port: 40_000 + 7 * u16::from(i),
            dst_port: [80, 443, 8080, 22][usize::from(i % 4)],
            protocol: IPPROTO_TCP,
        };
        let t = start(&mut rng);
        let exchanges = 1 + rng.below(12);
        tcp_connection(&mut rng, &mut out, t, key, exchanges);
    }
    for i in 0..10u8 {
        let one_way = i >= 7;
        let key = FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 50 + i)),
            dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + i % 3)),
            src_port: 50_000 + u16::from(i),
            dst_port: if one_way { 514 } else { 53 },
            protocol: IPPROTO_UDP,
        };
        let t = start(&mut rng);
        let queries = 1 + rng.below(6);
        udp_exchange(&mut rng, &mut out, t, key, queries, one_way);
    }
    for i in 0..4u16 {
        let key = FlowKey {
            src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10 + i)),
            dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1 + i % 2)),
            src_port: 41_000 + i,
            dst_port: 443,
            protocol: IPPROTO_TCP,
        };
        let t = start(&mut rng);
        let exchanges = 1 + rng.below(8);
        tcp_connection(&mut rng, &mut out, t, key, exchanges);
    }
    for i in 0..3u16 {
        let key = FlowKey {
            src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x30 + i)),
            dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x53)),
            src_port: 51_000 + i,
            dst_port: 53,
            protocol: IPPROTO_UDP,
        };
        let t = start(&mut rng);
        let queries = 1 + rng.below(4);
        udp_exchange(&mut rng, &mut out, t, key, queries, false);
    }
    out.sort_by_key(|p| p.timestamp);
    out
}

/// The flows of `traffic`, one per direction, sorted by key.
pub fn expected_flows(traffic: &[TrafficPacket]) -> Vec<ExpectedFlow> {
    let mut flows: BTreeMap<FlowKey, ExpectedFlow> = BTreeMap::new();
    for p in traffic {
        let flow = flows.entry(p.key).or_insert(ExpectedFlow {
            key: p.key,
            packets: 0,
            bytes: 0,
            first: p.timestamp,
            last: p.timestamp,
            tcp_flags: 0,
        });
        flow.packets += 1;
        flow.bytes += p.ip_len;
        flow.first = flow.first.min(p.timestamp);
        flow.last = flow.last.max(p.timestamp);
        flow.tcp_flags |= p.tcp_flags;
    }
    flows.into_values().collect()
}

/// Writes the traffic as a microsecond Ethernet pcap with its own timestamps (unlike
/// [`crate::pcap::write_pcap`], which numbers frames 1 µs apart).
///
/// # Errors
/// [`PeersError::Io`] when the file cannot be written.
pub fn write_traffic_pcap(path: &Path, traffic: &[TrafficPacket]) -> Result<usize, PeersError> {
    let file = File::create(path).map_err(io(format!("create {}", path.display())))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::MicroSecond,
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    let format = |e: pcap_file::PcapError| PeersError::Io {
        what: format!("write {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header).map_err(format)?;
    for p in traffic {
        let len = p.frame.len() as u32;
        writer
            .write_packet(&PcapPacket::new(p.timestamp, len, &p.frame))
            .map_err(format)?;
    }
    writer
        .into_writer()
        .flush()
        .map_err(io(format!("flush {}", path.display())))?;
    Ok(traffic.len())
}

/// The export version (and time encoding) softflowd is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export {
    /// NetFlow v5 (IPv4 flows only; IPv6 is ignored).
    V5,
    /// NetFlow v9, sysUptime-relative times.
    V9,
    /// IPFIX with flowStart/EndSysUpTime and systemInitTimeMilliseconds in options data.
    Ipfix,
    /// IPFIX with flowStart/EndMilliseconds (`-A milli`).
    IpfixMillis,
}

impl Export {
    fn args(self) -> &'static [&'static str] {
        match self {
            Export::V5 => &["-v", "5"],
            Export::V9 => &["-v", "9"],
            Export::Ipfix => &["-v", "10"],
            Export::IpfixMillis => &["-v", "10", "-A", "milli"],
        }
    }
}

/// One captured export packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportDatagram {
    /// Capture time.
    pub timestamp: Duration,
    /// The whole Ethernet frame as captured on b's veth.
    pub frame: Vec<u8>,
    /// The exporter's address (198.51.100.1).
    pub src: IpAddr,
    /// The exporter's UDP port.
    pub src_port: u16,
    /// The collector's address (198.51.100.2).
    pub dst: IpAddr,
    /// The collector's port.
    pub dst_port: u16,
    /// The NetFlow/IPFIX packet.
    pub payload: Vec<u8>,
}

impl ExportDatagram {
    /// The datagram as the inner packet of a [`crate::frames::FrameSpec`] (e.g. to send it
    /// through a GRE tunnel).
    pub fn udp(&self) -> UdpDatagram {
        UdpDatagram {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            payload: self.payload.clone(),
        }
    }
}

/// One flow as nfdump reports it (`-o raw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NfdumpFlow {
    /// The direction.
    pub key: FlowKey,
    /// `in packets`.
    pub packets: u64,
    /// `in bytes`.
    pub bytes: u64,
    /// `first`, milliseconds since the Unix epoch.
    pub first_ms: i64,
    /// `last`, milliseconds since the Unix epoch.
    pub last_ms: i64,
    /// `tcp flags`.
    pub tcp_flags: u8,
}

/// What one run produced.
#[derive(Clone, Debug)]
pub struct PeerRun {
    /// The export asked for.
    pub export: Export,
    /// The export packets, in capture order.
    pub datagrams: Vec<ExportDatagram>,
    /// What nfcapd stored, as nfdump reads it.
    pub nfdump: Vec<NfdumpFlow>,
    /// softflowd's output (its statistics).
    pub softflowd_log: String,
}

impl PeerRun {
    /// Each export packet, in capture order, wrapped in `tunnel` and addressed from the
    /// sending to the receiving end of a [`NetnsPair`]: the frames that carry this export
    /// to the appliance.
    pub fn frames_in(&self, tunnel: &GreTunnel) -> Vec<FrameSpec> {
        self.datagrams
            .iter()
            .map(|dg| FrameSpec {
                src_mac: MAC_A,
                dst_mac: MAC_B,
                vlans: Vec::new(),
                tunnel: Some(tunnel.clone()),
                inner: dg.udp(),
            })
            .collect()
    }
}

/// A namespace pair and a work directory for softflowd → nfcapd runs.
#[derive(Debug)]
pub struct PeerLab {
    pair: NetnsPair,
    dir: crate::scratch::TempDir,
    next_port: u16,
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, PeersError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(PeersError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_files(dir: &Path, name: &str) -> Result<(File, File, PathBuf), PeersError> {
    let path = dir.join(format!("{name}.log"));
    let out = File::create(&path).map_err(io(format!("create {}", path.display())))?;
    let err = out.try_clone().map_err(io("clone log handle"))?;
    Ok((out, err, path))
}

impl PeerLab {
    /// Creates the namespaces and the work directory.
    ///
    /// # Errors
    /// [`PeersError::Netns`] or [`PeersError::Io`].
    pub fn create() -> Result<Self, PeersError> {
        Ok(Self {
            pair: NetnsPair::create()?,
            dir: crate::scratch::tempdir("netflow-peers").map_err(io("create work dir"))?,
            next_port: FIRST_EXPORT_PORT,
        })
    }

    /// Whether UDP port `port` is bound in namespace b (read from b's /proc/net/udp).
    fn bound_in_b(&self, port: u16) -> bool {
        // Lines are `sl local_address rem_address ...`, the local address `HEXIP:HEXPORT`.
        let suffix = format!(":{port:04X}");
        self.pair
            .b
            .run_in(|| std::fs::read_to_string("/proc/thread-self/net/udp"))
            .ok()
            .and_then(Result::ok)
            .is_some_and(|table| {
                table.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|local| local.ends_with(&suffix))
                })
            })
    }

    /// Exports `pcap` with softflowd as `export` to nfcapd, capturing the export packets.
    ///
    /// # Errors
    /// [`PeersError`] when a tool fails or something does not happen in time.
    pub fn run(&mut self, pcap: &Path, export: Export) -> Result<PeerRun, PeersError> {
        let port = self.next_port;
        self.next_port += 1;
        let work = self.dir.path().join(format!("{export:?}-{port}"));
        let flows_dir = work.join("nfcapd");
        std::fs::create_dir_all(&flows_dir)
            .map_err(io(format!("create {}", flows_dir.display())))?;
        let capture = work.join("export.pcap");

        // tcpdump first, so it sees every export packet; -Z root keeps it able to write
        // into our directory.
        let (out, err, tcpdump_log) = log_files(&work, "tcpdump")?;
        let child = self
            .pair
            .b
            .command("tcpdump")
            .args(["-i", &self.pair.if_b, "-U", "-n", "-Z", "root", "-w"])
            .arg(&capture)
            .args(["udp", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("spawn tcpdump"))?;
        let mut tcpdump = ProcessGuard::new("tcpdump", child);
        wait_for("tcpdump to listen", PEER_TIMEOUT, || {
            std::fs::read_to_string(&tcpdump_log)
                .ok()
                .filter(|log| log.contains("listening on"))
        })?;

        let (out, err, nfcapd_log) = log_files(&work, "nfcapd")?;
        let child = self
            .pair
            .b
            .command("nfcapd")
            .args([
                "-b",
                &ADDR_V4_B.to_string(),
                "-p",
                &port.to_string(),
                "-t",
                "3600",
                "-w",
            ])
            .arg(&flows_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("spawn nfcapd"))?;
        let mut nfcapd = ProcessGuard::new("nfcapd", child);
        wait_for("nfcapd to bind", PEER_TIMEOUT, || {
            self.bound_in_b(port).then_some(())
        })?;

        let (out, err, softflowd_log_path) = log_files(&work, "softflowd")?;
        let child = self
            .pair
            .a
            .command("softflowd")
            .arg("-r")
            .arg(pcap)
            .args([
                "-n",
                &format!("{ADDR_V4_B}:{port}"),
                "-d",
                "-a",
                "-c",
                "none",
                "-p",
            ])
            .arg(work.join("softflowd.pid"))
            .args(export.args())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("spawn softflowd"))?;
        let mut softflowd = ProcessGuard::new("softflowd", child);
        let (status, in_time) = softflowd.wait_timeout(SOFTFLOWD_TIMEOUT)?;
        let softflowd_log = std::fs::read_to_string(&softflowd_log_path).unwrap_or_default();
        if !in_time || !status.success() {
            return Err(PeersError::Tool {
                tool: "softflowd",
                status: if in_time {
                    status.to_string()
                } else {
                    "timed out".into()
                },
                output: softflowd_log,
            });
        }
        let sent = exported_packets(&softflowd_log)?;

        // Every export packet captured, then the collector and the capture stopped.
        let datagrams = wait_for("the export capture", PEER_TIMEOUT, || {
            read_export(&capture, port).ok().filter(|d| d.len() >= sent)
        })?;
        nfcapd.terminate(Duration::from_secs(5))?;
        tcpdump.terminate(Duration::from_secs(5))?;
        let nfdump = read_nfdump(&flows_dir).map_err(|e| match e {
            PeersError::Tool {
                tool,
                status,
                output,
            } => PeersError::Tool {
                tool,
                status,
                output: format!(
                    "{output}\nnfcapd: {}",
                    std::fs::read_to_string(&nfcapd_log).unwrap_or_default()
                ),
            },
            other => other,
        })?;
        Ok(PeerRun {
            export,
            datagrams,
            nfdump,
            softflowd_log,
        })
    }
}

/// `Flows exported: F (R records) in N packets` from softflowd's statistics.
fn exported_packets(log: &str) -> Result<usize, PeersError> {
    log.lines()
        .find(|l| l.starts_with("Flows exported:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "packets")?;
            words.get(i.checked_sub(1)?)?.parse().ok()
        })
        .ok_or_else(|| PeersError::Parse {
            what: "softflowd statistics",
            text: log.to_owned(),
        })
}

/// The UDP datagrams to `port` in a tcpdump capture.
fn read_export(capture: &Path, port: u16) -> Result<Vec<ExportDatagram>, PeersError> {
    let mut out = Vec::new();
    for frame in read_pcap(capture)? {
        let Ok(sliced) = etherparse::SlicedPacket::from_ethernet(&frame.data) else {
            continue;
        };
        let (Some(net), Some(etherparse::TransportSlice::Udp(udp))) =
            (&sliced.net, &sliced.transport)
        else {
            continue;
        };
        let (src, dst) = match net {
            etherparse::NetSlice::Ipv4(ip) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
            ),
            etherparse::NetSlice::Ipv6(ip) => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
            ),
            etherparse::NetSlice::Arp(_) => continue,
        };
        if udp.destination_port() != port {
            continue;
        }
        let (src_port, dst_port, payload) = (
            udp.source_port(),
            udp.destination_port(),
            udp.payload().to_vec(),
        );
        out.push(ExportDatagram {
            timestamp: frame.timestamp,
            src,
            src_port,
            dst,
            dst_port,
            payload,
            frame: frame.data.clone(),
        });
    }
    Ok(out)
}

/// Every flow of the nfcapd files in `dir` (`nfdump -r FILE -o raw`).
fn read_nfdump(dir: &Path) -> Result<Vec<NfdumpFlow>, PeersError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("read {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nfcapd.") && !n.contains("current"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PeersError::Tool {
            tool: "nfcapd",
            status: "no file".into(),
            output: format!("nothing in {}", dir.display()),
        });
    }
    let mut flows = Vec::new();
    for file in files {
        let output = Command::new("nfdump")
            .arg("-r")
            .arg(&file)
            .args(["-o", "raw"])
            .stdin(Stdio::null())
            .output()
            .map_err(io("run nfdump"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(PeersError::Tool {
                tool: "nfdump",
                status: output.status.to_string(),
                output: format!("{text}{}", String::from_utf8_lossy(&output.stderr)),
            });
        }
        flows.extend(parse_nfdump_raw(&text)?);
    }
    Ok(flows)
}

/// Parses `nfdump -o raw`: blocks starting `Flow Record:` of `key = value` lines.
///
/// # Errors
/// [`PeersError::Parse`] for a record missing a field or with a value that is not one.
pub fn parse_nfdump_raw(text: &str) -> Result<Vec<NfdumpFlow>, PeersError> {
    let mut flows = Vec::new();
    for block in text.split("Flow Record:").skip(1) {
        let fields: BTreeMap<&str, &str> = block
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim(), v.split_whitespace().next()?))
            })
            .collect();
        let bad = || PeersError::Parse {
            what: "nfdump raw record",
            text: block.to_owned(),
        };
        let get = |k: &str| fields.get(k).copied().ok_or_else(bad);
        let num = |k: &str| get(k)?.parse::<i64>().map_err(|_| bad());
        let flags = get("tcp flags")?;
        flows.push(NfdumpFlow {
            key: FlowKey {
                src: get("src addr")?.parse().map_err(|_| bad())?,
                dst: get("dst addr")?.parse().map_err(|_| bad())?,
                src_port: u16::try_from(num("src port")?).map_err(|_| bad())?,
                dst_port: u16::try_from(num("dst port")?).map_err(|_| bad())?,
                protocol: u8::try_from(num("proto")?).map_err(|_| bad())?,
            },
            packets: u64::try_from(num("in packets")?).map_err(|_| bad())?,
            bytes: u64::try_from(num("in bytes")?).map_err(|_| bad())?,
            first_ms: num("first")?,
            last_ms: num("last")?,
            tcp_flags: u8::from_str_radix(flags.trim_start_matches("0x"), 16).map_err(|_| bad())?,
        });
    }
    Ok(flows)
}

/// Whether this nfdump reports IPFIX flowStartSysUpTime/flowEndSysUpTime swapped
/// (nfdump 1.7.1 maps element 21 to `first` and 22 to `last`; fixed in 1.7.2).
///
/// # Errors
/// [`PeersError`] when `nfdump -V` cannot be run or read.
pub fn nfdump_swaps_ipfix_sysuptime() -> Result<bool, PeersError> {
    let output = Command::new("nfdump")
        .arg("-V")
        .output()
        .map_err(io("run nfdump -V"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version: Vec<u32> = text
        .rsplit(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| w.contains('.'))
        .map(|w| w.split('.').filter_map(|n| n.parse().ok()).collect())
        .ok_or_else(|| PeersError::Parse {
            what: "nfdump -V",
            text: text.clone(),
        })?;
    Ok(version < vec![1, 7, 2])
}

/// The export packets softflowd sends for [`sample_traffic`] as `export`, captured in a
/// fresh namespace pair (needs root and [`TOOLS`]). For the daemon tests: wrap each
/// datagram ([`ExportDatagram::udp`]) in a GRE [`crate::frames::FrameSpec`] and send it.
///
/// # Errors
/// [`PeersError`] as [`PeerLab::run`].
pub fn capture_sample_export(export: Export) -> Result<Vec<ExportDatagram>, PeersError> {
    let mut lab = PeerLab::create()?;
    let pcap = lab.dir.path().join("traffic.pcap");
    write_traffic_pcap(&pcap, &sample_traffic())?;
    Ok(lab.run(&pcap, export)?.datagrams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_traffic_is_deterministic_and_documented() {
        let traffic = sample_traffic();
        assert_eq!(traffic, sample_traffic());
        assert!(traffic.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        let flows = expected_flows(&traffic);
        // 16 + 4 TCP connections and 7 + 3 answered UDP exchanges have two directions,
        // the 3 one-way syslog flows one.
        assert_eq!(flows.len(), 2 * (16 + 4 + 7 + 3) + 3);
        assert_eq!(
            flows.iter().filter(|f| f.key.src.is_ipv6()).count(),
            2 * (4 + 3)
        );
        assert_eq!(
            flows.iter().map(|f| f.packets).sum::<u64>(),
            traffic.len() as u64
        );
        let span = traffic[traffic.len() - 1].timestamp - traffic[0].timestamp;
        assert!(
            span > Duration::from_secs(2) && span < Duration::from_secs(10),
            "{span:?}"
        );
        for f in &flows {
            let doc = |a: IpAddr| match a {
                IpAddr::V4(v4) => matches!(v4.octets(), [192, 0, 2, _] | [203, 0, 113, _]),
                IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0xdb8],
            };
            assert!(doc(f.key.src) && doc(f.key.dst), "{f:?}");
        }
    }

    #[test]
    fn nfdump_raw_records_are_parsed() {
        let text = "\nFlow Record: \n  RecordCount  =                 1\n  first        =     1767225601450 [2026-01-01 00:00:01.450]\n  last         =     1767225600050 [2026-01-01 00:00:00.050]\n  proto        =                17 UDP\n  tcp flags    =              0x1b ...AP.SF\n  src port     =              5000\n  dst port     =              5353\n  in packets   =                 3\n  in bytes     =               207\n  src addr     =     2001:db8:1::1\n  dst addr     =   2001:db8:113::2\n  ip exporter  =      198.51.100.1\nSummary: total flows: 1\n";
        let flows = parse_nfdump_raw(text).expect("parses");
        assert_eq!(
            flows,
            [NfdumpFlow {
                key: FlowKey {
                    src: "2001:db8:1::1".parse().expect("addr"),
                    dst: "2001:db8:113::2".parse().expect("addr"),
                    src_port: 5000,
                    dst_port: 5353,
                    protocol: 17,
                },
                packets: 3,
                bytes: 207,
                first_ms: 1_767_225_601_450,
                last_ms: 1_767_225_600_050,
                tcp_flags: 0x1b,
            }]
        );
        assert!(parse_nfdump_raw("Flow Record:\n  proto = 6\n").is_err());
    }

    #[test]
    fn softflowd_statistics_give_the_packet_count() {
        let log =
            "Packets processed: 10\nFlows exported: 2 (2 records) in 1 packets (0 failures)\n";
        assert_eq!(exported_packets(log).ok(), Some(1));
        assert!(exported_packets("nothing").is_err());
    }
}
