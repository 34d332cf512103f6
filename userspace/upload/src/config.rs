//! The `[upload]` configuration: where batches go (bucket, prefix, endpoint, credentials),
//! how hard the uploader tries (concurrency, per-attempt timeout, backoff), and the spool
//! that holds batches until they are uploaded.
//!
//! Config → [`UploadConfig::validate`] → [`crate::Uploader::start`]: validation catches
//! what can be known without the network and names the field; `start` then checks the
//! bucket itself (see [`StartupProbe`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the uploader takes its credentials from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsSource {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, the gcloud
    /// user credentials, or the GCE/GKE metadata server. The production choice.
    #[default]
    Adc,
    /// No credentials at all: only for an emulator (requires `endpoint`).
    Anonymous,
}

/// What [`crate::Uploader::start`] does when it cannot reach the bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartupProbe {
    /// Any failure to reach the bucket (unknown bucket, refused credentials, unreachable
    /// endpoint) is an error at start: a misconfiguration is one clear line, not an
    /// endless retry loop.
    #[default]
    Require,
    /// An unknown bucket or refused credentials are still errors, but an unreachable
    /// endpoint is only logged: the process starts and spools until the network is back
    /// (for hosts that must come up during an outage).
    Warn,
}

/// The upload sink's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Bucket name, without `gs://` (e.g. `my-telemetry`).
    pub bucket: String,
    /// Object name prefix, without leading or trailing `/` (may be empty). Objects are
    /// named `PREFIX/<stream>/dt=YYYY-MM-DD/hour=HH/<file>` (see `docs/upload.md`).
    #[serde(default)]
    pub prefix: String,
    /// Endpoint URL (`http://` or `https://`, no path), e.g. `http://127.0.0.1` for an
    /// emulator; unset means Cloud Storage itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `adc` (Application Default Credentials) or `anonymous` (emulators only).
    #[serde(default)]
    pub credentials: CredentialsSource,
    /// How many uploads run at the same time (1..=256).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Bound on one upload attempt, in seconds (1..=3600); an attempt that takes longer
    /// is abandoned and retried.
    #[serde(default = "default_attempt_timeout_secs")]
    pub attempt_timeout_secs: u64,
    /// First retry delay, in milliseconds (≥ 1); it doubles per retry, with jitter.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Largest retry delay, in milliseconds (≥ `backoff_min_ms`); also the delay after a
    /// permanent error (403, unknown bucket), so that a fix is picked up.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// The spool directory (created if missing); must be on a local file system that
    /// survives a restart.
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold (batch files with their 32-byte trailers); a commit
    /// that would go beyond is refused (`spool_full`).
    #[serde(default = "default_spool_byte_limit")]
    pub spool_byte_limit: u64,
    /// On shutdown, how long the uploader keeps uploading before it leaves the rest
    /// spooled for the next start, in seconds (≤ 3600).
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// What an unreachable endpoint at start means: `require` (an error) or `warn`.
    #[serde(default)]
    pub startup_probe: StartupProbe,
    /// Longest a spooled batch waits to be combined with later batches of its stream and
    /// hour into one object, in seconds (0..=3600; 0 uploads what is spooled at once).
    /// Batches are durable in the spool while they wait, so this does not widen what a
    /// crash can lose; it bounds how late records appear in the bucket.
    #[serde(default = "default_object_max_age_secs")]
    pub object_max_age_secs: u64,
    /// Size at which an object is closed without waiting for `object_max_age_secs`, in
    /// bytes (1..=5 TiB; 1 makes every batch an object of its own); unset: 256 MiB, which
    /// the daemon lowers to 64 MiB for the gzip formats (BigQuery reads one gzip file with
    /// one worker). The spool's disk needs room for up to `concurrency` objects of this
    /// size beyond `spool_byte_limit` while they are assembled.
    #[serde(default)]
    pub object_target_bytes: Option<u64>,
}

fn default_concurrency() -> usize {
    8
}
fn default_attempt_timeout_secs() -> u64 {
    60
}
fn default_backoff_min_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_spool_byte_limit() -> u64 {
    10 << 30
}
fn default_shutdown_grace_secs() -> u64 {
    30
}
fn default_object_max_age_secs() -> u64 {
    300
}
/// `object_target_bytes` when unset.
pub const DEFAULT_OBJECT_TARGET_BYTES: u64 = 256 << 20;

/// Largest Cloud Storage object.
const OBJECT_BYTES_MAX: u64 = 5 << 40;

/// Upload throughput an attempt is allowed beyond its base bound (see
/// [`UploadConfig::attempt_timeout_for`]).
const ATTEMPT_BYTES_PER_SEC: u64 = 4 << 20;

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("upload config: `{field}` {problem}")]
pub struct ConfigError {
    /// The offending field, as spelled in the config file.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        problem: problem.into(),
    }
}

impl UploadConfig {
    /// A config for `bucket` with the given spool directory and every other field at its
    /// default.
    pub fn new(bucket: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            credentials: CredentialsSource::default(),
            concurrency: default_concurrency(),
            attempt_timeout_secs: default_attempt_timeout_secs(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            spool_dir: spool_dir.into(),
            spool_byte_limit: default_spool_byte_limit(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            startup_probe: StartupProbe::default(),
            object_max_age_secs: default_object_max_age_secs(),
            object_target_bytes: None,
        }
    }

    /// Checks every field that can be checked without the network.
    ///
    /// # Errors
    /// The first field that cannot work, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(problem) = check_bucket_name(&self.bucket) {
            return Err(invalid("bucket", problem));
        }
        check_prefix(&self.prefix).map_err(|problem| invalid("prefix", problem))?;
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint).map_err(|problem| invalid("endpoint", problem))?;
        } else if self.credentials == CredentialsSource::Anonymous {
            return Err(invalid(
                "credentials",
                "is `anonymous`, which only works with an emulator: set `endpoint` too",
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(invalid(
                "concurrency",
                format!("is {}; must be 1..=256", self.concurrency),
            ));
        }
        if !(1..=3600).contains(&self.attempt_timeout_secs) {
            return Err(invalid(
                "attempt_timeout_secs",
                format!("is {}; must be 1..=3600", self.attempt_timeout_secs),
            ));
        }
        if self.backoff_min_ms == 0 {
            return Err(invalid("backoff_min_ms", "is 0; must be at least 1"));
        }
        if self.backoff_max_ms < self.backoff_min_ms || self.backoff_max_ms > 3_600_000 {
            return Err(invalid(
                "backoff_max_ms",
                format!(
                    "is {}; must be between backoff_min_ms ({}) and 3600000",
                    self.backoff_max_ms, self.backoff_min_ms
                ),
            ));
        }
        if self.spool_dir.as_os_str().is_empty() {
            return Err(invalid("spool_dir", "is empty"));
        }
        if self.spool_byte_limit == 0 {
            return Err(invalid("spool_byte_limit", "is 0; must be at least 1"));
        }
        if self.shutdown_grace_secs > 3600 {
            return Err(invalid(
                "shutdown_grace_secs",
                format!("is {}; must be at most 3600", self.shutdown_grace_secs),
            ));
        }
        if self.object_max_age_secs > 3600 {
            return Err(invalid(
                "object_max_age_secs",
                format!(
                    "is {}; must be at most 3600 (an object never spans an hour partition)",
                    self.object_max_age_secs
                ),
            ));
        }
        if !(1..=OBJECT_BYTES_MAX).contains(&self.object_target()) {
            return Err(invalid(
                "object_target_bytes",
                format!(
                    "is {}; must be 1..={OBJECT_BYTES_MAX} (5 TiB, Cloud Storage's largest object)",
                    self.object_target()
                ),
            ));
        }
        Ok(())
    }

    /// The per-attempt bound (for the start-up probe and small objects).
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.attempt_timeout_secs)
    }

    /// The bound on one attempt to upload an object of `bytes`: `attempt_timeout_secs`
    /// plus one second per 4 MiB, so that a large combined object is not abandoned on a
    /// link that is merely slow.
    pub fn attempt_timeout_for(&self, bytes: u64) -> Duration {
        self.attempt_timeout() + Duration::from_secs(bytes / ATTEMPT_BYTES_PER_SEC)
    }

    /// The size at which objects are closed (`object_target_bytes` or its default).
    pub fn object_target(&self) -> u64 {
        self.object_target_bytes
            .unwrap_or(DEFAULT_OBJECT_TARGET_BYTES)
    }

    /// How long a batch may wait to be combined.
    pub fn object_max_age(&self) -> Duration {
        Duration::from_secs(self.object_max_age_secs)
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The endpoint the client talks to (for messages).
    pub fn endpoint_or_default(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or("https://storage.googleapis.com")
    }
}

/// Cloud Storage bucket naming rules (the subset that holds for every bucket: 3–222
/// characters, dot-separated parts of at most 63, lowercase letters, digits, `-`, `_`,
/// starting and ending with a letter or digit).
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    if bucket.starts_with("gs://") {
        return Err(format!("is {bucket:?}; give the name without `gs://`"));
    }
    if !(3..=222).contains(&bucket.len()) {
        return Err(format!(
            "is {bucket:?} ({} characters); a bucket name has 3 to 222",
            bucket.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if let Some(bad) = bucket.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "is {bucket:?}; {bad:?} is not allowed (lowercase letters, digits, `-`, `_`, `.`)"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(bucket.chars().next()) || !edge_ok(bucket.chars().last()) {
        return Err(format!(
            "is {bucket:?}; it must start and end with a letter or digit"
        ));
    }
    if bucket
        .split('.')
        .any(|part| part.is_empty() || part.len() > 63)
    {
        return Err(format!(
            "is {bucket:?}; each dot-separated part has 1 to 63 characters"
        ));
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Err(format!("is {prefix:?}; leave out leading and trailing `/`"));
    }
    if prefix
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "is {prefix:?}; empty, `.` and `..` path segments are not allowed"
        ));
    }
    if prefix.chars().any(char::is_control) {
        return Err(format!("is {prefix:?}; control characters are not allowed"));
    }
    if prefix.len() > 512 {
        return Err(format!(
            "is {} bytes long; at most 512 leave room for the partition and file name",
            prefix.len()
        ));
    }
    Ok(())
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return Err(format!(
            "is {endpoint:?}; it must start with `http://` or `https://`"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(format!("is {endpoint:?}; the host is missing"));
    }
    if authority.contains('/') {
        return Err(format!(
            "is {endpoint:?}; give scheme and host only, without a path"
        ));
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "?#@".contains(c))
    {
        return Err(format!("is {endpoint:?}; not a valid host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> UploadConfig {
        let mut c = UploadConfig::new("my-bucket", "/var/spool/sluice");
        c.prefix = "sluice/prod".into();
        c
    }

    fn field_of(c: &UploadConfig) -> Option<&'static str> {
        c.validate().err().map(|e| e.field)
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn parses_toml_with_defaults_and_rejects_unknown_fields() {
        let c: UploadConfig = toml::from_str(
            "bucket = \"b-1\"\nspool_dir = \"/s\"\ncredentials = \"anonymous\"\nendpoint = \"http://127.0.0.1\"\n",
        )
        .unwrap();
        assert_eq!(c.bucket, "b-1");
        assert_eq!(c.credentials, CredentialsSource::Anonymous);
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.attempt_timeout_secs, 60);
        assert_eq!((c.backoff_min_ms, c.backoff_max_ms), (500, 60_000));
        assert_eq!(c.spool_byte_limit, 10 << 30);
        assert_eq!(c.shutdown_grace_secs, 30);
        assert_eq!(c.startup_probe, StartupProbe::Require);
        assert_eq!(c.object_max_age_secs, 300);
        assert_eq!(c.object_target(), 256 << 20);
        let err =
            toml::from_str::<UploadConfig>("bucket = \"b-1\"\nspool_dir = \"/s\"\nbukket = 1\n")
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `bukket`"), "{err}");
    }

    #[test]
    fn each_bad_field_is_named() {
        type Change = Box<dyn Fn(&mut UploadConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("bucket", Box::new(|c| c.bucket = "gs://x".into())),
            ("bucket", Box::new(|c| c.bucket = "ab".into())),
            ("bucket", Box::new(|c| c.bucket = "My-Bucket".into())),
            ("bucket", Box::new(|c| c.bucket = "-abc".into())),
            ("prefix", Box::new(|c| c.prefix = "/abs".into())),
            ("prefix", Box::new(|c| c.prefix = "a//b".into())),
            (
                "endpoint",
                Box::new(|c| c.endpoint = Some("127.0.0.1".into())),
            ),
            (
                "endpoint",
                Box::new(|c| c.endpoint = Some("http://".into())),
            ),
            (
                "endpoint",
                Box::new(|c| c.endpoint = Some("http://h/path".into())),
            ),
            (
                "credentials",
                Box::new(|c| c.credentials = CredentialsSource::Anonymous),
            ),
            ("concurrency", Box::new(|c| c.concurrency = 0)),
            (
                "attempt_timeout_secs",
                Box::new(|c| c.attempt_timeout_secs = 0),
            ),
            ("backoff_min_ms", Box::new(|c| c.backoff_min_ms = 0)),
            ("backoff_max_ms", Box::new(|c| c.backoff_max_ms = 1)),
            ("spool_dir", Box::new(|c| c.spool_dir = PathBuf::new())),
            ("spool_byte_limit", Box::new(|c| c.spool_byte_limit = 0)),
            (
                "shutdown_grace_secs",
                Box::new(|c| c.shutdown_grace_secs = 3601),
            ),
            (
                "object_max_age_secs",
                Box::new(|c| c.object_max_age_secs = 3601),
            ),
            (
                "object_target_bytes",
                Box::new(|c| c.object_target_bytes = Some(0)),
            ),
        ];
        for (field, change) in cases {
            let mut c = valid();
            change(&mut c);
            assert_eq!(field_of(&c), Some(field), "{c:?}");
        }
    }

    #[test]
    fn message_names_field_and_value() {
        let mut c = valid();
        c.concurrency = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "upload config: `concurrency` is 0; must be 1..=256"
        );
    }

    #[test]
    fn emulator_endpoint_with_anonymous_credentials_is_valid() {
        let mut c = valid();
        c.endpoint = Some("http://127.0.0.2/".into());
        c.credentials = CredentialsSource::Anonymous;
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.endpoint_or_default(), "http://127.0.0.2/");
    }
}
