//! What the threads of one process did, from `/proc/PID/task/TID`: their CPU time, summed
//! by name (the objects mode's uploader threads; the daemon's receive threads, workers,
//! sink and the rest in the packet-rate rows), and the time the receive threads spent
//! runnable but not running (run-queue wait), the diagnostic for "the fill ring ran dry
//! because the receive thread did not run".
//!
//! Each thread's CPU time is its `se.sum_exec_runtime` (`/proc/PID/task/TID/sched`,
//! nanoseconds), not utime+stime from its `stat`: those are whole clock ticks, cut per
//! thread, and a thread that runs well under a tick per second (the uploader's dozen, the
//! daemon's sink at low rates) reads 0 where the runtime says milliseconds. `stat` is the
//! fallback on kernels without the `sched` file. A thread that has exited leaves
//! `/proc/PID/task` with its CPU time, so [`ThreadCpu`] keeps the last value of every
//! thread it has seen; threads born and gone between two samples are missed (the
//! daemon's threads live as long as it does, the uploader's are sampled every second).
//!
//! Run-queue wait is the second field of `/proc/PID/task/TID/schedstat` (`run_delay`,
//! nanoseconds). [`WaitSampler`] reads it every ~20 ms while traffic runs, so besides the
//! total it can tell the worst 20 ms: a receive thread that waited 15 ms of 20 has let
//! the fill ring run dry at any rate above a few hundred thousand packets per second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::cpu;

/// How often [`WaitSampler::watch`] reads the receive threads' run-queue wait.
pub const WAIT_SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// `se.sum_exec_runtime` (milliseconds) of a `/proc/PID/task/TID/sched` text, in seconds.
pub fn parse_sum_exec_runtime(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("se.sum_exec_runtime")?;
        let milliseconds: f64 = value.trim_start().strip_prefix(':')?.trim().parse().ok()?;
        Some(milliseconds / 1e3)
    })
}

/// `(run, run-queue wait)` nanoseconds of a `/proc/PID/task/TID/schedstat` text
/// (`<sum_exec_runtime> <run_delay> <timeslices>`).
pub fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
    let run = fields.next()?.ok()?;
    let wait = fields.next()?.ok()?;
    Some((run, wait))
}

/// CPU seconds of the thread whose `/proc` directory is `task`: its runtime from
/// `sched`, or utime+stime from `stat`.
fn thread_seconds(task: &Path) -> Option<f64> {
    if let Some(seconds) = std::fs::read_to_string(task.join("sched"))
        .ok()
        .and_then(|text| parse_sum_exec_runtime(&text))
    {
        return Some(seconds);
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    let ticks = cpu::parse_pid_stat(&stat).ok()?;
    Some(ticks as f64 / cpu::ticks_per_second())
}

/// `(tid, comm, directory)` of every thread of `pid` whose name starts with `prefix`.
fn tasks_of(pid: u32, prefix: &str) -> Vec<(u32, String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let comm = comm.trim_end().to_owned();
            comm.starts_with(prefix).then(|| (tid, comm, entry.path()))
        })
        .collect()
}

/// The daemon's threads, by the names `sluice run` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ThreadGroup {
    /// `sluice-rx-q<N>` (one per AF_XDP queue), or `sluice-udp` (the UDP source).
    Receive,
    /// `sluice-worker-<N>`: decode and encode; and `sluice-reserve`, the worker that
    /// works only when the queue backs up.
    Workers,
    /// `sluice-sink`: writes (and fsyncs) the batch files.
    Sink,
    /// Everything else: the main thread, metrics, the BPF log reader.
    Other,
}

impl ThreadGroup {
    /// The group of a thread named `comm`.
    pub fn of(comm: &str) -> ThreadGroup {
        if comm.starts_with("sluice-rx-q") || comm == "sluice-udp" {
            ThreadGroup::Receive
        } else if comm.starts_with("sluice-worker-") || comm == "sluice-reserve" {
            ThreadGroup::Workers
        } else if comm == "sluice-sink" {
            ThreadGroup::Sink
        } else {
            ThreadGroup::Other
        }
    }
}

/// CPU seconds of the daemon's thread groups over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThreadGroupCpu {
    /// [`ThreadGroup::Receive`].
    pub receive: f64,
    /// [`ThreadGroup::Workers`].
    pub workers: f64,
    /// [`ThreadGroup::Sink`].
    pub sink: f64,
    /// [`ThreadGroup::Other`].
    pub other: f64,
}

impl ThreadGroupCpu {
    /// All groups together.
    pub fn total(&self) -> f64 {
        self.receive + self.workers + self.sink + self.other
    }
}

/// CPU time of the threads of one process whose name starts with a prefix (`""`: all of
/// them), over a window (see the module docs).
#[derive(Clone, Debug)]
pub struct ThreadCpu {
    pid: u32,
    prefix: &'static str,
    /// CPU seconds of each thread when first seen in the window (0 for threads born in
    /// it).
    baseline: BTreeMap<u32, f64>,
    /// Name and CPU seconds of each thread at its last sample.
    latest: BTreeMap<u32, (String, f64)>,
}

impl ThreadCpu {
    /// Starts the window: the threads of `pid` named `prefix*` now are its baseline.
    pub fn start(pid: u32, prefix: &'static str) -> ThreadCpu {
        let mut threads = ThreadCpu {
            pid,
            prefix,
            baseline: BTreeMap::new(),
            latest: BTreeMap::new(),
        };
        threads.sample();
        threads.baseline = threads
            .latest
            .iter()
            .map(|(tid, (_, seconds))| (*tid, *seconds))
            .collect();
        threads
    }

    /// Reads every matching thread again; a thread not in the baseline was born in the
    /// window and counts from 0.
    pub fn sample(&mut self) {
        for (tid, comm, task) in tasks_of(self.pid, self.prefix) {
            let Some(seconds) = thread_seconds(&task) else {
                continue;
            };
            self.baseline.entry(tid).or_insert(0.0);
            self.latest.insert(tid, (comm, seconds));
        }
    }

    /// CPU seconds since the window started of the matching threads whose name `keep`
    /// accepts.
    fn seconds_where(&self, keep: impl Fn(&str) -> bool) -> f64 {
        self.latest
            .iter()
            .filter(|(_, (comm, _))| keep(comm))
            .map(|(tid, (_, latest))| {
                (latest - self.baseline.get(tid).copied().unwrap_or(0.0)).max(0.0)
            })
            .sum()
    }

    /// CPU seconds of the matching threads since the window started.
    pub fn seconds(&self) -> f64 {
        self.seconds_where(|_| true)
    }

    /// The same, by [`ThreadGroup`].
    pub fn by_group(&self) -> ThreadGroupCpu {
        let group = |g: ThreadGroup| self.seconds_where(|comm| ThreadGroup::of(comm) == g);
        ThreadGroupCpu {
            receive: group(ThreadGroup::Receive),
            workers: group(ThreadGroup::Workers),
            sink: group(ThreadGroup::Sink),
            other: group(ThreadGroup::Other),
        }
    }

    /// Threads seen in the window.
    pub fn threads(&self) -> usize {
        self.latest.len()
    }
}

/// Run-queue wait of a thread group over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunQueueWait {
    /// Seconds the group's threads were runnable but not running, summed over them.
    pub seconds: f64,
    /// The most one thread waited between two consecutive samples (~20 ms apart).
    pub worst_window_seconds: f64,
    /// Sample windows read.
    pub windows: u64,
    /// Threads watched.
    pub threads: usize,
}

/// Reads the run-queue wait of a group of threads, sample by sample (see the module
/// docs).
#[derive(Clone, Debug)]
pub struct WaitSampler {
    /// `schedstat` of each watched thread.
    files: Vec<PathBuf>,
    /// Wait (ns) of each thread at its first reading.
    first: Vec<Option<u64>>,
    /// Wait (ns) of each thread at its last reading.
    last: Vec<Option<u64>>,
    /// The largest wait (ns) of one thread between two samples.
    worst: u64,
    /// Sample windows seen.
    windows: u64,
}

impl WaitSampler {
    /// Watches the threads of `pid` in `group` (those alive now).
    pub fn start(pid: u32, group: ThreadGroup) -> WaitSampler {
        let files = tasks_of(pid, "")
            .into_iter()
            .filter(|(_, comm, _)| ThreadGroup::of(comm) == group)
            .map(|(_, _, task)| task.join("schedstat"))
            .collect();
        let mut sampler = WaitSampler::watching(files);
        sampler.sample();
        sampler
    }

    /// A sampler of these `schedstat` files, nothing read yet.
    fn watching(files: Vec<PathBuf>) -> WaitSampler {
        let n = files.len();
        WaitSampler {
            files,
            first: vec![None; n],
            last: vec![None; n],
            worst: 0,
            windows: 0,
        }
    }

    /// Reads every watched thread's wait once.
    pub fn sample(&mut self) {
        let readings: Vec<Option<u64>> = self
            .files
            .iter()
            .map(|file| {
                std::fs::read_to_string(file)
                    .ok()
                    .and_then(|text| parse_schedstat(&text))
                    .map(|(_, wait)| wait)
            })
            .collect();
        self.record(&readings);
    }

    /// Takes one reading per watched thread (`None`: unreadable, e.g. the thread is gone).
    fn record(&mut self, readings: &[Option<u64>]) {
        let mut any_window = false;
        for ((first, last), reading) in self.first.iter_mut().zip(&mut self.last).zip(readings) {
            let Some(now) = *reading else { continue };
            if let Some(before) = *last {
                self.worst = self.worst.max(now.saturating_sub(before));
                any_window = true;
            }
            first.get_or_insert(now);
            *last = Some(now);
        }
        self.windows += u64::from(any_window);
    }

    /// Samples every [`WAIT_SAMPLE_EVERY`] until `done` is set, once more at the end, and
    /// returns itself.
    pub fn watch(mut self, done: &AtomicBool) -> WaitSampler {
        let mut next = Instant::now() + WAIT_SAMPLE_EVERY;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            next += WAIT_SAMPLE_EVERY;
            self.sample();
        }
        self.sample();
        self
    }

    /// What was read; `None` when no thread of the group was found.
    pub fn result(&self) -> Option<RunQueueWait> {
        if self.files.is_empty() {
            return None;
        }
        let nanoseconds: u64 = self
            .first
            .iter()
            .zip(&self.last)
            .filter_map(|(first, last)| Some(last.as_ref()?.saturating_sub(*first.as_ref()?)))
            .sum();
        Some(RunQueueWait {
            seconds: nanoseconds as f64 / 1e9,
            worst_window_seconds: self.worst as f64 / 1e9,
            windows: self.windows,
            threads: self.files.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_read_from_the_sched_file() {
        let text = "sluice-upload-r (4242, #threads: 20)\n\
                    -------------------------------------------------------------------\n\
                    se.exec_start                                :      10880411.036589\n\
                    se.vruntime                                  :        234611.142359\n\
                    se.sum_exec_runtime                          :          1234.500000\n\
                    se.nr_migrations                             :                    1\n";
        assert_eq!(parse_sum_exec_runtime(text), Some(1.2345));
        assert_eq!(parse_sum_exec_runtime("se.vruntime : 1.0\n"), None);
    }

    #[test]
    fn schedstat_gives_runtime_and_wait() {
        assert_eq!(
            parse_schedstat("147093 1265924 2\n"),
            Some((147_093, 1_265_924))
        );
        assert_eq!(parse_schedstat("147093\n"), None);
        assert_eq!(parse_schedstat("x 1 2\n"), None);
    }

    #[test]
    fn threads_are_grouped_by_the_daemons_names() {
        assert_eq!(ThreadGroup::of("sluice-rx-q0"), ThreadGroup::Receive);
        assert_eq!(ThreadGroup::of("sluice-rx-q12"), ThreadGroup::Receive);
        assert_eq!(ThreadGroup::of("sluice-udp"), ThreadGroup::Receive);
        assert_eq!(ThreadGroup::of("sluice-worker-1"), ThreadGroup::Workers);
        assert_eq!(ThreadGroup::of("sluice-reserve"), ThreadGroup::Workers);
        assert_eq!(ThreadGroup::of("sluice-sink"), ThreadGroup::Sink);
        assert_eq!(ThreadGroup::of("sluice"), ThreadGroup::Other);
        assert_eq!(ThreadGroup::of("sluice-metrics"), ThreadGroup::Other);
        let cpu = ThreadGroupCpu {
            receive: 0.5,
            workers: 1.0,
            sink: 0.25,
            other: 0.125,
        };
        assert_eq!(cpu.total(), 1.875);
    }

    #[test]
    fn run_queue_wait_sums_the_window_and_keeps_the_worst_sample() {
        let mut sampler = WaitSampler::watching(vec!["a".into(), "b".into()]);
        sampler.record(&[Some(1_000_000), None]);
        sampler.record(&[Some(3_000_000), Some(500)]);
        sampler.record(&[Some(18_000_000), Some(2_000_500)]);
        sampler.record(&[None, Some(2_000_700)]);
        let wait = sampler.result().expect("two threads");
        assert_eq!(wait.threads, 2);
        assert_eq!(wait.windows, 3);
        // Thread a: 17 ms from its first reading, thread b: 2.0002 ms.
        assert!((wait.seconds - 0.019_000_2).abs() < 1e-12, "{wait:?}");
        assert!(
            (wait.worst_window_seconds - 0.015).abs() < 1e-12,
            "{wait:?}"
        );
        assert_eq!(WaitSampler::watching(Vec::new()).result(), None);
    }

    #[test]
    fn thread_cpu_counts_only_the_named_threads_of_the_process() {
        let mut threads = ThreadCpu::start(std::process::id(), "no-such-thread-name");
        threads.sample();
        assert_eq!(threads.threads(), 0);
        assert_eq!(threads.seconds(), 0.0);
        let spin = std::thread::Builder::new()
            .name("threads-probe-t".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(30) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                std::thread::sleep(Duration::from_millis(300));
                x
            })
            .expect("spawn");
        let mut threads = ThreadCpu::start(std::process::id(), "threads-probe");
        std::thread::sleep(Duration::from_millis(100));
        threads.sample();
        let _ = spin.join();
        assert_eq!(threads.threads(), 1);
        assert!(threads.seconds() < 0.2, "{}", threads.seconds());
        assert_eq!(threads.by_group().other, threads.seconds());
        assert_eq!(
            WaitSampler::start(std::process::id(), ThreadGroup::Sink).result(),
            None
        );
    }
}
