//! The `sluice run` configuration of each benchmark row, written as a file the daemon reads
//! like any operator's: XDP source on the receiver's veth, or the UDP socket source behind
//! the kernel path; the `raw` stream, the `schema` decoder or the `lua` decoder;
//! NDJSON+zstd or Parquet to a directory (on disk, or tmpfs for the `(tmpfs)` rows), or
//! (the `--objects` mode) spooled and uploaded to a Cloud Storage emulator
//! ([`SinkChoice::Gcs`]).
//!
//! The schema layout is the ACME-SENSOR v2 example of docs/decoders.md, taken from that
//! file at build time, because the generator's schema payload is that document's example
//! event: both follow the document, so they cannot drift apart silently (a unit test
//! checks the block is found). The lua rows likewise run exactly what the document shows
//! for that event: the `[[decoder]]` block of docs/examples/acme-sensor-v2-lua.toml (its
//! `ports` replaced by the row's schema port) and the script
//! docs/examples/acme-sensor-v2.lua, both taken at build time. Unit tests check that the
//! daemon's config parser accepts both rows' configs, routes the schema port to their
//! stream, and that the two decoders make the same two records of the generator's payload.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sluice_testkit::daemon::toml_string;

use super::measurement::{DecoderChoice, Pipeline};

/// The file name the layout is written to, next to the config (as in the document).
pub const SCHEMA_FILE: &str = "acme-sensor-v2.toml";

/// Name of the schema stream (its directory under the sink path).
pub const SCHEMA_STREAM: &str = "acme";

/// docs/examples/acme-sensor-v2-lua.toml: the lua rows' `[[decoder]]` block; and
/// docs/examples/acme-sensor-v2.lua: the Vector script the lua rows run.
use sluice_testkit::acme::{LUA_DECODER as LUA_DECODER_EXAMPLE, LUA_SCRIPT};

/// The file name the script is written to, next to the config (the example block's
/// `file`, resolved from the config's directory).
pub const LUA_SCRIPT_FILE: &str = "acme-sensor-v2.lua";

/// Name of the lua stream (its directory under the sink path): the example block's
/// `name`, kept as it is.
pub const LUA_STREAM: &str = "acme_lua";

/// The `[[decoder]]` block of docs/examples/acme-sensor-v2-lua.toml with its `ports` line
/// replaced by `ports`; `None` when the example no longer has the shape this relies on
/// (one `ports = ` line before `[decoder.lua]`, the stream [`LUA_STREAM`], the script
/// [`LUA_SCRIPT_FILE`]).
///
/// The block ends in the `[decoder.lua]` table, so it must be the last thing in a config.
pub fn lua_decoder_block(ports: &[u16]) -> Option<String> {
    let (head, options) = LUA_DECODER_EXAMPLE.split_once("\n[decoder.lua]\n")?;
    let named = head
        .lines()
        .any(|line| line.trim() == format!("name = {}", toml_string(LUA_STREAM)));
    let scripted = options
        .lines()
        .any(|line| line.trim() == format!("file = {}", toml_string(LUA_SCRIPT_FILE)));
    if !head.contains("[[decoder]]") || !named || !scripted {
        return None;
    }
    let mut replaced = 0;
    let mut block = String::new();
    for line in head.lines() {
        if line.trim_start().starts_with("ports =") {
            replaced += 1;
            let _ = writeln!(block, "ports = [{}]", list(ports, false));
        } else {
            let _ = writeln!(block, "{line}");
        }
    }
    if replaced != 1 {
        return None;
    }
    let _ = write!(block, "\n[decoder.lua]\n{options}");
    if !block.ends_with('\n') {
        block.push('\n');
    }
    Some(block)
}

/// The ACME-SENSOR v2 layout TOML from docs/decoders.md: the first ```toml block after
/// the line that names `acme-sensor-v2.toml` as its file.
pub fn schema_layout() -> Option<&'static str> {
    sluice_testkit::acme::layout_toml()
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
    /// `[[decoder]] ports` of the schema stream, or of the lua stream in the lua rows.
    pub schema_ports: Vec<u16>,
    /// `pipeline.workers` (0 = one per CPU).
    pub workers: u32,
    /// `pipeline.queue_depth`.
    pub queue_depth: u32,
    /// `source.busy_poll_usecs` (XDP source only; 0 leaves the default).
    pub busy_poll_usecs: u32,
    /// `pipeline.worker_scheduling`, if not the daemon's default.
    pub worker_scheduling: Option<String>,
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
        if let Some(class) = &self.worker_scheduling {
            let _ = writeln!(out, "worker_scheduling = {}", toml_string(class));
        }
        // The metrics endpoint stays on (as in production): it costs nothing unscraped,
        // and 127.0.0.1 is the receiver namespace's own loopback.
        match self.pipeline.decoder {
            DecoderChoice::Raw => {}
            DecoderChoice::Schema => {
                let _ = writeln!(
                    out,
                    "\n[[decoder]]\nname = \"{SCHEMA_STREAM}\"\nports = [{}]\nschema = {{ file = \"{SCHEMA_FILE}\" }}",
                    list(&self.schema_ports, false)
                );
            }
            // Last: the block ends in its `[decoder.lua]` table. `write` refuses to run
            // without it, so a missing block never turns a lua row into a raw one.
            DecoderChoice::Lua => {
                if let Some(block) = lua_decoder_block(&self.schema_ports) {
                    let _ = write!(out, "\n{block}");
                }
            }
        }
        out
    }

    /// Writes the config to `dir/<name>.toml` (and the schema layout or the lua script
    /// next to it when the row uses it); returns the config's path.
    ///
    /// # Errors
    /// When a file cannot be written, the layout is missing from docs/decoders.md, or
    /// docs/examples/acme-sensor-v2-lua.toml is not the block [`lua_decoder_block`] expects.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        sink_path: &Path,
    ) -> Result<std::path::PathBuf, std::io::Error> {
        match self.pipeline.decoder {
            DecoderChoice::Raw => {}
            DecoderChoice::Schema => {
                let layout = schema_layout().ok_or_else(|| {
                    std::io::Error::other(
                        "the ACME-SENSOR v2 layout block is missing from docs/decoders.md",
                    )
                })?;
                std::fs::write(dir.join(SCHEMA_FILE), layout)?;
            }
            DecoderChoice::Lua => {
                if lua_decoder_block(&self.schema_ports).is_none() {
                    return Err(std::io::Error::other(format!(
                        "docs/examples/acme-sensor-v2-lua.toml is not a [[decoder]] block named \
                         {LUA_STREAM:?} with one `ports` line and `file = {LUA_SCRIPT_FILE:?}`"
                    )));
                }
                std::fs::write(dir.join(LUA_SCRIPT_FILE), LUA_SCRIPT)?;
            }
        }
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, self.to_toml(sink_path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::PayloadKind;
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
            worker_scheduling: None,
            sink: SinkChoice::Directory,
        };
        let text = config.to_toml(Path::new("/dev/shm/x"));
        assert!(text.starts_with(
            "[source]\nkind = \"xdp\"\ninterface = \"slab-0b\"\nqueues = [0]\nxdp_mode = \"native\"\n"
        ));
        assert!(text.contains("\n[filter]\nports = [5000, 5140]\nplain_udp = true\n"));
        assert!(
            text.contains(
                "\n[pipeline]\nworkers = 2\nqueue_depth = 256\nstats_interval_secs = 0\n"
            )
        );
        assert!(!text.contains("worker_scheduling"));
        let normal = DaemonConfig {
            worker_scheduling: Some("normal".into()),
            ..config.clone()
        };
        assert!(
            normal
                .to_toml(Path::new("/dev/shm/x"))
                .contains("stats_interval_secs = 0\nworker_scheduling = \"normal\"\n")
        );
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

    fn xdp_config(decoder: DecoderChoice, format: FormatChoice) -> DaemonConfig {
        DaemonConfig {
            source: SourceChoice::Xdp {
                interface: "slab-0b".into(),
            },
            pipeline: Pipeline { decoder, format },
            ports: vec![9000, 5140],
            schema_ports: vec![5140],
            workers: 2,
            queue_depth: 256,
            busy_poll_usecs: 0,
            worker_scheduling: None,
            sink: SinkChoice::Directory,
        }
    }

    #[test]
    fn the_lua_block_is_the_documented_example_on_the_rows_port() {
        let block = lua_decoder_block(&[5140]).expect("the example has the expected shape");
        assert_eq!(
            block,
            LUA_DECODER_EXAMPLE.replacen("\nports = [5141]\n", "\nports = [5140]\n", 1)
        );
        assert!(block.contains(
            "[[decoder]]\nname = \"acme_lua\"\nports = [5140]\n\n[decoder.lua]\n\
             file = \"acme-sensor-v2.lua\"\nhooks = { process = \"process\" }\ncolumns = [\n"
        ));
        assert!(!block.contains("5141"));
        assert_eq!(
            lua_decoder_block(&[5140, 5141]).map(|b| b.matches("ports = [5140, 5141]\n").count()),
            Some(1)
        );
        assert!(LUA_SCRIPT.contains("function process(event, emit)"));
    }

    #[test]
    fn lua_rows_render_the_example_block_last_and_write_the_script() {
        let config = xdp_config(DecoderChoice::Lua, FormatChoice::NdjsonZstd);
        let text = config.to_toml(Path::new("/dev/shm/x"));
        let block = lua_decoder_block(&[5140]).expect("block");
        assert!(
            text.ends_with(&format!("stats_interval_secs = 0\n\n{block}")),
            "{text}"
        );
        assert_eq!(text.matches("[[decoder]]").count(), 1);
        assert!(!text.contains("schema = "));
        let dir = tempfile::tempdir().expect("dir");
        let path = config
            .write(dir.path(), "lua-row", Path::new("/dev/shm/x"))
            .expect("written");
        assert_eq!(path, dir.path().join("lua-row.toml"));
        assert_eq!(std::fs::read_to_string(&path).expect("config"), text);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LUA_SCRIPT_FILE)).expect("script"),
            LUA_SCRIPT
        );
        assert!(!dir.path().join(SCHEMA_FILE).exists());
    }

    /// The rows a written config's decoder stream makes of the generator's schema payloads:
    /// the repeated event, then events of the series.
    fn rows_of_the_schema_payload(
        streams: &sluice::streams::Streams,
    ) -> Vec<Vec<sluice_decode::Value<'static>>> {
        let ip = std::net::IpAddr::from([198, 51, 100, 1]);
        let ctx = sluice_decode::PacketContext {
            received_at: 1_795_069_525_000_000,
            tunnel_src: Some(ip),
            tunnel_dst: Some(ip),
            gre_key: Some(42),
            src_ip: ip,
            src_port: 10_000,
            dst_ip: ip,
            dst_port: 5140,
        };
        let mut rows = Vec::new();
        let mut decoder = streams.streams[1].factory.build();
        let series = [0, 1, 3_001, u32::MAX].map(sluice_testkit::acme::readings_event);
        for payload in [PayloadKind::Schema.bytes()]
            .into_iter()
            .chain(series.iter().map(|e| e.to_vec()))
        {
            let outcome = decoder
                .decode(&ctx, &payload, &mut rows)
                .expect("the payload decodes");
            assert_eq!(outcome.rows, PayloadKind::SchemaSeries.records_per_packet());
        }
        rows
    }

    #[test]
    fn written_configs_are_accepted_by_the_daemon_and_give_the_same_rows() {
        let mut rows = Vec::new();
        for (decoder, stream) in [
            (DecoderChoice::Schema, SCHEMA_STREAM),
            (DecoderChoice::Lua, LUA_STREAM),
        ] {
            for format in [FormatChoice::NdjsonZstd, FormatChoice::Parquet] {
                let dir = tempfile::tempdir().expect("dir");
                let records = dir.path().join("records");
                let path = xdp_config(decoder, format)
                    .write(dir.path(), "row", &records)
                    .expect("written");
                // `load` resolves the layout or script from the config's directory, and
                // builds every stream (the lua state is made and the script run once).
                let parsed = sluice::config::Config::load(&path)
                    .unwrap_or_else(|e| panic!("{decoder:?} {format:?}: {e}"));
                let streams = parsed.streams().expect("streams");
                let names: Vec<&str> = streams.streams.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["raw", stream]);
                assert_eq!(streams.router.route(5140, None), 1);
                assert_eq!(streams.router.route(9000, None), 0);
                rows.push(rows_of_the_schema_payload(&streams));
            }
        }
        // The lua rows record what the schema rows record: two rows a payload, value for
        // value.
        assert_eq!(rows[0].len(), 2 * 5);
        assert!(rows.iter().all(|r| *r == rows[0]), "{rows:?}");
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
            worker_scheduling: None,
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
