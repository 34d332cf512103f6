//! What a run measures: which receivers, at which offered rates, for how long, how many
//! times, and where the daemon and its records live. Built from the command line by
//! `sluice-bench`; the defaults are the published run (about 20 minutes), `--quick` a
//! smoke run of seconds.
//!
//! The rows always run, and appear in every table, in the order of [`ROW_NAMES`]: per
//! decoder NDJSON then Parquet, on disk then on tmpfs, so that each pair sits side by
//! side. `--runs N` repeats the sluice XDP rows' sweeps N times back to back (the
//! ceilings and the kernel path once): a plan lists a receiver once per sweep.

use std::path::PathBuf;
use std::time::Duration;

use super::measurement::{DecoderChoice, FormatChoice, Pipeline, Receiver};
use crate::generator::PayloadKind;

/// Inner UDP port of the raw payloads (steered, claimed by no decoder).
pub const RAW_PORT: u16 = 9000;
/// Inner UDP port of the schema payloads (the port of the `acme` stream of the schema rows
/// and of the `acme_lua` stream of the lua rows).
pub const SCHEMA_PORT: u16 = 5140;
/// GRE key of the generated tunnel.
pub const GRE_KEY: u32 = 42;
/// VXLAN network identifier of the VXLAN reference row.
pub const VXLAN_VNI: u32 = 4242;

/// One offered rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Packets per second.
    Pps(u64),
    /// As fast as the generator goes.
    FlatOut,
}

impl Rate {
    /// The generator's `rate_pps` argument (0 = flat out).
    pub fn generator_pps(self) -> u64 {
        match self {
            Rate::Pps(pps) => pps,
            Rate::FlatOut => 0,
        }
    }

    /// `1.5 Mpps` / `flat out`.
    pub fn label(self) -> String {
        match self {
            Rate::Pps(pps) => format!("{} Mpps", pps as f64 / 1e6),
            Rate::FlatOut => "flat out".into(),
        }
    }

    /// Parses `0.25` (Mpps) or `max`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let text = text.trim();
        if matches!(text, "max" | "flat" | "flat-out") {
            return Ok(Rate::FlatOut);
        }
        let mpps: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is neither a rate in Mpps nor `max`"))?;
        if !(mpps > 0.0 && mpps <= 100.0) {
            return Err(format!("{text}: a rate must be in (0, 100] Mpps"));
        }
        Ok(Rate::Pps((mpps * 1e6).round() as u64))
    }

    /// Frames the generator may send in `duration` (a bound, not a target): the rate's
    /// worth plus 10%, or 10 Mpps' worth flat out.
    pub fn max_packets(self, duration: Duration) -> u64 {
        let pps = match self {
            Rate::Pps(pps) => pps as f64 * 1.1,
            Rate::FlatOut => 10e6,
        };
        (pps * duration.as_secs_f64()).ceil() as u64 + 1024
    }
}

/// A row's name on the command line (`--rows`).
pub fn parse_row(name: &str) -> Result<Receiver, String> {
    let pipeline = |decoder, format| Pipeline { decoder, format };
    let raw_ndjson = pipeline(DecoderChoice::Raw, FormatChoice::NdjsonZstd);
    Ok(match name.trim() {
        "a" | "count-drop" => Receiver::CountDrop,
        "b" | "afxdp-count" => Receiver::AfXdpCount,
        "sluice-raw-ndjson" => Receiver::Sluice(raw_ndjson),
        "sluice-raw-parquet" => {
            Receiver::Sluice(pipeline(DecoderChoice::Raw, FormatChoice::Parquet))
        }
        "sluice-raw-ndjson-tmpfs" => Receiver::SluiceTmpfs(raw_ndjson),
        "sluice-raw-parquet-tmpfs" => {
            Receiver::SluiceTmpfs(pipeline(DecoderChoice::Raw, FormatChoice::Parquet))
        }
        "sluice-schema-ndjson" => {
            Receiver::Sluice(pipeline(DecoderChoice::Schema, FormatChoice::NdjsonZstd))
        }
        "sluice-schema-parquet" => {
            Receiver::Sluice(pipeline(DecoderChoice::Schema, FormatChoice::Parquet))
        }
        "sluice-lua-ndjson" => {
            Receiver::Sluice(pipeline(DecoderChoice::Lua, FormatChoice::NdjsonZstd))
        }
        "sluice-lua-parquet" => {
            Receiver::Sluice(pipeline(DecoderChoice::Lua, FormatChoice::Parquet))
        }
        "kernel-tc" => Receiver::KernelTc(raw_ndjson),
        "kernel-vxlan" => Receiver::KernelVxlan(raw_ndjson),
        other => {
            return Err(format!(
                "unknown row {other:?}; rows: {}",
                ROW_NAMES.join(", ")
            ));
        }
    })
}

/// Every row name, in the table's order (the default `--rows`).
pub const ROW_NAMES: [&str; 12] = [
    "a",
    "b",
    "sluice-raw-ndjson",
    "sluice-raw-parquet",
    "sluice-raw-ndjson-tmpfs",
    "sluice-raw-parquet-tmpfs",
    "sluice-schema-ndjson",
    "sluice-schema-parquet",
    "sluice-lua-ndjson",
    "sluice-lua-parquet",
    "kernel-tc",
    "kernel-vxlan",
];

/// The `--rows` name of a receiver.
pub fn row_name(receiver: &Receiver) -> Option<&'static str> {
    ROW_NAMES
        .into_iter()
        .find(|name| parse_row(name).as_ref() == Ok(receiver))
}

/// `rows` in the table's order ([`ROW_NAMES`]), each once.
pub fn in_table_order(rows: &[Receiver]) -> Vec<Receiver> {
    let position = |r: &Receiver| {
        row_name(r)
            .and_then(|name| ROW_NAMES.iter().position(|n| *n == name))
            .unwrap_or(ROW_NAMES.len())
    };
    let mut ordered = rows.to_vec();
    ordered.sort_by_key(position);
    ordered.dedup();
    ordered
}

/// The sweeps of a plan: every row once, the sluice XDP rows `runs` times in a row.
pub fn sweeps(rows: &[Receiver], runs: usize) -> Vec<Receiver> {
    rows.iter()
        .flat_map(|r| {
            let times = if r.is_sluice_xdp() { runs.max(1) } else { 1 };
            std::iter::repeat_n(r.clone(), times)
        })
        .collect()
}

/// Default offered rates, Mpps (plus flat out).
pub const DEFAULT_RATES: &str = "0.25,0.5,0.75,1,1.25,1.5,max";
/// `--quick` rates.
pub const QUICK_RATES: &str = "0.25,1,max";

/// The ACME-SENSOR v2 events the schema and lua rows are offered (`--acme-events`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AcmeEvents {
    /// The example readings event of docs/decoders.md in every packet: what the figures
    /// published before 2026-12-06 (session 13) were measured with. Lua finds the
    /// payload's string already interned and the compressor sees the same rows again and
    /// again, so it flatters both; kept for comparing with those figures.
    Repeated,
    /// A sensor's successive readings events: sequence number, time and the two values
    /// new in every packet (the generator's `PayloadKind::SchemaSeries`), as real devices
    /// send them.
    #[default]
    Series,
}

impl AcmeEvents {
    /// The generator's payload for these events.
    pub fn payload(self) -> PayloadKind {
        match self {
            AcmeEvents::Repeated => PayloadKind::Schema,
            AcmeEvents::Series => PayloadKind::SchemaSeries,
        }
    }

    /// How the report describes them.
    pub fn describe(self) -> &'static str {
        match self {
            AcmeEvents::Repeated => "the 36-byte ACME-SENSOR v2 event",
            AcmeEvents::Series => {
                "a series of 36-byte ACME-SENSOR v2 readings events (sequence number, time and \
                 values new in every packet)"
            }
        }
    }
}

/// The whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// One receiver per sweep, in order; a receiver listed N times in a row is measured
    /// N times ([`sweeps`]).
    pub rows: Vec<Receiver>,
    /// Offered rates, in order.
    pub rates: Vec<Rate>,
    /// Traffic per step.
    pub step: Duration,
    /// Sustained overload of the sluice raw pipeline (flat out); zero to skip.
    pub overload: Duration,
    /// CPU the generator is pinned to.
    pub generator_cpu: usize,
    /// `pipeline.workers` of the daemon (0 = one per CPU).
    pub workers: u32,
    /// `pipeline.queue_depth` of the daemon.
    pub queue_depth: u32,
    /// `source.busy_poll_usecs` of the daemon (XDP rows).
    pub busy_poll_usecs: u32,
    /// `pipeline.worker_scheduling` of the daemon, if not its default.
    pub worker_scheduling: Option<String>,
    /// Raw payload length, bytes.
    pub payload_len: usize,
    /// The ACME-SENSOR events of the schema and lua rows.
    pub acme_events: AcmeEvents,
    /// The release `sluice` binary.
    pub sluice: PathBuf,
    /// Where record directories are made: a disk (`--records-dir`); the
    /// [`Receiver::SluiceTmpfs`] rows use [`super::medium::TMPFS_RECORDS_DIR`] instead.
    pub records_root: PathBuf,
    /// Pause after the generator stops, before the daemon is stopped, so open batches
    /// close on their age and the CPU they take is counted.
    pub settle: Duration,
    /// A smoke run.
    pub quick: bool,
}

impl Plan {
    /// Rough wall time of the run, for the banner.
    pub fn estimate(&self) -> Duration {
        let per_step = self.step + self.settle + Duration::from_secs(2);
        per_step * (self.rows.len() * self.rates.len()) as u32 + self.overload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_from_mpps_and_max() {
        assert_eq!(Rate::parse("0.25"), Ok(Rate::Pps(250_000)));
        assert_eq!(Rate::parse(" 2.5 "), Ok(Rate::Pps(2_500_000)));
        assert_eq!(Rate::parse("max"), Ok(Rate::FlatOut));
        assert!(Rate::parse("0").is_err());
        assert!(Rate::parse("fast").is_err());
        assert_eq!(Rate::Pps(1_500_000).label(), "1.5 Mpps");
        assert_eq!(
            Rate::Pps(1_000_000).max_packets(Duration::from_secs(2)),
            2_201_024
        );
        assert_eq!(Rate::FlatOut.generator_pps(), 0);
    }

    #[test]
    fn every_row_name_parses_and_unknown_ones_are_listed() {
        for name in ROW_NAMES {
            assert!(parse_row(name).is_ok(), "{name}");
        }
        let e = parse_row("sluice").expect_err("unknown");
        assert!(e.contains("kernel-vxlan"), "{e}");
        for name in ROW_NAMES {
            let receiver = parse_row(name).expect("parses");
            assert_eq!(row_name(&receiver), Some(name));
        }
        assert_eq!(row_name(&parse_row("count-drop").expect("a")), Some("a"));
        // The lua rows sit right after the schema rows (same payload, same columns).
        assert_eq!(
            ROW_NAMES[6..10],
            [
                "sluice-schema-ndjson",
                "sluice-schema-parquet",
                "sluice-lua-ndjson",
                "sluice-lua-parquet",
            ]
        );
        assert_eq!(
            parse_row("sluice-lua-ndjson"),
            Ok(Receiver::Sluice(Pipeline {
                decoder: DecoderChoice::Lua,
                format: FormatChoice::NdjsonZstd,
            }))
        );
        assert_eq!(
            parse_row("sluice-lua-parquet"),
            Ok(Receiver::Sluice(Pipeline {
                decoder: DecoderChoice::Lua,
                format: FormatChoice::Parquet,
            }))
        );
    }

    #[test]
    fn rows_run_in_table_order_and_only_sluice_xdp_rows_repeat() {
        let rows = |names: &[&str]| -> Vec<Receiver> {
            names.iter().map(|n| parse_row(n).expect("row")).collect()
        };
        let asked = rows(&[
            "kernel-tc",
            "sluice-lua-ndjson",
            "sluice-raw-parquet-tmpfs",
            "sluice-schema-ndjson",
            "sluice-raw-parquet",
            "a",
            "sluice-raw-ndjson",
            "a",
        ]);
        let ordered = in_table_order(&asked);
        assert_eq!(
            ordered,
            rows(&[
                "a",
                "sluice-raw-ndjson",
                "sluice-raw-parquet",
                "sluice-raw-parquet-tmpfs",
                "sluice-schema-ndjson",
                "sluice-lua-ndjson",
                "kernel-tc",
            ])
        );
        assert_eq!(
            sweeps(&ordered, 2),
            rows(&[
                "a",
                "sluice-raw-ndjson",
                "sluice-raw-ndjson",
                "sluice-raw-parquet",
                "sluice-raw-parquet",
                "sluice-raw-parquet-tmpfs",
                "sluice-raw-parquet-tmpfs",
                "sluice-schema-ndjson",
                "sluice-schema-ndjson",
                "sluice-lua-ndjson",
                "sluice-lua-ndjson",
                "kernel-tc",
            ])
        );
        assert_eq!(sweeps(&ordered, 1), ordered);
    }
}
