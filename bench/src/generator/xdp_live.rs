//! The live-frames engine: `sluice_gen` run by the kernel with `BPF_PROG_TEST_RUN` and
//! `BPF_F_TEST_XDP_LIVE_FRAMES` (the xdp-trafficgen technique), redirecting every frame it
//! is given out of the sender's veth.
//!
//! - Each chunk is one test run (`repeat` = the chunk, one frame), issued from the
//!   generator thread inside the sender namespace (the redirect's ifindex is resolved
//!   there). A test run of one frame costs about 30 µs; chunks of ≥ 1 000 frames make that
//!   negligible.
//! - Live-frame pages are recycled within a test run *without* their data being
//!   re-initialised, and receivers rewrite headers in place (tc decapsulation, sluice's
//!   XDP program), so `sluice_gen` first copies the frame's pristine headers (everything
//!   through the inner UDP header, in whole 8-byte words, from the `GEN_HEADER` map) over
//!   the frame, then varies the source port ([`super::ports`]) and, for a payload series,
//!   writes the frame's event ([`super::series`]: the first event's fields are in
//!   `GEN_CONFIG`).
//! - Offered frames are `sluice_gen`'s per-CPU counter (`GEN_SENT`): frames handed to
//!   `bpf_redirect`. A frame the veth cannot queue is lost after it was offered, like a
//!   wire drop.
//! - [`live_frames_refusal`] asks the kernel once per process whether it runs live frames
//!   at all, with `sluice_count_drop` (which drops, so nothing is sent).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{ProgramError, TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};

use super::pacing::{ChunkSender, Sent};
use super::ports::{HEADER_WORDS, words_through_udp};
use super::series::SeriesVariation;
use super::{GenError, MixFrame, program_error};
use crate::lab::{BenchLab, Side};

/// `GEN_CONFIG` indexes (see ebpf/sluice-bench-ebpf).
const CFG_IFINDEX: u32 = 0;
const CFG_VARY_OFFSET: u32 = 1;
const CFG_CSUM_OFFSET: u32 = 2;
const CFG_VARY_BASE: u32 = 3;
const CFG_VARY_RANGE: u32 = 4;
const CFG_RESTORE_WORDS: u32 = 5;
const CFG_SERIES_OFFSET: u32 = 6;
const CFG_SERIES_FIRST: u32 = 7;

/// Frames per live-frames batch inside the kernel (NAPI's budget; the kernel's maximum is 256).
const LIVE_BATCH: u32 = 64;

/// Errors of `BPF_PROG_TEST_RUN` that mean "this kernel does not run live frames" (EPERM
/// on some hardened builds, EINVAL or EOPNOTSUPP/ENOTSUPP where the flag is unknown).
const REFUSALS: [i32; 4] = [libc::EPERM, libc::EINVAL, libc::EOPNOTSUPP, 524];

/// A loaded `sluice_gen`, pointed at the sender's veth.
pub(super) struct XdpLive {
    ebpf: Ebpf,
    src_ports: u16,
    /// Each frame's payload series, if it carries one.
    series: Vec<Option<SeriesVariation>>,
}

impl XdpLive {
    /// Loads `sluice_gen`, anchors it in the XDP dispatcher and configures the redirect
    /// and the port variation; `series` has each frame's payload series, if it carries one.
    pub(super) fn load(
        lab: &BenchLab,
        sender_ifindex: u32,
        src_port: u16,
        src_ports: u16,
        series: Vec<Option<SeriesVariation>>,
    ) -> Result<Self, GenError> {
        let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).map_err(GenError::Load)?;
        let program: &mut Xdp = ebpf
            .program_mut("sluice_gen")
            .ok_or_else(|| program_error("program sluice_gen", "not in the object"))?
            .try_into()
            .map_err(|e| program_error("program sluice_gen", e))?;
        program
            .load()
            .map_err(|e| program_error("program sluice_gen (verifier)", e))?;
        anchor_in_dispatcher(lab, program)?;
        let mut live = Self {
            ebpf,
            src_ports,
            series,
        };
        live.set_config(CFG_IFINDEX, sender_ifindex)?;
        live.set_config(CFG_VARY_BASE, u32::from(src_port))?;
        live.set_config(CFG_VARY_RANGE, u32::from(src_ports))?;
        Ok(live)
    }

    /// Points the header restore, the per-frame source-port rewrite and the payload series
    /// at `frame`, frame `index` of the mix.
    fn select_frame(&mut self, index: usize, frame: &MixFrame) -> Result<(), GenError> {
        let plan = restore_plan(frame.inner_udp_offset, frame.bytes.len(), self.src_ports);
        let mut header = [0u64; HEADER_WORDS];
        for (word, bytes) in header
            .iter_mut()
            .zip(frame.bytes.chunks_exact(8))
            .take(plan.words)
        {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            *word = u64::from_ne_bytes(raw);
        }
        let map = self
            .ebpf
            .map_mut("GEN_HEADER")
            .ok_or_else(|| program_error("map GEN_HEADER", "not in the object"))?;
        let mut headers: Array<_, [u64; HEADER_WORDS]> =
            Array::try_from(map).map_err(|e| program_error("map GEN_HEADER", e))?;
        headers
            .set(0, header, 0)
            .map_err(|e| program_error("map GEN_HEADER", e))?;
        self.set_config(CFG_RESTORE_WORDS, plan.words as u32)?;
        self.set_config(CFG_VARY_OFFSET, plan.vary_offset)?;
        self.set_config(CFG_CSUM_OFFSET, plan.csum_offset)?;
        // `sluice_gen` needs the series' checksum offset and first fields (0: no series).
        let (offset, first) = self
            .series
            .get(index)
            .and_then(Option::as_ref)
            .and_then(|series| series.first_fields(&frame.bytes))
            .unwrap_or((0, [0; 4]));
        self.set_config(CFG_SERIES_OFFSET, offset)?;
        for (index, value) in (CFG_SERIES_FIRST..).zip(first) {
            self.set_config(index, value)?;
        }
        Ok(())
    }

    fn set_config(&mut self, index: u32, value: u32) -> Result<(), GenError> {
        let map = self
            .ebpf
            .map_mut("GEN_CONFIG")
            .ok_or_else(|| program_error("map GEN_CONFIG", "not in the object"))?;
        let mut config: Array<_, u32> =
            Array::try_from(map).map_err(|e| program_error("map GEN_CONFIG", e))?;
        config
            .set(index, value, 0)
            .map_err(|e| program_error("map GEN_CONFIG", e))
    }

    /// Sum over CPUs of `GEN_SENT[0]`: frames handed to `bpf_redirect` so far.
    pub(super) fn sent_counter(&self) -> Result<u64, GenError> {
        let map = self
            .ebpf
            .map("GEN_SENT")
            .ok_or_else(|| program_error("map GEN_SENT", "not in the object"))?;
        let sent: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| program_error("map GEN_SENT", e))?;
        let values = sent
            .get(&0, 0)
            .map_err(|e| program_error("map GEN_SENT", e))?;
        Ok(values.iter().sum())
    }

    /// One test run of `repeat` live frames of `frame`.
    fn test_run(&self, frame: &[u8], repeat: u64) -> Result<(), ProgramError> {
        let program: &Xdp = self
            .ebpf
            .program("sluice_gen")
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        let options = TestRunOptions {
            data_in: Some(frame),
            repeat: u32::try_from(repeat).unwrap_or(u32::MAX),
            attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
            ..TestRunOptions::new()
        };
        program.test_run(options).map(drop)
    }

    /// The chunk sender of one run over `frames`.
    pub(super) fn sender<'a>(&'a mut self, frames: &'a [MixFrame]) -> XdpLiveSender<'a> {
        XdpLiveSender {
            live: self,
            frames,
            current_frame: None,
            requested: 0,
        }
    }
}

/// Sends chunks as test runs, selecting the frame in the maps when it changes.
pub(super) struct XdpLiveSender<'a> {
    live: &'a mut XdpLive,
    frames: &'a [MixFrame],
    current_frame: Option<usize>,
    requested: u64,
}

impl ChunkSender for XdpLiveSender<'_> {
    fn send(&mut self, index: usize, repeat: u64, _deadline: Instant) -> Result<Sent, GenError> {
        let frame = &self.frames[index];
        if self.current_frame != Some(index) {
            self.live.select_frame(index, frame)?;
            self.current_frame = Some(index);
        }
        self.live
            .test_run(&frame.bytes, repeat)
            .map_err(|source| GenError::TestRun {
                offered: self.requested,
                source,
            })?;
        self.requested += repeat;
        Ok(Sent {
            frames: repeat,
            syscalls: 1,
        })
    }
}

/// `None` when this kernel runs XDP programs with live frames, else the kernel's error.
/// Asked once per process, with `sluice_count_drop` (XDP_DROP: nothing leaves); the first
/// refusal is printed to stderr.
///
/// # Errors
/// [`GenError::Load`] or [`GenError::Program`] when the probe itself could not be loaded,
/// or its test run failed for another reason.
pub(super) fn live_frames_refusal() -> Result<Option<String>, GenError> {
    static REFUSAL: OnceLock<Option<String>> = OnceLock::new();
    if let Some(known) = REFUSAL.get() {
        return Ok(known.clone());
    }
    let refusal = probe_live_frames()?;
    if REFUSAL.set(refusal.clone()).is_ok()
        && let Some(error) = &refusal
    {
        eprintln!(
            "sluice-bench generator: the kernel refuses BPF_PROG_TEST_RUN with live frames \
             ({error}); sending with AF_PACKET instead, at a much lower highest rate \
             ({}=xdp-live|af-packet chooses)",
            super::ENGINE_ENV
        );
    }
    Ok(refusal)
}

fn probe_live_frames() -> Result<Option<String>, GenError> {
    let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).map_err(GenError::Load)?;
    let program: &mut Xdp = ebpf
        .program_mut("sluice_count_drop")
        .ok_or_else(|| program_error("program sluice_count_drop", "not in the object"))?
        .try_into()
        .map_err(|e| program_error("program sluice_count_drop", e))?;
    program
        .load()
        .map_err(|e| program_error("program sluice_count_drop (verifier)", e))?;
    // An Ethernet header with the IPv4 EtherType and zeros: dropped unseen.
    let mut frame = [0u8; 64];
    frame[12] = 0x08;
    let options = TestRunOptions {
        data_in: Some(&frame),
        repeat: 1,
        attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
        ..TestRunOptions::new()
    };
    match program.test_run(options) {
        Ok(_) => Ok(None),
        Err(ProgramError::SyscallError(error))
            if error
                .io_error
                .raw_os_error()
                .is_some_and(|errno| REFUSALS.contains(&errno)) =>
        {
            Ok(Some(error.io_error.to_string()))
        }
        Err(e) => Err(program_error(
            "probing live frames with sluice_count_drop",
            e,
        )),
    }
}

/// What `sluice_gen` does to one frame before sending it.
#[derive(Debug, PartialEq, Eq)]
struct RestorePlan {
    /// 8-byte words of pristine header copied over the frame.
    words: usize,
    /// Offset of the inner UDP source port to vary (0: none).
    vary_offset: u32,
    /// Offset of the inner UDP checksum to patch (0: none).
    csum_offset: u32,
}

/// Restores every byte through the inner UDP header (checksum included) in whole words.
/// The varied port and its checksum must both come from the pristine copy, or the patch
/// would start from a stale checksum; when the frame is too short for whole words to
/// reach the checksum (payload under 8 bytes), the outer headers are still restored and
/// the port is left fixed.
fn restore_plan(inner_udp_offset: usize, frame_len: usize, src_ports: u16) -> RestorePlan {
    match words_through_udp(inner_udp_offset, frame_len) {
        Some(words) => {
            let vary = src_ports > 1;
            RestorePlan {
                words,
                vary_offset: if vary { inner_udp_offset as u32 } else { 0 },
                csum_offset: if vary { inner_udp_offset as u32 + 6 } else { 0 },
            }
        }
        None => RestorePlan {
            words: (frame_len / 8).min(HEADER_WORDS),
            vary_offset: 0,
            csum_offset: 0,
        },
    }
}

/// Keeps `sluice_gen` in the kernel's XDP dispatcher for the generator's lifetime by
/// attaching it (native mode) to a veth of its own in the sender namespace, which never
/// receives a frame.
///
/// Every `BPF_PROG_TEST_RUN` of an XDP program adds it to the dispatcher and removes it
/// afterwards; each change waits for an RCU grace period (`synchronize_rcu` in
/// `bpf_dispatcher_change_prog`), about 10 ms here, twice per test run. That wait, not
/// the CPU, capped the generator near 0.7 Mpps (one run of 16 384 frames took 24 ms of
/// wall clock for 3.5 ms of CPU). With the program attached somewhere, the dispatcher
/// only counts references and test runs cost what their frames cost.
fn anchor_in_dispatcher(lab: &BenchLab, program: &mut Xdp) -> Result<(), GenError> {
    static ANCHORS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = ANCHORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (near, far) = (format!("sgen{n}a"), format!("sgen{n}b"));
    lab.exec(
        Side::Sender,
        "ip",
        &["link", "add", &near, "type", "veth", "peer", "name", &far],
    )?;
    let netns_path = PathBuf::from("/run/netns").join(lab.sender().name());
    let netns = File::open(&netns_path).map_err(|source| GenError::Enter {
        name: netns_path.display().to_string(),
        source,
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), GenError> {
                // SAFETY: setns(2) with an open namespace fd, on this thread only: the
                // attach resolves the interface in the calling thread's namespace.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(GenError::Enter {
                        name: netns_path.display().to_string(),
                        source: std::io::Error::last_os_error(),
                    });
                }
                program
                    .attach(&near, aya::programs::XdpMode::Driver)
                    .map(drop)
                    .map_err(|e| program_error("attaching sluice_gen to its anchor veth", e))
            })
            .join()
            .map_err(|_| GenError::Panicked)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::ports::PortVariation;
    use crate::generator::{Encap, PayloadKind, TrafficMix};
    use aya::maps::PerCpuValues;

    /// `sluice_gen` run once (not live: the frame comes back in `data_out`, nothing is
    /// sent) as the frame's `sequence`-th frame.
    fn gen_once(live: &mut XdpLive, frame: &[u8], sequence: u64) -> Vec<u8> {
        let cpus = aya::util::nr_cpus().expect("CPU count");
        let map = live.ebpf.map_mut("GEN_SENT").expect("GEN_SENT");
        let mut sent: PerCpuArray<_, u64> = PerCpuArray::try_from(map).expect("GEN_SENT");
        let values = PerCpuValues::try_from(vec![sequence; cpus]).expect("values");
        sent.set(0, values, 0).expect("set GEN_SENT");
        let program: &Xdp = live
            .ebpf
            .program("sluice_gen")
            .expect("sluice_gen")
            .try_into()
            .expect("XDP");
        let mut out = vec![0u8; frame.len()];
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        program.test_run(options).expect("test run of sluice_gen");
        out
    }

    #[test]
    fn sluice_gen_sends_a_series_byte_for_byte_as_the_af_packet_engine() {
        if !sluice_testkit::privilege::require_root(
            "xdp_live::sluice_gen_sends_a_series_byte_for_byte_as_the_af_packet_engine",
        ) {
            return;
        }
        let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).expect("load the object");
        let program: &mut Xdp = ebpf
            .program_mut("sluice_gen")
            .expect("sluice_gen")
            .try_into()
            .expect("XDP");
        program.load().expect("the verifier accepts sluice_gen");
        let (base, ports) = (10_000, 256);
        let mut live = XdpLive {
            ebpf,
            src_ports: ports,
            series: Vec::new(),
        };
        live.set_config(CFG_IFINDEX, 1).expect("config");
        live.set_config(CFG_VARY_BASE, u32::from(base))
            .expect("config");
        live.set_config(CFG_VARY_RANGE, u32::from(ports))
            .expect("config");
        let (src, dst) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        for (mut mix, _) in crate::generator::series::series_mixes() {
            mix.src_port = base;
            mix.src_ports = ports;
            for frame in mix.frames(src, dst).expect("frames") {
                let udp = frame.inner_udp_offset;
                let port = PortVariation::for_frame(&frame.bytes, udp, base, ports).expect("port");
                let series = SeriesVariation::for_frame(&frame.bytes, udp).expect("series");
                live.series = vec![Some(series.clone())];
                live.select_frame(0, &frame).expect("select the frame");
                for n in [0u64, 1, 2, 3_001, 1_000_003, u64::from(u32::MAX) + 5] {
                    let mut expected = frame.bytes.clone();
                    port.apply(&mut expected, n);
                    series.apply(&mut expected, n);
                    let got = gen_once(&mut live, &frame.bytes, n);
                    assert_eq!(got, expected, "{:?}, n = {n}", mix.encap);
                }
            }
        }
        // A frame that is not a series is sent as built, its port aside.
        let raw = TrafficMix::single(Encap::Gre, Some(42), PayloadKind::Raw { len: 40 }, 5140);
        let frame = raw.frames(src, dst).expect("frames").remove(0);
        live.series = vec![None];
        live.select_frame(0, &frame).expect("select the frame");
        let got = gen_once(&mut live, &frame.bytes, 7);
        assert_eq!(
            got[frame.inner_udp_offset + 8..],
            frame.bytes[frame.inner_udp_offset + 8..]
        );
    }

    #[test]
    fn restore_covers_the_checksum_or_nothing_is_varied() {
        // GRE with key: inner UDP at 62, checksum at 68..70: 9 words (72 bytes).
        assert_eq!(
            restore_plan(62, 88, 256),
            RestorePlan {
                words: 9,
                vary_offset: 62,
                csum_offset: 68
            }
        );
        // One port only: restore, vary nothing.
        assert_eq!(restore_plan(62, 88, 1).vary_offset, 0);
        // A frame of exactly 72 bytes still holds 9 whole words.
        assert_eq!(restore_plan(62, 72, 16).words, 9);
        // 71 bytes: cannot reach the checksum in whole words, so no varying.
        assert_eq!(
            restore_plan(62, 71, 16),
            RestorePlan {
                words: 8,
                vary_offset: 0,
                csum_offset: 0
            }
        );
    }
}
