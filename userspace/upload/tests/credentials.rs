//! Application Default Credentials that cannot be loaded are one clear error at start,
//! before any request (no emulator, no root needed).
//!
//! The variable ADC reads (`GOOGLE_APPLICATION_CREDENTIALS`) is process-wide, so the check
//! runs in a child process (this test binary, re-run with the variable set) rather than
//! by changing the environment of the test threads.

use std::process::Command;
use std::sync::Arc;

use sluice_upload::{Spool, UploadConfig, UploadError, Uploader};

const CHILD_ENV: &str = "SLUICE_UPLOAD_ADC_CHILD";

/// Not a test of its own: the child of
/// [`missing_adc_file_is_one_clear_error_at_start`]; returns at once without
/// `SLUICE_UPLOAD_ADC_CHILD`.
#[test]
fn adc_child_process() {
    let Ok(spool_dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let config = UploadConfig::new("some-bucket", &spool_dir);
    let spool = Arc::new(Spool::open(&spool_dir, 1 << 20).unwrap());
    let err = Uploader::start(&config, spool).unwrap_err();
    assert!(matches!(err, UploadError::Credentials { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "cannot load Application Default Credentials (set GOOGLE_APPLICATION_CREDENTIALS, run on GCE, or use credentials = \"anonymous\" with an emulator endpoint): "
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/sluice-adc.json"),
        "{err}"
    );
}

#[test]
fn missing_adc_file_is_one_clear_error_at_start() {
    let dir = sluice_testkit::scratch::tempdir("upload-adc").unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "adc_child_process", "--test-threads=1"])
        .env(CHILD_ENV, dir.path().join("spool"))
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/nonexistent/sluice-adc.json",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("test adc_child_process ... ok"), "{stdout}");
}
