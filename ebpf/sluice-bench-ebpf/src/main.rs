//! eBPF programs used only by the benchmark (`sluice-bench`), never by the daemon.
//!
//! - `sluice_gen` is the packet generator: userspace runs it with `BPF_PROG_TEST_RUN` and
//!   `BPF_F_TEST_XDP_LIVE_FRAMES` (the xdp-trafficgen technique), and every run of it
//!   redirects the frame it was given out of the sender's veth. Optionally it rewrites one
//!   16-bit big-endian field per frame (e.g. the inner UDP source port) from a per-CPU
//!   counter, fixing the UDP checksum incrementally, so flows differ frame by frame, and
//!   for a payload series writes the frame's own ACME readings event. It first restores
//!   the frame's headers from `GEN_HEADER`: pages are recycled without being
//!   re-initialised, and receivers rewrite headers in place.
//! - `sluice_count_drop` counts frames and bytes per CPU and drops them: the "ceiling A"
//!   of the benchmark (the most the receiving core can do with a frame).
//! - `sluice_pass` passes everything: it gives a veth NAPI, which live frames need to be
//!   received at all, without changing the kernel path under test.
//! - `sluice_tc_decap` (tc ingress, direct action) strips the outer IPv4/IPv6 + GRE
//!   headers and hands the inner packet to the kernel stack: this kernel has no GRE device,
//!   and the kernel-path baseline needs one stack pass over the inner UDP.
//!
//! Configuration is a plain `u32` array (`GEN_CONFIG`, indexes `CFG_*`) so userspace needs
//! no shared type crate.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6, TC_ACT_OK,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action,
    },
    helpers::bpf_redirect,
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};

/// `GEN_CONFIG[CFG_IFINDEX]`: the interface the generator redirects to.
const CFG_IFINDEX: u32 = 0;
/// `GEN_CONFIG[CFG_VARY_OFFSET]`: offset of the 16-bit field to vary; 0 = vary nothing.
const CFG_VARY_OFFSET: u32 = 1;
/// `GEN_CONFIG[CFG_CSUM_OFFSET]`: offset of the UDP checksum covering that field; 0 = none.
const CFG_CSUM_OFFSET: u32 = 2;
/// `GEN_CONFIG[CFG_VARY_BASE]`: first value of the varied field.
const CFG_VARY_BASE: u32 = 3;
/// `GEN_CONFIG[CFG_VARY_RANGE]`: how many consecutive values the field takes (≥ 1).
const CFG_VARY_RANGE: u32 = 4;
/// `GEN_CONFIG[CFG_RESTORE_WORDS]`: 8-byte words of `GEN_HEADER` copied over the frame's
/// start before anything else (≤ `HEADER_WORDS`).
const CFG_RESTORE_WORDS: u32 = 5;
/// `GEN_CONFIG[CFG_SERIES_OFFSET]`: for a payload series, the offset of the inner UDP
/// checksum, which the ACME readings event (the UDP payload) follows; 0 = no series.
const CFG_SERIES_OFFSET: u32 = 6;
/// `GEN_CONFIG[CFG_SERIES_FIRST + i]`: the first event's field `i` of [`SERIES_FIELDS`]
/// (sequence number, time, value 0, value 1), as the frame was built with it.
const CFG_SERIES_FIRST: u32 = 7;
const CFG_LEN: u32 = 11;
/// Offsets in the event of the fields a series varies (big-endian 32-bit each).
const SERIES_FIELDS: [usize; 4] = [8, 12, 22, 30];
/// Bytes of the event through its last varied field.
const SERIES_END: usize = 34;

/// Size of `GEN_HEADER` in 8-byte words (256 bytes).
const HEADER_WORDS: usize = 32;

/// Varied fields must lie in the first 512 bytes (masked so the verifier sees a bound).
const VARY_OFFSET_MASK: usize = 0x1ff;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_GRE: u8 = 47;
const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQUENCE: u16 = 0x1000;
const GRE_VERSION: u16 = 0x0007;

#[map(name = "GEN_CONFIG")]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(CFG_LEN, 0);

/// The pristine first bytes of the frame being sent. Live-frame pages are recycled
/// within a test run without their data being re-initialised, and receivers modify
/// headers in place (tc decapsulation moves the Ethernet header, sluice's XDP program
/// writes an Ethernet header and metadata over the outer headers), so each run restores
/// the headers first.
#[map(name = "GEN_HEADER")]
static GEN_HEADER: Array<[u64; HEADER_WORDS]> = Array::with_max_entries(1, 0);

/// `[0]`: frames the generator handed to `bpf_redirect`, per CPU.
#[map(name = "GEN_SENT")]
static GEN_SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `[0]`: frames, `[1]`: bytes seen by `sluice_count_drop`, per CPU.
#[map(name = "COUNT_DROP")]
static COUNT_DROP: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// `[0]`: GRE packets decapsulated, `[1]`: packets left alone, `[2]`: decapsulation failed.
#[map(name = "TC_DECAP_STATS")]
static TC_DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(3, 0);

#[inline(always)]
fn config(index: u32) -> u32 {
    GEN_CONFIG.get(index).copied().unwrap_or(0)
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32, by: u64) -> u64 {
    match map.get_ptr_mut(index) {
        Some(counter) => {
            // SAFETY: per-CPU slot; programs do not migrate while running.
            unsafe {
                let old = *counter;
                *counter = old + by;
                old
            }
        }
        None => 0,
    }
}

#[xdp]
pub fn sluice_gen(ctx: XdpContext) -> u32 {
    let sequence = bump(&GEN_SENT, 0, 1);
    restore_header(&ctx);
    vary_field(&ctx, sequence);
    write_series_event(&ctx, sequence);
    // SAFETY: helper call; the kernel resolves the index in the caller's namespace.
    unsafe { bpf_redirect(config(CFG_IFINDEX), 0) as u32 }
}

/// Copies the configured number of words of `GEN_HEADER` over the start of the frame.
#[inline(always)]
fn restore_header(ctx: &XdpContext) {
    let words = config(CFG_RESTORE_WORDS) as usize;
    let Some(header) = GEN_HEADER.get(0) else {
        return;
    };
    let start = ctx.data();
    let end = ctx.data_end();
    for (i, word) in header.iter().enumerate() {
        let offset = i * 8;
        if i >= words || start + offset + 8 > end {
            break;
        }
        // SAFETY: bounds checked above.
        unsafe { core::ptr::write_unaligned((start + offset) as *mut u64, *word) };
    }
}

/// Writes `base + sequence % range` into the configured field and patches the checksum
/// (RFC 1624, eqn. 3) from the bytes actually in the frame: live-frame pages are recycled
/// without being re-initialised, so the previous value may still be there.
#[inline(always)]
fn vary_field(ctx: &XdpContext, sequence: u64) {
    let offset = config(CFG_VARY_OFFSET) as usize & VARY_OFFSET_MASK;
    if offset == 0 {
        return;
    }
    let range = u64::from(config(CFG_VARY_RANGE).max(1));
    let new = (u64::from(config(CFG_VARY_BASE)) + sequence % range) as u16;
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + 2 > end {
        return;
    }
    let field = (start + offset) as *mut [u8; 2];
    // SAFETY: bounds checked above.
    let old = u16::from_be_bytes(unsafe { core::ptr::read_unaligned(field) });
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(field, new.to_be_bytes()) };

    let csum_offset = config(CFG_CSUM_OFFSET) as usize & VARY_OFFSET_MASK;
    if csum_offset == 0 || start + csum_offset + 2 > end {
        return;
    }
    let csum_ptr = (start + csum_offset) as *mut [u8; 2];
    // SAFETY: bounds checked above.
    let csum = u16::from_be_bytes(unsafe { core::ptr::read_unaligned(csum_ptr) });
    if csum == 0 {
        // IPv4 UDP without a checksum.
        return;
    }
    let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(csum_ptr, checksum_field(sum)) };
}

/// The UDP checksum field for `sum`, the one's complement sum of the old checksum's
/// complement and the changed words (RFC 1624, eqn. 3): folded to 16 bits (two folds
/// suffice for sums of up to 2¹⁶ words), complemented, 0 sent as 0xffff.
#[inline(always)]
fn checksum_field(mut sum: u32) -> [u8; 2] {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    match !(sum as u16) {
        0 => 0xffff_u16,
        folded => folded,
    }
    .to_be_bytes()
}

/// Writes event `sequence` of a payload series into the frame and patches the inner UDP
/// checksum (RFC 1624, eqn. 3) from the first event's fields (`GEN_CONFIG`), which the
/// checksum restored and varied above is right for: the same rule and arithmetic as
/// `sluice_testkit::acme::readings_event` and the AF_PACKET engine's `series.rs`
/// (sequence number `n`, time + `n` / 3000, value 0 21 000 + the top 10 bits of
/// `n` × 0x9e3779b9, value 1 −40 + its bits 12..18), so both engines send the same bytes.
/// Every varied byte is written, so a recycled page's stale event does not matter.
#[inline(always)]
fn write_series_event(ctx: &XdpContext, sequence: u64) {
    let offset = config(CFG_SERIES_OFFSET) as usize & VARY_OFFSET_MASK;
    if offset == 0 {
        return;
    }
    // Every access is forward of the checksum's address, which the bound covers (the
    // verifier knows packet bounds forward of a checked pointer, not behind it).
    let csum_at = ctx.data() + offset;
    if csum_at + 2 + SERIES_END > ctx.data_end() {
        return;
    }
    let n = sequence as u32;
    let spread = n.wrapping_mul(0x9e37_79b9);
    let first = [
        config(CFG_SERIES_FIRST),
        config(CFG_SERIES_FIRST + 1),
        config(CFG_SERIES_FIRST + 2),
        config(CFG_SERIES_FIRST + 3),
    ];
    let new = [
        n,
        first[1].wrapping_add(n / 3_000),
        (21_000 + (spread >> 22) as i32) as u32,
        (-40 + ((spread >> 12) & 0x3f) as i32) as u32,
    ];
    let csum_ptr = csum_at as *mut [u8; 2];
    // SAFETY: the checksum and the event through its last field are within the frame
    // (checked above).
    let csum = u16::from_be_bytes(unsafe { core::ptr::read_unaligned(csum_ptr) });
    let mut sum = u32::from(!csum);
    for i in 0..SERIES_FIELDS.len() {
        let (old, value) = (first[i], new[i]);
        sum += u32::from(!((old >> 16) as u16)) + (value >> 16);
        sum += u32::from(!(old as u16)) + (value & 0xffff);
        let field = (csum_at + 2 + SERIES_FIELDS[i]) as *mut [u8; 4];
        // SAFETY: every field ends at or before the event's end, checked above.
        unsafe { core::ptr::write_unaligned(field, value.to_be_bytes()) };
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned(csum_ptr, checksum_field(sum)) };
}

#[xdp]
pub fn sluice_count_drop(ctx: XdpContext) -> u32 {
    bump(&COUNT_DROP, 0, 1);
    bump(&COUNT_DROP, 1, (ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_DROP
}

#[xdp]
pub fn sluice_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn sluice_tc_decap(ctx: TcContext) -> i32 {
    let slot = match try_decap(&ctx) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(()) => 2,
    };
    bump(&TC_DECAP_STATS, slot, 1);
    TC_ACT_OK
}

/// `Ok(true)`: decapsulated; `Ok(false)`: not GRE v0 carrying IP, left alone.
#[inline(always)]
fn try_decap(ctx: &TcContext) -> Result<bool, ()> {
    let ethertype = u16::from_be(ctx.load::<u16>(12).map_err(|_| ())?);
    let (outer_len, protocol) = match ethertype {
        ETH_P_IP => {
            let version_ihl: u8 = ctx.load(ETH_HLEN).map_err(|_| ())?;
            let ihl = usize::from(version_ihl & 0x0f) * 4;
            if ihl < 20 {
                return Ok(false);
            }
            let frag: u16 = u16::from_be(ctx.load(ETH_HLEN + 6).map_err(|_| ())?);
            if frag & 0x3fff != 0 {
                return Ok(false);
            }
            (ihl, ctx.load::<u8>(ETH_HLEN + 9).map_err(|_| ())?)
        }
        ETH_P_IPV6 => (40, ctx.load::<u8>(ETH_HLEN + 6).map_err(|_| ())?),
        _ => return Ok(false),
    };
    if protocol != IPPROTO_GRE {
        return Ok(false);
    }
    let gre_offset = ETH_HLEN + outer_len;
    let flags = u16::from_be(ctx.load(gre_offset).map_err(|_| ())?);
    if flags & (GRE_VERSION | GRE_ROUTING) != 0 {
        return Ok(false);
    }
    let inner = u16::from_be(ctx.load(gre_offset + 2).map_err(|_| ())?);
    let decap_flag = match inner {
        ETH_P_IP => BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
        ETH_P_IPV6 => BPF_F_ADJ_ROOM_DECAP_L3_IPV6,
        _ => return Ok(false),
    };
    let gre_len = 4 + 4
        * (usize::from(flags & GRE_CHECKSUM != 0)
            + usize::from(flags & GRE_KEY != 0)
            + usize::from(flags & GRE_SEQUENCE != 0));
    let strip = (outer_len + gre_len) as i32;
    ctx.adjust_room(-strip, BPF_ADJ_ROOM_MAC, u64::from(decap_flag))
        .map_err(|_| ())?;
    ctx.store(12, &inner.to_be(), 0).map_err(|_| ())?;
    Ok(true)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
