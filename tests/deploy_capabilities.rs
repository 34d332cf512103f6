//! The capabilities `deploy/sluice.service` grants are enough, and each one is needed:
//! the proof for the unprivileged service user (tests/capabilities.rs covers root minus
//! one capability).
//!
//! The test creates a system user of its own (`sluice-t<pid>`, removed by exact name at
//! the end, also on panic) and runs the `sluice` binary as that user through `setpriv`,
//! the way systemd runs the unit: `--reuid/--regid/--init-groups`, the unit's
//! `AmbientCapabilities=` as inheritable + ambient set, `CapabilityBoundingSet=` as the
//! bounding set, `--no-new-privs`, all inside a namespace pair with XDP on the veth, and
//! RLIMIT_MEMLOCK lowered to 1 MiB under a 16 MiB UMEM so CAP_IPC_LOCK is put to use.
//!
//! - With all five it reaches "ready", holds exactly those five capabilities, records every
//!   GRE frame tcpreplay sends (files owned by the user), and exits cleanly on SIGTERM
//!   with balanced counters.
//! - Without any one of CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW it exits 2 naming
//!   it; without CAP_IPC_LOCK too, since its UMEM exceeds the limit; and none of these
//!   leaves XDP attached.
//! - Without CAP_IPC_LOCK but with a UMEM under the limit it runs: the unit's alternative
//!   of a large enough LimitMEMLOCK.
//!
//! Needs root, `setpriv`, `prlimit`, `useradd`, `userdel`, `ip` and `tcpreplay`.

mod deploy_support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use deploy_support::{read_repo_file, unit_values};
use sluice::source::xdp::capabilities::{IPC_LOCK, Needed, REQUIRED};
use sluice_testkit::cleanup::ProcessGuard;
use sluice_testkit::daemon::{self, ConfigSpec, RunFiles};
use sluice_testkit::frames::{MatrixParams, variant_matrix};
use sluice_testkit::netns::NetnsPair;
use sluice_testkit::privilege::{require_root, require_tool};
use sluice_testkit::records;
use sluice_testkit::tcpreplay::{self, ReplayParams, ReplayReport};

const NAME: &str = "deploy_capabilities::the_unit_capabilities_suffice_for_an_unprivileged_user";

/// RLIMIT_MEMLOCK of every run: below the default 16 MiB UMEM, above a 256 KiB one.
const MEMLOCK: u64 = 1 << 20;

/// A system user created for this test and deleted by exact name on drop.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

fn id(flag: &str, name: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, name])
        .output()
        .expect("run id");
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn exists(database: &str, name: &str) -> bool {
    Command::new("getent")
        .args([database, name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl TestUser {
    fn create(name: &str) -> TestUser {
        assert!(
            !exists("passwd", name),
            "user {name} already exists: not ours to use"
        );
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name}: {status}");
        TestUser {
            name: name.to_owned(),
            uid: id("-u", name),
            gid: id("-g", name),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
        // userdel removes the user's own group with it; make sure.
        if exists("group", &self.name) {
            let _ = Command::new("groupdel").arg(&self.name).status();
        }
    }
}

/// `bpf` for `CAP_BPF`: setpriv's spelling.
fn setpriv_name(cap: &str) -> String {
    cap.trim_start_matches("CAP_").to_ascii_lowercase()
}

/// The unit's AmbientCapabilities=, checked equal to its CapabilityBoundingSet=.
fn unit_capabilities() -> Vec<String> {
    let unit = read_repo_file("deploy/sluice.service");
    let ambient = unit_values(&unit, "AmbientCapabilities");
    assert_eq!(ambient, unit_values(&unit, "CapabilityBoundingSet"));
    assert_eq!(ambient.len(), 1, "{ambient:?}");
    ambient[0].split_whitespace().map(String::from).collect()
}

/// A script that runs the binary in `dir` as `user` with exactly `caps`, like the unit.
/// Every step execs the next, so the PID `daemon::start_run` sees is sluice's.
fn write_launcher(dir: &Path, name: &str, user: &TestUser, caps: &[String]) -> PathBuf {
    let list = caps
        .iter()
        .map(|c| format!("+{}", setpriv_name(c)))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "#!/bin/sh\nexec prlimit --memlock={MEMLOCK} setpriv --reuid={uid} --regid={gid} \
         --init-groups --no-new-privs --inh-caps=-all,{list} --ambient-caps=-all,{list} \
         --bounding-set=-all,{list} -- {binary} \"$@\"\n",
        uid = user.uid,
        gid = user.gid,
        binary = dir.join("sluice").display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write launcher");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// XDP config for the veth in b; `small_umem` makes the UMEM 64 x 4096 = 256 KiB.
fn write_config(files: &RunFiles, interface: &str, out: &Path, small_umem: bool) {
    let mut text = ConfigSpec::xdp(interface, out).to_toml();
    if small_umem {
        text = text.replacen(
            "[source]\n",
            "[source]\numem_frames = 64\nring_size = 64\n",
            1,
        );
    }
    std::fs::write(&files.config, text).expect("write config");
}

/// `CapXxx:` of /proc/PID/status as a mask.
fn status_mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in status"))
}

fn xdp_attached(pair: &NetnsPair) -> bool {
    let out = pair
        .b
        .command("ip")
        .args(["link", "show", "dev", &pair.if_b])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Runs the launcher to completion (bounded): (exit code, last line of its log).
fn run_refused(pair: &NetnsPair, launcher: &Path, files: &RunFiles) -> (i32, String) {
    let log = std::fs::File::create(&files.log).expect("log");
    let child = pair
        .b
        .command(&launcher.to_string_lossy())
        .args(["run", "--config"])
        .arg(&files.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start launcher");
    let mut guard = ProcessGuard::new("sluice (refused)", child);
    let (status, in_time) = guard
        .wait_timeout(Duration::from_secs(30))
        .expect("wait for sluice");
    let tail = daemon::log_tail(&files.log, 1);
    assert!(in_time, "still running after 30 s; log:\n{tail}");
    (status.code().unwrap_or(-1), tail)
}

#[test]
fn the_unit_capabilities_suffice_for_an_unprivileged_user() {
    if !require_root(NAME)
        || ![
            "setpriv",
            "prlimit",
            "useradd",
            "userdel",
            "ip",
            "tcpreplay",
        ]
        .iter()
        .all(|t| require_tool(NAME, t))
    {
        return;
    }
    let caps = unit_capabilities();
    let needed: Vec<Needed> = REQUIRED.iter().copied().chain([IPC_LOCK]).collect();
    assert_eq!(
        caps,
        needed.iter().map(|n| n.name.to_owned()).collect::<Vec<_>>()
    );
    let full_mask = needed.iter().fold(0u64, |mask, n| mask | (1 << n.bit));

    // Declared before the pair and the daemons, so it is deleted after they are gone.
    let user = TestUser::create(&format!("sluice-t{}", std::process::id()));
    let dir = sluice_testkit::scratch::tempdir("deploy-caps").expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), dir.path().join("sluice")).expect("copy sluice");
    std::fs::set_permissions(
        dir.path().join("sluice"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");

    let params = MatrixParams::default();
    let matrix = variant_matrix(&params);
    let frames: Vec<Vec<u8>> = matrix.iter().map(|(_, spec)| spec.build()).collect();
    let pcap = dir.path().join("gre.pcap");
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");
    let sent = frames.len() as u64;

    let pair = NetnsPair::create().expect("namespace pair");

    // All five: ready, exactly these capabilities, every frame recorded, clean stop.
    let out = dir.path().join("out-all");
    let files = RunFiles::in_dir(dir.path(), "all");
    write_config(&files, &pair.if_b, &out, false);
    let launcher = write_launcher(dir.path(), "sluice-all", &user, &caps);
    let mut sluice = daemon::start_run(&launcher, &pair.b, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = sluice.pid().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid");
    let uid = user.uid.to_string();
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        [uid.as_str(); 4]
    );
    for field in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(
            status_mask(&status, field),
            full_mask,
            "{field} of sluice as {}",
            user.name
        );
    }
    assert!(xdp_attached(&pair), "XDP not attached while ready");
    let report =
        tcpreplay::send(&pair.a, &pair.if_a, &pcap, ReplayParams::default()).expect("tcpreplay");
    assert_eq!(
        report,
        ReplayReport {
            successful: sent,
            failed: 0,
            truncated: 0
        }
    );
    std::thread::sleep(Duration::from_secs(1));
    let (exit, in_time, stats) = sluice
        .stop(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(in_time && exit.success(), "sluice exit on SIGTERM: {exit}");
    assert_eq!(
        (
            stats.seen,
            stats.recorded,
            stats.dropped_total,
            stats.balanced
        ),
        (sent, sent, 0, true),
        "{stats:?}"
    );
    assert!(!xdp_attached(&pair), "XDP left attached after SIGTERM");
    let output = records::read_output(&out.join("raw")).expect("read records");
    assert_eq!(
        records::normalize(output.records()),
        records::normalize(
            matrix
                .iter()
                .map(|(_, spec)| records::expected_record(spec))
        )
    );
    for file in &output.files {
        let owner = std::fs::metadata(out.join("raw").join(&file.relative))
            .expect("stat record file")
            .uid();
        assert_eq!(owner, user.uid, "{}", file.relative.display());
    }

    // Each one removed: refused, named exactly, nothing attached.
    for (i, missing) in needed.iter().enumerate() {
        let fewer: Vec<String> = caps
            .iter()
            .filter(|c| *c != missing.name)
            .cloned()
            .collect();
        assert_eq!(fewer.len(), 4);
        let files = RunFiles::in_dir(dir.path(), &format!("without-{i}"));
        write_config(&files, &pair.if_b, &dir.path().join("out-refused"), false);
        let launcher = write_launcher(dir.path(), &format!("sluice-without-{i}"), &user, &fewer);
        let (code, last_line) = run_refused(&pair, &launcher, &files);
        assert_eq!(
            (code, last_line),
            (
                2,
                format!(
                    "error: missing capability {}: needed {}",
                    missing.name, missing.why
                )
            ),
            "without {}",
            missing.name
        );
        assert!(
            !xdp_attached(&pair),
            "XDP attached without {}",
            missing.name
        );
    }

    // Without CAP_IPC_LOCK, a UMEM under RLIMIT_MEMLOCK is fine (LimitMEMLOCK= instead).
    let without_lock: Vec<String> = caps
        .iter()
        .filter(|c| *c != IPC_LOCK.name)
        .cloned()
        .collect();
    let files = RunFiles::in_dir(dir.path(), "small-umem");
    write_config(&files, &pair.if_b, &dir.path().join("out-small"), true);
    let launcher = write_launcher(dir.path(), "sluice-small-umem", &user, &without_lock);
    let mut sluice = daemon::start_run(&launcher, &pair.b, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let (exit, in_time, stats) = sluice
        .stop(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(in_time && exit.success(), "sluice exit on SIGTERM: {exit}");
    assert_eq!(
        (stats.seen, stats.recorded, stats.balanced),
        (0, 0, true),
        "{stats:?}"
    );

    drop(pair);
    let name = user.name.clone();
    drop(user);
    assert!(!exists("passwd", &name), "user {name} left behind");
    assert!(!exists("group", &name), "group {name} left behind");
}
