//! `cargo xtask demo`: Sluice end to end on this machine, in two private namespaces.
//!
//! Builds the release binary, starts `sluice run` on the veth end in namespace b, sends a
//! bounded burst from namespace a (GRE over IPv4 and IPv6 with several tunnels and keys,
//! some plain UDP, and frames that must pass to the kernel) with tcpreplay, checks that
//! ping and a TCP exchange still work while XDP is attached, stops the daemon with
//! SIGTERM, and prints what it counted and recorded (in the default format, Parquet, read
//! back with the parquet crate through the test kit). Exits non-zero if the counters do
//! not balance, if not every steered frame was recorded, or if ping/TCP failed. Namespaces
//! and the daemon are cleaned up on every exit, Ctrl-C included.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sluice_testkit::daemon::{self, ConfigSpec, RunFiles};
use sluice_testkit::frames::{MatrixParams, negative_cases, variant_matrix};
use sluice_testkit::netns::{ADDR_V4_B, NetnsPair};
use sluice_testkit::records::{self, Record};
use sluice_testkit::stats::Stats;
use sluice_testkit::tcpreplay::{self, ReplayParams};
use sluice_testkit::{cleanup, pcap};

use crate::{cmd, setup, workspace::Workspace};

/// `cargo xtask demo` options.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Write records here (a new or empty directory, kept afterwards) instead of a
    /// temporary directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How many times the burst is sent (1..=100).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Send rate in packets per second (100..=20000).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(100..=20000))]
    pub pps: u32,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
}

/// What was sent.
struct Sent {
    gre: u64,
    plain: u64,
    must_pass_frames: u64,
    ping_ok: bool,
    tcp: Result<usize, String>,
}

const TCP_PORT: u16 = 7000;
const TCP_MESSAGE: &[u8] = b"hello through sluice's XDP";

/// Runs the demo.
///
/// # Errors
/// Any failing step, or a failed check at the end.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if !sluice_testkit::privilege::is_root() {
        bail!("the demo creates network namespaces and attaches XDP: run it as root");
    }
    if !args.no_setup {
        setup::run()?;
    }
    cleanup::install_signal_cleanup()?;
    let workspace = Workspace::locate()?;
    cmd::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&workspace.root)
            .args(["build", "--release", "-p", "sluice"]),
    )?;
    let binary = workspace.binary("release", "sluice");
    if !binary.exists() {
        bail!("{} was not built", binary.display());
    }

    let work = tempfile::Builder::new().prefix("sluice-demo-").tempdir()?;
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => work.path().join("records"),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // The report compares the records in the directory with this run's counters.
    if std::fs::read_dir(&out_dir)?.next().is_some() {
        bail!(
            "{} is not empty: give --out a new or empty directory",
            out_dir.display()
        );
    }

    let pair = NetnsPair::create()?;
    println!(
        "demo: namespaces {} ({}) -> {} ({})",
        pair.a.name(),
        pair.if_a,
        pair.b.name(),
        pair.if_b
    );
    let files = RunFiles::in_dir(work.path(), "sluice");
    // The daemon's default format (Parquet, what BigQuery reads), read back with the
    // parquet crate by the test kit: the demo shows what an operator gets by default.
    ConfigSpec {
        format: None,
        ..ConfigSpec::xdp(&pair.if_b, &out_dir)
    }
    .write(&files.config)?;
    let mut sluice = daemon::start_run(&binary, &pair.b, &files)?;
    println!(
        "demo: sluice run started (pid {:?}), waiting for it to be ready",
        sluice.pid()
    );
    sluice.wait_ready(Duration::from_secs(30))?;

    let sent = send_traffic(&pair, work.path(), args)?;
    // Let the last batch age out (max_age_ms = 200) before stopping.
    std::thread::sleep(Duration::from_secs(1));
    println!("demo: stopping sluice with SIGTERM");
    let (status, in_time, stats) = sluice.stop(Duration::from_secs(15))?;
    if !in_time || !status.success() {
        bail!(
            "sluice did not exit cleanly on SIGTERM ({status}, in time: {in_time}); log:\n{}",
            daemon::log_tail(&files.log, 40)
        );
    }
    let output = records::read_output(&out_dir.join("raw"))?;
    let verdict = report(&sent, &stats, &output.records());
    if args.out.is_some() {
        println!("demo: records kept in {}", out_dir.display());
    }
    drop(pair);
    verdict
}

fn send_traffic(pair: &NetnsPair, dir: &std::path::Path, args: &DemoArgs) -> anyhow::Result<Sent> {
    let params = MatrixParams::default();
    let matrix = variant_matrix(&params);
    let negatives = negative_cases(&params);
    let gre = matrix.iter().filter(|(_, s)| s.tunnel.is_some()).count() as u64;
    let plain = matrix.len() as u64 - gre;
    let frames: Vec<Vec<u8>> = matrix
        .iter()
        .map(|(_, spec)| spec.build())
        .chain(negatives.iter().map(|case| case.frame.clone()))
        .collect();
    let pcap_path = dir.join("burst.pcap");
    pcap::write_pcap(&pcap_path, frames.iter().map(Vec::as_slice))?;

    let rounds = u64::from(args.rounds);
    let seconds = frames.len() as u64 * rounds / u64::from(args.pps) + 30;
    println!(
        "demo: tcpreplay {} frames x {} rounds at {} pps from {}",
        frames.len(),
        args.rounds,
        args.pps,
        pair.a.name()
    );
    let replay = tcpreplay::send(
        &pair.a,
        &pair.if_a,
        &pcap_path,
        ReplayParams {
            pps: args.pps,
            loops: args.rounds,
            timeout: Duration::from_secs(seconds),
        },
    )?;
    let expected = frames.len() as u64 * rounds;
    if replay.successful != expected || replay.failed != 0 {
        bail!("tcpreplay sent {replay:?}, expected {expected} successful frames");
    }

    println!("demo: ping -c 3 {ADDR_V4_B} from {}", pair.a.name());
    let ping = cmd::output(pair.a.command("ping").args([
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        &ADDR_V4_B.to_string(),
    ]))?;
    print!("{}", String::from_utf8_lossy(&ping.stdout));
    let tcp = tcp_exchange(pair);
    match &tcp {
        Ok(n) => println!("demo: TCP exchange ok ({n} bytes echoed)"),
        Err(e) => println!("demo: TCP exchange FAILED: {e}"),
    }
    Ok(Sent {
        gre: gre * rounds,
        plain: plain * rounds,
        must_pass_frames: negatives.len() as u64 * rounds,
        ping_ok: ping.status.success(),
        tcp,
    })
}

/// Echo server in b, client in a: both sockets made inside their namespace by `run_in`.
fn tcp_exchange(pair: &NetnsPair) -> Result<usize, String> {
    let listener = pair
        .b
        .run_in(|| TcpListener::bind((ADDR_V4_B, TCP_PORT)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind in b: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut stream, _) = loop {
            match listener.accept() {
                Ok(conn) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no connection within 10 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; TCP_MESSAGE.len()];
        stream.read_exact(&mut buf).map_err(|e| e.to_string())?;
        stream.write_all(&buf).map_err(|e| e.to_string())
    });
    let client = pair
        .a
        .run_in(|| -> std::io::Result<Vec<u8>> {
            let addr = SocketAddr::from((ADDR_V4_B, TCP_PORT));
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(TCP_MESSAGE)?;
            let mut buf = vec![0u8; TCP_MESSAGE.len()];
            stream.read_exact(&mut buf)?;
            Ok(buf)
        })
        .map_err(|e| e.to_string())?;
    let served = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    let echoed = client.map_err(|e| format!("client in a: {e}"))?;
    served?;
    if echoed == TCP_MESSAGE {
        Ok(echoed.len())
    } else {
        Err(format!("echo mismatch: {echoed:?}"))
    }
}

/// Non-zero counters as `name N, name N`, or `none`.
fn format_counts(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `ip:port`, with brackets for IPv6.
fn endpoint(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Up to five records of different shapes (tunnel family, key or not, inner family).
fn samples(records: &[Record]) -> Vec<&Record> {
    let mut seen = std::collections::BTreeSet::new();
    records
        .iter()
        .filter(|r| {
            let tunnel = r.tunnel_src.as_deref().map(|t| t.contains(':'));
            seen.insert((tunnel, r.gre_key.is_some(), r.src_ip.contains(':')))
        })
        .take(5)
        .collect()
}

fn describe(record: &Record) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&record.payload)
        .unwrap_or_default();
    let preview: String = payload
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let tunnel = match (&record.tunnel_src, &record.tunnel_dst) {
        (Some(s), Some(d)) => format!(
            "GRE {s} -> {d}, key {}",
            record.gre_key.map_or("none".into(), |k| k.to_string())
        ),
        _ => "plain".into(),
    };
    format!(
        "{} [{tunnel}] {} -> {} {} bytes {preview}{}",
        record.received_at,
        endpoint(&record.src_ip, record.src_port),
        endpoint(&record.dst_ip, record.dst_port),
        record.payload_len,
        if payload.len() > 12 { "…" } else { "" }
    )
}

/// Prints the report and returns an error when a check fails.
fn report(sent: &Sent, stats: &Stats, records: &[Record]) -> anyhow::Result<()> {
    let steered = sent.gre + sent.plain;
    println!("\n=== Sluice demo report ===");
    println!(
        "sent:     {} GRE + {} plain UDP (steered), {} must-pass frames, ping x3, one TCP exchange",
        sent.gre, sent.plain, sent.must_pass_frames
    );
    println!(
        "must-pass: ping {}, TCP {}",
        if sent.ping_ok { "ok" } else { "FAILED" },
        if sent.tcp.is_ok() { "ok" } else { "FAILED" }
    );
    println!(
        "sluice:   seen {}, recorded {}, dropped {} ({})",
        stats.seen,
        stats.recorded,
        stats.dropped_total,
        format_counts(&stats.dropped)
    );
    println!("passed:   {}", format_counts(&stats.passed));
    println!(
        "files:    {} written, {} bytes; {} records read back",
        stats.files_written,
        stats.bytes_written,
        records.len()
    );
    println!("sample records:");
    for record in samples(records) {
        println!("  {}", describe(record));
    }
    let mut failures = Vec::new();
    if stats.seen != stats.recorded + stats.dropped_total {
        failures.push(format!(
            "seen {} != recorded {} + dropped {}",
            stats.seen, stats.recorded, stats.dropped_total
        ));
    }
    if stats.recorded != steered {
        failures.push(format!(
            "recorded {} != steered frames sent {steered}",
            stats.recorded
        ));
    }
    if records.len() as u64 != stats.recorded {
        failures.push(format!(
            "{} records in files != recorded {}",
            records.len(),
            stats.recorded
        ));
    }
    if !sent.ping_ok {
        failures.push("ping got no replies while XDP was attached".into());
    }
    if let Err(e) = &sent.tcp {
        failures.push(format!("TCP exchange failed: {e}"));
    }
    if failures.is_empty() {
        println!("result:   OK");
        Ok(())
    } else {
        for failure in &failures {
            println!("FAILED:   {failure}");
        }
        bail!("demo failed: {}", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tunnel: Option<&str>, key: Option<u32>, src: &str, port: u16) -> Record {
        Record {
            received_at: "2026-01-01T00:00:00.000000Z".into(),
            tunnel_src: tunnel.map(str::to_owned),
            tunnel_dst: tunnel.map(str::to_owned),
            gre_key: key,
            src_ip: src.into(),
            src_port: port,
            dst_ip: src.into(),
            dst_port: 5000,
            payload_len: 2,
            payload: "aGk=".into(),
        }
    }

    #[test]
    fn counts_show_only_non_zero_entries() {
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("a".to_owned(), 0);
        assert_eq!(format_counts(&counts), "none");
        counts.insert("b".to_owned(), 2);
        counts.insert("c".to_owned(), 1);
        assert_eq!(format_counts(&counts), "b 2, c 1");
    }

    #[test]
    fn samples_pick_one_record_per_shape() {
        let records = vec![
            record(Some("192.0.2.1"), None, "203.0.113.1", 1),
            record(Some("192.0.2.1"), None, "203.0.113.2", 2),
            record(Some("2001:db8:2::1"), Some(7), "2001:db8:113::1", 3),
            record(None, None, "203.0.113.3", 4),
            record(None, None, "203.0.113.4", 5),
        ];
        let ports: Vec<u16> = samples(&records).iter().map(|r| r.src_port).collect();
        assert_eq!(ports, [1, 3, 4]);
        assert_eq!(
            describe(&records[2]),
            "2026-01-01T00:00:00.000000Z [GRE 2001:db8:2::1 -> 2001:db8:2::1, key 7] \
             [2001:db8:113::1]:3 -> [2001:db8:113::1]:5000 2 bytes 6869"
        );
    }
}
