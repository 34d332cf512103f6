//! Ceiling B: sluice's own XDP program and AF_XDP socket, with a receive loop that only
//! counts — the most the kernel-bypass path can hand to userspace on this machine, against
//! which the full pipeline is judged ("at least 60% of ceiling B").
//!
//! It goes through the `sluice` library exactly as the daemon does
//! ([`XdpProgram::load`], [`XdpProgram::open_sockets`], [`XdpProgram::attach`]; the
//! receive call of `sluice::source::xdp::receive`), but the per-frame work is a counter
//! increment instead of a copy into a frame batch. Everything runs on one thread that has
//! entered the receiver's namespace (interface names and the XDP attach are resolved
//! there).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice::config::{FilterConfig, SourceConfig, XdpAttachMode, XskBindMode};
use sluice::decap::PortFilter;
use sluice::source::xdp::XdpProgram;
use sluice_common::Verdict;

use crate::lab::BenchLab;

/// Why ceiling B could not run.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpCountError {
    /// Loading, socket or attach failed.
    #[error("ceiling B: {0}")]
    Xdp(#[from] sluice::source::xdp::XdpError),
    /// The namespace could not be entered.
    #[error("ceiling B: {0}")]
    Netns(#[from] sluice_testkit::netns::NetnsError),
    /// The counting thread ended before it was ready, or panicked.
    #[error("ceiling B: the receive thread {0}")]
    Thread(&'static str),
}

/// What the counting receiver saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AfXdpCounts {
    /// Packets the XDP program redirected (GRE + plain).
    pub redirected: u64,
    /// Frames read from the RX ring.
    pub received: u64,
    /// The socket's `rx_ring_full`.
    pub ring_full: u64,
    /// The socket's `rx_dropped`.
    pub rx_dropped: u64,
    /// Packets the program passed to the kernel (all pass verdicts).
    pub passed: u64,
    /// CPU seconds of the receive thread.
    pub thread_cpu_seconds: f64,
}

/// The counting thread's result: entering the namespace, then the count itself.
type CountThread =
    JoinHandle<Result<Result<AfXdpCounts, AfXdpCountError>, sluice_testkit::netns::NetnsError>>;

/// A running counting receiver; [`AfXdpCounter::stop`] detaches and returns the counts.
/// Dropping it stops the thread too (the program is detached when the thread ends).
#[derive(Debug)]
pub struct AfXdpCounter {
    stop: Arc<AtomicBool>,
    handle: Option<CountThread>,
}

impl Drop for AfXdpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}

impl AfXdpCounter {
    /// Loads and attaches (native mode) sluice's program on the receiver's veth, steering
    /// `ports` (GRE and plain UDP), with one copy-mode AF_XDP socket on queue 0, and starts
    /// counting. Returns once the program is attached.
    ///
    /// # Errors
    /// [`AfXdpCountError`] when loading, binding or attaching fails.
    pub fn start(lab: &BenchLab, ports: &[u16]) -> Result<AfXdpCounter, AfXdpCountError> {
        let source = SourceConfig {
            interface: lab.receiver_if().to_owned(),
            queues: vec![0],
            xdp_mode: XdpAttachMode::Native,
            bind_mode: XskBindMode::Copy,
            ..SourceConfig::default()
        };
        let filter = PortFilter::new(&FilterConfig {
            ports: ports.to_vec(),
            plain_udp: true,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread_stop = Arc::clone(&stop);
        let handle = lab
            .receiver()
            .spawn_in(move || count(&source, &filter, &thread_stop, &ready_tx))?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(AfXdpCounter {
                stop,
                handle: Some(handle),
            }),
            Ok(Err(_)) | Err(_) => {
                stop.store(true, Ordering::Release);
                match handle.join() {
                    Ok(Ok(Err(e))) => Err(e),
                    Ok(Err(e)) => Err(e.into()),
                    Ok(Ok(Ok(_))) => Err(AfXdpCountError::Thread("stopped before it was ready")),
                    Err(_) => Err(AfXdpCountError::Thread("panicked")),
                }
            }
        }
    }

    /// Detaches, drains the ring and returns the counts.
    ///
    /// # Errors
    /// [`AfXdpCountError`] from the thread.
    pub fn stop(mut self) -> Result<AfXdpCounts, AfXdpCountError> {
        self.stop.store(true, Ordering::Release);
        let Some(handle) = self.handle.take() else {
            return Err(AfXdpCountError::Thread("was already stopped"));
        };
        match handle.join() {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(AfXdpCountError::Thread("panicked")),
        }
    }
}

/// The thread's body: set up, count until `stop`, drain, read every counter.
fn count(
    source: &SourceConfig,
    filter: &PortFilter,
    stop: &AtomicBool,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<AfXdpCounts, AfXdpCountError> {
    let setup = || -> Result<_, AfXdpCountError> {
        let mut program = XdpProgram::load(source, filter)?;
        let sockets = program.open_sockets(source)?;
        program.attach(source.xdp_mode)?;
        Ok((program, sockets))
    };
    let (mut program, mut sockets) = match setup() {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));
    let cpu_start = thread_cpu_seconds();
    let mut received = 0u64;
    let Some(socket) = sockets.first_mut() else {
        return Err(AfXdpCountError::Thread("has no socket"));
    };

    while !stop.load(Ordering::Acquire) {
        let n = socket.receive(64, |_| {});
        received += n as u64;
        if n == 0 {
            let _ = socket.wait_readable(Duration::from_millis(10));
        }
    }
    // As the daemon: detach, let packets in flight land, drain until the ring stays empty.
    program.detach();
    std::thread::sleep(Duration::from_millis(50));
    let drain_until = Instant::now() + Duration::from_secs(2);
    let mut idle = 0;
    while idle < 3 && Instant::now() < drain_until {
        let n = socket.receive(64, |_| {});
        received += n as u64;
        if n == 0 {
            idle += 1;
            let _ = socket.wait_readable(Duration::from_millis(10));
        } else {
            idle = 0;
        }
    }
    let thread_cpu = thread_cpu_seconds() - cpu_start;
    let stats = socket.statistics().unwrap_or_default();
    let verdicts = program.verdict_counts()?;
    let redirected =
        verdicts[Verdict::RedirectGre as usize] + verdicts[Verdict::RedirectPlain as usize];
    Ok(AfXdpCounts {
        redirected,
        received,
        ring_full: stats.rx_ring_full,
        rx_dropped: stats.rx_dropped,
        passed: verdicts.iter().sum::<u64>() - redirected,
        thread_cpu_seconds: thread_cpu,
    })
}
