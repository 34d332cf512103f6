//! What one row of the packet-rate table measured, and the figures derived from it.
//!
//! A *measurement* is one receiver set-up at one offered rate: what the generator offered,
//! what the receiver's XDP program saw, what reached userspace, what was recorded and what
//! was dropped by reason, plus the CPU it cost. Everything the table, the chart and the
//! targets need is computed here, in one place, from those counts.

use std::collections::BTreeMap;
use std::time::Duration;

use super::cpu::CpuUsage;

/// The receiver set-up of a row of the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Receiver {
    /// Ceiling A: an XDP program that counts and drops.
    CountDrop,
    /// Ceiling B: sluice's XDP program and AF_XDP socket, a receive loop that only counts.
    AfXdpCount,
    /// `sluice run` with the XDP source.
    Sluice(Pipeline),
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
    /// `raw` / `schema`.
    pub fn name(self) -> &'static str {
        match self {
            DecoderChoice::Raw => "raw",
            DecoderChoice::Schema => "schema",
        }
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
            Receiver::KernelTc(p) => format!("kernel tc-decap + UDP, {}", pipe(p)),
            Receiver::KernelVxlan(p) => format!("kernel VXLAN + UDP, {}", pipe(p)),
        }
    }

    /// The sluice pipeline, for the rows that run the daemon.
    pub fn pipeline(&self) -> Option<Pipeline> {
        match self {
            Receiver::CountDrop | Receiver::AfXdpCount => None,
            Receiver::Sluice(p) | Receiver::KernelTc(p) | Receiver::KernelVxlan(p) => Some(*p),
        }
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
    /// Machine-wide CPU over the generator's run.
    pub cpu: CpuUsage,
    /// CPU seconds of the receiving process (AF_XDP counter thread or sluice), if any.
    pub process_cpu_seconds: Option<f64>,
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

    /// Machine-wide busy CPU seconds per million packets handled.
    pub fn cpu_seconds_per_mpkt(&self) -> Option<f64> {
        (self.handled > 0).then(|| self.cpu.busy_seconds / (self.handled as f64 / 1e6))
    }

    /// The receiving process's CPU seconds per million packets handled.
    pub fn process_seconds_per_mpkt(&self) -> Option<f64> {
        let seconds = self.process_cpu_seconds?;
        (self.handled > 0).then(|| seconds / (self.handled as f64 / 1e6))
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

/// All measurements of one receiver, in the order they were taken.
#[derive(Clone, Debug, PartialEq)]
pub struct RowResults {
    /// The receiver.
    pub receiver: Receiver,
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

    /// Machine CPU s/Mpkt at the highest zero-loss step (the cost when keeping up).
    pub fn cpu_at_zero_loss(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|m| m.zero_loss())
            .max_by(|a, b| a.offered_pps().total_cmp(&b.offered_pps()))
            .and_then(Measurement::cpu_seconds_per_mpkt)
    }
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
        let row = RowResults {
            receiver: Receiver::CountDrop,
            steps: vec![
                step(1_000_000, 1_000_000, &[]),
                step(2_000_000, 2_000_000, &[]),
                step(3_000_000, 2_500_000, &[("worker_queue_full", 500_000)]),
            ],
        };
        assert_eq!(row.zero_loss_pps(), Some(2_000_000.0));
        assert_eq!(row.peak_handled_pps(), Some(2_500_000.0));
        assert_eq!(row.cpu_at_zero_loss(), Some(0.5));
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
