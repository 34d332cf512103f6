//! The packet generator: an XDP program (`sluice_gen`) run by the kernel with
//! `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES` (the xdp-trafficgen technique),
//! which redirects every frame it is given out of the sender's veth. It offers several
//! Mpps from one core, where sockets that go through the kernel stack stop near 0.5 Mpps.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_bench::{generator::{Encap, Generator, PayloadKind, TrafficMix}, lab::BenchLab};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lab = BenchLab::create()?;
//! // ... attach something on lab.receiver_if() first: live frames need NAPI there.
//! let mix = TrafficMix::single(Encap::Gre, Some(42), PayloadKind::Raw { len: 64 }, 9000);
//! let mut generator = Generator::new(&lab, &mix)?;
//! let report = generator.run(1_000_000, Duration::from_secs(10), 20_000_000, 0)?;
//! println!("{} frames in {:?}", report.offered, report.elapsed);
//! # Ok(()) }
//! ```
//!
//! How it works:
//! - [`TrafficMix`] says what to send ([`mix`]: tunnels, GRE/VXLAN/plain, payloads of
//!   [`PayloadKind`] with weights and ports); [`Generator::new`] builds every frame once in
//!   userspace, addressed to the receiver's veth MAC.
//! - [`Generator::run`] issues test runs in chunks (`repeat` = chunk, one frame per chunk,
//!   frames chosen by smooth weighted round-robin) from a thread that entered the sender
//!   namespace (the redirect's ifindex is resolved there) and is pinned to `cpu`. Paced
//!   runs sleep between chunks to follow `rate_pps`; a chunk is about 1 ms of traffic, so
//!   the offered rate is smooth at the millisecond scale, bursty below (a chunk leaves at
//!   the generator's full speed). A run that fell behind (preempted on a busy machine)
//!   catches up with chunks of up to 4 ms of traffic; on a busy machine it may still end
//!   at `duration` with fewer frames than due, so always use [`GenReport::offered`] and
//!   [`GenReport::elapsed`], never the requested rate.
//! - `sluice_gen` writes `src_port + n % src_ports` into the inner UDP source port of the
//!   n-th frame and patches the UDP checksum, so a run spreads over many flows.
//! - Live-frame pages are recycled within a test run *without* their data being
//!   re-initialised, and receivers rewrite headers in place (tc decapsulation, sluice's
//!   XDP program): without care, later frames of a run leave corrupted. `sluice_gen`
//!   therefore first copies the frame's pristine headers (everything through the inner UDP
//!   header, in whole 8-byte words, ≤ 256 bytes, from the `GEN_HEADER` map) over the
//!   frame. A frame whose payload is too short for whole words to reach the UDP checksum
//!   keeps one source port.
//! - [`GenReport::offered`] is the number of frames `sluice_gen` handed to `bpf_redirect`
//!   (its per-CPU counter), not what the receiver got: a frame the veth cannot queue (the
//!   peer's ring is full) is lost after it was offered, exactly like a wire drop. The
//!   receiving end must have NAPI (an XDP program attached, or GRO on), else the kernel
//!   drops every frame silently ([`crate::lab`]).
//!
//! - [`GenReport::thread_cpu`] is the generator thread's CPU time. Without threaded NAPI
//!   the receiver's XDP program runs in softirq on the generator's core and is charged
//!   there too, so `offered / thread_cpu` is what that core does when it has nothing else
//!   to do; `thread_cpu` far below `elapsed` in a flat-out run means the machine was busy
//!   and the wall-clock rate is not the generator's limit.
//!
//! Everything is bounded: a run stops at `duration` or `max_packets`, whichever is first.
//!
//! Measured here (2 cores, kernel 6.18, other builds running, 88-byte GRE frames into
//! `sluice_count_drop`, no threaded NAPI): 1.77 M frames in 0.36 s of generator-thread CPU
//! (≈ 4.9 M frames per CPU-second, receiver's XDP included), every frame counted by the
//! receiver and by the veth (`tx_queue_0_xdp_xmit`). A test run of one frame costs about
//! 30 µs; chunks of ≥ 1 000 frames make that negligible.

pub mod mix;
pub mod payload;

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{ProgramError, TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};

pub use mix::{Encap, MixError, MixFrame, PayloadShare, TrafficMix, Tunnel};
pub use payload::PayloadKind;

use crate::lab::{BenchLab, LabError, Side, pin_thread};

/// `GEN_CONFIG` indexes (see ebpf/sluice-bench-ebpf).
const CFG_IFINDEX: u32 = 0;
const CFG_VARY_OFFSET: u32 = 1;
const CFG_CSUM_OFFSET: u32 = 2;
const CFG_VARY_BASE: u32 = 3;
const CFG_VARY_RANGE: u32 = 4;
const CFG_RESTORE_WORDS: u32 = 5;
/// Size of `GEN_HEADER` in 8-byte words.
const HEADER_WORDS: usize = 32;

/// Frames per live-frames batch inside the kernel (NAPI's budget; the kernel's maximum is 256).
const LIVE_BATCH: u32 = 64;
/// Frames per test run when running flat out with one frame (about 5 ms at 3 Mpps).
const FLAT_OUT_CHUNK: u64 = 16_384;
/// Frames per test run when a mix has several frames, so the mix is fine-grained.
const MIX_CHUNK: u64 = 1_024;
/// Smallest chunk of a paced run.
const MIN_CHUNK: u64 = 64;
/// A paced run that fell behind sends at most this many base chunks in one test run.
const CATCH_UP: u64 = 4;

/// Why the generator failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The traffic mix is unusable.
    #[error(transparent)]
    Mix(#[from] MixError),
    /// The lab could not be queried or entered.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The embedded eBPF object could not be loaded.
    #[error("cannot load the benchmark eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    /// A program or map is missing, or the verifier refused the program.
    #[error("eBPF {what}: {message}")]
    Program {
        /// Which part.
        what: &'static str,
        /// The error.
        message: String,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN of sluice_gen failed after {offered} frames: {source}")]
    TestRun {
        /// Frames offered before the failure.
        offered: u64,
        /// The error.
        source: ProgramError,
    },
    /// Entering the sender namespace failed.
    #[error("cannot enter namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// The error.
        source: std::io::Error,
    },
    /// The generator thread panicked.
    #[error("generator thread panicked")]
    Panicked,
}

/// What one [`Generator::run`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenReport {
    /// Frames handed to `bpf_redirect` towards the receiver (see the module docs).
    pub offered: u64,
    /// Wall time from the first to the end of the last test run.
    pub elapsed: Duration,
    /// Test runs (syscalls) issued.
    pub test_runs: u64,
    /// CPU time of the generator thread (`CLOCK_THREAD_CPUTIME_ID`): far below `elapsed`
    /// in a flat-out run means the thread was preempted (a busy machine), so the rate is
    /// not the generator's limit.
    pub thread_cpu: Duration,
}

impl GenReport {
    /// Offered frames per second over the run (0 for an empty run).
    pub fn rate_pps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.offered as f64 / secs
        } else {
            0.0
        }
    }
}

/// A loaded `sluice_gen` with the frames of one [`TrafficMix`] (see the module docs).
pub struct Generator {
    ebpf: Ebpf,
    frames: Vec<MixFrame>,
    sender_netns: PathBuf,
    sender_ifindex: u32,
    src_port: u16,
    src_ports: u16,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("frames", &self.frames.len())
            .field("sender_netns", &self.sender_netns)
            .field("sender_ifindex", &self.sender_ifindex)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Loads `sluice_gen`, points it at the sender's veth and builds the mix's frames
    /// (Ethernet from the sender's to the receiver's veth MAC).
    ///
    /// # Errors
    /// [`GenError::Mix`], [`GenError::Lab`], [`GenError::Load`], [`GenError::Program`].
    pub fn new(lab: &BenchLab, mix: &TrafficMix) -> Result<Self, GenError> {
        let frames = mix.frames(lab.mac(Side::Sender), lab.mac(Side::Receiver))?;
        let sender_ifindex = lab.ifindex(Side::Sender)?;
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
        let mut generator = Self {
            ebpf,
            frames,
            sender_netns: PathBuf::from("/run/netns").join(lab.sender().name()),
            sender_ifindex,
            src_port: mix.src_port,
            src_ports: mix.src_ports,
        };
        generator.set_config(CFG_IFINDEX, sender_ifindex)?;
        generator.set_config(CFG_VARY_BASE, u32::from(mix.src_port))?;
        generator.set_config(CFG_VARY_RANGE, u32::from(mix.src_ports))?;
        Ok(generator)
    }

    /// The frames of the mix, in the order the weights refer to.
    pub fn frames(&self) -> &[MixFrame] {
        &self.frames
    }

    /// Offers `rate_pps` frames per second (0 = as fast as it can) until `duration` has
    /// passed or `max_packets` were offered, whichever comes first, from a thread pinned
    /// to `cpu` inside the sender namespace. Returns when that thread is done.
    ///
    /// # Errors
    /// [`GenError::TestRun`] (e.g. EPERM without CAP_BPF/CAP_NET_ADMIN), [`GenError::Enter`],
    /// [`GenError::Lab`] (pinning), [`GenError::Panicked`].
    pub fn run(
        &mut self,
        rate_pps: u64,
        duration: Duration,
        max_packets: u64,
        cpu: usize,
    ) -> Result<GenReport, GenError> {
        let before = self.sent_counter()?;
        let netns = File::open(&self.sender_netns).map_err(|source| GenError::Enter {
            name: self.sender_netns.display().to_string(),
            source,
        })?;
        let name = self.sender_netns.display().to_string();
        let outcome = std::thread::scope(|scope| {
            let handle = scope.spawn(|| -> Result<(u64, Duration, Duration), GenError> {
                // SAFETY: setns(2) with an open namespace fd, on this thread only.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(GenError::Enter {
                        name,
                        source: std::io::Error::last_os_error(),
                    });
                }
                pin_thread(0, cpu)?;
                let cpu_before = thread_cpu_time();
                let (test_runs, elapsed) = self.offer(rate_pps, duration, max_packets)?;
                Ok((
                    test_runs,
                    elapsed,
                    thread_cpu_time().saturating_sub(cpu_before),
                ))
            });
            handle.join().map_err(|_| GenError::Panicked)
        })?;
        let (test_runs, elapsed, thread_cpu) = outcome?;
        let offered = self.sent_counter()?.saturating_sub(before);
        Ok(GenReport {
            offered,
            elapsed,
            test_runs,
            thread_cpu,
        })
    }

    /// The loop of [`Generator::run`], on the generator thread. Returns (test runs, elapsed).
    fn offer(
        &mut self,
        rate_pps: u64,
        duration: Duration,
        max_packets: u64,
    ) -> Result<(u64, Duration), GenError> {
        let chunk = chunk_size(rate_pps, self.frames.len());
        let mut picker = WeightedRoundRobin::new(self.frames.iter().map(|f| f.weight).collect());
        let mut current_frame = usize::MAX;
        let mut requested = 0u64;
        let mut test_runs = 0u64;
        let start = Instant::now();
        while requested < max_packets && start.elapsed() < duration {
            let index = picker.next();
            if index != current_frame {
                self.select_frame(index)?;
                current_frame = index;
            }
            // Behind schedule (the thread was preempted or slept too long): catch up in
            // chunks of up to CATCH_UP × the base chunk, no bigger, to bound the burst.
            let behind = if rate_pps > 0 {
                let due = (start.elapsed().as_secs_f64() * rate_pps as f64) as u64;
                due.saturating_sub(requested)
            } else {
                0
            };
            let repeat = behind
                .clamp(chunk, chunk * CATCH_UP)
                .min(max_packets - requested);
            let frame = &self.frames[index].bytes;
            let program: &Xdp = self
                .ebpf
                .program("sluice_gen")
                .ok_or_else(|| program_error("program sluice_gen", "not in the object"))?
                .try_into()
                .map_err(|e| program_error("program sluice_gen", e))?;
            let options = TestRunOptions {
                data_in: Some(frame),
                repeat: u32::try_from(repeat).unwrap_or(u32::MAX),
                attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
                ..TestRunOptions::new()
            };
            program
                .test_run(options)
                .map_err(|source| GenError::TestRun {
                    offered: requested,
                    source,
                })?;
            requested += repeat;
            test_runs += 1;
            if rate_pps > 0 {
                // Where the schedule says we should be; sleep off any lead.
                let due = Duration::from_secs_f64(requested as f64 / rate_pps as f64);
                let now = start.elapsed();
                if due > now {
                    let remaining = duration.saturating_sub(now);
                    std::thread::sleep((due - now).min(remaining));
                }
            }
        }
        Ok((test_runs, start.elapsed()))
    }

    /// Points the header restore and the per-frame source-port rewrite at frame `index`.
    fn select_frame(&mut self, index: usize) -> Result<(), GenError> {
        let frame = &self.frames[index];
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
        self.set_config(CFG_CSUM_OFFSET, plan.csum_offset)
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

    /// Sum over CPUs of `GEN_SENT[0]`.
    fn sent_counter(&self) -> Result<u64, GenError> {
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

    /// The inner source port range the generator cycles through.
    pub fn src_ports(&self) -> std::ops::Range<u32> {
        u32::from(self.src_port)..u32::from(self.src_port) + u32::from(self.src_ports)
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
    let through_udp = inner_udp_offset + 8;
    let covering = through_udp.div_ceil(8);
    if covering * 8 <= frame_len && covering <= HEADER_WORDS {
        let vary = src_ports > 1;
        RestorePlan {
            words: covering,
            vary_offset: if vary { inner_udp_offset as u32 } else { 0 },
            csum_offset: if vary { inner_udp_offset as u32 + 6 } else { 0 },
        }
    } else {
        RestorePlan {
            words: (frame_len / 8).min(HEADER_WORDS),
            vary_offset: 0,
            csum_offset: 0,
        }
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn program_error(what: &'static str, message: impl std::fmt::Display) -> GenError {
    GenError::Program {
        what,
        message: message.to_string(),
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

/// Frames per test run: about 1 ms of traffic when paced, larger when flat out.
fn chunk_size(rate_pps: u64, frames: usize) -> u64 {
    let cap = if frames > 1 {
        MIX_CHUNK
    } else {
        FLAT_OUT_CHUNK
    };
    if rate_pps == 0 {
        cap
    } else {
        (rate_pps / 1_000).clamp(MIN_CHUNK, cap)
    }
}

/// Smooth weighted round-robin (each pick adds every weight to its credit and takes the
/// largest credit, minus the total): picks follow the weights closely over short spans.
struct WeightedRoundRobin {
    weights: Vec<i64>,
    credit: Vec<i64>,
    total: i64,
}

impl WeightedRoundRobin {
    fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let total = weights.iter().sum();
        Self {
            credit: vec![0; weights.len()],
            weights,
            total,
        }
    }

    fn next(&mut self) -> usize {
        let mut best = 0;
        for (i, weight) in self.weights.iter().enumerate() {
            self.credit[i] += weight;
            if self.credit[i] > self.credit[best] {
                best = i;
            }
        }
        self.credit[best] -= self.total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_follows_weights() {
        let mut picker = WeightedRoundRobin::new(vec![1, 3, 0]);
        let picks: Vec<usize> = (0..8).map(|_| picker.next()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 2);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 6);
        assert!(!picks.contains(&2));
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

    #[test]
    fn chunks_are_about_a_millisecond() {
        assert_eq!(chunk_size(0, 1), FLAT_OUT_CHUNK);
        assert_eq!(chunk_size(0, 3), MIX_CHUNK);
        assert_eq!(chunk_size(1_000_000, 1), 1_000);
        assert_eq!(chunk_size(10_000, 1), MIN_CHUNK);
    }
}
