//! The `lua` decoder's targets (issue 14), read from the lua rows, and the lua rows' CPU
//! against the schema rows' (information, not a target). Both decoders parse the same
//! ACME-SENSOR v2 payload into the same rows, so the ratio is what running the Vector
//! script costs over the declarative layout.
//!
//! Like issue 13's ([`super::targets`]), these are goals, not tests, met only if met in
//! every run. The CPU target is read at [`LUA_CPU_RATE_PPS`] when the plan asked that rate,
//! and otherwise (the default rates step from 0.25 to 0.5 Mpps) at each run's highest
//! zero-loss rate; the goal's text says so, and the measured text says which it was.

use crate::harness::measurement::{
    DecoderChoice, FormatChoice, Measurement, Pipeline, Receiver, RowResults, by_receiver,
};

use super::tables::{mpps, per_run};
use super::targets::{TargetResult, cpu_verdict, runs_of, zero_loss_target};

/// lua → NDJSON+zstd on disk: zero loss at this rate or more, in every run.
pub const LUA_ZERO_LOSS_PPS: f64 = 0.3e6;
/// The rate the lua CPU target, and the lua/schema ratio, are read at when it was asked.
pub const LUA_CPU_RATE_PPS: f64 = 0.3e6;
/// lua → NDJSON+zstd on disk: the daemon's CPU per packet, at most.
pub const LUA_CPU_US_PER_PACKET: f64 = 3.0;

const LUA_NDJSON: Pipeline = Pipeline {
    decoder: DecoderChoice::Lua,
    format: FormatChoice::NdjsonZstd,
};

/// The step of one run the lua CPU target reads: the one asked for [`LUA_CPU_RATE_PPS`]
/// when `at_target_rate`, else the run's highest zero-loss step.
fn cpu_step(run: &RowResults, at_target_rate: bool) -> Option<&Measurement> {
    if at_target_rate {
        run.step_at(LUA_CPU_RATE_PPS)
    } else {
        run.highest_zero_loss_step()
    }
}

/// The daemon's CPU per packet on the lua NDJSON row, at most [`LUA_CPU_US_PER_PACKET`].
fn cpu_target(rows: &[RowResults]) -> TargetResult {
    let groups = by_receiver(rows);
    let receiver = Receiver::Sluice(LUA_NDJSON);
    let runs = runs_of(&groups, &receiver);
    let at_target_rate = runs.iter().any(|r| r.asked(LUA_CPU_RATE_PPS));
    let steps: Vec<Option<&Measurement>> =
        runs.iter().map(|r| cpu_step(r, at_target_rate)).collect();
    let values: Vec<Option<f64>> = steps
        .iter()
        .map(|m| m.and_then(Measurement::process_us_per_packet))
        .collect();
    let measured = if runs.is_empty() {
        "the row was not run".into()
    } else if at_target_rate {
        format!(
            "{} µs per packet at {} Mpps",
            per_run(&values, 3, "–"),
            LUA_CPU_RATE_PPS / 1e6
        )
    } else {
        let rates: Vec<Option<f64>> = steps
            .iter()
            .map(|m| m.map(|m| m.offered_pps() / 1e6))
            .collect();
        format!(
            "{} µs per packet at the highest zero-loss rate ({} Mpps)",
            per_run(&values, 3, "–"),
            per_run(&rates, 3, "none")
        )
    };
    TargetResult {
        goal: format!(
            "the daemon's CPU, {} (on disk), at {rate} Mpps (at each run's highest zero-loss \
             rate when {rate} Mpps is not one of the rates): ≤ {LUA_CPU_US_PER_PACKET:.2} µs per \
             packet in every run",
            receiver.label(),
            rate = LUA_CPU_RATE_PPS / 1e6
        ),
        verdict: cpu_verdict(&values, LUA_CPU_US_PER_PACKET),
        measured,
    }
}

/// The issue-14 targets, each with this run's figures.
pub fn targets(rows: &[RowResults]) -> Vec<TargetResult> {
    let groups = by_receiver(rows);
    vec![
        zero_loss_target(&groups, LUA_NDJSON, LUA_ZERO_LOSS_PPS),
        cpu_target(rows),
    ]
}

/// The asked rate both rows are compared at: [`LUA_CPU_RATE_PPS`] when every run of both
/// asked it, else the highest asked rate with zero loss in every run of both.
fn common_rate(lua: &[&RowResults], schema: &[&RowResults]) -> Option<f64> {
    let all: Vec<&RowResults> = lua.iter().chain(schema).copied().collect();
    let first = lua.first()?;
    if schema.is_empty() {
        return None;
    }
    if all.iter().all(|r| r.asked(LUA_CPU_RATE_PPS)) {
        return Some(LUA_CPU_RATE_PPS);
    }
    first
        .steps
        .iter()
        .filter_map(|m| m.target_pps)
        .filter(|pps| {
            all.iter()
                .all(|r| r.step_at(*pps).is_some_and(Measurement::zero_loss))
        })
        .max_by(f64::total_cmp)
}

/// The lua rows' CPU per packet against the schema rows' at the same asked rate, per
/// format (on disk): the highest figure of each row's runs, and their ratio.
pub fn comparisons(rows: &[RowResults]) -> Vec<String> {
    let groups = by_receiver(rows);
    let mut out = Vec::new();
    for format in [FormatChoice::NdjsonZstd, FormatChoice::Parquet] {
        let lua = Pipeline {
            decoder: DecoderChoice::Lua,
            format,
        };
        let schema = Pipeline {
            decoder: DecoderChoice::Schema,
            format,
        };
        let lua_runs = runs_of(&groups, &Receiver::Sluice(lua));
        let schema_runs = runs_of(&groups, &Receiver::Sluice(schema));
        let Some(rate) = common_rate(lua_runs, schema_runs) else {
            continue;
        };
        let cpu = |runs: &[&RowResults]| {
            runs.iter()
                .filter_map(|r| r.step_at(rate).and_then(Measurement::process_us_per_packet))
                .max_by(f64::total_cmp)
        };
        if let (Some(l), Some(s)) = (cpu(lua_runs), cpu(schema_runs))
            && s > 0.0
        {
            out.push(format!(
                "lua → {format} against schema → {format} on disk (the same payload and rows), \
                 CPU at {} Mpps: {l:.3} vs {s:.3} µs per packet, {:.1}× the schema decoder's",
                mpps(rate),
                l / s,
                format = format.label(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::report::targets::{Verdict, tests::sweep};

    const SCHEMA_NDJSON: Pipeline = Pipeline {
        decoder: DecoderChoice::Schema,
        format: FormatChoice::NdjsonZstd,
    };

    fn lines(rows: &[RowResults]) -> Vec<String> {
        targets(rows).iter().map(TargetResult::line).collect()
    }

    #[test]
    fn the_cpu_target_is_read_at_0_3_mpps_when_it_was_asked() {
        let lua = Receiver::Sluice(LUA_NDJSON);
        let rows = vec![
            sweep(
                lua.clone(),
                0,
                &[(300_000, 0, 0.75), (500_000, 0, 1.0), (750_000, 9, 2.0)],
            ),
            sweep(
                lua.clone(),
                1,
                &[(300_000, 0, 0.93), (500_000, 0, 1.0), (750_000, 0, 2.0)],
            ),
        ];
        assert_eq!(
            lines(&rows),
            [
                "sluice XDP, lua → NDJSON+zstd (on disk) with zero loss at ≥ 0.3 Mpps in every \
                 run: met (0.500 / 0.750 Mpps)",
                "the daemon's CPU, sluice XDP, lua → NDJSON+zstd (on disk), at 0.3 Mpps (at each \
                 run's highest zero-loss rate when 0.3 Mpps is not one of the rates): ≤ 3.00 µs \
                 per packet in every run: **missed** (2.500 / 3.100 µs per packet at 0.3 Mpps)",
            ]
        );
    }

    #[test]
    fn without_0_3_mpps_the_cpu_target_is_read_at_each_runs_highest_zero_loss_rate() {
        let lua = Receiver::Sluice(LUA_NDJSON);
        let rows = vec![
            sweep(
                lua.clone(),
                0,
                &[(250_000, 0, 0.5), (500_000, 0, 1.0), (750_000, 9, 2.0)],
            ),
            sweep(lua.clone(), 1, &[(250_000, 0, 0.5), (500_000, 1, 1.0)]),
        ];
        let results = targets(&rows);
        assert_eq!(
            results[0].line(),
            "sluice XDP, lua → NDJSON+zstd (on disk) with zero loss at ≥ 0.3 Mpps in every run: \
             **missed** (0.500 / 0.250 Mpps)"
        );
        assert_eq!(results[1].verdict, Verdict::Met);
        assert_eq!(
            results[1].measured,
            "2.000 / 2.000 µs per packet at the highest zero-loss rate (0.500 / 0.250 Mpps)"
        );
        // A run with no zero-loss step has no figure.
        let lossy = vec![sweep(lua, 0, &[(250_000, 3, 0.5)])];
        let results = targets(&lossy);
        assert_eq!(results[1].verdict, Verdict::NotMeasured);
        assert_eq!(
            results[1].measured,
            "– µs per packet at the highest zero-loss rate (none Mpps)"
        );
        let none = targets(&[]);
        assert_eq!(
            [none[0].verdict, none[1].verdict],
            [Verdict::NotMeasured, Verdict::NotMeasured]
        );
        assert_eq!(none[1].measured, "the row was not run");
    }

    #[test]
    fn lua_is_compared_with_schema_at_the_same_rate() {
        let lua_parquet = Pipeline {
            decoder: DecoderChoice::Lua,
            format: FormatChoice::Parquet,
        };
        let schema_parquet = Pipeline {
            decoder: DecoderChoice::Schema,
            format: FormatChoice::Parquet,
        };
        let rows = vec![
            // 0.3 Mpps asked: read there, whatever the losses above it.
            sweep(
                Receiver::Sluice(SCHEMA_NDJSON),
                0,
                &[(300_000, 0, 0.15), (1_000_000, 0, 0.6)],
            ),
            sweep(
                Receiver::Sluice(LUA_NDJSON),
                0,
                &[(300_000, 0, 0.6), (1_000_000, 7, 2.0)],
            ),
            sweep(
                Receiver::Sluice(LUA_NDJSON),
                1,
                &[(300_000, 0, 0.63), (1_000_000, 7, 2.0)],
            ),
            // Not asked: the highest rate with zero loss in both rows.
            sweep(
                Receiver::Sluice(schema_parquet),
                0,
                &[(250_000, 0, 0.1), (500_000, 0, 0.25), (750_000, 0, 0.3)],
            ),
            sweep(
                Receiver::Sluice(lua_parquet),
                0,
                &[(250_000, 0, 0.4), (500_000, 0, 1.0), (750_000, 2, 1.5)],
            ),
        ];
        assert_eq!(
            comparisons(&rows),
            [
                "lua → NDJSON+zstd against schema → NDJSON+zstd on disk (the same payload and \
                 rows), CPU at 0.300 Mpps: 2.100 vs 0.500 µs per packet, 4.2× the schema \
                 decoder's",
                "lua → Parquet against schema → Parquet on disk (the same payload and rows), CPU \
                 at 0.500 Mpps: 2.000 vs 0.500 µs per packet, 4.0× the schema decoder's",
            ]
        );
        // Without the schema row there is nothing to compare with.
        assert!(comparisons(&rows[1..3]).is_empty());
    }
}
