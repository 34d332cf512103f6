//! The `sluice run` configuration of each benchmark row, written as a file the daemon reads
//! like any operator's: XDP source on the receiver's veth, or the UDP socket source behind
//! the kernel path; the `raw` stream or the `schema` decoder; NDJSON+zstd or Parquet to a
//! directory (on disk, or tmpfs for the `(tmpfs)` rows), or (the `--objects` mode) spooled and uploaded to a Cloud Storage
//! emulator ([`SinkChoice::Gcs`]).
//!
//! The schema layout is the ACME-SENSOR v2 example of docs/decoders.md, taken from that
//! file at build time, because the generator's schema payload is that document's example
//! event: both follow the document, so they cannot drift apart silently (a unit test
//! checks the block is found).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sluice_testkit::daemon::toml_string;

use super::measurement::{DecoderChoice, Pipeline};

/// docs/decoders.md, whose ACME-SENSOR v2 layout the schema rows use.
const DECODERS_DOC: &str = include_str!("../../../docs/decoders.md");

/// The file name the layout is written to, next to the config (as in the document).
pub const SCHEMA_FILE: &str = "acme-sensor-v2.toml";

/// Name of the schema stream (its directory under the sink path).
pub const SCHEMA_STREAM: &str = "acme";

/// The ACME-SENSOR v2 layout TOML from docs/decoders.md: the first ```toml block after
/// the line that names `acme-sensor-v2.toml` as its file.
pub fn schema_layout() -> Option<&'static str> {
    let anchor = DECODERS_DOC.find("`/etc/sluice/acme-sensor-v2.toml`")?;
    let rest = &DECODERS_DOC[anchor..];
    let start = rest.find("```toml\n")? + "```toml\n".len();
    let body = &rest[start..];
    let end = body.find("\n```")?;
    Some(&body[..=end])
}

/// Where packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceChoice {
    /// `kind = "xdp"` on this interface, queue 0, native XDP, copy-mode AF_XDP.
    Xdp {
        /// The receiver's veth.
        interface: String,
    },
    /// `kind = "udp"` on these addresses with a large receive buffer.
    Udp {
        /// `udp_listen`.
        listen: Vec<SocketAddr>,
        /// `udp_recv_buffer_bytes`.
        recv_buffer_bytes: u32,
    },
}

/// Where records go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SinkChoice {
    /// `kind = "directory"` at the path the run is given.
    #[default]
    Directory,
    /// `kind = "gcs"`: spooled, combined into objects and uploaded.
    Gcs(GcsSink),
}

/// `[sink.gcs]` of a run against an emulator; every field not named here keeps the
/// daemon's default (as in production), the object policy included unless set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsSink {
    /// `endpoint`, e.g. `http://127.0.0.1` (the emulator, anonymous credentials).
    pub endpoint: String,
    /// `bucket`.
    pub bucket: String,
    /// `prefix`.
    pub prefix: String,
    /// `spool_dir`.
    pub spool_dir: PathBuf,
    /// `object_max_age_secs`; `None` leaves the default (300).
    pub object_max_age_secs: Option<u64>,
    /// `object_target_bytes`; `None` leaves the default (256 MiB for Parquet), `Some(1)`
    /// makes every batch an object of its own.
    pub object_target_bytes: Option<u64>,
}

/// Everything that varies between the daemon's runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// `[source]`.
    pub source: SourceChoice,
    /// Decoder and format.
    pub pipeline: Pipeline,
    /// The port the schema decoder claims (and that the generator sends schema payloads
    /// to); the raw rows steer it too, so it lands in `raw`.
    pub ports: Vec<u16>,
    /// `[[decoder]] ports` of the schema stream.
    pub schema_ports: Vec<u16>,
    /// `pipeline.workers` (0 = one per CPU).
    pub workers: u32,
    /// `pipeline.queue_depth`.
    pub queue_depth: u32,
    /// `source.busy_poll_usecs` (XDP source only; 0 leaves the default).
    pub busy_poll_usecs: u32,
    /// `[sink] kind` and, for `gcs`, its section.
    pub sink: SinkChoice,
}

fn list<T: ToString>(items: &[T], quoted: bool) -> String {
    items
        .iter()
        .map(|item| {
            if quoted {
                toml_string(&item.to_string())
            } else {
                item.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl DaemonConfig {
    /// The config text, writing records under `sink_path` (the directory sink; the gcs
    /// sink spools to its `spool_dir` and ignores it).
    pub fn to_toml(&self, sink_path: &Path) -> String {
        let mut out = String::from("[source]\n");
        match &self.source {
            SourceChoice::Xdp { interface } => {
                let _ = writeln!(
                    out,
                    "kind = \"xdp\"\ninterface = {}\nqueues = [0]\nxdp_mode = \"native\"\nbind_mode = \"copy\"",
                    toml_string(interface)
                );
                if self.busy_poll_usecs > 0 {
                    let _ = writeln!(out, "busy_poll_usecs = {}", self.busy_poll_usecs);
                }
            }
            SourceChoice::Udp {
                listen,
                recv_buffer_bytes,
            } => {
                let _ = writeln!(
                    out,
                    "kind = \"udp\"\nudp_listen = [{}]\nudp_recv_buffer_bytes = {recv_buffer_bytes}",
                    list(listen, true)
                );
            }
        }
        let _ = writeln!(
            out,
            "\n[filter]\nports = [{}]\nplain_udp = true",
            list(&self.ports, false)
        );
        match &self.sink {
            SinkChoice::Directory => {
                let _ = writeln!(
                    out,
                    "\n[sink]\nkind = \"directory\"\npath = {}\nhost = \"bench\"\nformat = \"{}\"",
                    toml_string(&sink_path.to_string_lossy()),
                    self.pipeline.format.config_value()
                );
            }
            SinkChoice::Gcs(gcs) => {
                let _ = writeln!(
                    out,
                    "\n[sink]\nkind = \"gcs\"\nhost = \"bench\"\nformat = \"{}\"",
                    self.pipeline.format.config_value()
                );
                let _ = writeln!(
                    out,
                    "\n[sink.gcs]\nbucket = {}\nprefix = {}\nendpoint = {}\ncredentials = \"anonymous\"\nspool_dir = {}",
                    toml_string(&gcs.bucket),
                    toml_string(&gcs.prefix),
                    toml_string(&gcs.endpoint),
                    toml_string(&gcs.spool_dir.to_string_lossy())
                );
                if let Some(secs) = gcs.object_max_age_secs {
                    let _ = writeln!(out, "object_max_age_secs = {secs}");
                }
                if let Some(bytes) = gcs.object_target_bytes {
                    let _ = writeln!(out, "object_target_bytes = {bytes}");
                }
            }
        }
        let _ = writeln!(
            out,
            "\n[pipeline]\nworkers = {}\nqueue_depth = {}\nstats_interval_secs = 0",
            self.workers, self.queue_depth
        );
        // The metrics endpoint stays on (as in production): it costs nothing unscraped,
        // and 127.0.0.1 is the receiver namespace's own loopback.
        if self.pipeline.decoder == DecoderChoice::Schema {
            let _ = writeln!(
                out,
                "\n[[decoder]]\nname = \"{SCHEMA_STREAM}\"\nports = [{}]\nschema = {{ file = \"{SCHEMA_FILE}\" }}",
                list(&self.schema_ports, false)
            );
        }
        out
    }

    /// Writes the config to `dir/<name>.toml` (and the schema layout next to it when the
    /// row uses it); returns the config's path.
    ///
    /// # Errors
    /// When a file cannot be written, or the layout is missing from docs/decoders.md.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        sink_path: &Path,
    ) -> Result<std::path::PathBuf, std::io::Error> {
        if self.pipeline.decoder == DecoderChoice::Schema {
            let layout = schema_layout().ok_or_else(|| {
                std::io::Error::other(
                    "the ACME-SENSOR v2 layout block is missing from docs/decoders.md",
                )
            })?;
            std::fs::write(dir.join(SCHEMA_FILE), layout)?;
        }
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, self.to_toml(sink_path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::measurement::FormatChoice;

    #[test]
    fn the_layout_is_found_in_the_decoder_docs() {
        let layout = schema_layout().expect("layout block");
        assert!(
            layout.starts_with("# ACME-SENSOR v2 event layout"),
            "{layout}"
        );
        assert!(layout.contains("discriminator = \"type\""));
        assert!(layout.trim_end().ends_with(']'), "{layout}");
        assert!(!layout.contains("```"));
    }

    #[test]
    fn configs_render_source_decoder_and_format() {
        let config = DaemonConfig {
            source: SourceChoice::Xdp {
                interface: "slab-0b".into(),
            },
            pipeline: Pipeline {
                decoder: DecoderChoice::Schema,
                format: FormatChoice::Parquet,
            },
            ports: vec![5000, 5140],
            schema_ports: vec![5140],
            workers: 2,
            queue_depth: 256,
            busy_poll_usecs: 0,
            sink: SinkChoice::Directory,
        };
        let text = config.to_toml(Path::new("/dev/shm/x"));
        assert!(text.starts_with(
            "[source]\nkind = \"xdp\"\ninterface = \"slab-0b\"\nqueues = [0]\nxdp_mode = \"native\"\n"
        ));
        assert!(text.contains("\n[filter]\nports = [5000, 5140]\nplain_udp = true\n"));
        assert!(text.contains("path = \"/dev/shm/x\"\nhost = \"bench\"\nformat = \"parquet\"\n"));
        assert!(text.contains(
            "[[decoder]]\nname = \"acme\"\nports = [5140]\nschema = { file = \"acme-sensor-v2.toml\" }\n"
        ));
        let udp = DaemonConfig {
            source: SourceChoice::Udp {
                listen: vec!["198.51.100.2:5000".parse().expect("addr")],
                recv_buffer_bytes: 64 << 20,
            },
            pipeline: Pipeline {
                decoder: DecoderChoice::Raw,
                format: FormatChoice::NdjsonZstd,
            },
            ..config
        };
        let text = udp.to_toml(Path::new("/o"));
        assert!(text.contains(
            "kind = \"udp\"\nudp_listen = [\"198.51.100.2:5000\"]\nudp_recv_buffer_bytes = 67108864\n"
        ));
        assert!(text.contains("format = \"ndjson_zstd\""));
        assert!(!text.contains("[[decoder]]"));
    }

    #[test]
    fn the_gcs_sink_renders_its_section_and_only_the_policy_it_sets() {
        let config = DaemonConfig {
            source: SourceChoice::Xdp {
                interface: "slab-0b".into(),
            },
            pipeline: Pipeline {
                decoder: DecoderChoice::Raw,
                format: FormatChoice::Parquet,
            },
            ports: vec![9000],
            schema_ports: vec![],
            workers: 0,
            queue_depth: 256,
            busy_poll_usecs: 0,
            sink: SinkChoice::Gcs(GcsSink {
                endpoint: "http://127.0.0.1".into(),
                bucket: "bench".into(),
                prefix: "objects".into(),
                spool_dir: "/dev/shm/spool".into(),
                object_max_age_secs: None,
                object_target_bytes: Some(1),
            }),
        };
        let text = config.to_toml(Path::new("/unused"));
        assert!(text.contains(
            "\n[sink]\nkind = \"gcs\"\nhost = \"bench\"\nformat = \"parquet\"\n\n[sink.gcs]\n\
             bucket = \"bench\"\nprefix = \"objects\"\nendpoint = \"http://127.0.0.1\"\n\
             credentials = \"anonymous\"\nspool_dir = \"/dev/shm/spool\"\nobject_target_bytes = 1\n\n[pipeline]\n"
        ));
        assert!(!text.contains("/unused"));
        assert!(!text.contains("object_max_age_secs"));
        let parsed: sluice::config::Config =
            sluice::config::Config::parse_in(&text, Path::new("/")).expect("the daemon reads it");
        assert_eq!(
            parsed.sink.gcs.and_then(|gcs| gcs.object_target_bytes),
            Some(1)
        );
    }
}
