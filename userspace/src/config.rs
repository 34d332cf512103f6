//! The daemon's TOML configuration: parsed with serde, then validated as a whole.
//!
//! Every field has a default that works on a GRE-terminating VM, so a config only names
//! what differs (`deploy/sluice.example.toml` documents each one). A bad config is refused
//! at start with the field's dotted path and the reason ([`ConfigError`]).

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};
use sluice_formats::{Format, FormatConfig};
use sluice_upload::UploadConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid, or a field has the wrong type or an unknown name.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A field has a value the daemon cannot run with.
    #[error("{field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `batch.max_bytes`.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A field inside a list or a decoder's options, e.g. `decoder[1].schema.fields[2].offset`.
    #[error("{field}: {reason}")]
    InvalidField {
        /// Path of the field.
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where packets come from.
    pub source: SourceConfig,
    /// Which packets are steered to Sluice.
    pub filter: FilterConfig,
    /// When a batch of records is closed.
    pub batch: BatchConfig,
    /// Where closed batches go.
    pub sink: SinkConfig,
    /// Threads and periodic reporting.
    pub pipeline: PipelineConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[[decoder]]`: payload decoders by destination port; other ports get `raw`.
    #[serde(rename = "decoder", skip_serializing_if = "Vec::is_empty")]
    pub decoders: Vec<crate::streams::DecoderConfig>,
    /// Directory of the config file: relative file names in it are resolved from here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Kind of packet source for `sluice run`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// XDP program + AF_XDP sockets on `interface` (kernel bypass).
    #[default]
    Xdp,
    /// Plain UDP sockets on `udp_listen` (hosts without XDP).
    Udp,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum XdpAttachMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// How AF_XDP sockets bind to their queue.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum XskBindMode {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy only.
    ZeroCopy,
}

/// `[source]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `xdp` or `udp`.
    pub kind: SourceKind,
    /// xdp: the interface the GRE tunnels arrive on.
    pub interface: String,
    /// xdp: receive queues to bind, one AF_XDP socket and receive thread each.
    pub queues: Vec<u32>,
    /// xdp: `auto`, `native` or `generic`.
    pub xdp_mode: XdpAttachMode,
    /// xdp: `auto`, `copy` or `zero_copy`.
    pub bind_mode: XskBindMode,
    /// xdp: UMEM frame size in bytes, 2048 or 4096 (bounds the largest frame: the frame
    /// size less 256 bytes of headroom). Unset: 2048 when the interface's MTU fits it,
    /// else 4096 (chosen at start, `source::xdp::geometry`).
    pub frame_size: Option<u32>,
    /// xdp: UMEM frames per socket (power of two). Unset: 64 MiB of frames per socket.
    pub umem_frames: Option<u32>,
    /// xdp: size of the fill, completion and receive rings (power of two, ≤ umem_frames).
    /// Unset: half the UMEM's frames, so the fill ring holds half of them and the rest
    /// are in the receive ring or being copied.
    pub ring_size: Option<u32>,
    /// xdp: 0 (default): a receive thread with nothing to read sleeps in `poll(2)`. Above
    /// 0: busy polling — the socket gets `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL` of this
    /// many microseconds, and the receive thread never sleeps: it spins on its ring and
    /// drives the queue itself, so a burst never waits for it to be woken. It keeps one
    /// core busy per queue: give it a core of its own.
    pub busy_poll_usecs: u32,
    /// udp: addresses to listen on.
    pub udp_listen: Vec<SocketAddr>,
    /// udp: SO_RCVBUF in bytes.
    pub udp_recv_buffer_bytes: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Xdp,
            interface: String::new(),
            queues: vec![0],
            xdp_mode: XdpAttachMode::Auto,
            bind_mode: XskBindMode::Auto,
            // Chosen at start from the interface's MTU: 64 MiB of UMEM per queue, half
            // of it in the fill ring (16 384 frames of 2 KiB absorb 11 ms at 1.5 Mpps
            // while the receive thread is not running: BENCHMARKS.md).
            frame_size: None,
            umem_frames: None,
            ring_size: None,
            busy_poll_usecs: 0,
            udp_listen: Vec::new(),
            udp_recv_buffer_bytes: 64 << 20,
        }
    }
}

/// `[filter]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Inner UDP destination ports to steer; empty means every UDP port.
    pub ports: Vec<u16>,
    /// Also steer un-tunnelled UDP to these ports (senders not behind GRE).
    pub plain_udp: bool,
}

/// `[batch]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Close a batch at this many records.
    pub max_records: u32,
    /// Close a batch at this many uncompressed bytes.
    pub max_bytes: u32,
    /// Close a batch this many milliseconds after its first record. This bounds what a
    /// SIGKILL or power cut can lose: only batches still open in memory.
    pub max_age_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 100_000,
            max_bytes: 8 << 20,
            max_age_ms: 1_000,
        }
    }
}

/// Kind of sink.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Files in a local directory, partitioned by date and hour.
    #[default]
    Directory,
    /// A durable local spool, uploaded to Google Cloud Storage (`[sink.gcs]`).
    Gcs,
}

/// `[sink]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `directory` or `gcs`.
    pub kind: SinkKind,
    /// directory: where record files are written.
    pub path: PathBuf,
    /// The `<host>` part of file and object names; empty means the machine's hostname.
    pub host: String,
    /// File format of every batch: `parquet` (default: ZSTD pages, typed columns, read by
    /// BigQuery), `ndjson_gzip`, `csv_gzip` or `ndjson_zstd` (not read by BigQuery).
    pub format: Format,
    /// Compression level: gzip 0–9 (default 6), zstd 1–22 (default 1), Parquet's ZSTD
    /// pages 1–22 (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    /// parquet: a new row group after this many rows (default: no row limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_group_rows: Option<u64>,
    /// parquet: a new row group once this many bytes of values are buffered (default
    /// 64 MiB; a batch below it is one row group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_group_bytes: Option<u64>,
    /// gcs: bucket, prefix, endpoint, credentials, spool and retry settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs: Option<UploadConfig>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            kind: SinkKind::Directory,
            path: PathBuf::from("/var/lib/sluice/records"),
            host: String::new(),
            // BigQuery reads Parquet (and gzip NDJSON/CSV), not zstd NDJSON: the default
            // output must be queryable where Sluice's records are meant to be queried.
            format: Format::Parquet,
            compression_level: None,
            row_group_rows: None,
            row_group_bytes: None,
            gcs: None,
        }
    }
}

impl SinkConfig {
    /// The file format options of every batch.
    pub fn format_config(&self) -> FormatConfig {
        FormatConfig {
            format: self.format,
            compression_level: self.compression_level,
            row_group_rows: self.row_group_rows,
            row_group_bytes: self.row_group_bytes,
        }
    }
}

/// How the workers and the sink thread are scheduled against the receive threads
/// (`pipeline::scheduling`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkerScheduling {
    /// `SCHED_IDLE`: any ordinary thread that wakes, a receive thread above all, runs
    /// first.
    #[default]
    Idle,
    /// `SCHED_BATCH`: ordinary share of the CPU, but never preempts on wakeup.
    Batch,
    /// The default class, like every other thread.
    Normal,
}

/// `[pipeline]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Parse/encode/compress worker threads; 0 means one per CPU.
    pub workers: u32,
    /// Scheduling class of the workers: `idle` (default), `batch` or `normal`. With `idle`
    /// the receive threads always win the CPU when they wake, and one more worker in the
    /// default class (the reserve) works whenever the queue backs up.
    pub worker_scheduling: WorkerScheduling,
    /// Frame batches that may wait for a worker before receivers drop (counted).
    pub queue_depth: u32,
    /// Seconds between counter log lines; 0 disables them.
    pub stats_interval_secs: u64,
    /// Measure hold times (NetFlow data waiting for its template) on the packets' own
    /// clock rather than the wall clock. Set by `sluice replay`, whose packets carry their
    /// capture time; not a config key.
    #[serde(skip)]
    pub packet_clock: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            worker_scheduling: WorkerScheduling::Idle,
            queue_depth: 256,
            stats_interval_secs: 10,
            packet_clock: false,
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz` (on `sluice run`).
    pub enabled: bool,
    /// Address of the HTTP endpoint.
    pub listen: SocketAddr,
    /// Tunnel sources counted one by one in `sluice_tunnel_packets_total`; the rest are `other`.
    pub max_tunnels: u32,
    /// Connections the endpoint serves at once (1..=10000); one beyond is closed at once and
    /// counted in `sluice_metrics_refused_connections_total`.
    pub max_connections: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_tunnels: 64,
            max_connections: 256,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let config = Self::parse_in(&text, &base_dir).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates config text (relative file names resolve from the current directory).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_in(text, std::path::Path::new("."))
    }

    /// Parses and validates config text whose relative file names resolve from `base_dir`.
    pub fn parse_in(text: &str, base_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = base_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// The decoder streams (checks every decoder's options).
    pub fn streams(&self) -> Result<crate::streams::Streams, ConfigError> {
        crate::streams::Streams::build(&self.decoders, &self.filter.ports, &self.base_dir)
    }

    /// Checks the values that serde cannot, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let source = &self.source;
        match source.kind {
            SourceKind::Xdp => {
                if source.interface.is_empty() {
                    return invalid("source.interface", "required when source.kind = \"xdp\"");
                }
                if source.interface.len() > 15 || source.interface.contains(['/', ' ', '\0']) {
                    return invalid(
                        "source.interface",
                        format!("{:?} is not a valid interface name", source.interface),
                    );
                }
                if source.queues.is_empty() {
                    return invalid("source.queues", "at least one queue is needed");
                }
                let mut queues = source.queues.clone();
                queues.sort_unstable();
                queues.dedup();
                if queues.len() != source.queues.len() {
                    return invalid("source.queues", "a queue is listed twice");
                }
                if let Some(q) = queues.iter().find(|q| **q >= sluice_common::MAX_QUEUES) {
                    return invalid(
                        "source.queues",
                        format!(
                            "queue {q} is above the maximum {}",
                            sluice_common::MAX_QUEUES - 1
                        ),
                    );
                }
                if let Some(frames) = source.umem_frames
                    && (!frames.is_power_of_two() || frames < 64)
                {
                    return invalid("source.umem_frames", "must be a power of two, at least 64");
                }
                if let Some(size) = source.frame_size
                    && size != 2048
                    && size != 4096
                {
                    return invalid("source.frame_size", "must be 2048 or 4096");
                }
                if let Some(ring) = source.ring_size {
                    if !ring.is_power_of_two() || ring < 64 {
                        return invalid("source.ring_size", "must be a power of two, at least 64");
                    }
                    if source.umem_frames.is_some_and(|frames| ring > frames) {
                        return invalid("source.ring_size", "must not exceed source.umem_frames");
                    }
                }
                if source.busy_poll_usecs > 10_000 {
                    return invalid(
                        "source.busy_poll_usecs",
                        "must be at most 10000 (0 turns busy polling off)",
                    );
                }
            }
            SourceKind::Udp => {
                if source.udp_listen.is_empty() {
                    return invalid("source.udp_listen", "required when source.kind = \"udp\"");
                }
            }
        }
        let mut ports = self.filter.ports.clone();
        ports.sort_unstable();
        if ports.contains(&0) {
            return invalid("filter.ports", "port 0 cannot be steered");
        }
        ports.dedup();
        if ports.len() != self.filter.ports.len() {
            return invalid("filter.ports", "a port is listed twice");
        }
        let batch = &self.batch;
        if batch.max_records == 0 {
            return invalid("batch.max_records", "must be at least 1");
        }
        if batch.max_bytes < 1024 || batch.max_bytes > 1 << 30 {
            return invalid("batch.max_bytes", "must be between 1024 and 1073741824");
        }
        if batch.max_age_ms == 0 || batch.max_age_ms > 3_600_000 {
            return invalid("batch.max_age_ms", "must be between 1 and 3600000");
        }
        self.validate_sink()?;
        if self.pipeline.workers > 256 {
            return invalid("pipeline.workers", "must be at most 256");
        }
        if self.pipeline.queue_depth == 0 {
            return invalid("pipeline.queue_depth", "must be at least 1");
        }
        if self.metrics.max_tunnels > 10_000 {
            return invalid(
                "metrics.max_tunnels",
                "must be at most 10000 (it bounds a label set)",
            );
        }
        if !(1..=10_000).contains(&self.metrics.max_connections) {
            return invalid(
                "metrics.max_connections",
                "must be between 1 and 10000 (each is a file descriptor)",
            );
        }
        self.streams()?;
        Ok(())
    }

    fn validate_sink(&self) -> Result<(), ConfigError> {
        let sink = &self.sink;
        if sink.host.contains(['/', '\0']) {
            return invalid("sink.host", "must not contain '/'");
        }
        if let Err(e) = sink.format_config().validate() {
            return Err(match e {
                sluice_formats::FormatError::Config { field, reason } => {
                    ConfigError::InvalidField {
                        field: format!("sink.{field}"),
                        reason,
                    }
                }
                other => ConfigError::InvalidField {
                    field: "sink.format".into(),
                    reason: other.to_string(),
                },
            });
        }
        match sink.kind {
            SinkKind::Directory => {
                if sink.path.as_os_str().is_empty() {
                    return invalid("sink.path", "required when sink.kind = \"directory\"");
                }
            }
            SinkKind::Gcs => {
                let Some(gcs) = &sink.gcs else {
                    return invalid(
                        "sink.gcs",
                        "required when sink.kind = \"gcs\" (at least bucket and spool_dir)",
                    );
                };
                gcs.validate().map_err(|e| ConfigError::InvalidField {
                    field: format!("sink.gcs.{}", e.field),
                    reason: e.problem,
                })?;
            }
        }
        Ok(())
    }

    /// The configuration with every default filled in, as TOML. The compression level is
    /// written out too: its default depends on the format (docs/formats.md).
    pub fn to_toml(&self) -> String {
        let mut effective = self.clone();
        effective.sink.compression_level = Some(self.sink.format_config().level());
        toml::to_string_pretty(&effective)
            .unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Worker threads to run: the configured number, or one per CPU.
    pub fn worker_count(&self) -> usize {
        match self.pipeline.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        }
    }
}

fn invalid<T>(field: &'static str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        field,
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        match Config::parse(text) {
            Err(ConfigError::Invalid { field, .. }) => field.to_owned(),
            Err(e) => format!("other: {e}"),
            Ok(_) => "ok".to_owned(),
        }
    }

    fn message_of(text: &str) -> String {
        Config::parse(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn minimal_xdp_config_gets_defaults() -> Result<(), ConfigError> {
        let c = Config::parse("[source]\ninterface = \"eth0\"\n")?;
        assert_eq!(c.source.queues, vec![0]);
        assert_eq!(c.batch.max_age_ms, 1000);
        assert_eq!(c.sink.kind, SinkKind::Directory);
        assert!(c.filter.ports.is_empty());
        Ok(())
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(field_of(""), "source.interface");
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\nqueues=[]"),
            "source.queues"
        );
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\nqueues=[1,1]"),
            "source.queues"
        );
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\nframe_size=1000"),
            "source.frame_size"
        );
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\numem_frames=1024\nring_size=2048"),
            "source.ring_size"
        );
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\n[filter]\nports=[0]"),
            "filter.ports"
        );
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\n[batch]\nmax_bytes=1"),
            "batch.max_bytes"
        );
        assert_eq!(
            message_of("[source]\ninterface=\"e\"\n[sink]\ncompression_level=30"),
            "sink.compression_level: 30 is out of range for parquet: use 1 to 22"
        );
        assert_eq!(
            message_of("[source]\ninterface=\"e\"\n[sink]\nrow_group_bytes=0"),
            "sink.row_group_bytes: 0 is not a size: use at least 1, or leave it out for the default of 67108864"
        );
        assert_eq!(
            message_of(
                "[source]\ninterface=\"e\"\n[sink]\nformat=\"ndjson_gzip\"\nrow_group_bytes=1"
            ),
            "sink.row_group_bytes: only applies to format \"parquet\", not \"ndjson_gzip\""
        );
        assert_eq!(
            message_of("[source]\ninterface=\"e\"\n[sink]\nkind=\"gcs\""),
            "sink.gcs: required when sink.kind = \"gcs\" (at least bucket and spool_dir)"
        );
        assert_eq!(
            message_of(
                "[source]\ninterface=\"e\"\n[sink]\nkind=\"gcs\"\n[sink.gcs]\nbucket=\"gs://b\"\nspool_dir=\"/s\""
            ),
            "sink.gcs.bucket: is \"gs://b\"; give the name without `gs://`"
        );
        assert_eq!(field_of("[source]\nkind=\"udp\""), "source.udp_listen");
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\nbusy_poll_usecs=20000"),
            "source.busy_poll_usecs"
        );
        for n in [0, 10_001] {
            assert_eq!(
                field_of(&format!(
                    "[source]\ninterface=\"e\"\n[metrics]\nmax_connections={n}"
                )),
                "metrics.max_connections"
            );
        }
        assert_eq!(
            field_of("[source]\ninterface=\"e\"\n[metrics]\nmax_connections=1"),
            "ok"
        );
    }

    #[test]
    fn unknown_and_mistyped_keys_are_parse_errors_naming_the_key() {
        let e = Config::parse("[source]\ninterface=\"e\"\nqueue=[1]").err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("queue"), "{msg}");
        let e = Config::parse("[batch]\nmax_records=\"many\"").err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("max_records"), "{msg}");
    }

    #[test]
    fn effective_config_round_trips() -> Result<(), ConfigError> {
        // The rendering spells out the level in effect; otherwise it reads back as the same
        // configuration.
        let same = |c: &Config, level: i32| -> Result<(), ConfigError> {
            let text = c.to_toml();
            assert!(
                text.contains(&format!("compression_level = {level}\n")),
                "{text}"
            );
            let again = Config::parse(&text)?;
            assert_eq!(again.to_toml(), text);
            let mut implicit = again.clone();
            implicit.sink.compression_level = c.sink.compression_level;
            assert_eq!(&implicit, c);
            Ok(())
        };
        let c = Config::parse("[source]\ninterface = \"eth0\"\n[filter]\nports=[2055]\n")?;
        same(&c, 3)?;
        let c = Config::parse(
            "[source]\ninterface = \"eth0\"\n[sink]\nkind = \"gcs\"\nformat = \"parquet\"\n[sink.gcs]\nbucket = \"b-1\"\nspool_dir = \"/s\"\n",
        )?;
        assert_eq!(c.sink.format, Format::Parquet);
        same(&c, 3)?;
        let c =
            Config::parse("[source]\ninterface = \"eth0\"\n[sink]\nformat = \"ndjson_zstd\"\n")?;
        same(&c, 1)?;
        let c = Config::parse(
            "[source]\ninterface = \"eth0\"\n[sink]\nformat = \"ndjson_zstd\"\ncompression_level = 7\n",
        )?;
        same(&c, 7)?;
        Ok(())
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_accepted() -> Result<(), ConfigError> {
        let text = include_str!("../../deploy/sluice.example.toml");
        let config = Config::parse(text)?;
        assert_eq!(config.source.interface, "eth0");
        assert_eq!(config.filter.ports, vec![2055, 4739, 514, 6343]);
        assert_eq!(config.sink.path, PathBuf::from("/var/lib/sluice/records"));
        assert_eq!(config.sink.format, Format::Parquet);
        assert_eq!(config.sink.format_config().row_group_bytes(), 64 << 20);
        Ok(())
    }
}
