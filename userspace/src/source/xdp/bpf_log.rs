//! The XDP program's own log lines, in the daemon's log.
//!
//! The program writes a line (aya-log, through its `AYA_LOGS` ring buffer) for the few
//! decisions that mean something is wrong — a steered packet on a queue without a socket,
//! GRE it does not handle, headers it cannot parse — at most one per reason per CPU every
//! 10 s. A thread of its own (`sluice-bpf-log`) waits on the ring buffer and hands each
//! record to `tracing` under the target `sluice::xdp_program`, so those lines reach the
//! journal with the daemon's own. The counters of the same decisions are
//! `sluice_xdp_verdict_packets_total`; the lines say when and on which queue it started.

use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::Ebpf;
use aya_log::EbpfLogger;

/// How long one wait on the ring buffer lasts before the thread checks whether to stop.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Forwards `log` records (what aya-log produces) to `tracing`.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "sluice::xdp_program", "{message}"),
            log::Level::Warn => tracing::warn!(target: "sluice::xdp_program", "{message}"),
            log::Level::Info => tracing::info!(target: "sluice::xdp_program", "{message}"),
            log::Level::Debug => tracing::debug!(target: "sluice::xdp_program", "{message}"),
            log::Level::Trace => tracing::trace!(target: "sluice::xdp_program", "{message}"),
        }
    }

    fn flush(&self) {}
}

/// The forwarding thread; stopped (and joined) when dropped.
#[derive(Debug)]
pub struct ProgramLog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgramLog {
    /// Takes the program's log ring buffer out of `ebpf` and starts forwarding. `None`
    /// (after a warning) when the object has no log buffer or the thread cannot start:
    /// the program works the same, only its lines are lost (its counters are not).
    pub fn start(ebpf: &mut Ebpf) -> Option<Self> {
        let mut logger = match EbpfLogger::init_with_logger(ebpf, ToTracing) {
            Ok(logger) => logger,
            Err(e) => {
                tracing::warn!(error = %e, "the XDP program's log lines cannot be read; its counters still are");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sluice-bpf-log".into())
            .spawn(move || {
                let timeout = i32::try_from(POLL_INTERVAL.as_millis()).unwrap_or(500);
                while !stopping.load(Ordering::Relaxed) {
                    let mut fd = libc::pollfd {
                        fd: logger.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, for the duration of the call.
                    let ready = unsafe { libc::poll(&raw mut fd, 1, timeout) };
                    if ready > 0 {
                        logger.flush();
                    }
                }
                logger.flush();
            });
        match thread {
            Ok(thread) => Some(Self {
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that forwards the XDP program's log lines");
                None
            }
        }
    }
}

impl Drop for ProgramLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
