//! What one row of the packet-rate table measured, and the figures derived from it.
//!
//! A *measurement* is one receiver set-up at one offered rate: what the generator offered,
//! what the receiver's XDP program saw, what reached userspace, what was recorded and what
//! was dropped by reason, plus the CPU it cost. Everything the table, the chart and the
//! targets need is computed here, in one place, from those counts.
//!
//! CPU comes from three places that do not always agree. The receiving process's own
//! account (`/proc/PID/stat`, and per thread `se.sum_exec_runtime`) and the generator
//! thread's clock are exact; the machine-wide busy time of `/proc/stat` is tick-sampled,
//! and on some VMs misses most of it (XDP count-and-drop read 1% busy at 1 Mpps). A step
//! whose machine-wide busy time is less than what the generator thread and the receiving
//! process used on their own, or whose generator core is less busy than the generator
//! thread pinned to it, cannot be right, so its machine-wide figures are withheld
//! ([`Measurement::machine_cpu_trusted`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::cpu::CpuUsage;
use super::threads::{RunQueueWait, ThreadGroupCpu};

/// The receiver set-up of a row of the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Receiver {
    /// Ceiling A: an XDP program that counts and drops.
    CountDrop,
    /// Ceiling B: sluice's XDP program and AF_XDP socket, a receive loop that only counts.
    AfXdpCount,
    /// `sluice run` with the XDP source, records on the disk of `--records-dir`.
    Sluice(Pipeline),
    /// The same with its records on tmpfs (`/dev/shm`), beside it for comparison.
    SluiceTmpfs(Pipeline),
    /// `sluice run` with the UDP source behind tc-ingress GRE decapsulation.
    KernelTc(Pipeline),
    /// `sluice run` with the UDP source behind the kernel's VXLAN device.
    KernelVxlan(Pipeline),
}

/// The decoder and file format of a sluice row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pipeline {
    /// Which decoder the payloads go through.
    pub decoder: DecoderChoice,
    /// Which file format the sink writes.
    pub format: FormatChoice,
}

/// Decoder of a sluice row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecoderChoice {
    /// No `[[decoder]]`: the `raw` stream (length + base64 payload).
    Raw,
    /// The declarative `schema` decoder on the generator's schema-layout payload.
    Schema,
    /// The `lua` decoder running the Vector script of docs/examples/acme-sensor-v2.lua on
    /// the same payload: the same rows as [`DecoderChoice::Schema`], so the two rows
    /// compare a script with the declarative layout.
    Lua,
}

/// Sink format of a sluice row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FormatChoice {
    /// `format = "ndjson_zstd"`.
    NdjsonZstd,
    /// `format = "parquet"`.
    Parquet,
}

impl DecoderChoice {
    /// `raw` / `schema` / `lua`.
    pub fn name(self) -> &'static str {
        match self {
            DecoderChoice::Raw => "raw",
            DecoderChoice::Schema => "schema",
            DecoderChoice::Lua => "lua",
        }
    }

    /// True for the decoders of the ACME-SENSOR v2 payload (`schema` and `lua`): their
    /// rows are offered the generator's schema payload on the schema port.
    pub fn reads_acme_sensor(self) -> bool {
        matches!(self, DecoderChoice::Schema | DecoderChoice::Lua)
    }
}

impl FormatChoice {
    /// The `[sink] format` value.
    pub fn config_value(self) -> &'static str {
        match self {
            FormatChoice::NdjsonZstd => "ndjson_zstd",
            FormatChoice::Parquet => "parquet",
        }
    }

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            FormatChoice::NdjsonZstd => "NDJSON+zstd",
            FormatChoice::Parquet => "Parquet",
        }
    }
}

impl Receiver {
    /// The row's label in the table and the chart.
    pub fn label(&self) -> String {
        let pipe = |p: &Pipeline| format!("{} → {}", p.decoder.name(), p.format.label());
        match self {
            Receiver::CountDrop => "A: XDP count-and-drop".into(),
            Receiver::AfXdpCount => "B: AF_XDP receive, count only".into(),
            Receiver::Sluice(p) => format!("sluice XDP, {}", pipe(p)),
            Receiver::SluiceTmpfs(p) => format!("sluice XDP, {} (tmpfs)", pipe(p)),
            Receiver::KernelTc(p) => format!("kernel tc-decap + UDP, {}", pipe(p)),
            Receiver::KernelVxlan(p) => format!("kernel VXLAN + UDP, {}", pipe(p)),
        }
    }

    /// The sluice pipeline, for the rows that run the daemon.
    pub fn pipeline(&self) -> Option<Pipeline> {
        match self {
            Receiver::CountDrop | Receiver::AfXdpCount => None,
            Receiver::Sluice(p)
            | Receiver::SluiceTmpfs(p)
            | Receiver::KernelTc(p)
            | Receiver::KernelVxlan(p) => Some(*p),
        }
    }

    /// True for the sluice XDP rows (disk and tmpfs), the ones `--runs` repeats.
    pub fn is_sluice_xdp(&self) -> bool {
        matches!(self, Receiver::Sluice(_) | Receiver::SluiceTmpfs(_))
    }

    /// True for the rows whose records go to tmpfs.
    pub fn records_in_memory(&self) -> bool {
        matches!(self, Receiver::SluiceTmpfs(_))
    }

    /// True for the kernel-path rows.
    pub fn is_kernel_path(&self) -> bool {
        matches!(self, Receiver::KernelTc(_) | Receiver::KernelVxlan(_))
    }
}

/// One receiver at one offered rate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// The rate asked of the generator, packets/s; `None` = flat out.
    pub target_pps: Option<f64>,
    /// Packets the generator offered.
    pub offered: u64,
    /// How long the generator ran.
    pub elapsed: Duration,
    /// Packets the receiver's XDP program took (count-and-drop's counter, sluice's
    /// redirect counters); `None` where no XDP program sits on the receive path.
    pub seen_by_xdp: Option<u64>,
    /// Packets that reached the receiver's userspace (AF_XDP ring or UDP socket).
    pub received: Option<u64>,
    /// Packets recorded (sluice rows), or counted (ceilings).
    pub handled: u64,
    /// Packets dropped by the receiver, by reason (sluice's reasons, AF_XDP counters).
    pub dropped: BTreeMap<String, u64>,
    /// Machine-wide CPU from the start of traffic to the end of the settle time (busy
    /// and softirq shares over the traffic alone).
    pub cpu: CpuUsage,
    /// CPU seconds of the generator thread.
    pub generator_cpu_seconds: Option<f64>,
    /// The core the generator thread was pinned to.
    pub generator_core: Option<usize>,
    /// CPU seconds of the receiving process (AF_XDP counter thread or sluice) from the
    /// start of traffic until it was stopped, if any.
    pub process_cpu_seconds: Option<f64>,
    /// The daemon's CPU seconds over the same window, by thread group.
    pub thread_cpu: Option<ThreadGroupCpu>,
    /// The daemon's receive threads' run-queue wait while traffic ran.
    pub receive_wait: Option<RunQueueWait>,
    /// Peak RSS of sluice (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
    /// For sluice rows: seen, recorded, dropped total and whether seen = recorded + dropped.
    pub accounting: Option<Accounting>,
    /// What went wrong, if the row could not be measured.
    pub error: Option<String>,
}

/// sluice's own account of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Packets sluice saw.
    pub seen: u64,
    /// Packets recorded.
    pub recorded: u64,
    /// Packets dropped, all reasons.
    pub dropped_total: u64,
    /// Packets still in flight at exit (must be 0).
    pub in_flight: u64,
    /// Records (rows) written.
    pub records_written: u64,
    /// The daemon's exit status, as text.
    pub exit: String,
}

impl Accounting {
    /// seen = recorded + dropped, nothing in flight.
    pub fn balanced(&self) -> bool {
        self.seen == self.recorded + self.dropped_total && self.in_flight == 0
    }
}

impl Measurement {
    fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Offered packets per second.
    pub fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.seconds()
    }

    /// Recorded (or counted) packets per second.
    pub fn handled_pps(&self) -> f64 {
        self.handled as f64 / self.seconds()
    }

    /// Offered but not handled, wherever it was lost.
    pub fn lost(&self) -> u64 {
        self.offered.saturating_sub(self.handled)
    }

    /// Offered but never seen by the receiver's XDP program (lost on the wire / veth, or
    /// passed to the kernel), where there is such a program.
    pub fn lost_before_xdp(&self) -> Option<u64> {
        self.seen_by_xdp
            .map(|seen| self.offered.saturating_sub(seen))
    }

    /// Sum of the receiver's drop counters.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// No packet lost or dropped, and the row was measured.
    pub fn zero_loss(&self) -> bool {
        self.error.is_none() && self.offered > 0 && self.lost() == 0 && self.dropped_total() == 0
    }

    /// The offered rate as a share of the asked rate, when the generator fell more than
    /// 10% short of it (a busy generator core, or the generator's own ceiling).
    pub fn generator_shortfall(&self) -> Option<f64> {
        let asked = self.target_pps?;
        let share = self.offered_pps() / asked;
        (self.error.is_none() && share < 0.9).then_some(share)
    }

    /// `seconds` of CPU per packet handled, in microseconds.
    fn per_packet_us(&self, seconds: f64) -> Option<f64> {
        (self.handled > 0).then(|| seconds * 1e6 / self.handled as f64)
    }

    /// False when /proc/stat counted less busy time on the whole machine than the
    /// generator thread and the receiving process used on their own, or less on the
    /// generator's core than the generator thread pinned to it (less a tick-sampling
    /// slack: 5% and two clock ticks): then it missed time, and none of its figures for
    /// the step (busy time, busy and softirq shares) is shown. The per-core check is the
    /// sharper one: other work on the machine can make up the total, not that core.
    pub fn machine_cpu_trusted(&self) -> bool {
        let known =
            self.generator_cpu_seconds.unwrap_or(0.0) + self.process_cpu_seconds.unwrap_or(0.0);
        if self.cpu.busy_seconds < known {
            return false;
        }
        match (self.generator_core, self.generator_cpu_seconds) {
            (Some(core), Some(generator)) => {
                let busy = self.cpu.core_busy_seconds.get(core).copied().unwrap_or(0.0);
                busy >= generator * 0.95 - 2.0 / super::cpu::ticks_per_second()
            }
            _ => true,
        }
    }

    /// The generator thread's CPU µs per packet offered (the sending side's cost: the
    /// test runs, and the veth and the receiver's XDP where they run in its context).
    pub fn generator_us_per_packet(&self) -> Option<f64> {
        let seconds = self.generator_cpu_seconds?;
        (self.offered > 0).then(|| seconds * 1e6 / self.offered as f64)
    }

    /// Machine-wide busy CPU µs per packet handled, where /proc/stat can be trusted.
    pub fn machine_us_per_packet(&self) -> Option<f64> {
        if !self.machine_cpu_trusted() {
            return None;
        }
        self.per_packet_us(self.cpu.busy_seconds)
    }

    /// The receiving process's CPU µs per packet handled.
    pub fn process_us_per_packet(&self) -> Option<f64> {
        self.per_packet_us(self.process_cpu_seconds?)
    }

    /// The daemon's CPU µs per packet handled, by thread group.
    pub fn thread_us_per_packet(&self) -> Option<ThreadGroupCpu> {
        let cpu = self.thread_cpu?;
        Some(ThreadGroupCpu {
            receive: self.per_packet_us(cpu.receive)?,
            workers: self.per_packet_us(cpu.workers)?,
            sink: self.per_packet_us(cpu.sink)?,
            other: self.per_packet_us(cpu.other)?,
        })
    }

    /// The receive threads' run-queue wait in ms per second of traffic.
    pub fn receive_wait_ms_per_second(&self) -> Option<f64> {
        let wait = self.receive_wait?;
        Some(wait.seconds * 1e3 / self.seconds())
    }

    /// `ring_full 12, worker_queue_full 3`, or `none`.
    pub fn drop_reasons(&self) -> String {
        drop_reasons(&self.dropped)
    }

    /// Where every lost packet went, in words (for the console and the table).
    pub fn loss_summary(&self) -> String {
        if let Some(error) = &self.error {
            return format!("not measured: {error}");
        }
        let mut parts = Vec::new();
        if let Some(before) = self.lost_before_xdp()
            && before > 0
        {
            parts.push(format!("{before} never reached XDP"));
        }
        if self.seen_by_xdp.is_none() && self.lost() > self.dropped_total() {
            parts.push(format!(
                "{} lost in the kernel before the socket",
                self.lost() - self.dropped_total()
            ));
        }
        if self.dropped_total() > 0 {
            parts.push(format!("dropped: {}", self.drop_reasons()));
        }
        if parts.is_empty() {
            "no loss".into()
        } else {
            parts.join("; ")
        }
    }
}

/// One sweep of one receiver over the offered rates, in the order they were taken.
#[derive(Clone, Debug, PartialEq)]
pub struct RowResults {
    /// The receiver.
    pub receiver: Receiver,
    /// Which sweep of this receiver it is (0-based; `--runs` repeats the sluice XDP rows).
    pub run: usize,
    /// One per offered rate.
    pub steps: Vec<Measurement>,
}

impl RowResults {
    /// The highest offered rate (packets/s) handled with no loss at all.
    pub fn zero_loss_pps(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|m| m.zero_loss())
            .map(Measurement::offered_pps)
            .max_by(f64::total_cmp)
    }

    /// The highest rate handled (packets/s) at any step.
    pub fn peak_handled_pps(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|m| m.error.is_none())
            .map(Measurement::handled_pps)
            .max_by(f64::total_cmp)
    }

    /// The step with the highest offered rate among those with no loss at all.
    pub fn highest_zero_loss_step(&self) -> Option<&Measurement> {
        self.steps
            .iter()
            .filter(|m| m.zero_loss())
            .max_by(|a, b| a.offered_pps().total_cmp(&b.offered_pps()))
    }

    /// The receiving process's CPU µs per packet at the highest zero-loss step (the cost
    /// when keeping up).
    pub fn process_us_at_zero_loss(&self) -> Option<f64> {
        self.highest_zero_loss_step()
            .and_then(Measurement::process_us_per_packet)
    }

    /// The step asked for `pps`, if it was one and was measured.
    pub fn step_at(&self, pps: f64) -> Option<&Measurement> {
        self.steps
            .iter()
            .find(|m| m.target_pps == Some(pps) && m.error.is_none())
    }

    /// True when a step asked for `pps` (measured or not).
    pub fn asked(&self, pps: f64) -> bool {
        self.steps.iter().any(|m| m.target_pps == Some(pps))
    }
}

/// Every sweep of one receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiverRuns<'a> {
    /// The receiver.
    pub receiver: &'a Receiver,
    /// Its sweeps, in the order they ran.
    pub runs: Vec<&'a RowResults>,
}

/// The sweeps of `rows` by receiver, receivers in the order they first appear.
pub fn by_receiver(rows: &[RowResults]) -> Vec<ReceiverRuns<'_>> {
    let mut out: Vec<ReceiverRuns<'_>> = Vec::new();
    for row in rows {
        match out.iter_mut().find(|r| *r.receiver == row.receiver) {
            Some(entry) => entry.runs.push(row),
            None => out.push(ReceiverRuns {
                receiver: &row.receiver,
                runs: vec![row],
            }),
        }
    }
    out
}

/// Nonzero drop counters as `ring_full 12, worker_queue_full 3`, or `none`.
pub fn drop_reasons(dropped: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: u64, handled: u64, dropped: &[(&str, u64)]) -> Measurement {
        Measurement {
            target_pps: Some(offered as f64),
            offered,
            elapsed: Duration::from_secs(1),
            seen_by_xdp: Some(offered),
            received: Some(handled),
            handled,
            dropped: dropped.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            cpu: CpuUsage {
                busy_percent: vec![50.0, 50.0],
                softirq_percent: vec![0.0, 0.0],
                busy_seconds: 1.0,
                core_busy_seconds: vec![0.5, 0.5],
            },
            ..Measurement::default()
        }
    }

    #[test]
    fn zero_loss_needs_every_packet_and_no_drop() {
        assert!(step(100, 100, &[]).zero_loss());
        assert!(!step(100, 99, &[("ring_full", 1)]).zero_loss());
        let mut errored = step(100, 100, &[]);
        errored.error = Some("x".into());
        assert!(!errored.zero_loss());
        assert_eq!(
            step(100, 99, &[("ring_full", 1)]).drop_reasons(),
            "ring_full 1"
        );
        assert_eq!(
            step(100, 99, &[("ring_full", 1)]).loss_summary(),
            "dropped: ring_full 1"
        );
    }

    #[test]
    fn row_figures_pick_the_right_steps() {
        let mut steps = vec![
            step(1_000_000, 1_000_000, &[]),
            step(2_000_000, 2_000_000, &[]),
            step(3_000_000, 2_500_000, &[("worker_queue_full", 500_000)]),
        ];
        steps[1].process_cpu_seconds = Some(0.9);
        let row = RowResults {
            receiver: Receiver::CountDrop,
            run: 0,
            steps,
        };
        assert_eq!(row.zero_loss_pps(), Some(2_000_000.0));
        assert_eq!(row.peak_handled_pps(), Some(2_500_000.0));
        assert_eq!(row.process_us_at_zero_loss(), Some(0.45));
        assert_eq!(
            row.highest_zero_loss_step().map(|m| m.offered),
            Some(2_000_000)
        );
        assert_eq!(row.step_at(1e6).map(|m| m.offered), Some(1_000_000));
        assert!(row.asked(3e6));
        assert!(!row.asked(1.5e6));
    }

    #[test]
    fn machine_cpu_is_withheld_when_it_is_less_than_the_known_threads() {
        let mut m = step(1_000_000, 1_000_000, &[]);
        m.generator_cpu_seconds = Some(0.25);
        m.process_cpu_seconds = Some(0.5);
        // busy_seconds 1.0 >= 0.25 + 0.5
        assert!(m.machine_cpu_trusted());
        assert_eq!(m.machine_us_per_packet(), Some(1.0));
        assert_eq!(m.process_us_per_packet(), Some(0.5));
        m.process_cpu_seconds = Some(0.8);
        assert!(!m.machine_cpu_trusted());
        assert_eq!(m.machine_us_per_packet(), None);
        assert_eq!(m.process_us_per_packet(), Some(0.8));
        // The generator's core must show the generator's time (within 5% and 2 ticks).
        m.process_cpu_seconds = Some(0.5);
        m.generator_core = Some(0);
        m.generator_cpu_seconds = Some(0.5);
        assert!(m.machine_cpu_trusted());
        m.cpu.core_busy_seconds = vec![0.01, 0.99];
        assert!(
            !m.machine_cpu_trusted(),
            "core 0 missed the generator's time"
        );
        assert_eq!(m.machine_us_per_packet(), None);
        assert_eq!(m.generator_us_per_packet(), Some(0.5));
        // Nothing known to compare with: shown as read.
        let bare = Measurement {
            generator_cpu_seconds: None,
            process_cpu_seconds: None,
            ..step(10, 10, &[])
        };
        assert!(bare.machine_cpu_trusted());
    }

    #[test]
    fn thread_groups_and_run_queue_wait_are_per_packet_and_per_second() {
        let mut m = step(2_000_000, 2_000_000, &[]);
        m.elapsed = Duration::from_secs(2);
        m.thread_cpu = Some(ThreadGroupCpu {
            receive: 0.5,
            workers: 1.0,
            sink: 0.25,
            other: 0.0,
        });
        m.receive_wait = Some(RunQueueWait {
            seconds: 0.031_25,
            worst_window_seconds: 0.012,
            windows: 100,
            threads: 1,
        });
        assert_eq!(
            m.thread_us_per_packet(),
            Some(ThreadGroupCpu {
                receive: 0.25,
                workers: 0.5,
                sink: 0.125,
                other: 0.0,
            })
        );
        assert_eq!(m.receive_wait_ms_per_second(), Some(15.625));
    }

    #[test]
    fn sweeps_are_grouped_by_receiver_in_first_seen_order() {
        let parquet = Receiver::Sluice(Pipeline {
            decoder: DecoderChoice::Raw,
            format: FormatChoice::Parquet,
        });
        let sweep = |receiver: &Receiver, run| RowResults {
            receiver: receiver.clone(),
            run,
            steps: Vec::new(),
        };
        let rows = vec![
            sweep(&Receiver::CountDrop, 0),
            sweep(&parquet, 0),
            sweep(&parquet, 1),
            sweep(
                &Receiver::KernelTc(Pipeline {
                    decoder: DecoderChoice::Raw,
                    format: FormatChoice::NdjsonZstd,
                }),
                0,
            ),
            sweep(&parquet, 2),
        ];
        let grouped = by_receiver(&rows);
        assert_eq!(grouped.len(), 3);
        assert_eq!(grouped[1].receiver, &parquet);
        assert_eq!(
            grouped[1].runs.iter().map(|r| r.run).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            Receiver::SluiceTmpfs(Pipeline {
                decoder: DecoderChoice::Raw,
                format: FormatChoice::Parquet,
            })
            .label(),
            "sluice XDP, raw → Parquet (tmpfs)"
        );
    }

    #[test]
    fn decoders_are_named_and_the_acme_sensor_ones_told_apart() {
        assert_eq!(
            [
                DecoderChoice::Raw,
                DecoderChoice::Schema,
                DecoderChoice::Lua
            ]
            .map(DecoderChoice::name),
            ["raw", "schema", "lua"]
        );
        assert!(!DecoderChoice::Raw.reads_acme_sensor());
        assert!(DecoderChoice::Schema.reads_acme_sensor());
        assert!(DecoderChoice::Lua.reads_acme_sensor());
        assert_eq!(
            Receiver::Sluice(Pipeline {
                decoder: DecoderChoice::Lua,
                format: FormatChoice::NdjsonZstd,
            })
            .label(),
            "sluice XDP, lua → NDJSON+zstd"
        );
    }

    #[test]
    fn accounting_balances_only_when_nothing_is_in_flight() {
        let mut a = Accounting {
            seen: 10,
            recorded: 8,
            dropped_total: 2,
            ..Accounting::default()
        };
        assert!(a.balanced());
        a.in_flight = 1;
        assert!(!a.balanced());
    }
}
