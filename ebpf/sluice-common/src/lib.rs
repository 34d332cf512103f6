//! Types shared by the Sluice XDP program and the userspace daemon.
//!
//! Everything here crosses the kernel/userspace boundary through BPF maps, so every type is
//! `#[repr(C)]`, built of fixed-width fields with no implicit padding, and its size is
//! asserted at compile time. Frames themselves cross unchanged: the XDP program redirects
//! each steered frame exactly as it arrived, and userspace reads the tunnel from its
//! outer headers (no XDP metadata area, whose size limit differs between kernels).
//! The `user` feature implements `aya::Pod` so userspace can read and write the maps.
#![no_std]

/// Names of the maps and the program inside the eBPF object, used by the loader.
pub mod names {
    /// The XDP entry point.
    pub const PROGRAM: &str = "sluice";
    /// `XSKMAP` keyed by `rx_queue_index`: the AF_XDP socket of each queue.
    pub const XSK_MAP: &str = "SLUICE_XSKS";
    /// Per-CPU array of [`crate::Verdict`] counters.
    pub const VERDICT_COUNTERS: &str = "SLUICE_VERDICTS";
    /// Array of [`crate::PORT_BITMAP_WORDS`] `u64` words: bit `p` set means destination port `p` is steered.
    pub const PORT_BITMAP: &str = "SLUICE_PORTS";
    /// Array with one [`crate::Settings`] entry.
    pub const SETTINGS: &str = "SLUICE_SETTINGS";
}

/// Wire constants both classifiers use (the XDP program and its userspace twin).
pub mod proto {
    /// Ethernet header length.
    pub const ETH_HLEN: usize = 14;
    /// EtherType IPv4.
    pub const ETH_P_IP: u16 = 0x0800;
    /// EtherType IPv6.
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// EtherType of an 802.1Q tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// EtherType of an 802.1ad (QinQ service) tag.
    pub const ETH_P_8021AD: u16 = 0x88a8;
    /// IP protocol GRE.
    pub const IPPROTO_GRE: u8 = 47;
    /// IP protocol UDP.
    pub const IPPROTO_UDP: u8 = 17;
    /// IPv6 Fragment extension header.
    pub const IPV6_NEXTHDR_FRAGMENT: u8 = 44;
    /// GRE flag: checksum (and reserved1) present.
    pub const GRE_CHECKSUM: u16 = 0x8000;
    /// GRE flag: routing present (RFC 1701; not supported, as in the kernel).
    pub const GRE_ROUTING: u16 = 0x4000;
    /// GRE flag: key present.
    pub const GRE_KEY: u16 = 0x2000;
    /// GRE flag: sequence number present.
    pub const GRE_SEQUENCE: u16 = 0x1000;
    /// GRE version bits (must be 0).
    pub const GRE_VERSION: u16 = 0x0007;
}

/// Maximum number of receive queues the XSKMAP can address.
pub const MAX_QUEUES: u32 = 256;

/// Number of `u64` words in the destination-port bitmap (65536 ports / 64).
pub const PORT_BITMAP_WORDS: u32 = 1024;

/// Program-wide settings written by userspace before the program is attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bit set of `SETTINGS_*` flags.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Steer every UDP destination port (the configured port set is empty).
pub const SETTINGS_ALL_PORTS: u32 = 1 << 0;
/// Also steer plain (un-tunnelled) UDP, not only UDP carried in GRE.
pub const SETTINGS_STEER_PLAIN_UDP: u32 = 1 << 1;

const _: () = assert!(core::mem::size_of::<Settings>() == 8);

/// Every decision the XDP program takes, one per-CPU counter each.
///
/// `Redirect*` packets are handed to Sluice ("seen"); every `Pass*` packet goes on to the
/// kernel untouched. The discriminant is the index in the per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// GRE-encapsulated UDP stripped and redirected to the queue's AF_XDP socket.
    RedirectGre = 0,
    /// Plain UDP redirected to the queue's AF_XDP socket.
    RedirectPlain = 1,
    /// Not IPv4/IPv6 (ARP, LLDP, ...) or more than two VLAN tags.
    PassNotIp = 2,
    /// IP but neither GRE nor UDP (TCP, ICMP, ...), or plain UDP while plain steering is off.
    PassNotGreOrUdp = 3,
    /// GRE version other than 0, or routing present.
    PassGreUnsupported = 4,
    /// GRE carrying something other than IPv4/IPv6 (e.g. 0x6558, 0x88BE).
    PassGreProtocol = 5,
    /// An outer or inner IP fragment.
    PassFragment = 6,
    /// Inner packet is not UDP (or IPv6 with extension headers).
    PassInnerNotUdp = 7,
    /// UDP to a destination port outside the configured set.
    PassPortNotSteered = 8,
    /// Headers could not be fully parsed (truncated or malformed).
    PassMalformed = 9,
    /// Ours, but no AF_XDP socket is bound to the receiving queue: a queue missing from
    /// `source.queues`, or the instant before a socket is registered or after it left.
    /// The only pass that means "should have been recorded": alerted on.
    PassNoSocket = 10,
}

/// Number of [`Verdict`] counters.
pub const VERDICT_COUNT: u32 = 11;

impl Verdict {
    /// All verdicts, in index order.
    pub const ALL: [Verdict; VERDICT_COUNT as usize] = [
        Verdict::RedirectGre,
        Verdict::RedirectPlain,
        Verdict::PassNotIp,
        Verdict::PassNotGreOrUdp,
        Verdict::PassGreUnsupported,
        Verdict::PassGreProtocol,
        Verdict::PassFragment,
        Verdict::PassInnerNotUdp,
        Verdict::PassPortNotSteered,
        Verdict::PassMalformed,
        Verdict::PassNoSocket,
    ];

    /// Stable snake_case name, used in logs, reports and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::RedirectGre => "redirect_gre",
            Verdict::RedirectPlain => "redirect_plain",
            Verdict::PassNotIp => "pass_not_ip",
            Verdict::PassNotGreOrUdp => "pass_not_gre_or_udp",
            Verdict::PassGreUnsupported => "pass_gre_unsupported",
            Verdict::PassGreProtocol => "pass_gre_protocol",
            Verdict::PassFragment => "pass_fragment",
            Verdict::PassInnerNotUdp => "pass_inner_not_udp",
            Verdict::PassPortNotSteered => "pass_port_not_steered",
            Verdict::PassMalformed => "pass_malformed",
            Verdict::PassNoSocket => "pass_no_socket",
        }
    }

    /// True for a pass of a packet that was ours (see [`Verdict::PassNoSocket`]).
    pub const fn is_missed(self) -> bool {
        matches!(self, Verdict::PassNoSocket)
    }

    /// True for the verdicts that hand the packet to Sluice.
    pub const fn is_redirect(self) -> bool {
        matches!(self, Verdict::RedirectGre | Verdict::RedirectPlain)
    }
}

/// One CPU's verdict counters, as stored in the per-CPU array (one `u64` per entry).
pub type VerdictCount = u64;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, made of integers and byte arrays, with no padding
    // (sizes asserted above), so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Settings {}
}
