//! The power cut (issue 10, item 8): the Cloud Storage sink against fake-gcs-server on the
//! host side of the tap (192.0.2.1:80, inside the run's namespace), the disk opened with
//! `cache=none`, steady numbered traffic, then qemu killed mid-stream. The emulator is
//! stopped a few seconds before the cut (and started again after it), so that the spool
//! holds batches at the cut and the next boot has something to upload.
//!
//! After the cut a torn spool file (no trailer) is written into the image's spool
//! directory with debugfs, so that the quarantine is exercised deterministically, and the
//! VM boots again: the enabled unit starts by itself and uploads the spool. Checked: every
//! packet that left the tap more than `batch.max_age_ms` + 1 s before the cut (timestamps
//! from a capture on the tap) is in the bucket exactly once, no packet is in two objects,
//! the torn file is quarantined and counted (`sluice_spool_quarantined_files_total`), and
//! never uploaded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use sluice_testkit::cleanup::ProcessGuard;
use sluice_testkit::frames::{FrameSpec, GreTunnel, OuterIp, UdpDatagram};
use sluice_testkit::gcs::{Emulator, emulator_binary};
use sluice_testkit::tcpreplay::{self, ReplayParams};

use super::boot::{self, Shared};
use super::checks::metric_value;
use super::disk::GuestFile;
use super::net::{HOST_ADDR, HOST_MAC, TAP, TapNetns};
use super::qemu::{GUEST_MAC, Nic};
use super::rootfs::Kernel;
use super::stage::{self, METRICS_PORT};

/// The bucket the emulator serves.
const BUCKET: &str = "sluice-vm";
/// Object name prefix.
const PREFIX: &str = "vm";
/// `batch.max_age_ms`: what a power cut may lose, plus the 1 s of the check's margin.
const MAX_AGE_MS: u64 = 1000;
/// Numbered packets in the stream, and their rate.
const PACKETS: u32 = 2400;
const PPS: u32 = 200;
/// When the bucket goes away (so that batches stay in the spool), after the stream starts.
const OUTAGE_AFTER: Duration = Duration::from_secs(3);
/// When the power goes, after the stream starts.
const CUT_AFTER: Duration = Duration::from_secs(7);
/// The payload prefix of the numbered packets.
const SEQ_PREFIX: &str = "sluice-seq-";
/// The torn spool file's object name (percent-encoded as the spool names files).
const TORN_OBJECT: &str = "vm/raw/torn-by-power-cut.ndjson.zst";
const TORN_FILE: &str = "vm%2Fraw%2Ftorn-by-power-cut.ndjson.zst.spool";

/// The `n`-th numbered frame: GRE (key 7) around UDP to port 5000, payload `sluice-seq-n`.
pub fn numbered_frame(n: u32) -> Vec<u8> {
    FrameSpec {
        src_mac: HOST_MAC,
        dst_mac: GUEST_MAC,
        vlans: Vec::new(),
        tunnel: Some(GreTunnel {
            outer: OuterIp::V4 {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(192, 0, 2, 2),
                options_words: 0,
            },
            checksum: false,
            key: Some(7),
            sequence: None,
        }),
        inner: UdpDatagram {
            src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
            src_port: 40000,
            dst_port: 5000,
            payload: format!("{SEQ_PREFIX}{n:08}").into_bytes(),
        },
    }
    .build()
}

/// The sequence number in a numbered frame's payload (bytes of a frame or of a record).
pub fn sequence_of(payload: &[u8]) -> Option<u32> {
    let at = payload
        .windows(SEQ_PREFIX.len())
        .position(|w| w == SEQ_PREFIX.as_bytes())?;
    let digits = payload.get(at + SEQ_PREFIX.len()..at + SEQ_PREFIX.len() + 8)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Sequence numbers of frames captured more than `margin` before `cut`.
pub fn sent_before(captured: &[(Duration, Vec<u8>)], cut: Duration, margin: Duration) -> Vec<u32> {
    let limit = cut.saturating_sub(margin);
    captured
        .iter()
        .filter(|(at, _)| *at < limit)
        .filter_map(|(_, frame)| sequence_of(frame))
        .collect()
}

fn gcs_config() -> String {
    stage::config_text(|spec| {
        spec.max_age_ms = MAX_AGE_MS;
        spec.format = Some("ndjson_zstd".into());
        spec.gcs = Some(format!(
            "bucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\nendpoint = \"http://{HOST_ADDR}\"\n\
             credentials = \"anonymous\"\nspool_dir = \"/var/lib/sluice/spool\"\nconcurrency = 2\n\
             attempt_timeout_secs = 10\nbackoff_min_ms = 200\nbackoff_max_ms = 2000\n\
             shutdown_grace_secs = 20\n\
             # Objects within seconds, so that uploads (and their manifests) are in flight\n\
             # at the cut, and the restart's uploads land within the test's wait.\n\
             object_max_age_secs = 2"
        ));
    })
}

/// The power-cut case on `kernel` (virtio-net).
///
/// # Errors
/// The first check that fails.
pub fn run_power_cut(shared: &Shared, name: &str, kernel: &Kernel) -> anyhow::Result<()> {
    let binary = emulator_binary().context("no fake-gcs-server (cargo xtask setup installs it)")?;
    let net = TapNetns::create()?;
    let gcs_root = shared.work.join(format!("{name}-gcs"));
    if gcs_root.exists() {
        std::fs::remove_dir_all(&gcs_root)?;
    }
    std::fs::create_dir_all(&gcs_root)?;
    let mut emulator =
        Emulator::start_in(Some(net.name()), &binary, HOST_ADDR, &gcs_root, &[BUCKET]);
    let mut run = boot::boot(shared, name, kernel, Nic::VirtioNet, &gcs_config(), net)?;
    run.wait_booted()?;
    if !run.wait_installed_and_started()? {
        bail!(
            "sluice did not start; journal:\n{}",
            run.journal().join("\n")
        );
    }

    let pcap = run.dir().join("numbered.pcap");
    let frames: Vec<Vec<u8>> = (0..PACKETS).map(numbered_frame).collect();
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice))?;
    let capture = run.dir().join("sent.pcap");
    let mut tcpdump = capture_sent(run.net.name(), &capture)?;

    let replay = {
        let netns = run.net.netns();
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                tcpreplay::send(
                    netns,
                    TAP,
                    &pcap,
                    ReplayParams {
                        pps: PPS,
                        loops: 1,
                        timeout: Duration::from_secs(60),
                    },
                )
            });
            // The bucket becomes unreachable: batches closed from now on stay spooled, and
            // the cut leaves them for the next boot to upload.
            std::thread::sleep(OUTAGE_AFTER);
            emulator.stop();
            std::thread::sleep(CUT_AFTER.saturating_sub(OUTAGE_AFTER));
            let cut = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let killed = run.vm.power_cut();
            let sent = handle.join();
            (cut, killed, sent)
        })
    };
    let (cut, killed, _sent) = replay;
    killed?;
    std::thread::sleep(Duration::from_millis(500));
    let _ = tcpdump.terminate(Duration::from_secs(5));
    let captured: Vec<(Duration, Vec<u8>)> = sluice_testkit::pcap::read_pcap(&capture)
        .context("reading the capture of the tap")?
        .into_iter()
        .map(|f| (f.timestamp, f.data))
        .collect();
    let must_have = sent_before(&captured, cut, Duration::from_millis(MAX_AGE_MS + 1000));
    ensure!(
        must_have.len() > 200,
        "only {} numbered packets left the tap more than {} ms before the cut",
        must_have.len(),
        MAX_AGE_MS + 1000
    );

    // A spool file the cut tore: no trailer. The spool must quarantine it, not upload it.
    let torn = run.dir().join("torn.spool");
    std::fs::write(&torn, b"{\"a torn batch\": ")?;
    run.disk.replay_journal()?;
    run.disk.add(&[GuestFile::Copy {
        source: torn,
        dest: format!("/var/lib/sluice/spool/{TORN_FILE}"),
    }])?;

    emulator.restart();
    let before_reboot = bucket_sequences(&emulator, &run.dir().join("objects-before"))?;
    run.reboot(2)?;
    run.wait_booted()?;
    if !run.wait_started()? {
        bail!(
            "sluice did not start after the power cut; journal:\n{}",
            run.journal().join("\n")
        );
    }

    // Wait (bounded) until everything that must be there has been uploaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let counts = bucket_sequences(&emulator, &run.dir().join("objects"))?;
        if must_have.iter().all(|n| counts.contains_key(n)) || std::time::Instant::now() > deadline
        {
            break counts;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let metrics = run
        .net
        .http_get(METRICS_PORT, "/metrics")
        .context("GET /metrics after the reboot")?;
    run.vm.send("stop")?;
    run.vm.wait_for("stopped", Duration::from_secs(150))?;
    let state = run.power_off_and_collect(2)?;

    let missing: Vec<u32> = must_have
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(n))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {} packets sent > {} ms before the cut are not in the bucket (first: {:?})",
        missing.len(),
        must_have.len(),
        MAX_AGE_MS + 1000,
        &missing[..missing.len().min(10)]
    );
    ensure!(
        counts.len() > before_reboot.len(),
        "the reboot uploaded nothing: {} packets in the bucket before it, {} after",
        before_reboot.len(),
        counts.len()
    );
    let duplicated: Vec<(&u32, &u32)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    ensure!(
        duplicated.is_empty(),
        "packets uploaded more than once: {duplicated:?}"
    );
    let objects = emulator.list(BUCKET, "");
    ensure!(
        objects.iter().all(|(object, _)| object != TORN_OBJECT),
        "the torn spool file was uploaded"
    );
    let quarantined = metric_value(&metrics, "sluice_spool_quarantined_files_total", &[]);
    ensure!(
        quarantined == Some(1.0),
        "sluice_spool_quarantined_files_total is {quarantined:?}, expected 1"
    );
    ensure!(
        state.join("spool/quarantine").join(TORN_FILE).is_file(),
        "the torn file is not in spool/quarantine/"
    );
    println!(
        "vm-test: {name}: {} packets sent before the cut margin; in the bucket: {} before the reboot, {} after, in {} objects",
        must_have.len(),
        before_reboot.len(),
        counts.len(),
        objects.len()
    );
    Ok(())
}

/// tcpdump of the frames leaving the tap toward the guest (their send times).
fn capture_sent(netns: &str, path: &Path) -> anyhow::Result<ProcessGuard> {
    let child = std::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "tcpdump", "-i", TAP, "-Q", "out", "-U", "-n", "-w",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tcpdump on the tap")?;
    let guard = ProcessGuard::new("tcpdump", child);
    // tcpdump needs a moment to open the interface.
    std::thread::sleep(Duration::from_secs(1));
    Ok(guard)
}

/// How often each sequence number is in the bucket's objects (downloaded into `dir`).
fn bucket_sequences(emulator: &Emulator, dir: &Path) -> anyhow::Result<BTreeMap<u32, u32>> {
    std::fs::create_dir_all(dir)?;
    let mut counts = BTreeMap::new();
    for (i, (object, _)) in emulator.list(BUCKET, PREFIX).iter().enumerate() {
        if !object.ends_with(".ndjson.zst") {
            continue;
        }
        let path = dir.join(format!("{i}.ndjson.zst"));
        std::fs::write(&path, emulator.download(BUCKET, object))?;
        for record in sluice_testkit::records::read_file(&path)
            .with_context(|| format!("reading object {object}"))?
        {
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&record.payload)
                .with_context(|| format!("payload of a record in {object}"))?;
            if let Some(n) = sequence_of(&payload) {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_frames_carry_their_sequence_number() {
        let frame = numbered_frame(1234);
        assert_eq!(sequence_of(&frame), Some(1234));
        assert_eq!(sequence_of(b"sluice-seq-0000001"), None);
        assert_eq!(&frame[..6], &GUEST_MAC);
    }

    #[test]
    fn only_frames_sent_before_the_margin_must_be_there() {
        let at = |s: u64| Duration::from_secs(s);
        let captured = vec![
            (at(100), numbered_frame(1)),
            (at(105), numbered_frame(2)),
            (at(108), numbered_frame(3)),
            (at(101), b"no number".to_vec()),
        ];
        assert_eq!(sent_before(&captured, at(110), at(2)), [1, 2]);
    }

    #[test]
    fn the_torn_file_name_is_the_spool_encoding_of_its_object() {
        assert_eq!(
            TORN_FILE,
            format!("{}.spool", TORN_OBJECT.replace('/', "%2F"))
        );
    }
}
