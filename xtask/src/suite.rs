//! `cargo xtask test`: the one door CI goes through (`.ci/run` calls only this).
//!
//! Runs setup, then format check, clippy on the host crates, clippy on each eBPF crate
//! (nightly, bpfel target, build-std), every unit and integration test, the Debian
//! package's check (`cargo xtask package --check`: lintian, then install, upgrade and
//! purge in a Debian 12 chroot), the VM tests (`cargo xtask vm-test`), and each fuzz
//! target for a bounded time (30 s, `SLUICE_FUZZ_SECONDS`) after replaying its committed
//! regression inputs (fuzz/regressions/<target>), stopping at the first failure and
//! naming it. The eBPF crates are excluded from the host `--workspace`
//! steps: built for the host they fail ("duplicate lang item `panic_impl`"), and each is
//! linted by its own step instead.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{cmd, setup, workspace::Workspace};

/// The daemon's eBPF crate.
const EBPF_PACKAGE: &str = "sluice-ebpf";
/// The benchmark's eBPF crate (generator, count-and-drop, tc decapsulation).
const BENCH_EBPF_PACKAGE: &str = "sluice-bench-ebpf";

/// Nightly clippy of one eBPF crate for the BPF target.
fn ebpf_clippy(package: &str) -> Command {
    cargo(
        Some("nightly"),
        &[
            "clippy",
            "-p",
            package,
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ],
    )
}

/// Fuzz targets in fuzz/, each run for a bounded time by the suite.
pub const FUZZ_TARGETS: [&str; 5] = [
    "packet_parser",
    "decode_layout",
    "decode_lua",
    "decode_netflow",
    "decode_syslog",
];

/// Seconds each fuzz target runs (`SLUICE_FUZZ_SECONDS` overrides).
fn fuzz_seconds() -> u64 {
    std::env::var("SLUICE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// One step of the suite: a name for the failure message and the command.
struct Step {
    name: &'static str,
    command: Command,
}

fn cargo(toolchain: Option<&str>, args: &[&str]) -> Command {
    // Through the rustup proxy (not $CARGO), so `+nightly` selects the toolchain.
    let mut command = Command::new("cargo");
    if let Some(toolchain) = toolchain {
        command.arg(format!("+{toolchain}"));
    }
    command.args(args);
    command
}

fn steps(workspace: &Workspace) -> Vec<Step> {
    let mut steps = vec![
        Step {
            name: "rustfmt",
            command: cargo(None, &["fmt", "--all", "--", "--check"]),
        },
        Step {
            name: "clippy (host crates)",
            command: cargo(
                None,
                &[
                    "clippy",
                    "--workspace",
                    "--exclude",
                    EBPF_PACKAGE,
                    "--exclude",
                    BENCH_EBPF_PACKAGE,
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        },
        Step {
            name: "clippy (eBPF crate)",
            command: ebpf_clippy(EBPF_PACKAGE),
        },
        Step {
            name: "clippy (bench eBPF crate)",
            command: ebpf_clippy(BENCH_EBPF_PACKAGE),
        },
        Step {
            name: "tests",
            command: cargo(
                None,
                &[
                    "test",
                    "--workspace",
                    "--exclude",
                    EBPF_PACKAGE,
                    "--exclude",
                    BENCH_EBPF_PACKAGE,
                    "--no-fail-fast",
                ],
            ),
        },
        Step {
            name: "package",
            command: cargo(None, &["xtask", "package", "--check"]),
        },
        // The package in Debian 12 VMs under qemu (docs/operations.md, "Tested kernels
        // and NICs"); with a warm image cache about 8 minutes.
        Step {
            name: "vm tests",
            command: cargo(None, &["xtask", "vm-test"]),
        },
    ];
    for step in &mut steps {
        step.command.current_dir(&workspace.root);
    }
    let fuzz_dir = workspace.root.join("fuzz");
    for target in FUZZ_TARGETS {
        // The scratch corpus first (libFuzzer writes only there), then the committed
        // regression inputs, which are replayed before fuzzing starts.
        let corpus = format!("corpus/{target}");
        let regressions = format!("regressions/{target}");
        let mut command = cargo(
            Some("nightly"),
            &["fuzz", "run", target, &corpus, &regressions],
        );
        command
            .arg("--")
            .arg(format!("-max_total_time={}", fuzz_seconds()))
            .arg("-rss_limit_mb=2048")
            .current_dir(&fuzz_dir);
        steps.push(Step {
            name: target,
            command,
        });
    }
    steps
}

/// Runs setup and every step, printing how long each took (after each step, and all of
/// them at the end) so that a CI log shows where the suite's time goes.
///
/// # Errors
/// Names the first step that failed.
pub fn run() -> anyhow::Result<()> {
    let mut times = StepTimes::default();
    let started = Instant::now();
    setup::run().context("xtask test: step `setup` failed")?;
    times.record("setup", started.elapsed());
    let workspace = Workspace::locate()?;
    for target in FUZZ_TARGETS {
        for dir in ["corpus", "regressions"] {
            let path = workspace.root.join("fuzz").join(dir).join(target);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
    }
    for mut step in steps(&workspace) {
        println!("\n== xtask test: {}", step.name);
        let started = Instant::now();
        let outcome = cmd::run(&mut step.command);
        times.record(step.name, started.elapsed());
        if outcome.is_err() {
            println!("\n{}", times.summary());
        }
        outcome.with_context(|| format!("xtask test: step `{}` failed", step.name))?;
    }
    println!("\n{}", times.summary());
    println!("\nxtask test: all steps passed");
    Ok(())
}

/// How long each step took, in the order they ran.
#[derive(Default)]
struct StepTimes {
    steps: Vec<(&'static str, Duration)>,
}

impl StepTimes {
    /// Notes a finished step and prints its time.
    fn record(&mut self, name: &'static str, took: Duration) {
        println!("== xtask test: {name}: {}", minutes_seconds(took));
        self.steps.push((name, took));
    }

    /// One line per step, then the total, the times in one column.
    fn summary(&self) -> String {
        let total: Duration = self.steps.iter().map(|(_, took)| *took).sum();
        let mut out = String::from("xtask test: step times");
        for (name, took) in self.steps.iter().chain([("total", total)].iter()) {
            out.push_str(&format!("\n  {:<26} {:>8}", name, minutes_seconds(*took)));
        }
        out
    }
}

/// `12m05s`, or `7s` under a minute.
fn minutes_seconds(took: Duration) -> String {
    let seconds = took.as_secs();
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_are_listed_in_order_with_their_total() {
        assert_eq!(minutes_seconds(Duration::from_millis(7_900)), "7s");
        assert_eq!(minutes_seconds(Duration::from_secs(725)), "12m05s");
        let mut times = StepTimes::default();
        times.record("setup", Duration::from_secs(65));
        times.record("clippy (bench eBPF crate)", Duration::from_secs(2));
        let summary = times.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines[0], "xtask test: step times");
        let rows: Vec<Vec<&str>> = lines[1..]
            .iter()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["setup", "1m05s"],
                vec!["clippy", "(bench", "eBPF", "crate)", "2s"],
                vec!["total", "1m07s"],
            ]
        );
        assert!(lines[1..].iter().all(|line| line.len() == lines[1].len()));
    }

    #[test]
    fn steps_run_in_order_exclude_the_ebpf_crates_from_host_steps_and_fuzz_every_target() {
        let workspace = Workspace {
            root: "/repo".into(),
            target_dir: "/repo/target".into(),
        };
        let steps = steps(&workspace);
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "rustfmt",
                "clippy (host crates)",
                "clippy (eBPF crate)",
                "clippy (bench eBPF crate)",
                "tests",
                "package",
                "vm tests",
                "packet_parser",
                "decode_layout",
                "decode_lua",
                "decode_netflow",
                "decode_syslog",
            ]
        );
        let lines: Vec<String> = steps.iter().map(|s| cmd::display(&s.command)).collect();
        assert_eq!(lines[0], "cargo fmt --all -- --check");
        assert_eq!(
            lines[1],
            "cargo clippy --workspace --exclude sluice-ebpf --exclude sluice-bench-ebpf --all-targets -- -D warnings"
        );
        assert_eq!(
            lines[2],
            "cargo +nightly clippy -p sluice-ebpf --target bpfel-unknown-none -Z build-std=core -- -D warnings"
        );
        assert_eq!(
            lines[3],
            "cargo +nightly clippy -p sluice-bench-ebpf --target bpfel-unknown-none -Z build-std=core -- -D warnings"
        );
        assert_eq!(
            lines[4],
            "cargo test --workspace --exclude sluice-ebpf --exclude sluice-bench-ebpf --no-fail-fast"
        );
        assert_eq!(lines[5], "cargo xtask package --check");
        assert_eq!(lines[6], "cargo xtask vm-test");
        assert!(
            lines[7].starts_with(
                "cargo +nightly fuzz run packet_parser corpus/packet_parser regressions/packet_parser -- -max_total_time="
            ),
            "{}",
            lines[7]
        );
        assert!(
            steps[..7]
                .iter()
                .all(|s| s.command.get_current_dir() == Some(std::path::Path::new("/repo")))
        );
        assert!(
            steps[7..]
                .iter()
                .all(|s| s.command.get_current_dir() == Some(std::path::Path::new("/repo/fuzz")))
        );
    }
}
