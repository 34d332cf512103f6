//! The end-to-end packet-rate harness behind `cargo xtask bench` (issue 6): every receiver
//! side by side at stepped offered rates, each step's accounting checked, the results
//! written into BENCHMARKS.md and drawn as a chart.
//!
//! - [`plan`]: rows, rates, durations (the command line's model).
//! - [`session`]: each row's receiver — ceiling A ([`crate::count_drop`]), ceiling B
//!   ([`afxdp_count`]), `sluice run` ([`daemon_config`], [`daemon_run`]) on XDP or behind
//!   the kernel path ([`crate::kernel_path`]).
//! - [`runner`]: labs, generator, one [`measurement::Measurement`] per step, overload.
//! - [`medium`]: where the records go (a disk by default, tmpfs for the `(tmpfs)` rows),
//!   told apart with statfs.
//! - [`cpu`]: /proc/stat per core, process CPU, peak RSS, the quiet-machine check.
//! - [`guest_idle`]: how the VM's vCPUs idle (named in the report), and
//!   `--guest-halt-poll-ns`, which changes it for a run.
//! - [`threads`]: per-thread CPU by group and the receive threads' run-queue wait (also
//!   the objects mode's uploader CPU).
//! - [`report`] and [`chart`]: the Markdown section (tables, targets) and the PNG.
//! - [`objects`]: the `--objects` mode (issue 11), what the uploader makes of the traffic
//!   (objects per hour, their size, the uploader's CPU) against a Cloud Storage emulator.

pub mod afxdp_count;
pub mod chart;
pub mod cpu;
pub mod daemon_config;
pub mod daemon_run;
pub mod guest_idle;
pub mod measurement;
pub mod medium;
pub mod objects;
pub mod plan;
pub mod report;
pub mod runner;
pub mod session;
pub mod threads;
