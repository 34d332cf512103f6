//! Test kit for Sluice: everything an integration test or the demo needs to put known
//! frames on a wire and check what the daemon made of them.
//!
//! - [`frames`] builds the frames (steered ones from a [`frames::FrameSpec`], must-pass ones
//!   from mutations), with deterministic matrices of both.
//! - [`pcap`] writes and reads them as classic pcap for tcpreplay, tshark and `sluice replay`;
//!   [`tcpreplay`] sends such a pcap out of a veth end, bounded in count, rate and time.
//! - [`netns`] gives each test its own pair of network namespaces joined by a veth (and a
//!   hub namespace that several of them reach, for a server they share);
//!   [`cleanup`] deletes them (and stops child processes) on drop and on SIGINT/SIGTERM.
//! - [`privilege`] applies the rule for tests that need root or tools: fail in CI, skip
//!   with a reason elsewhere.
//! - [`tshark`] decodes a pcap independently of Sluice; [`records`] reads Sluice's output
//!   (zstd NDJSON, and Parquet through [`parquet_records`]); [`summary`] is what both are
//!   compared on.
//! - [`python`] finds the test venv's interpreter; [`duckdb`] reads a bucket's worth of
//!   Parquet, gzip NDJSON or gzip CSV objects as one hive-partitioned table with the DDL's
//!   types, as BigQuery would.
//! - [`scratch`] makes the temporary directories tests work in; [`acme`] is the ACME-SENSOR
//!   v2 example of docs/decoders.md (layout, Lua script) that several tests decode;
//!   [`random`] draws test cases from a seed; [`civil`] reads dates, independently of the
//!   daemon.
//! - [`daemon`] runs the `sluice` binary (config file, `run` in a namespace with its ready
//!   file, SIGTERM, `replay`); [`stats`] reads the stats file it leaves.
//!
//! The kit depends on neither aya nor the sluice crate, so it tests the daemon only
//! through its command line and its files, as an operator would see it.

pub mod acme;
pub mod civil;
pub mod cleanup;
pub mod daemon;
pub mod duckdb;
pub mod frames;
pub mod gcs;
pub mod netflow_peers;
pub mod netns;
pub mod parquet_records;
pub mod pcap;
pub mod privilege;
pub mod python;
pub mod random;
pub mod records;
pub mod scratch;
pub mod stats;
pub mod summary;
pub mod tcpreplay;
pub mod tshark;
