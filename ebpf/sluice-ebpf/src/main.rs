//! The Sluice XDP program.
//!
//! For every frame on the attached interface it decides, once, whether the packet is ours:
//! GRE version 0 (any C/K/S options, IPv4 or IPv6 outer, up to two VLAN tags) carrying
//! IPv4/IPv6 UDP to a configured destination port — or, when enabled, such UDP without a
//! tunnel. Ours: the frame is redirected, exactly as it arrived, into the AF_XDP socket of
//! the receiving queue; the workers strip the outer headers (userspace `decap`, the
//! check-for-check twin of this parser) and read the tunnel provenance from them.
//! Everything else — and anything we cannot fully parse — goes to the kernel untouched
//! (`XDP_PASS`), so SSH and ICMP to the host keep working.
//!
//! The program never writes to a frame. That is deliberate: it needs no packet-rewriting
//! helper (`bpf_xdp_adjust_head`) and no metadata area (`bpf_xdp_adjust_meta`, limited to
//! 32 bytes before Linux 6.3, too small for IPv6 tunnel addresses), so it behaves the same
//! on every supported kernel, in native and generic mode, and no failure part-way can hand
//! the kernel a half-rewritten frame. Each decision increments one per-CPU counter
//! (`sluice_common::Verdict`).
//!
//! Three decisions are rare and mean something is wrong — a steered packet on a queue
//! without a socket, GRE we do not handle, a packet we cannot parse — so they also write
//! one line into the daemon's log (aya-log, forwarded by the daemon), at most one per
//! reason per CPU every [`LOG_INTERVAL_NS`]: never a line per packet.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, XskMap},
    programs::XdpContext,
};
use aya_log_ebpf::warn;
use sluice_common::{
    MAX_QUEUES, PORT_BITMAP_WORDS, SETTINGS_ALL_PORTS, Settings, VERDICT_COUNT, Verdict,
};

use crate::parse::{Steer, classify};

#[map(name = "SLUICE_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "SLUICE_VERDICTS")]
static VERDICTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_COUNT, 0);

#[map(name = "SLUICE_PORTS")]
static PORTS: Array<u64> = Array::with_max_entries(PORT_BITMAP_WORDS, 0);

#[map(name = "SLUICE_SETTINGS")]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// When each verdict was last logged on this CPU (`bpf_ktime_get_ns`).
#[map(name = "SLUICE_LOGGED_AT")]
static LOGGED_AT: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_COUNT, 0);

/// Least time between two log lines of one reason on one CPU.
const LOG_INTERVAL_NS: u64 = 10_000_000_000;

#[xdp]
pub fn sluice(ctx: XdpContext) -> u32 {
    let verdict = match decide(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    };
    count(verdict);
    if matches!(
        verdict,
        Verdict::PassNoSocket | Verdict::PassGreUnsupported | Verdict::PassMalformed
    ) {
        log_rare(&ctx, verdict);
    }
    if verdict.is_redirect() {
        // The socket was looked up just before; should it have gone in between, the
        // frame is dropped (XDP_ABORTED, visible as the kernel's xdp_exception) and
        // userspace counts it as `redirect_error`.
        let queue = ctx.rx_queue_index();
        match XSKS.redirect(queue, u64::from(xdp_action::XDP_ABORTED)) {
            Ok(action) | Err(action) => action,
        }
    } else {
        xdp_action::XDP_PASS
    }
}

/// Classifies the frame. `Err` carries a pass verdict.
#[inline(always)]
fn decide(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let settings = SETTINGS.get(0).copied().unwrap_or_default();
    let steer = classify(ctx, &settings, port_steered)?;
    if XSKS.get(ctx.rx_queue_index()).is_none() {
        return Err(Verdict::PassNoSocket);
    }
    Ok(match steer {
        Steer::Tunnelled => Verdict::RedirectGre,
        Steer::Plain => Verdict::RedirectPlain,
    })
}

/// True when `port` is in the configured set (or the set is empty: all ports).
#[inline(always)]
fn port_steered(settings: &Settings, port: u16) -> bool {
    if settings.flags & SETTINGS_ALL_PORTS != 0 {
        return true;
    }
    let word = u32::from(port >> 6);
    let bit = u64::from(port & 63);
    match PORTS.get(word) {
        Some(bits) => (*bits >> bit) & 1 == 1,
        None => false,
    }
}

/// One log line for a rare pass verdict, unless this CPU logged one for it in the last
/// [`LOG_INTERVAL_NS`].
#[inline(never)]
fn log_rare(ctx: &XdpContext, verdict: Verdict) {
    let Some(last) = LOGGED_AT.get_ptr_mut(verdict as u32) else {
        return;
    };
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    unsafe {
        if *last != 0 && now.wrapping_sub(*last) < LOG_INTERVAL_NS {
            return;
        }
        *last = now;
    }
    let queue = ctx.rx_queue_index();
    match verdict {
        Verdict::PassNoSocket => warn!(
            ctx,
            "queue {}: a packet to steer arrived on a queue without an AF_XDP socket; passed to the kernel (pass_no_socket; at most one line per CPU every 10 s)",
            queue
        ),
        Verdict::PassGreUnsupported => warn!(
            ctx,
            "queue {}: GRE that Sluice does not handle (version other than 0, or routing present); passed to the kernel (pass_gre_unsupported; at most one line per CPU every 10 s)",
            queue
        ),
        _ => warn!(
            ctx,
            "queue {}: a packet whose headers are cut short or inconsistent; passed to the kernel (pass_malformed; at most one line per CPU every 10 s)",
            queue
        ),
    }
}

#[inline(always)]
fn count(verdict: Verdict) {
    if let Some(counter) = VERDICTS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
