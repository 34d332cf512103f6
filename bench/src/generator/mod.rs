//! The packet generator: offers the frames of a [`TrafficMix`] from the sender's end of a
//! [`BenchLab`] veth, at a paced rate or flat out, with one of two engines
//! ([`GenEngine`], [`engine`]):
//!
//! - **live frames** (`xdp-live`, `xdp_live.rs`): an XDP program (`sluice_gen`) run by the
//!   kernel with `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES` (the xdp-trafficgen
//!   technique), which redirects every frame it is given out of the veth. It offers
//!   several Mpps from one core, where sockets that go through the kernel stack stop near
//!   0.5 Mpps.
//! - **AF_PACKET** (`af-packet`, `af_packet.rs`): a raw packet socket bound to the veth,
//!   frames sent in batches with `sendmmsg`, the qdisc bypassed. Any kernel has it; some
//!   builds refuse live frames (EPERM). It offers far fewer frames per second, so on such a
//!   kernel a flat-out run measures the generator sooner than the receiver.
//!
//! [`Generator::new`] takes the engine named by `SLUICE_BENCH_GENERATOR` (`xdp-live`,
//! `af-packet`; unset or `auto`: probe), else asks the kernel once per process whether it
//! runs live frames (a live test run of `sluice_count_drop`, which drops: nothing is sent)
//! and falls back to AF_PACKET with one line on stderr giving the kernel's error.
//! [`Generator::with_engine`] forces one from code; [`GenReport::engine`] says which ran.
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
//! println!("{} frames in {:?} ({})", report.offered, report.elapsed, report.engine.label());
//! # Ok(()) }
//! ```
//!
//! How it works, whichever the engine:
//! - [`TrafficMix`] says what to send ([`mix`]: tunnels, GRE/VXLAN/plain, payloads of
//!   [`PayloadKind`] with weights and ports); [`Generator::new`] builds every frame once in
//!   userspace, addressed to the receiver's veth MAC.
//! - [`Generator::run`] sends in chunks of one frame of the mix (frames chosen by smooth
//!   weighted round-robin; a chunk is one test run, or a few `sendmmsg` calls) from a
//!   thread that entered the sender namespace and is pinned to `cpu`. Paced runs sleep
//!   between chunks to follow `rate_pps`; a chunk is about 1 ms of traffic, so the offered
//!   rate is smooth at the millisecond scale, bursty below (a chunk leaves at the
//!   generator's full speed). A run that fell behind (preempted on a busy machine) catches
//!   up with chunks of up to 4 ms of traffic; on a busy machine it may still end at
//!   `duration` with fewer frames than due, so always use [`GenReport::offered`] and
//!   [`GenReport::elapsed`], never the requested rate.
//! - The n-th frame carries the inner UDP source port `src_port + n % src_ports`, its UDP
//!   checksum patched, so a run spreads over many flows: `sluice_gen` does it in the
//!   kernel, the AF_PACKET engine in its send buffers with the same arithmetic, so both put
//!   identical bytes on the wire. A frame whose payload is too short for `sluice_gen`'s
//!   whole-word header restore to reach the UDP checksum (under 8 bytes) keeps one port.
//! - A payload series ([`PayloadKind::SchemaSeries`], `series.rs`): the n-th frame carries
//!   the series' n-th event, its checksum patched, by either engine.
//! - [`GenReport::offered`] is what reached the veth, not what the receiver got. Live
//!   frames: the frames `sluice_gen` handed to `bpf_redirect` (its per-CPU counter); a
//!   frame the veth cannot queue (the peer's ring is full) is lost after it was offered,
//!   exactly like a wire drop. AF_PACKET: the frames `sendmmsg` reports accepted; a frame
//!   the veth refuses (ENOBUFS) is back-pressure, sent again after a short pause until
//!   `duration` and never counted, so an overloaded receiver slows this engine down
//!   instead of losing frames at the veth. Live frames need NAPI on the receiving end (an
//!   XDP program attached, or GRO on), else the kernel drops every frame silently
//!   ([`crate::lab`]).
//! - [`GenReport::thread_cpu`] is the generator thread's CPU time. Without threaded NAPI
//!   the receiver's XDP program runs in softirq on the generator's core and is charged
//!   there too, so `offered / thread_cpu` is what that core does when it has nothing else
//!   to do; `thread_cpu` far below `elapsed` in a flat-out run means the machine was busy
//!   and the wall-clock rate is not the generator's limit.
//!
//! Everything is bounded: a run stops at `duration` or `max_packets`, whichever is first.
//!
//! Measured (2 cores, kernel 6.18, 88-byte GRE frames into `sluice_count_drop`, no threaded
//! NAPI), every frame counted by the receiver and by the veth:
//! - live frames, other builds running: 1.77 M frames in 0.36 s of generator-thread CPU
//!   (≈ 4.9 M frames per CPU-second, receiver's XDP included). A test run of one frame
//!   costs about 30 µs; chunks of ≥ 1 000 frames make that negligible.
//! - AF_PACKET, on 6.18.44-fc (which refuses live frames), other work busy on both cores:
//!   1.22 Mpps flat out (3.67 M frames in 3 s, `sluice-bench --rows a --rates max`) with
//!   the generator thread's CPU at 100 %: ≈ 0.82 µs per frame, receiver's XDP included,
//!   about a quarter of live frames' rate per CPU-second.

mod af_packet;
pub mod engine;
pub mod mix;
mod pacing;
pub mod payload;
mod ports;
mod series;
mod xdp_live;

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::time::Duration;

use aya::programs::ProgramError;

pub use engine::{ENGINE_ENV, EngineChoiceError, GenEngine};
pub use mix::{Encap, MixError, MixFrame, PayloadShare, TrafficMix, Tunnel};
pub use payload::PayloadKind;
pub use series::SeriesError;

use crate::lab::{BenchLab, LabError, Side, pin_thread};
use af_packet::{AfPacket, PacketSocket};
use xdp_live::XdpLive;

/// Why the generator failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The traffic mix is unusable.
    #[error(transparent)]
    Mix(#[from] MixError),
    /// A frame cannot carry its payload series.
    #[error("payload {payload}: {source}")]
    Series {
        /// The payload's label.
        payload: String,
        /// Why.
        source: SeriesError,
    },
    /// The lab could not be queried or entered.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// [`ENGINE_ENV`] names no engine.
    #[error(transparent)]
    EngineChoice(#[from] EngineChoiceError),
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
    /// `BPF_PROG_TEST_RUN` failed (live-frames engine).
    #[error("BPF_PROG_TEST_RUN of sluice_gen failed after {offered} frames: {source}")]
    TestRun {
        /// Frames offered before the failure.
        offered: u64,
        /// The error.
        source: ProgramError,
    },
    /// The AF_PACKET socket could not be set up (AF_PACKET engine).
    #[error("AF_PACKET socket: {what}: {source}")]
    Socket {
        /// The step that failed.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// `sendmmsg` failed for another reason than back-pressure (AF_PACKET engine).
    #[error("sendmmsg on the AF_PACKET socket failed after {offered} frames: {source}")]
    Send {
        /// Frames offered before the failure.
        offered: u64,
        /// The error.
        source: std::io::Error,
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
    /// The engine that sent the frames.
    pub engine: GenEngine,
    /// Frames offered to the receiver: handed to `bpf_redirect` (live frames) or accepted
    /// by the veth (AF_PACKET); see the module docs.
    pub offered: u64,
    /// Wall time from the first to the end of the last chunk.
    pub elapsed: Duration,
    /// Syscalls that sent frames: test runs (live frames) or `sendmmsg` calls (AF_PACKET,
    /// those refused for back-pressure included).
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

/// The engine a [`Generator`] sends with, and its state.
enum Engine {
    XdpLive(XdpLive),
    AfPacket(AfPacket),
}

/// The frames of one [`TrafficMix`] and the engine that sends them (see the module docs).
pub struct Generator {
    engine: Engine,
    frames: Vec<MixFrame>,
    sender_netns: PathBuf,
    sender_ifindex: u32,
    src_port: u16,
    src_ports: u16,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("engine", &self.engine())
            .field("frames", &self.frames.len())
            .field("sender_netns", &self.sender_netns)
            .field("sender_ifindex", &self.sender_ifindex)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Builds the mix's frames (Ethernet from the sender's to the receiver's veth MAC) and
    /// prepares the [`chosen_engine`].
    ///
    /// # Errors
    /// Those of [`chosen_engine`] and of [`Generator::with_engine`].
    pub fn new(lab: &BenchLab, mix: &TrafficMix) -> Result<Self, GenError> {
        Self::with_engine(lab, mix, chosen_engine()?)
    }

    /// Builds the mix's frames and prepares `engine`, whatever the kernel supports: for
    /// live frames, loads `sluice_gen` and points it at the sender's veth.
    ///
    /// # Errors
    /// [`GenError::Mix`], [`GenError::Series`], [`GenError::Lab`], [`GenError::Load`],
    /// [`GenError::Program`].
    pub fn with_engine(
        lab: &BenchLab,
        mix: &TrafficMix,
        engine: GenEngine,
    ) -> Result<Self, GenError> {
        let frames = mix.frames(lab.mac(Side::Sender), lab.mac(Side::Receiver))?;
        let series = frames
            .iter()
            .map(|f| match f.kind {
                PayloadKind::SchemaSeries => {
                    series::SeriesVariation::for_frame(&f.bytes, f.inner_udp_offset)
                        .map(Some)
                        .map_err(|source| GenError::Series {
                            payload: f.kind.label(),
                            source,
                        })
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sender_ifindex = lab.ifindex(Side::Sender)?;
        let engine = match engine {
            GenEngine::XdpLive => Engine::XdpLive(XdpLive::load(
                lab,
                sender_ifindex,
                mix.src_port,
                mix.src_ports,
                series,
            )?),
            GenEngine::AfPacket => {
                Engine::AfPacket(AfPacket::new(&frames, mix.src_port, mix.src_ports, series))
            }
        };
        Ok(Self {
            engine,
            frames,
            sender_netns: PathBuf::from("/run/netns").join(lab.sender().name()),
            sender_ifindex,
            src_port: mix.src_port,
            src_ports: mix.src_ports,
        })
    }

    /// The engine this generator sends with.
    pub fn engine(&self) -> GenEngine {
        match self.engine {
            Engine::XdpLive(_) => GenEngine::XdpLive,
            Engine::AfPacket(_) => GenEngine::AfPacket,
        }
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
    /// [`GenError::TestRun`] (e.g. EPERM without CAP_BPF/CAP_NET_ADMIN, or on a kernel
    /// that refuses live frames when that engine was forced), [`GenError::Socket`],
    /// [`GenError::Send`], [`GenError::Enter`], [`GenError::Lab`] (pinning),
    /// [`GenError::Program`] (reading the live-frames counter), [`GenError::Panicked`].
    pub fn run(
        &mut self,
        rate_pps: u64,
        duration: Duration,
        max_packets: u64,
        cpu: usize,
    ) -> Result<GenReport, GenError> {
        let engine = self.engine();
        let before = match &self.engine {
            Engine::XdpLive(live) => live.sent_counter()?,
            Engine::AfPacket(_) => 0,
        };
        let netns = File::open(&self.sender_netns).map_err(|source| GenError::Enter {
            name: self.sender_netns.display().to_string(),
            source,
        })?;
        let name = self.sender_netns.display().to_string();
        let weights: Vec<u32> = self.frames.iter().map(|f| f.weight).collect();
        let (frames, ifindex) = (&self.frames, self.sender_ifindex);
        let engine_state = &mut self.engine;
        let outcome = std::thread::scope(|scope| {
            let handle = scope.spawn(move || -> Result<(pacing::Paced, Duration), GenError> {
                // SAFETY: setns(2) with an open namespace fd, on this thread only.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(GenError::Enter {
                        name,
                        source: std::io::Error::last_os_error(),
                    });
                }
                pin_thread(0, cpu)?;
                let cpu_before = thread_cpu_time();
                let paced = match engine_state {
                    Engine::XdpLive(live) => pacing::pace(
                        &mut live.sender(frames),
                        weights,
                        rate_pps,
                        duration,
                        max_packets,
                    )?,
                    Engine::AfPacket(af_packet) => {
                        let socket = PacketSocket::open(ifindex)?;
                        pacing::pace(
                            &mut af_packet.sender(&socket, frames),
                            weights,
                            rate_pps,
                            duration,
                            max_packets,
                        )?
                    }
                };
                Ok((paced, thread_cpu_time().saturating_sub(cpu_before)))
            });
            handle.join().map_err(|_| GenError::Panicked)
        })?;
        let (paced, thread_cpu) = outcome?;
        let offered = match &self.engine {
            Engine::XdpLive(live) => live.sent_counter()?.saturating_sub(before),
            Engine::AfPacket(_) => paced.frames,
        };
        Ok(GenReport {
            engine,
            offered,
            elapsed: paced.elapsed,
            test_runs: paced.syscalls,
            thread_cpu,
        })
    }

    /// The inner source port range the generator cycles through.
    pub fn src_ports(&self) -> std::ops::Range<u32> {
        u32::from(self.src_port)..u32::from(self.src_port) + u32::from(self.src_ports)
    }
}

/// The engine [`Generator::new`] uses: the one [`ENGINE_ENV`] names, else live frames when
/// this kernel runs them and AF_PACKET when it refuses them (asked once per process; the
/// refusal is printed to stderr).
///
/// # Errors
/// [`GenError::EngineChoice`]; [`GenError::Load`] or [`GenError::Program`] when the
/// probe could not be loaded or failed for another reason than a refusal.
pub fn chosen_engine() -> Result<GenEngine, GenError> {
    Ok(match engine::forced_by_env()? {
        Some(engine) => engine,
        None if xdp_live::live_frames_refusal()?.is_some() => GenEngine::AfPacket,
        None => GenEngine::XdpLive,
    })
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
