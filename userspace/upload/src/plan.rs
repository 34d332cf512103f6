//! Which spooled batches become one object, and when.
//!
//! Batches stay small so that a crash loses little (`batch.max_age_ms`); objects are made
//! large so that BigQuery lists few files and reads large row groups. This module is the
//! policy between the two, kept free of I/O so it can be tested exhaustively:
//!
//! - Batches are combined only within a **group**: the same object folder
//!   (`PREFIX/<stream>/dt=…/hour=…`, so never across an hour partition), the same file
//!   extension, and the same run (`<host>-<boot>-<run>`; within one run a stream's columns
//!   and format are fixed, so its batches can always be joined). See [`group_of`].
//! - A group becomes objects when its oldest batch has waited `max_age`, or as soon as it
//!   holds `target_bytes` or [`MAX_BATCHES`] batches, or at shutdown (everything).
//!   Objects are cut in commit order and never exceed `target_bytes` unless one batch
//!   alone does, nor [`MAX_BATCHES`] batches (a Parquet object keeps every batch's row
//!   groups, and the combiner holds their metadata until the footer: about 15 KB each).
//! - An object of one batch keeps that batch's name; an object of `N > 1` batches is
//!   named after its first batch with `-x<N>` ([`object_name`]), which no batch name can
//!   be. So a combined object never takes a name that a batch uploaded on its own (by an
//!   earlier run, or an earlier version that made one object per batch) may already have:
//!   a create-only upload finding that name taken always means "this very content".

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// File extensions of the formats, longest match first (`ndjson.gz` before `gz`).
const EXTENSIONS: [&str; 4] = ["ndjson.gz", "ndjson.zst", "csv.gz", "parquet"];

/// Most batches in one object (at low rates every worker still closes a batch a second:
/// 16 workers × 300 s would be 4800 row groups of a few rows each).
pub const MAX_BATCHES: usize = 1024;

/// When a group's batches become objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectPolicy {
    /// Longest the oldest batch of a group waits.
    pub max_age: Duration,
    /// Size at which an object is closed.
    pub target_bytes: u64,
}

/// A spooled batch not yet assigned to an object.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Its spool sequence (commit order).
    pub sequence: u64,
    /// The object name it was committed under.
    pub object_name: &'a str,
    /// Its payload size.
    pub payload_bytes: u64,
    /// When it was committed (the file's modification time after a restart).
    pub committed_at: SystemTime,
    /// It could not be joined to other batches (its format refused it, e.g. a CSV batch
    /// of an older version): it becomes an object of its own.
    pub alone: bool,
}

/// What [`plan`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The objects to make now: each a list of batch sequences in commit order.
    pub objects: Vec<Vec<u64>>,
    /// When the oldest batch that has to wait will be due (for the caller's timer).
    pub next_due: Option<SystemTime>,
}

/// The group key of a batch's object name: the folder, the `<host>-<boot>-<run>` part
/// and the extension, or `None` for a name that does not follow the scheme of
/// [`crate::ObjectNamer`] (such a batch becomes an object of its own).
pub fn group_of(object_name: &str) -> Option<(&str, &str, &str)> {
    let (folder, file) = object_name.rsplit_once('/')?;
    let extension = EXTENSIONS.into_iter().find(|ext| {
        file.len() > ext.len() + 1
            && file.ends_with(ext)
            && file.as_bytes()[file.len() - ext.len() - 1] == b'.'
    })?;
    let stem = &file[..file.len() - extension.len() - 1];
    // <host>-<boot>-<run>-<worker>-<sequence>: the host may contain `-`.
    let mut parts = stem.rsplitn(3, '-');
    let sequence = parts.next()?;
    let worker = parts.next()?;
    let run = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(sequence) && digits(worker) && run.matches('-').count() >= 2)
        .then_some((folder, run, extension))
}

/// The name of the object made of `batches` whose first batch is `first`: `first`
/// itself for one batch, else `<first's name without extension>-x<batches>.<extension>`.
pub fn object_name(first: &str, batches: usize) -> String {
    if batches == 1 {
        return first.to_owned();
    }
    match group_of(first) {
        Some((_, _, extension)) => {
            let stem = &first[..first.len() - extension.len() - 1];
            format!("{stem}-x{batches}.{extension}")
        }
        None => format!("{first}-x{batches}"),
    }
}

/// Decides which of `candidates` (in any order) become objects at `now` (see the module
/// docs); with `flush`, all of them.
pub fn plan<'a>(
    candidates: impl IntoIterator<Item = Candidate<'a>>,
    policy: ObjectPolicy,
    now: SystemTime,
    flush: bool,
) -> Plan {
    let mut groups: BTreeMap<Option<(&str, &str, &str)>, Vec<Candidate<'a>>> = BTreeMap::new();
    let mut loners = Vec::new();
    for candidate in candidates {
        match group_of(candidate.object_name) {
            Some(key) if !candidate.alone => groups.entry(Some(key)).or_default().push(candidate),
            _ => loners.push(vec![candidate.sequence]),
        }
    }
    let mut decided = Plan {
        objects: loners,
        next_due: None,
    };
    for (_, mut batches) in groups {
        batches.sort_by_key(|b| b.sequence);
        let oldest = batches.iter().map(|b| b.committed_at).min().unwrap_or(now);
        let due = oldest.checked_add(policy.max_age).unwrap_or(oldest);
        let all_due = flush || due <= now;
        let mut chunk: Vec<u64> = Vec::new();
        let mut chunk_bytes = 0u64;
        let mut rest = 0usize;
        for (i, batch) in batches.iter().enumerate() {
            let full = chunk.len() >= MAX_BATCHES
                || chunk_bytes.saturating_add(batch.payload_bytes) > policy.target_bytes;
            if !chunk.is_empty() && full {
                decided.objects.push(std::mem::take(&mut chunk));
                chunk_bytes = 0;
                rest = i;
            }
            chunk.push(batch.sequence);
            chunk_bytes = chunk_bytes.saturating_add(batch.payload_bytes);
        }
        if all_due || chunk_bytes >= policy.target_bytes || chunk.len() >= MAX_BATCHES {
            decided.objects.push(chunk);
        } else {
            let waiting_oldest = batches[rest..]
                .iter()
                .map(|b| b.committed_at)
                .min()
                .unwrap_or(now);
            let waiting_due = waiting_oldest
                .checked_add(policy.max_age)
                .unwrap_or(waiting_oldest);
            decided.next_due = Some(decided.next_due.map_or(waiting_due, |d| d.min(waiting_due)));
        }
    }
    decided
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    fn name(stream: &str, hour: u32, run: &str, worker: u32, seq: u64) -> String {
        format!(
            "p/{stream}/dt=2027-01-15/hour={hour:02}/probe-1.example-3f2a9c1e-{run}-{worker}-{seq:08}.parquet"
        )
    }

    struct Spooled {
        names: Vec<String>,
        bytes: Vec<u64>,
        times: Vec<SystemTime>,
    }

    impl Spooled {
        fn new() -> Self {
            Self {
                names: Vec::new(),
                bytes: Vec::new(),
                times: Vec::new(),
            }
        }
        fn add(&mut self, name: String, bytes: u64, at: SystemTime) -> &mut Self {
            self.names.push(name);
            self.bytes.push(bytes);
            self.times.push(at);
            self
        }
        fn candidates(&self) -> Vec<Candidate<'_>> {
            (0..self.names.len())
                .map(|i| Candidate {
                    sequence: i as u64,
                    object_name: &self.names[i],
                    payload_bytes: self.bytes[i],
                    committed_at: self.times[i],
                    alone: false,
                })
                .collect()
        }
    }

    const POLICY: ObjectPolicy = ObjectPolicy {
        max_age: Duration::from_secs(300),
        target_bytes: 100,
    };

    #[test]
    fn groups_follow_folder_run_and_extension() {
        let a = name("raw", 3, "00c0ffee", 0, 1);
        assert_eq!(
            group_of(&a),
            Some((
                "p/raw/dt=2027-01-15/hour=03",
                "probe-1.example-3f2a9c1e-00c0ffee",
                "parquet"
            ))
        );
        assert_eq!(
            group_of("s/dt=2027-01-15/hour=00/h-3f2a9c1e-00000001-2-00000009.ndjson.gz"),
            Some((
                "s/dt=2027-01-15/hour=00",
                "h-3f2a9c1e-00000001",
                "ndjson.gz"
            ))
        );
        for foreign in [
            "noslash.parquet",
            "a/b.parquet",
            "a/h-x-y-z-1.txt",
            "a/h-b-r-w-1.parquet",
            "a/.parquet",
        ] {
            assert_eq!(group_of(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn object_names_cannot_be_batch_names() {
        let first = name("raw", 3, "00c0ffee", 2, 17);
        let object = object_name(&first, 12);
        assert_eq!(
            object,
            "p/raw/dt=2027-01-15/hour=03/probe-1.example-3f2a9c1e-00c0ffee-2-00000017-x12.parquet"
        );
        assert_eq!(group_of(&object), None);
        assert_eq!(object_name(&first, 1), first);
        assert_eq!(object_name("odd", 2), "odd-x2");
    }

    #[test]
    fn young_small_groups_wait_until_the_oldest_is_due() {
        let mut s = Spooled::new();
        s.add(name("raw", 3, "00c0ffee", 0, 1), 10, at(0)).add(
            name("raw", 3, "00c0ffee", 1, 1),
            10,
            at(5),
        );
        let waiting = plan(s.candidates(), POLICY, at(299), false);
        assert_eq!(
            waiting,
            Plan {
                objects: vec![],
                next_due: Some(at(300))
            }
        );
        let due = plan(s.candidates(), POLICY, at(300), false);
        assert_eq!(due.objects, vec![vec![0, 1]]);
        assert_eq!(due.next_due, None);
        let flushed = plan(s.candidates(), POLICY, at(1), true);
        assert_eq!(flushed.objects, vec![vec![0, 1]]);
    }

    #[test]
    fn full_groups_are_cut_at_the_target_and_the_rest_waits() {
        let mut s = Spooled::new();
        for i in 0..7 {
            s.add(name("raw", 3, "00c0ffee", 0, i), 30, at(i));
        }
        // 30+30+30 = 90 ≤ 100, a fourth would pass it: objects of three; the seventh waits.
        let p = plan(s.candidates(), POLICY, at(10), false);
        assert_eq!(p.objects, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(p.next_due, Some(at(306)));
        // A batch larger than the target is an object of its own.
        let mut big = Spooled::new();
        big.add(name("raw", 3, "00c0ffee", 0, 0), 10, at(0))
            .add(name("raw", 3, "00c0ffee", 0, 1), 500, at(1))
            .add(name("raw", 3, "00c0ffee", 0, 2), 10, at(2));
        let p = plan(big.candidates(), POLICY, at(3), false);
        assert_eq!(p.objects, vec![vec![0], vec![1]]);
        assert_eq!(p.next_due, Some(at(302)));
    }

    #[test]
    fn hours_streams_runs_and_formats_never_mix() {
        let mut s = Spooled::new();
        s.add(name("raw", 3, "00c0ffee", 0, 1), 10, at(0))
            .add(name("raw", 4, "00c0ffee", 0, 2), 10, at(0))
            .add(name("flows", 3, "00c0ffee", 0, 3), 10, at(0))
            .add(name("raw", 3, "0badf00d", 0, 4), 10, at(0))
            .add(
                name("raw", 3, "00c0ffee", 1, 5).replace(".parquet", ".csv.gz"),
                10,
                at(0),
            )
            .add(name("raw", 3, "00c0ffee", 1, 6), 10, at(0))
            .add("foreign/object".to_owned(), 10, at(0));
        let mut objects = plan(s.candidates(), POLICY, at(0), true).objects;
        objects.sort();
        assert_eq!(
            objects,
            vec![vec![0, 5], vec![1], vec![2], vec![3], vec![4], vec![6]]
        );
    }

    #[test]
    fn objects_hold_at_most_max_batches_and_lone_batches_stay_alone() {
        let mut s = Spooled::new();
        for i in 0..(MAX_BATCHES as u64 * 2 + 1) {
            s.add(name("raw", 3, "00c0ffee", 0, i), 0, at(0));
        }
        let p = plan(s.candidates(), POLICY, at(1), false);
        assert_eq!(
            p.objects.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_BATCHES, MAX_BATCHES]
        );
        assert_eq!(p.next_due, Some(at(300)));
        let mut candidates = s.candidates();
        candidates.truncate(3);
        candidates[1].alone = true;
        let p = plan(candidates, POLICY, at(1), true);
        assert_eq!(p.objects, vec![vec![1], vec![0, 2]]);
    }

    #[test]
    fn a_target_of_one_byte_makes_every_batch_an_object() {
        let mut s = Spooled::new();
        for i in 0..3 {
            s.add(name("raw", 3, "00c0ffee", 0, i), 10, at(i));
        }
        let policy = ObjectPolicy {
            max_age: Duration::from_secs(300),
            target_bytes: 1,
        };
        assert_eq!(
            plan(s.candidates(), policy, at(3), false).objects,
            vec![vec![0], vec![1], vec![2]]
        );
    }
}
