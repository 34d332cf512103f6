//! Unit tests of the spool: commit/pending/remove, limits, recovery after a crash.

use super::format::{Corruption, Trailer};
use super::name::NameError;
use super::*;

fn scratch() -> sluice_testkit::scratch::TempDir {
    sluice_testkit::scratch::tempdir("upload-spool").unwrap()
}

fn names(spool: &Spool) -> Vec<String> {
    spool.pending().into_iter().map(|b| b.object_name).collect()
}

#[test]
fn commit_makes_a_complete_file_under_the_encoded_name() {
    let dir = scratch();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    let c = spool
        .commit("p/raw/dt=2026-11-22/hour=03/h-1.ndjson.zst", b"hello")
        .unwrap();
    assert_eq!(
        c.batch.object_name,
        "p/raw/dt=2026-11-22/hour=03/h-1.ndjson.zst"
    );
    assert_eq!(
        c.batch.file_name,
        "p%2Fraw%2Fdt=2026-11-22%2Fhour=03%2Fh-1.ndjson.zst.spool"
    );
    assert_eq!(c.batch.sequence, 0);
    assert_eq!(c.batch.file_bytes, 5 + 32);
    assert_eq!(c.batch.payload_bytes(), 5);
    assert_eq!(c.batch.crc32c, crc32c::crc32c(b"hello"));
    assert_eq!((c.spool_files, c.spool_bytes), (1, 37));
    let on_disk = fs::read(dir.path().join(&c.batch.file_name)).unwrap();
    assert_eq!(&on_disk[..5], b"hello");
    assert_eq!(on_disk[5..], Trailer::for_payload(0, b"hello").encode());
    assert_eq!(spool.read(&c.batch).unwrap(), b"hello");
    // Nothing else: no temporaries left behind.
    let mut files: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [".lock", "objects", &c.batch.file_name, "quarantine"]
    );
}

#[test]
fn pending_is_oldest_first_and_remove_forgets() {
    let dir = scratch();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    for name in ["c", "a", "b"] {
        spool.commit(name, name.as_bytes()).unwrap();
    }
    assert_eq!(names(&spool), ["c", "a", "b"]);
    assert_eq!(
        spool
            .pending_from(1, 10)
            .iter()
            .map(|b| b.sequence)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    spool.remove("a").unwrap();
    assert_eq!(names(&spool), ["c", "b"]);
    assert!(!dir.path().join("a.spool").exists());
    assert_eq!(spool.stats().files, 2);
    assert_eq!(spool.stats().bytes, 2 * 33);
    assert!(matches!(spool.remove("a"), Err(SpoolError::NotSpooled { name }) if name == "a"));
}

#[test]
fn the_same_name_is_refused_while_spooled() {
    let dir = scratch();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.commit("x", b"1").unwrap();
    assert!(matches!(spool.commit("x", b"2"), Err(SpoolError::Duplicate { name }) if name == "x"));
    assert_eq!(spool.read(&spool.pending()[0]).unwrap(), b"1");
    assert!(matches!(
        spool.commit("a//b", b""),
        Err(SpoolError::InvalidName {
            problem: NameError::BadSegment,
            ..
        })
    ));
}

#[test]
fn the_byte_limit_refuses_with_full_and_frees_on_remove() {
    let dir = scratch();
    // Room for exactly two 68-byte files (36 + 32).
    let spool = Spool::open(dir.path(), 136).unwrap();
    spool.commit("a", &[1; 36]).unwrap();
    spool.commit("b", &[2; 36]).unwrap();
    let err = spool.commit("c", &[3; 36]).unwrap_err();
    match &err {
        SpoolError::Full {
            dir: d,
            bytes,
            limit,
            spooled,
            cause,
        } => {
            assert_eq!(d, dir.path());
            assert_eq!(
                (*bytes, *limit, *spooled, *cause),
                (68, 136, 136, FullCause::Limit)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "spool {} is full: a 68-byte batch refused with 136 of 136 bytes spooled (the spool byte limit would be exceeded)",
            dir.path().display()
        )
    );
    assert_eq!(spool.stats().refused, 1);
    assert_eq!(names(&spool), ["a", "b"]);
    spool.remove("a").unwrap();
    spool.commit("c", &[3; 36]).unwrap();
    assert_eq!(names(&spool), ["b", "c"]);
    assert_eq!(spool.stats().bytes, 136);
}

#[test]
fn reopening_recovers_batches_in_order_and_drops_temporaries() {
    let dir = scratch();
    {
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..12 {
            spool
                .commit(&format!("s/{i}"), format!("batch {i}").as_bytes())
                .unwrap();
        }
        spool.remove("s/3").unwrap();
    }
    // A commit interrupted before its rename.
    fs::write(dir.path().join(".tmp-999-77"), b"half a batch").unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    let expected: Vec<String> = (0..12)
        .filter(|i| *i != 3)
        .map(|i| format!("s/{i}"))
        .collect();
    assert_eq!(names(&spool), expected);
    let stats = spool.stats();
    assert_eq!(
        (stats.files, stats.stale_temporaries, stats.quarantined),
        (11, 1, 0)
    );
    assert!(!dir.path().join(".tmp-999-77").exists());
    for batch in spool.pending() {
        let i: usize = batch.object_name[2..].parse().unwrap();
        assert_eq!(spool.read(&batch).unwrap(), format!("batch {i}").as_bytes());
    }
    // New commits continue after the recovered ones.
    assert_eq!(spool.commit("s/new", b"n").unwrap().batch.sequence, 12);
}

#[test]
fn truncated_and_foreign_files_are_quarantined_at_open() {
    let dir = scratch();
    {
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.commit("good", b"complete").unwrap();
        spool.commit("cut", &[7; 100]).unwrap();
    }
    let cut = dir.path().join("cut.spool");
    let len = fs::metadata(&cut).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    fs::write(dir.path().join("%zz.spool"), b"not ours").unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(names(&spool), ["good"]);
    assert_eq!(spool.stats().quarantined, 2);
    let mut quarantined: Vec<String> = fs::read_dir(spool.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    quarantined.sort();
    assert_eq!(quarantined, ["%zz.spool", "cut.spool"]);
    // Kept byte for byte, never deleted.
    assert_eq!(
        fs::read(dir.path().join("quarantine/cut.spool"))
            .unwrap()
            .len() as u64,
        len - 10
    );
}

#[test]
fn a_payload_damaged_after_open_is_quarantined_on_read() {
    let dir = scratch();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    let batch = spool.commit("rot", b"0123456789").unwrap().batch;
    let path = dir.path().join("rot.spool");
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    match spool.read(&batch) {
        Err(SpoolError::Corrupt {
            problem: Corruption::PayloadChecksum { .. },
            quarantined,
            ..
        }) => {
            assert_eq!(quarantined, dir.path().join("quarantine/rot.spool"));
        }
        other => panic!("{other:?}"),
    }
    assert!(spool.is_empty());
    let stats = spool.stats();
    assert_eq!((stats.files, stats.bytes, stats.quarantined), (0, 0, 1));
    // The same name again goes to the quarantine under a free name.
    let again = spool.commit("rot", b"abc").unwrap().batch;
    let path = dir.path().join("rot.spool");
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        spool.read(&again),
        Err(SpoolError::Corrupt { .. })
    ));
    assert!(dir.path().join("quarantine/rot.spool.1").exists());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = scratch();
    let first = Spool::open(dir.path(), 1 << 20).unwrap();
    match Spool::open(dir.path(), 1 << 20) {
        Err(SpoolError::Locked { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("{other:?}"),
    }
    drop(first);
    assert!(Spool::open(dir.path(), 1 << 20).is_ok());
}

#[test]
fn a_directory_under_a_file_is_unwritable_with_its_path() {
    let dir = scratch();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let target = file.join("spool");
    match Spool::open(&target, 1 << 20) {
        Err(e @ SpoolError::Unwritable { .. }) => {
            assert!(
                e.to_string().starts_with(&format!(
                    "spool directory {} is not writable: ",
                    target.display()
                )),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn batch_name(worker: u32, seq: u64) -> String {
    format!("p/raw/dt=2027-01-15/hour=03/h-3f2a9c1e-00c0ffee-{worker}-{seq:08}.ndjson.gz")
}

const NOW_POLICY: crate::ObjectPolicy = crate::ObjectPolicy {
    max_age: std::time::Duration::ZERO,
    target_bytes: 1 << 20,
};

fn manifests(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(super::OBJECTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn planned_objects_are_claimed_once_and_finishing_removes_their_batches() {
    let dir = scratch();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    for seq in 0..3 {
        spool
            .commit(&batch_name(seq as u32 % 2, seq), b"x")
            .unwrap();
    }
    spool.commit("foreign/name", b"y").unwrap();
    let planned = spool
        .plan_objects(NOW_POLICY, std::time::SystemTime::now(), false)
        .unwrap();
    assert_eq!(planned.objects, 2);
    assert!(!spool.has_unassigned());
    assert_eq!(spool.stats().planned_objects, 2);
    assert_eq!(manifests(dir.path()).len(), 2);
    let objects = spool.claim_objects(5);
    assert_eq!(spool.claim_objects(5), vec![]);
    let combined = objects.iter().find(|o| o.batches.len() == 3).unwrap();
    assert_eq!(
        combined.object_name,
        "p/raw/dt=2027-01-15/hour=03/h-3f2a9c1e-00c0ffee-0-00000000-x3.ndjson.gz"
    );
    assert_eq!(combined.payload_bytes(), 3);
    spool.release_object(combined.id);
    assert!(spool.has_unclaimed_objects());
    let again = spool.claim_objects(5);
    assert_eq!(again, vec![combined.clone()]);
    spool.finish_object(combined).unwrap();
    // Finishing twice (a retry after an error) is harmless.
    spool.finish_object(combined).unwrap();
    assert_eq!(names(&spool), ["foreign/name"]);
    assert_eq!(manifests(dir.path()).len(), 1);
    assert_eq!(spool.stats().planned_objects, 1);
}

#[test]
fn a_restart_rebuilds_the_same_objects_and_retires_uploaded_ones() {
    let dir = scratch();
    let (first, second) = {
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for seq in 0..4 {
            spool.commit(&batch_name(0, seq), b"x").unwrap();
        }
        let policy = crate::ObjectPolicy {
            max_age: std::time::Duration::ZERO,
            target_bytes: 2,
        };
        spool
            .plan_objects(policy, std::time::SystemTime::now(), false)
            .unwrap();
        let objects = spool.claim_objects(5);
        assert_eq!(objects.len(), 2);
        (objects[0].clone(), objects[1].clone())
        // Dropped without finishing: a crash before the uploads.
    };
    // The first object was uploaded and its manifest marked, then the process died
    // before the batches were removed.
    let objects = dir.path().join(super::OBJECTS_DIR);
    let stem = first.manifest.strip_suffix(".object").unwrap();
    std::fs::rename(
        objects.join(&first.manifest),
        objects.join(format!("{stem}.uploaded")),
    )
    .unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert!(!spool.has_unassigned(), "nothing is planned twice");
    let rebuilt = spool.claim_objects(5);
    assert_eq!(rebuilt.len(), 1);
    assert_eq!(rebuilt[0].object_name, second.object_name);
    let names_of = |o: &crate::PlannedObject| {
        o.batches
            .iter()
            .map(|b| b.object_name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names_of(&rebuilt[0]), names_of(&second));
    assert_eq!(names(&spool), names_of(&second));
    assert_eq!(
        manifests(dir.path()),
        std::slice::from_ref(&second.manifest)
    );
}

#[test]
fn a_quarantined_batch_leaves_its_object_and_a_damaged_manifest_is_quarantined() {
    let dir = scratch();
    let object = {
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for seq in 0..3 {
            spool.commit(&batch_name(0, seq), b"x").unwrap();
        }
        spool
            .plan_objects(NOW_POLICY, std::time::SystemTime::now(), false)
            .unwrap();
        let object = spool.claim_objects(1).remove(0);
        let middle = object.batches[1].clone();
        // Its payload is damaged after the commit: reading it quarantines it.
        let path = dir.path().join(&middle.file_name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            spool.read(&middle),
            Err(SpoolError::Corrupt { .. })
        ));
        let rest = spool
            .drop_from_object(object.id, middle.sequence)
            .unwrap()
            .unwrap();
        assert_eq!(rest.batches.len(), 2);
        assert_eq!(rest.object_name, object.object_name);
        rest
    };
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    let back = spool.claim_objects(5);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].batches.len(), 2);
    assert_eq!(back[0].object_name, object.object_name);
    assert_eq!(
        spool.stats().quarantined,
        0,
        "counted in the run that moved it"
    );
    drop(spool);
    // Damage the manifest: it is moved aside and its batches are planned afresh.
    let path = dir.path().join(super::OBJECTS_DIR).join(&object.manifest);
    std::fs::write(&path, b"sluice-object 1\nobject x\n").unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.stats().quarantined, 1);
    assert!(spool.claim_objects(5).is_empty());
    assert!(spool.has_unassigned());
    assert!(manifests(dir.path()).is_empty());
}
