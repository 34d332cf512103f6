//! Issue 12, "one slow HTTP client blocks monitoring": the real daemon (UDP source, metrics
//! on 127.0.0.1:9464 of its own namespace) keeps answering probes while 200 clients send
//! their request heads one byte a second. curl, the probe a load balancer would be, must
//! get `/readyz` in under 100 ms every time; each slow head is cut at the 5 s header
//! timeout (which no byte restarts); the daemon's memory stays put. Then: HEAD has no
//! body, a query string is ignored, a connection beyond `metrics.max_connections` is
//! closed at once and counted while the open ones are still served, and SIGTERM is not
//! held up by a half-sent request.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::TcpStream,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use sluice_testkit::{
    daemon::{self, ConfigSpec, RunFiles, SourceSpec},
    netns::{Netns, NetnsPair},
    privilege::{require_root, require_tool},
};

const NAME: &str = "metrics_slow_clients::probes_are_answered_while_clients_trickle";
const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const METRICS: &str = "127.0.0.1:9464";
const MAX_CONNECTIONS: usize = 256;
/// The daemon's header read timeout (`metrics::server::HEADER_READ_TIMEOUT`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const TRICKLERS: usize = 200;
/// Seconds of trickling: one byte per client per second.
const TRICKLE_SECS: u32 = 15;
const PROBE_LIMIT: Duration = Duration::from_millis(100);
const RSS_GROWTH_LIMIT_KIB: u64 = 20 * 1024;
/// Bounds every blocking read of a test client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a trickler sends, one byte a second; it would take a minute to finish.
const SLOW_HEAD: &[u8] =
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: one-byte-a-second\r\n\r\n";

/// Connections this test opened to the endpoint (raw and curl), to hold the daemon's
/// `sluice_metrics_accepted_connections_total` to.
static OPENED: AtomicU64 = AtomicU64::new(0);

/// A connection to the endpoint; call from a thread inside the daemon's namespace.
fn connect() -> TcpStream {
    let s = TcpStream::connect(METRICS).expect("connect to the metrics endpoint");
    OPENED.fetch_add(1, Ordering::Relaxed);
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
    s
}

/// One request with `Connection: close`, the whole response as text; `None` when the
/// connection was closed without an answer (refused at the cap).
fn try_request(method: &str, target: &str) -> Option<String> {
    let mut s = connect();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

fn request(method: &str, target: &str) -> String {
    try_request(method, target).expect("an answer")
}

fn split(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").unwrap_or((response, ""))
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    split(response).0.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The value of an unlabelled series in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (n, v) = line.split_once(' ')?;
        if n == name { v.parse().ok() } else { None }
    })
}

/// `/readyz` by curl inside `ns`: the status code and curl's own total time (connect to
/// last byte; the process start is not in it).
fn probe_readyz(ns: &Netns) -> (u16, Duration) {
    let out = ns
        .command("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "5"])
        .args(["-w", "%{http_code} %{time_total}"])
        .arg(format!("http://{METRICS}/readyz"))
        .output()
        .expect("run curl");
    OPENED.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&out.stdout);
    let (code, secs) = text.split_once(' ').unwrap_or(("0", "999"));
    (
        code.parse().unwrap_or(0),
        Duration::from_secs_f64(secs.trim().parse().unwrap_or(999.0)),
    )
}

/// The daemon's resident memory.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A client sending [`SLOW_HEAD`] one byte per tick.
struct Trickler {
    stream: TcpStream,
    since: Instant,
    sent: usize,
    /// Times the server closed this client's connection (it reconnects each time).
    cuts: u32,
}

impl Trickler {
    fn open() -> Self {
        let stream = connect();
        stream.set_nonblocking(true).expect("nonblocking");
        Self {
            stream,
            since: Instant::now(),
            sent: 0,
            cuts: 0,
        }
    }

    /// Whether the server has closed the connection (EOF, reset, or an answer).
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        match self.stream.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Ok(_) | Err(_) => true,
        }
    }

    /// One tick: the next byte, or, if the server closed the connection, its lifetime and
    /// a new connection.
    fn tick(&mut self) -> Option<Duration> {
        if self.closed() {
            let lived = self.since.elapsed();
            let cuts = self.cuts + 1;
            *self = Self::open();
            self.cuts = cuts;
            return Some(lived);
        }
        let byte = SLOW_HEAD[self.sent % SLOW_HEAD.len()];
        if self.stream.write_all(&[byte]).is_ok() {
            self.sent += 1;
        }
        None
    }
}

/// What the trickling phase saw.
struct Trickled {
    /// Lifetimes of the connections the server closed.
    lifetimes: Vec<Duration>,
    /// Fewest times any one client was cut.
    fewest_cuts: u32,
    /// Largest VmRSS of the daemon during the phase.
    peak_rss_kib: u64,
    /// Still open at the end (closed by dropping).
    clients: Vec<Trickler>,
}

/// [`TRICKLERS`] clients, one byte each per second, for [`TRICKLE_SECS`] seconds.
fn trickle(pid: u32) -> Trickled {
    let mut clients: Vec<Trickler> = (0..TRICKLERS).map(|_| Trickler::open()).collect();
    let mut lifetimes = Vec::new();
    let mut peak_rss_kib = 0;
    let start = Instant::now();
    for second in 1..=TRICKLE_SECS {
        for client in &mut clients {
            lifetimes.extend(client.tick());
        }
        peak_rss_kib = peak_rss_kib.max(vm_rss_kib(pid));
        let next = start + Duration::from_secs(u64::from(second));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let fewest_cuts = clients.iter().map(|c| c.cuts).min().unwrap_or(0);
    Trickled {
        lifetimes,
        fewest_cuts,
        peak_rss_kib,
        clients,
    }
}

#[test]
fn probes_are_answered_while_clients_trickle() {
    if !(require_root(NAME) && ["ip", "curl"].iter().all(|t| require_tool(NAME, t))) {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let dir = sluice_testkit::scratch::tempdir("metrics-slow").expect("tempdir");
    let files = RunFiles::in_dir(dir.path(), "sluice");
    let spec = ConfigSpec {
        source: SourceSpec::Udp {
            listen: vec!["127.0.0.1:5000".into()],
        },
        ..ConfigSpec::xdp("unused", &dir.path().join("records"))
    };
    let config = spec.to_toml()
        + &format!("\n[metrics]\nlisten = \"{METRICS}\"\nmax_connections = {MAX_CONNECTIONS}\n");
    std::fs::write(&files.config, config).expect("config");
    let mut sluice = daemon::start_run(SLUICE.as_ref(), &pair.b, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = sluice.pid().expect("pid");
    let ns = &pair.b;

    // Idle: the answers, and the latency and memory to compare with.
    let (code, idle_latency) = probe_readyz(ns);
    assert_eq!(code, 200, "/readyz when idle");
    ns.run_in(check_answers).expect("enter namespace");
    let rss_before = vm_rss_kib(pid);

    // Trickling clients, a silent one, and probes meanwhile; every thread spawned inside
    // the namespace's thread is in the namespace too.
    let (trickled, silent_closed_after, probes) = ns
        .run_in(|| {
            std::thread::scope(|scope| {
                let tricklers = scope.spawn(|| trickle(pid));
                let silent = scope.spawn(|| {
                    let mut s = connect();
                    s.write_all(b"GET /readyz HTTP/1.1\r\n").expect("send");
                    let start = Instant::now();
                    let mut rest = Vec::new();
                    // EOF or reset: closed either way; the client timeout bounds it.
                    let _ = s.read_to_end(&mut rest);
                    (start.elapsed(), rest.len())
                });
                // Let every trickler connect, then probe every half second.
                std::thread::sleep(Duration::from_secs(1));
                let mut probes = Vec::new();
                for _ in 0..2 * (TRICKLE_SECS - 2) {
                    let started = Instant::now();
                    probes.push(probe_readyz(ns));
                    std::thread::sleep(
                        Duration::from_millis(500).saturating_sub(started.elapsed()),
                    );
                }
                (
                    tricklers.join().expect("tricklers"),
                    silent.join().expect("silent client"),
                    probes,
                )
            })
        })
        .expect("enter namespace");
    let rss_after = vm_rss_kib(pid);
    let slowest = probes.iter().map(|p| p.1).max().unwrap_or_default();
    eprintln!(
        "metrics_slow_clients: /readyz idle {idle_latency:?}; under {TRICKLERS} trickling \
         clients {} probes, slowest {slowest:?}; {} slow heads cut; VmRSS {rss_before} kB \
         before, peak {} kB, after {rss_after} kB",
        probes.len(),
        trickled.lifetimes.len(),
        trickled.peak_rss_kib,
    );
    for (i, (code, took)) in probes.iter().enumerate() {
        assert_eq!(*code, 200, "probe {i} under load: no answer");
        assert!(*took < PROBE_LIMIT, "probe {i} under load took {took:?}");
    }
    // Each trickler was cut at the header timeout (seen within the next second), twice in
    // 15 s: the clock does not restart with a byte.
    assert!(
        trickled.fewest_cuts >= 2,
        "a trickler was cut {} times",
        trickled.fewest_cuts
    );
    for lived in &trickled.lifetimes {
        assert!(
            *lived >= HEADER_TIMEOUT - Duration::from_millis(500)
                && *lived < HEADER_TIMEOUT + Duration::from_millis(2500),
            "a slow head was cut after {lived:?}"
        );
    }
    let (silent_lived, silent_answer) = silent_closed_after;
    assert!(
        silent_lived >= HEADER_TIMEOUT - Duration::from_millis(500)
            && silent_lived < HEADER_TIMEOUT + Duration::from_millis(1500),
        "a half-sent head was closed after {silent_lived:?}"
    );
    assert_eq!(silent_answer, 0, "the server answered a half-sent head");
    let growth = trickled
        .peak_rss_kib
        .max(rss_after)
        .saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "VmRSS grew by {growth} kB under slow clients"
    );
    drop(trickled.clients);

    ns.run_in(check_the_cap).expect("enter namespace");

    // SIGTERM while a request head is half sent: the endpoint gives it a second.
    let held = ns
        .run_in(|| {
            let mut s = connect();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send");
            s
        })
        .expect("enter namespace");
    let stopping = Instant::now();
    let (status, in_time, _stats) = sluice.stop(Duration::from_secs(10)).expect("stop sluice");
    let stop_took = stopping.elapsed();
    assert!(status.success() && in_time, "sluice exit {status}");
    eprintln!("metrics_slow_clients: SIGTERM with a half-sent request: exited in {stop_took:?}");
    assert!(
        stop_took < Duration::from_secs(5),
        "SIGTERM with a half-sent request took {stop_took:?}"
    );
    drop(held);
}

/// GET, HEAD, query strings, 404 and 405, as a client would see them.
fn check_answers() {
    let healthz = request("GET", "/healthz");
    assert!(healthz.starts_with("HTTP/1.1 200 OK\r\n"), "{healthz}");
    assert_eq!(split(&healthz).1, "ok\n");

    let metrics = request("GET", "/metrics?foo");
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert_eq!(
        header(&metrics, "content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert_eq!(sample(split(&metrics).1, "sluice_ready"), Some(1.0));
    assert_eq!(
        sample(
            split(&metrics).1,
            "sluice_metrics_refused_connections_total"
        ),
        Some(0.0)
    );

    let head = request("HEAD", "/metrics?x=1");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("HEAD: content-length");
    assert!(len > 1000, "HEAD /metrics: content-length {len}");
    assert_eq!(split(&head).1, "", "HEAD /metrics sent a body");
    let head = request("HEAD", "/readyz");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header(&head, "content-length"), Some("6"));
    assert_eq!(split(&head).1, "", "HEAD /readyz sent a body");

    let missing = request("GET", "/metricz");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = request("POST", "/readyz");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert_eq!(header(&post, "allow"), Some("GET, HEAD"));
}

/// Fills every slot with a half-sent request; one more connection is closed at once and
/// counted; the held ones are then answered.
fn check_the_cap() {
    // The tricklers' slots come back as the endpoint sees them close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut open = None;
    while Instant::now() < deadline {
        open = sample(
            split(&request("GET", "/metrics")).1,
            "sluice_metrics_open_connections",
        );
        if open == Some(1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        open,
        Some(1.0),
        "connections still open after the tricklers left"
    );

    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut s = connect();
            s.write_all(b"GET /readyz HTTP/1.1\r\n").expect("send");
            s
        })
        .collect();
    // The endpoint accepts in order; give it the moment to take all of them.
    std::thread::sleep(Duration::from_millis(300));
    let mut over = connect();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = over.read_to_end(&mut rest);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a connection over the cap was closed after {took:?}"
    );
    assert!(rest.is_empty(), "a connection over the cap was answered");
    for (i, s) in held.iter_mut().enumerate() {
        s.write_all(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("finish the head");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n") && response.ends_with("\r\n\r\nready\n"),
            "held connection {i}: {response}"
        );
    }
    drop(held);
    // Until the endpoint has seen them close, a new connection is refused (and counted)
    // too.
    let mut refused = 1;
    let scrape = loop {
        match try_request("GET", "/metrics") {
            Some(scrape) => break scrape,
            None if refused < 50 => refused += 1,
            None => panic!("no answer once the held connections closed"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let body = split(&scrape).1;
    assert_eq!(
        sample(body, "sluice_metrics_refused_connections_total"),
        Some(f64::from(refused))
    );
    // Every connection this test opened was accepted, bar those refused.
    let opened = OPENED.load(Ordering::Relaxed) as f64;
    assert_eq!(
        sample(body, "sluice_metrics_accepted_connections_total"),
        Some(opened - f64::from(refused))
    );
}
