//! The Sluice XDP program.
//!
//! For every frame on the attached interface it decides, once, whether the packet is ours:
//! GRE version 0 (any C/K/S options, IPv4 or IPv6 outer, up to two VLAN tags) carrying
//! IPv4/IPv6 UDP to a configured destination port — or, when enabled, such UDP without a
//! tunnel. Ours: the outer headers are stripped (`bpf_xdp_adjust_head`) so that every
//! frame reaching userspace is `Ethernet + inner IP + UDP`, the tunnel provenance is put in
//! the metadata area (`bpf_xdp_adjust_meta`), and the frame is redirected into the AF_XDP
//! socket of the receiving queue. Everything else — and anything we cannot fully parse —
//! goes to the kernel untouched (`XDP_PASS`), so SSH and ICMP to the host keep working.
//! Each decision increments one per-CPU counter (`sluice_common::Verdict`).
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_meta},
    macros::{map, xdp},
    maps::{Array, PerCpuArray, XskMap},
    programs::XdpContext,
};
use sluice_common::{
    MAX_QUEUES, META_TUNNELLED, PORT_BITMAP_WORDS, SETTINGS_ALL_PORTS, Settings, TunnelMeta,
    VERDICT_COUNT, Verdict,
};

use crate::parse::{ETH_HLEN, Steer, classify};

#[map(name = "SLUICE_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "SLUICE_VERDICTS")]
static VERDICTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_COUNT, 0);

#[map(name = "SLUICE_PORTS")]
static PORTS: Array<u64> = Array::with_max_entries(PORT_BITMAP_WORDS, 0);

#[map(name = "SLUICE_SETTINGS")]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[xdp]
pub fn sluice(ctx: XdpContext) -> u32 {
    let verdict = match decide(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    };
    count(verdict);
    if verdict.is_redirect() {
        // The socket was looked up before the frame was modified; a failure here (the
        // socket went away in between) still hands the kernel's verdict back.
        let queue = ctx.rx_queue_index();
        match XSKS.redirect(queue, u64::from(xdp_action::XDP_ABORTED)) {
            Ok(action) | Err(action) => action,
        }
    } else {
        xdp_action::XDP_PASS
    }
}

/// Classifies the frame and, for ours, rewrites it for userspace. `Err` carries a pass verdict.
#[inline(always)]
fn decide(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let settings = SETTINGS.get(0).copied().unwrap_or_default();
    let steer = classify(ctx, &settings, port_steered)?;
    if XSKS.get(ctx.rx_queue_index()).is_none() {
        return Err(Verdict::PassNoSocket);
    }
    rewrite(ctx, &steer)?;
    Ok(if steer.meta.flags & META_TUNNELLED != 0 {
        Verdict::RedirectGre
    } else {
        Verdict::RedirectPlain
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

/// Strips everything in front of the inner IP header but an Ethernet header, and writes
/// the tunnel metadata in front of the frame.
#[inline(always)]
fn rewrite(ctx: &XdpContext, steer: &Steer) -> Result<(), Verdict> {
    let start = ctx.data();
    if start + ETH_HLEN > ctx.data_end() {
        return Err(Verdict::PassMalformed);
    }
    // Keep the original MAC addresses, for anyone capturing on the socket.
    let mut macs = [0u8; 12];
    // SAFETY: bounds checked above (12 < ETH_HLEN).
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, macs.as_mut_ptr(), 12) };

    let strip = steer.inner_ip_offset - ETH_HLEN;
    if strip > 0 {
        // SAFETY: helper call on the live context; the kernel validates the delta.
        let rc = unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) };
        if rc != 0 {
            return Err(Verdict::PassAdjustFailed);
        }
    }
    let start = ctx.data();
    if start + ETH_HLEN > ctx.data_end() {
        return Err(Verdict::PassAdjustFailed);
    }
    let mut eth = [0u8; ETH_HLEN];
    eth[..12].copy_from_slice(&macs);
    eth[12..].copy_from_slice(&steer.inner_ethertype.to_be_bytes());
    // SAFETY: bounds checked above.
    unsafe { core::ptr::copy_nonoverlapping(eth.as_ptr(), start as *mut u8, ETH_HLEN) };

    let meta_len = core::mem::size_of::<TunnelMeta>();
    // SAFETY: helper call on the live context; the kernel validates the delta.
    let rc = unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(meta_len as i32)) };
    if rc != 0 {
        return Err(Verdict::PassAdjustFailed);
    }
    let meta = ctx.metadata();
    if meta + meta_len > ctx.data() {
        return Err(Verdict::PassAdjustFailed);
    }
    // SAFETY: `meta .. meta + meta_len` lies inside the metadata area (checked above).
    unsafe { core::ptr::write_unaligned(meta as *mut TunnelMeta, steer.meta) };
    Ok(())
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
