//! The spool and the uploader against a real Cloud Storage emulator (fake-gcs-server):
//! happy path, an outage, a SIGKILL mid-upload, a full spool, a corrupt spool file, a
//! pre-existing object, graceful shutdown, and the start-up errors.
//!
//! Needs root (the emulator listens on port 80) and the emulator (`cargo xtask setup`);
//! see `support/mod.rs`. Under `CI=true` a missing prerequisite fails the test.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic here is a failed test"
)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_upload::{
    FullCause, Spool, SpoolError, StartupProbe, UploadError, UploadSnapshot, Uploader,
};
use support::{
    CrashChild, Emulator, batch_bytes, batch_name, config, open_spool, prerequisites, scratch,
    settled_listing, wait_until,
};

/// Commits batch `i` of `test` and records what the bucket must end up holding.
fn commit(
    spool: &Spool,
    test: &str,
    i: usize,
    len: usize,
    expected: &mut BTreeMap<String, Vec<u8>>,
) {
    let name = batch_name(test, i);
    let bytes = batch_bytes(i, len);
    spool.commit(&name, &bytes).unwrap();
    expected.insert(name, bytes);
}

/// The bucket holds exactly `expected` under the test's prefix: same names, same bytes.
fn assert_bucket_holds(
    emulator: &Emulator,
    bucket: &str,
    test: &str,
    expected: &BTreeMap<String, Vec<u8>>,
) {
    let listed = emulator.list(bucket, &format!("sluice/{test}/"));
    let want: Vec<(String, u64)> = expected
        .iter()
        .map(|(name, bytes)| (name.clone(), bytes.len() as u64))
        .collect();
    assert_eq!(listed, want);
    for (name, bytes) in expected {
        assert!(
            emulator.download(bucket, name) == *bytes,
            "{name}: content differs"
        );
    }
}

fn assert_no_failures(m: &UploadSnapshot) {
    assert_eq!(
        (m.retryable_error, m.permanent_error, m.retries),
        (0, 0, 0),
        "{m:?}"
    );
}

#[test]
fn happy_path_uploads_every_batch_once_and_empties_the_spool() {
    const TEST: &str = "happy";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.1", &dir.path().join("gcs"), &["happy"]);
    let config = config("127.0.83.1", "happy", &dir.path().join("spool"));
    let spool = open_spool(&config);
    let mut expected = BTreeMap::new();
    // Half spooled before the uploader starts (as after a restart), half while it runs.
    for i in 0..20 {
        commit(&spool, TEST, i, 1 + i * 7919 % 300_000, &mut expected);
    }
    let started = Instant::now();
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    // The rest from four threads at once (commits may finish out of sequence order).
    let committers: Vec<_> = (0..4)
        .map(|t| {
            let spool = Arc::clone(&spool);
            std::thread::spawn(move || {
                let mut mine = BTreeMap::new();
                for i in (20 + t..40).step_by(4) {
                    commit(&spool, TEST, i, 1 + i * 7919 % 300_000, &mut mine);
                }
                mine
            })
        })
        .collect();
    for committer in committers {
        expected.extend(committer.join().unwrap());
    }
    assert!(wait_until(Duration::from_secs(30), || uploader
        .metrics()
        .delivered()
        == 40
        && spool.is_empty()));
    eprintln!("happy path: 40 batches uploaded in {:?}", started.elapsed());
    let report = uploader.shutdown();
    assert!(report.drained);
    assert_eq!((report.left_files, report.left_bytes), (0, 0));
    let m = report.metrics;
    assert_eq!((m.ok, m.exists), (40, 0));
    assert_no_failures(&m);
    assert_eq!(
        m.uploaded_bytes,
        expected.values().map(|b| b.len() as u64).sum::<u64>()
    );
    assert_eq!(m.duration.count(), 40);
    assert_eq!(
        (m.spool.files, m.spool.bytes, m.spool.quarantined),
        (0, 0, 0)
    );
    assert_bucket_holds(&emulator, "happy", TEST, &expected);
    // Nothing but the lock and the (empty) quarantine and manifest directories is left.
    let mut left: Vec<String> = std::fs::read_dir(&config.spool_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, [".lock", "objects", "quarantine"]);
    assert_eq!(
        std::fs::read_dir(config.spool_dir.join("objects"))
            .unwrap()
            .count(),
        0,
        "no manifest is left"
    );
    assert_eq!(
        std::fs::read_dir(spool.quarantine_dir()).unwrap().count(),
        0
    );
}

#[test]
fn an_outage_is_retried_until_every_batch_is_there_exactly_once() {
    const TEST: &str = "outage";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let mut emulator = Emulator::start(&binary, "127.0.83.2", &dir.path().join("gcs"), &["outage"]);
    let config = config("127.0.83.2", "outage", &dir.path().join("spool"));
    let spool = open_spool(&config);
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();

    // Traffic: one 8 KiB batch every 40 ms for 14 s, through the whole outage.
    let producer = {
        let spool = Arc::clone(&spool);
        std::thread::spawn(move || {
            let mut expected = BTreeMap::new();
            for i in 0..350 {
                commit(&spool, TEST, i, 8192, &mut expected);
                std::thread::sleep(Duration::from_millis(40));
            }
            expected
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = uploader.metrics();
    assert!(before.ok > 0, "{before:?}");
    emulator.stop();
    let outage = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let during = uploader.metrics();
    // The uploader kept trying, and the spool kept the batches.
    assert!(
        during.retryable_error > before.retryable_error,
        "{during:?}"
    );
    assert!(during.retries > before.retries, "{during:?}");
    assert!(during.spool.files > 100, "{during:?}");
    emulator.restart();
    eprintln!(
        "outage of {:?}: {} retryable errors, {} retries, {} files spooled",
        outage.elapsed(),
        during.retryable_error,
        during.retries,
        during.spool.files
    );
    let expected = producer.join().unwrap();
    assert!(wait_until(Duration::from_secs(30), || spool.is_empty()));
    let report = uploader.shutdown();
    assert!(report.drained);
    let m = report.metrics;
    assert_eq!(m.ok + m.exists, 350, "{m:?}");
    // A 412 can only follow an attempt that landed while its answer was lost.
    assert!(m.exists <= 4, "{m:?}");
    assert_eq!(m.permanent_error, 0);
    // Every failed attempt was followed by exactly one retry.
    assert_eq!(m.retries, m.retryable_error, "{m:?}");
    assert_eq!(m.duration.count(), 350);
    assert_eq!((m.spool.files, m.spool.bytes), (0, 0));
    assert_bucket_holds(&emulator, "outage", TEST, &expected);
}

/// Not a test of its own: the child process of
/// [`sigkill_during_uploads_loses_nothing_and_writes_nothing_twice`], which re-runs this
/// test binary with `SLUICE_UPLOAD_CRASH_CHILD` set. Without it, it returns at once.
#[test]
fn crash_child_process() {
    let Ok(spec) = std::env::var("SLUICE_UPLOAD_CRASH_CHILD") else {
        return;
    };
    support::init_logging();
    let mut parts = spec.splitn(3, '|');
    let (address, bucket, spool_dir) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut config = config(address, bucket, Path::new(spool_dir));
    config.concurrency = 2;
    let spool = open_spool(&config);
    let _uploader = Uploader::start(&config, spool).unwrap();
    // The parent SIGKILLs this process; the bound only matters if it does not.
    std::thread::sleep(Duration::from_secs(60));
    panic!("the crash child was not killed within 60 s");
}

#[test]
fn sigkill_during_uploads_loses_nothing_and_writes_nothing_twice() {
    const TEST: &str = "crash";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.3", &dir.path().join("gcs"), &["crash"]);
    let spool_dir = dir.path().join("spool");
    let config = config("127.0.83.3", "crash", &spool_dir);
    let mut expected = BTreeMap::new();
    {
        let spool = open_spool(&config);
        for i in 0..300 {
            commit(&spool, TEST, i, 256 * 1024, &mut expected);
        }
    }
    let spooled_files = || {
        std::fs::read_dir(&spool_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".spool")
            })
            .count()
    };
    let child = CrashChild::spawn(
        dir.path(),
        "crash_child_process",
        "SLUICE_UPLOAD_CRASH_CHILD",
        format!("127.0.83.3|crash|{}", spool_dir.display()),
    );
    assert!(
        wait_until(Duration::from_secs(60), || spooled_files() <= 200),
        "the child uploaded less than 100 batches in 60 s: {}",
        child.log()
    );
    child.kill();
    let listed = settled_listing(&emulator, "crash", "sluice/crash/");

    let spool = open_spool(&config);
    let left: Vec<String> = spool.pending().into_iter().map(|b| b.object_name).collect();
    let in_bucket: std::collections::BTreeSet<String> =
        listed.into_iter().map(|(name, _)| name).collect();
    let both = left.iter().filter(|name| in_bucket.contains(*name)).count();
    eprintln!(
        "killed with {} objects in the bucket and {} batches spooled; {both} of them were uploaded but not yet removed",
        in_bucket.len(),
        left.len()
    );
    // Nothing lost: every batch is in the bucket or still spooled.
    assert_eq!(in_bucket.len() + left.len() - both, 300);
    assert_eq!(spool.stats().quarantined, 0);

    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    assert!(wait_until(Duration::from_secs(60), || spool.is_empty()));
    let report = uploader.shutdown();
    let m = report.metrics;
    // The batches uploaded before the kill but still spooled are found to exist (412);
    // the rest are created now.
    assert_eq!(
        (m.ok, m.exists),
        ((left.len() - both) as u64, both as u64),
        "{m:?}"
    );
    assert_no_failures(&m);
    assert_bucket_holds(&emulator, "crash", TEST, &expected);
}

#[test]
fn a_full_spool_refuses_new_batches_keeps_the_accepted_and_recovers() {
    const TEST: &str = "full";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let mut config = config("127.0.83.4", "full", &dir.path().join("spool"));
    // Room for exactly ten 1000-byte batches (each file has a 32-byte trailer).
    config.spool_byte_limit = 10 * 1032;
    // The emulator is down at start: come up anyway and spool.
    config.startup_probe = StartupProbe::Warn;
    let spool = open_spool(&config);
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    let mut accepted = BTreeMap::new();
    let mut refused = 0;
    for i in 0..15 {
        let name = batch_name(TEST, i);
        let bytes = batch_bytes(i, 1000);
        match spool.commit(&name, &bytes) {
            Ok(_) => {
                accepted.insert(name, bytes);
            }
            Err(SpoolError::Full {
                bytes,
                limit,
                spooled,
                cause,
                ..
            }) => {
                assert_eq!(
                    (bytes, limit, spooled, cause),
                    (1032, 10_320, 10_320, FullCause::Limit)
                );
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((accepted.len(), refused), (10, 5));
    let down = uploader.metrics();
    assert_eq!(
        (down.spool.files, down.spool.bytes, down.spool.refused),
        (10, 10_320, 5)
    );
    assert_eq!(down.delivered(), 0);
    // The uploader has tried (objects are planned up to a second after commits).
    assert!(wait_until(Duration::from_secs(10), || uploader
        .metrics()
        .retryable_error
        > 0));

    let emulator = Emulator::start(&binary, "127.0.83.4", &dir.path().join("gcs"), &["full"]);
    assert!(wait_until(Duration::from_secs(30), || spool.is_empty()));
    // Room again: new batches are accepted and uploaded.
    for i in 15..20 {
        commit(&spool, TEST, i, 1000, &mut accepted);
    }
    assert!(wait_until(Duration::from_secs(30), || spool.is_empty()
        && uploader.metrics().delivered() == 15));
    let m = uploader.shutdown().metrics;
    assert_eq!((m.ok, m.exists, m.permanent_error), (15, 0, 0), "{m:?}");
    assert!(m.retryable_error > 0, "{m:?}");
    assert_eq!(m.retries, m.retryable_error);
    assert_eq!(m.spool.refused, 5);
    assert_bucket_holds(&emulator, "full", TEST, &accepted);
}

#[test]
fn a_truncated_spool_file_is_quarantined_and_not_uploaded() {
    const TEST: &str = "corrupt";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.5", &dir.path().join("gcs"), &["corrupt"]);
    let config = config("127.0.83.5", "corrupt", &dir.path().join("spool"));
    let mut expected = BTreeMap::new();
    let cut_name = batch_name(TEST, 1);
    {
        let spool = open_spool(&config);
        commit(&spool, TEST, 0, 5000, &mut expected);
        spool.commit(&cut_name, &batch_bytes(1, 5000)).unwrap();
        commit(&spool, TEST, 2, 5000, &mut expected);
    }
    // A power cut took the end of one file.
    let file = config
        .spool_dir
        .join(sluice_upload::spool::name::encode(&cut_name).unwrap());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(3000)
        .unwrap();
    let spool = open_spool(&config);
    assert_eq!(spool.stats().quarantined, 1);
    assert_eq!(spool.stats().files, 2);
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    assert!(wait_until(Duration::from_secs(30), || spool.is_empty()));
    let m = uploader.shutdown().metrics;
    assert_eq!((m.ok, m.exists), (2, 0));
    assert_no_failures(&m);
    assert_eq!((m.spool.quarantined, m.spool.files), (1, 0));
    assert_bucket_holds(&emulator, "corrupt", TEST, &expected);
    // Kept, byte for byte, for a human to look at.
    let kept = spool.quarantine_dir().join(file.file_name().unwrap());
    assert_eq!(std::fs::read(kept).unwrap(), batch_bytes(1, 5000)[..3000]);
}

#[test]
fn an_object_already_in_the_bucket_counts_as_exists_and_is_not_overwritten() {
    const TEST: &str = "exists";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let emulator = Emulator::start(&binary, "127.0.83.8", &dir.path().join("gcs"), &["exists"]);
    let config = config("127.0.83.8", "exists", &dir.path().join("spool"));
    let spool = open_spool(&config);
    let mut expected = BTreeMap::new();
    for i in 0..3 {
        commit(&spool, TEST, i, 2000, &mut expected);
    }
    // Batch 1 got through before a crash, but was not removed from the spool.
    let landed = batch_name(TEST, 1);
    assert_eq!(emulator.insert("exists", &landed, &expected[&landed]), 200);
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    assert!(wait_until(Duration::from_secs(30), || spool.is_empty()));
    let m = uploader.shutdown().metrics;
    assert_eq!((m.ok, m.exists), (2, 1));
    assert_no_failures(&m);
    assert_eq!(m.duration.count(), 3);
    assert_bucket_holds(&emulator, "exists", TEST, &expected);
    // Create-only is enforced: a second write of the name is refused with 412.
    assert_eq!(emulator.insert("exists", &landed, b"other bytes"), 412);
}

#[test]
fn shutdown_uploads_within_the_grace_period_and_leaves_the_rest_spooled() {
    const TEST: &str = "grace";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let mut config = config("127.0.83.9", "grace", &dir.path().join("spool"));
    config.startup_probe = StartupProbe::Warn;
    config.shutdown_grace_secs = 1;
    let spool = open_spool(&config);
    let mut expected = BTreeMap::new();
    for i in 0..6 {
        commit(&spool, TEST, i, 3000, &mut expected);
    }
    // Nothing to upload to: the grace period runs out, everything stays spooled.
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    let report = uploader.shutdown();
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(!report.drained);
    assert_eq!((report.left_files, report.left_bytes), (6, 6 * 3032));
    assert_eq!(report.metrics.delivered(), 0);
    assert!(report.metrics.retryable_error >= 4, "{:?}", report.metrics);

    // With the bucket back, shutdown drains the spool well within a 10 s grace.
    let emulator = Emulator::start(&binary, "127.0.83.9", &dir.path().join("gcs"), &["grace"]);
    config.shutdown_grace_secs = 10;
    let uploader = Uploader::start(&config, Arc::clone(&spool)).unwrap();
    let stopping = Instant::now();
    let report = uploader.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    assert!(report.drained);
    assert_eq!((report.left_files, report.left_bytes), (0, 0));
    assert_eq!((report.metrics.ok, report.metrics.exists), (6, 0));
    assert_no_failures(&report.metrics);
    assert_bucket_holds(&emulator, "grace", TEST, &expected);
}

#[test]
fn bad_bucket_and_endpoint_are_one_clear_error_at_start() {
    const TEST: &str = "bad_input";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = scratch(TEST);
    let _emulator = Emulator::start(&binary, "127.0.83.6", &dir.path().join("gcs"), &["real"]);

    // A bucket that does not exist.
    let config = config("127.0.83.6", "no-such-bucket", &dir.path().join("spool-1"));
    let err = Uploader::start(&config, open_spool(&config)).unwrap_err();
    assert!(
        matches!(&err, UploadError::BucketNotFound { bucket, .. } if bucket == "no-such-bucket")
    );
    assert_eq!(
        err.to_string(),
        "bucket \"no-such-bucket\" does not exist at http://127.0.83.6 (HTTP 404)"
    );

    // An endpoint where nothing listens: refused at once, not after retries.
    let config = support::config("127.0.83.7", "real", &dir.path().join("spool-2"));
    let started = Instant::now();
    let err = Uploader::start(&config, open_spool(&config)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    match &err {
        UploadError::Unreachable {
            endpoint, bucket, ..
        } => {
            assert_eq!(
                (endpoint.as_str(), bucket.as_str()),
                ("http://127.0.83.7", "real")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with(
            "cannot reach Cloud Storage endpoint http://127.0.83.7 (bucket \"real\"): "
        ),
        "{err}"
    );
    eprintln!("unreachable endpoint: {err}");

    // An endpoint that is not a URL: named by the config check, before any I/O.
    let mut config = support::config("127.0.83.6", "real", &dir.path().join("spool-3"));
    config.endpoint = Some("127.0.83.6:80".into());
    let err = Uploader::start(&config, open_spool(&config)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "upload config: `endpoint` is \"127.0.83.6:80\"; it must start with `http://` or `https://`"
    );

    // The right bucket at the right endpoint starts.
    let config = support::config("127.0.83.6", "real", &dir.path().join("spool-4"));
    let uploader = Uploader::start(&config, open_spool(&config)).unwrap();
    let m = uploader.shutdown().metrics;
    assert_eq!(m.delivered(), 0);
    assert_no_failures(&m);
}
