//! The systemd unit `deploy/sluice.service` is valid and its sandbox fits the daemon.
//!
//! - `systemd-analyze verify` accepts it without a single warning (ExecStart pointed at
//!   the binary cargo built, since verify requires an existing executable), and
//!   `systemd-analyze security --offline` rates its exposure at most 2.5.
//! - It grants exactly the capabilities the daemon's own check requires
//!   (`sluice::source::xdp::capabilities`), runs as `sluice`, and keeps the records under
//!   its StateDirectory (the example config's `sink.path`), the only writable place left
//!   by `ProtectSystem=strict`.
//! - There is no systemd to run it under here, so the filters are checked against a real
//!   run instead: `sluice run` under `strace -f` with XDP in a namespace pair, recording a
//!   burst of GRE frames — and a `lua` stream, one of whose payloads makes its script loop
//!   until the CPU-time budget's watchdog stops it (thread CPU clocks, a signal) — and
//!   shutting down on SIGTERM. Every system call it made must pass
//!   `SystemCallFilter=` (groups expanded by `systemd-analyze syscall-filter`), every
//!   socket family it opened must be in `RestrictAddressFamilies=`, no mapping may be
//!   writable and executable (`MemoryDenyWriteExecute=`), and it may create or change files
//!   only in its work directory, which stands for the StateDirectory (`ProtectSystem=strict`).
//!   The namespace-based options (PrivateDevices, ProtectKernel*, ...) need systemd as
//!   PID 1 and are not exercised here.
//!
//! Needs `systemd-analyze`; the traced run also needs root, `strace`, `ip` and `tcpreplay`.
//! In CI a missing prerequisite fails the test, elsewhere it is skipped with the reason.

mod deploy_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::{read_repo_file, unit_values};
use sluice::source::xdp::capabilities::{IPC_LOCK, REQUIRED};
use sluice_testkit::cleanup::ProcessGuard;
use sluice_testkit::daemon::{ConfigSpec, RunFiles, log_tail};
use sluice_testkit::frames::{MatrixParams, lab_gre_udp_frame, variant_matrix};
use sluice_testkit::netns::NetnsPair;
use sluice_testkit::privilege::{require_root, require_tool};
use sluice_testkit::stats::Stats;
use sluice_testkit::tcpreplay::{self, ReplayParams, ReplayReport};

const UNIT: &str = "deploy/sluice.service";
const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Where `cargo xtask install` puts the binary by default, as the unit names it.
const INSTALLED_BINARY: &str = "/usr/local/bin/sluice";

fn unit() -> String {
    read_repo_file(UNIT)
}

/// The one value of `key` (panics when absent or repeated).
fn single(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "{key}= in {UNIT}: {values:?}");
    values[0].clone()
}

/// The unit with ExecStart pointing at `binary`, written as DIR/sluice.service.
fn write_unit_for(dir: &Path, binary: &str, extra: &str) -> std::path::PathBuf {
    let text = unit().replace(
        &format!("ExecStart={INSTALLED_BINARY} "),
        &format!("ExecStart={binary} "),
    );
    assert_ne!(text, unit(), "no ExecStart={INSTALLED_BINARY} in {UNIT}");
    let path = dir.join("sluice.service");
    std::fs::write(
        &path,
        text.replace("[Install]", &format!("{extra}[Install]")),
    )
    .expect("write unit");
    path
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unit_grants_exactly_the_needed_capabilities_and_writes_only_its_state_directory() {
    let unit = unit();
    assert_eq!(
        single(&unit, "ExecStart"),
        format!("{INSTALLED_BINARY} run --config /etc/sluice/sluice.toml")
    );
    let needed: Vec<&str> = REQUIRED.iter().chain([&IPC_LOCK]).map(|n| n.name).collect();
    assert_eq!(
        needed,
        [
            "CAP_BPF",
            "CAP_PERFMON",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK"
        ]
    );
    let needed = needed.join(" ");
    assert_eq!(single(&unit, "AmbientCapabilities"), needed);
    assert_eq!(single(&unit, "CapabilityBoundingSet"), needed);
    for (key, value) in [
        ("User", "sluice"),
        ("Group", "sluice"),
        ("NoNewPrivileges", "yes"),
        ("StateDirectory", "sluice"),
        ("WorkingDirectory", "/var/lib/sluice"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("KillSignal", "SIGTERM"),
        ("TimeoutStopSec", "60"),
        ("Restart", "on-failure"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_XDP",
        ),
        ("SystemCallFilter", "@system-service bpf"),
    ] {
        assert_eq!(single(&unit, key), value, "{key}=");
    }
    // ProtectSystem=strict leaves only the StateDirectory writable: the example config
    // must write its records there.
    let example: toml::Table =
        toml::from_str(&read_repo_file("deploy/sluice.example.toml")).expect("example TOML");
    let sink_path = example["sink"]["path"].as_str().expect("sink.path");
    assert_eq!(sink_path, "/var/lib/sluice/records");
}

#[test]
fn systemd_analyze_verifies_the_unit_without_warnings() {
    const NAME: &str = "deploy_systemd::systemd_analyze_verifies_the_unit_without_warnings";
    if !require_tool(NAME, "systemd-analyze") {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("unit").expect("tempdir");
    let path = write_unit_for(dir.path(), SLUICE, "");
    let (ok, stdout, stderr) = analyze(&["verify"], &path);
    assert!(ok, "systemd-analyze verify: {stdout}{stderr}");
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""));

    // The empty-output check has teeth: an unknown key is only a warning, but a warning.
    let bad_dir = sluice_testkit::scratch::tempdir("unit").expect("tempdir");
    let bad = write_unit_for(bad_dir.path(), SLUICE, "[Service]\nNoSuchKey=1\n\n");
    let (ok, _, stderr) = analyze(&["verify"], &bad);
    assert!(ok);
    assert!(
        stderr.contains("Unknown key 'NoSuchKey' in section [Service], ignoring."),
        "{stderr}"
    );

    // Exposure as systemd rates it (0 = fully sandboxed, 10 = not at all). What keeps it
    // above 0 is what the appliance needs: the host network, CAP_BPF/NET_ADMIN/NET_RAW.
    let (ok, stdout, stderr) = analyze(
        &["security", "--offline=true", "--threshold=25", "--no-pager"],
        &path,
    );
    assert!(
        ok,
        "exposure above 2.5 (or systemd-analyze failed): {stdout}{stderr}"
    );
    assert!(
        stdout.contains("Overall exposure level for sluice.service: "),
        "{stdout}"
    );
}

/// Syscall names in `systemd-analyze syscall-filter` terms for `filter` lines: the first
/// line decides allow- or deny-list; each later line adds to or (with `~`) removes from it.
fn allowed_syscalls(filter_lines: &[String]) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for line in filter_lines {
        let (remove, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line.as_str()),
        };
        assert!(
            !(remove && allowed.is_empty()),
            "a deny-list SystemCallFilter= is not handled here: {line}"
        );
        for entry in list.split_whitespace() {
            for name in expand_syscall_group(entry) {
                if remove {
                    allowed.remove(&name);
                } else {
                    allowed.insert(name);
                }
            }
        }
    }
    allowed
}

/// `@group` expanded recursively by systemd-analyze; a plain name is itself.
fn expand_syscall_group(entry: &str) -> BTreeSet<String> {
    if !entry.starts_with('@') {
        return BTreeSet::from([entry.to_owned()]);
    }
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", entry])
        .output()
        .expect("systemd-analyze syscall-filter");
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter {entry}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names = BTreeSet::new();
    // The first line is the group's own name, then its description, members and groups.
    for line in text.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            names.extend(expand_syscall_group(line));
        } else {
            names.insert(line.to_owned());
        }
    }
    assert!(!names.is_empty(), "{entry} expands to nothing");
    names
}

/// (system calls, socket families) in an `strace -f` log.
fn traced_calls(trace: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut calls = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in trace.lines() {
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") || rest.is_empty() {
            continue;
        }
        let name = match rest.strip_prefix("<... ") {
            Some(resumed) => resumed.split(' ').next().unwrap_or(""),
            None => rest.split('(').next().unwrap_or(""),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "unparsed strace line: {line}"
        );
        calls.insert(name.to_owned());
        for call in ["socket(", "socketpair("] {
            if let Some(args) = rest.strip_prefix(call) {
                let family: String = args
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                families.insert(family);
            }
        }
    }
    (calls, families)
}

/// Calls of an `strace -f` log that `MemoryDenyWriteExecute=yes` refuses: a mapping both
/// writable and executable, or making memory executable afterwards.
fn write_execute_violations(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|line| {
            let call = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let exec = call.contains("PROT_EXEC");
            (call.starts_with("mmap(") && exec && call.contains("PROT_WRITE"))
                || ((call.starts_with("mprotect(") || call.starts_with("pkey_mprotect(")) && exec)
        })
        .map(String::from)
        .collect()
}

/// Calls of an `strace -f` log that create, change or remove a file by an absolute path
/// outside `allowed` (`ProtectSystem=strict` leaves only the StateDirectory writable).
fn writes_outside(trace: &str, allowed: &Path) -> Vec<String> {
    const PATH_CALLS: [&str; 9] = [
        "mkdir(",
        "mkdirat(",
        "unlink(",
        "unlinkat(",
        "rename(",
        "renameat(",
        "renameat2(",
        "link(",
        "linkat(",
    ];
    let allowed = allowed.to_string_lossy();
    trace
        .lines()
        .filter(|line| {
            let call = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let writes = PATH_CALLS.iter().any(|p| call.starts_with(p))
                || ((call.starts_with("openat(") || call.starts_with("open("))
                    && ["O_WRONLY", "O_RDWR", "O_CREAT"]
                        .iter()
                        .any(|f| call.contains(f)));
            writes
                && call
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .any(|path| path.starts_with('/') && !path.starts_with(allowed.as_ref()))
        })
        .map(String::from)
        .collect()
}

#[test]
fn sandbox_checks_flag_what_the_unit_forbids() {
    let trace = "7 mmap(NULL, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE, 3, 0) = 0x1\n\
                 7 mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE, -1, 0) = 0x2\n\
                 7 mprotect(0x1, 4096, PROT_READ|PROT_EXEC) = 0\n\
                 7 mprotect(0x1, 4096, PROT_READ) = 0\n\
                 7 openat(AT_FDCWD, \"/etc/sluice/sluice.toml\", O_RDONLY|O_CLOEXEC) = 3\n\
                 7 openat(AT_FDCWD, \"/var/lib/sluice/x\", O_WRONLY|O_CREAT, 0640) = 4\n\
                 7 openat(AT_FDCWD, \"/etc/x\", O_RDWR) = -1 EROFS\n\
                 7 renameat2(5, \"a\", 5, \"b\", RENAME_NOREPLACE) = 0\n\
                 7 unlink(\"/tmp/y\") = 0\n";
    let wx = write_execute_violations(trace);
    assert_eq!(wx.len(), 2, "{wx:#?}");
    assert!(
        wx[0].contains("PROT_WRITE|PROT_EXEC")
            && wx[1].starts_with("7 mprotect(0x1, 4096, PROT_READ|PROT_EXEC)")
    );
    let outside = writes_outside(trace, Path::new("/var/lib/sluice"));
    assert_eq!(
        outside,
        [
            "7 openat(AT_FDCWD, \"/etc/x\", O_RDWR) = -1 EROFS",
            "7 unlink(\"/tmp/y\") = 0"
        ]
    );
}

#[test]
fn traced_parses_strace_lines() {
    let (calls, families) = traced_calls(
        "12 execve(\"/x\", [\"/x\"], 0x1 /* 3 vars */) = 0\n\
         12 socket(AF_XDP, SOCK_RAW|SOCK_CLOEXEC, 0) = 9\n\
         13 poll([{fd=9, events=POLLIN}], 1, 100 <unfinished ...>\n\
         12 socketpair(AF_UNIX, SOCK_STREAM, 0, [3, 4]) = 0\n\
         13 <... poll resumed>) = 0 (Timeout)\n\
         12 --- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=1, si_uid=0} ---\n\
         12 +++ exited with 0 +++\n",
    );
    assert_eq!(
        calls,
        ["execve", "poll", "socket", "socketpair"]
            .map(String::from)
            .into()
    );
    assert_eq!(families, ["AF_UNIX", "AF_XDP"].map(String::from).into());
}

/// The PID of the only child of `pid` (strace's tracee).
fn only_child(pid: u32) -> u32 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let children: Vec<u32> = text
        .split_whitespace()
        .map(|c| c.parse().expect("pid"))
        .collect();
    assert_eq!(children.len(), 1, "children of strace {pid}: {children:?}");
    children[0]
}

#[test]
fn filters_allow_every_syscall_and_socket_family_of_a_real_run() {
    const NAME: &str =
        "deploy_systemd::filters_allow_every_syscall_and_socket_family_of_a_real_run";
    if !require_root(NAME)
        || !["systemd-analyze", "strace", "ip", "tcpreplay"]
            .iter()
            .all(|t| require_tool(NAME, t))
    {
        return;
    }
    let unit = unit();
    let allowed_calls = allowed_syscalls(&unit_values(&unit, "SystemCallFilter"));
    let allowed_families: BTreeSet<String> = single(&unit, "RestrictAddressFamilies")
        .split_whitespace()
        .map(String::from)
        .collect();

    let dir = sluice_testkit::scratch::tempdir("strace").expect("tempdir");
    let params = MatrixParams::default();
    let mut frames: Vec<Vec<u8>> = variant_matrix(&params)
        .iter()
        .map(|(_, spec)| spec.build())
        .collect();
    let sent = frames.len() as u64;
    // The lua stream: one payload recorded, one that loops until the budget stops it.
    frames.push(lab_gre_udp_frame(LUA_PORT, 40_000, b"good"));
    frames.push(lab_gre_udp_frame(LUA_PORT, 40_001, b"loop"));
    let pcap = dir.path().join("gre.pcap");
    sluice_testkit::pcap::write_pcap(&pcap, frames.iter().map(Vec::as_slice)).expect("pcap");

    let pair = NetnsPair::create().expect("namespace pair");
    let files = RunFiles::in_dir(dir.path(), "traced");
    let mut spec = ConfigSpec::xdp(&pair.if_b, &dir.path().join("out"));
    spec.ports.push(LUA_PORT);
    let config = format!(
        "{}\n[[decoder]]\nname = \"looping\"\nports = [{LUA_PORT}]\n\
         lua = {{ source = {}, max_call_cpu_ms = 20, \
         columns = [{{ name = \"n\", type = \"u16\" }}] }}\n",
        spec.to_toml(),
        sluice_testkit::daemon::toml_string(LOOPING_SCRIPT),
    );
    std::fs::write(&files.config, config).expect("config");
    let trace = dir.path().join("strace.log");
    let log = std::fs::File::create(&files.log).expect("log");
    let child = pair
        .b
        .command("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(SLUICE)
        .args(["run", "--config"])
        .arg(&files.config)
        .arg("--stats-file")
        .arg(&files.stats)
        .arg("--ready-file")
        .arg(&files.ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start strace");
    let mut strace = ProcessGuard::new("strace sluice run", child);
    let start = Instant::now();
    while !files.ready.exists() {
        assert!(
            strace.is_running() && start.elapsed() < Duration::from_secs(60),
            "sluice not ready under strace; log:\n{}",
            log_tail(&files.log, 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = tcpreplay::send(
        &pair.a,
        &pair.if_a,
        &pcap,
        ReplayParams {
            pps: 1000,
            loops: 1,
            timeout: Duration::from_secs(60),
        },
    )
    .expect("tcpreplay");
    assert_eq!(
        report,
        ReplayReport {
            successful: sent + 2,
            failed: 0,
            truncated: 0
        }
    );
    std::thread::sleep(Duration::from_secs(1));

    // SIGTERM to sluice itself, so that strace keeps tracing its whole shutdown (strace
    // would forward its own SIGTERM and stop tracing at once).
    let sluice_pid = only_child(strace.pid().expect("strace pid"));
    let raw = libc::pid_t::try_from(sluice_pid).expect("pid_t");
    // SAFETY: kill(2) on the PID of strace's tracee, the sluice process this test started.
    assert_eq!(unsafe { libc::kill(raw, libc::SIGTERM) }, 0);
    let (status, in_time) = strace
        .wait_timeout(Duration::from_secs(60))
        .expect("wait for strace");
    assert!(
        in_time && status.success(),
        "sluice under strace: {status}; log:\n{}",
        log_tail(&files.log, 30)
    );
    let stats = Stats::read(&files.stats).expect("stats");
    assert_eq!(
        (
            stats.seen,
            stats.recorded,
            stats.dropped_total,
            stats.balanced
        ),
        (sent + 2, sent + 1, 1, true),
        "{stats:?}"
    );
    let log_text = std::fs::read_to_string(&files.log).unwrap_or_default();
    assert!(
        log_text.contains("CPU time budget exhausted (max_call_cpu_ms = 20)"),
        "the looping payload was not stopped by the budget; log:\n{}",
        log_tail(&files.log, 30)
    );

    let trace_text = std::fs::read_to_string(&trace).expect("trace");
    let (calls, families) = traced_calls(&trace_text);
    let refused: Vec<&String> = calls.difference(&allowed_calls).collect();
    assert_eq!(
        refused,
        Vec::<&String>::new(),
        "system calls SystemCallFilter= would refuse"
    );
    // bpf() is the one call outside @system-service, hence its own entry.
    assert!(calls.contains("bpf"));
    // The lua budget's watchdog: the signal that stopped the looping call.
    assert!(calls.contains("tgkill"), "no tgkill in {calls:?}");
    assert!(!expand_syscall_group("@system-service").contains("bpf"));
    let refused: Vec<&String> = families.difference(&allowed_families).collect();
    assert_eq!(
        refused,
        Vec::<&String>::new(),
        "socket families RestrictAddressFamilies= would refuse"
    );
    assert!(families.contains("AF_XDP"), "{families:?}");
    // MemoryDenyWriteExecute=yes, and ProtectSystem=strict: the work directory stands for
    // the StateDirectory (config, sink, stats and ready file all live there).
    assert_eq!(write_execute_violations(&trace_text), Vec::<String>::new());
    assert_eq!(
        writes_outside(&trace_text, dir.path()),
        Vec::<String>::new()
    );
    println!(
        "traced run: {} system calls, families {families:?}",
        calls.len()
    );
}

/// The traced run's `lua` stream: its port and a script that loops on the payload `loop`.
const LUA_PORT: u16 = 5002;
const LOOPING_SCRIPT: &str = "function process(event, emit)\n\
    if event.log.message == 'loop' then while true do end end\n\
    event.log.n = #event.log.message\n\
    emit(event)\n\
  end";
