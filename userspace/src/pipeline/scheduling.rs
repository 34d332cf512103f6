//! The scheduling class of the workers, so that the receive threads win the CPU whenever
//! they wake.
//!
//! A receive thread does little per frame but must run within a few milliseconds of the
//! kernel filling its ring, or the fill ring runs dry and packets are dropped
//! (`xsk_rx_dropped`). On a small VM it shares the CPUs with the workers, which are busy
//! for as long as traffic flows. Measured on 2 vCPUs at 1–1.5 Mpps (BENCHMARKS.md), the
//! receive thread spent over a second of every ten runnable but waiting behind workers
//! that had the default class. `SCHED_IDLE` workers are preempted at once by any
//! ordinary thread that wakes (the kernel checks this on every wakeup, on every kernel
//! version we support), and a CPU running only them counts as idle when a waking thread
//! looks for one. Lowering one's own class needs no capability and no rlimit.
//!
//! The price: every ordinary thread on the machine comes first, and a busy program that
//! keeps every CPU occupied (a compression job, a build) would leave the workers almost
//! no CPU at all. So with `idle` the pipeline runs one more worker in the default class,
//! the reserve (`pipeline::worker`), which takes frames only while the queue is backed up
//! and then shares the CPU with that program like any ordinary thread; and the sink
//! thread keeps the default class. `pipeline.worker_scheduling = "normal"` (or `"batch"`:
//! ordinary weight, but never preempting on wakeup) puts every worker back in the
//! ordinary share, without a reserve.

use crate::config::WorkerScheduling;

/// Puts the calling thread in `policy`'s class.
///
/// # Errors
/// `sched_setscheduler(2)` failed (e.g. a seccomp filter refused it).
pub fn apply_to_current_thread(policy: WorkerScheduling) -> std::io::Result<()> {
    let class = match policy {
        WorkerScheduling::Normal => return Ok(()),
        WorkerScheduling::Batch => libc::SCHED_BATCH,
        WorkerScheduling::Idle => libc::SCHED_IDLE,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for the
    // non-real-time classes, whose priority must be 0.
    let rc = unsafe { libc::sched_setscheduler(0, class, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The class the calling thread runs in, as `sched_getscheduler(2)` reports it.
pub fn current_class() -> i32 {
    // SAFETY: pid 0 is the calling thread; no memory is passed.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_class_without_privilege() -> std::io::Result<()> {
        let classes = std::thread::spawn(|| {
            let mut seen = Vec::new();
            for policy in [WorkerScheduling::Batch, WorkerScheduling::Idle] {
                apply_to_current_thread(policy)?;
                seen.push(current_class());
            }
            Ok::<_, std::io::Error>(seen)
        })
        .join()
        .map_err(|_| std::io::Error::other("thread panicked"))??;
        assert_eq!(classes, vec![libc::SCHED_BATCH, libc::SCHED_IDLE]);
        // The class is per thread: this one is untouched.
        assert_eq!(current_class(), libc::SCHED_OTHER);
        Ok(())
    }
}
