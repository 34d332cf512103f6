//! Decoder streams: which decoder reads which packets, and where its records go.
//!
//! Each `[[decoder]]` in the config is a stream: a name (its output directory and table),
//! the inner UDP destination ports it takes (optionally only from given tunnels), and one
//! decoder with its options. Packets to any other port go to the built-in `raw` stream.
//! Streams are resolved once at start into a [`Router`] (an array indexed by port) and one
//! [`sluice_decode::DecoderFactory`] each.

use std::{collections::BTreeMap, net::IpAddr, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use sluice_decode::{
    DecoderFactory, RecordSchema,
    layout::{LayoutConfig, LayoutFactory},
    lua::{LuaConfig, LuaFactory},
    netflow::{NetflowConfig, NetflowFactory},
    raw::RawFactory,
    syslog::{SyslogConfig, SyslogFactory},
};

use crate::config::ConfigError;

/// Name of the stream that takes every packet no `[[decoder]]` claims.
pub const RAW_STREAM: &str = "raw";

/// `[[decoder]]`: one stream.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Stream name: the output directory under `sink.path` (and, later, the table name).
    /// Lowercase letters, digits, `_` and `-`; default: the decoder's kind.
    #[serde(default)]
    pub name: String,
    /// Inner UDP destination ports this decoder reads.
    pub ports: Vec<u16>,
    /// Only packets from these tunnel sources (outer source addresses); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tunnel_src: Vec<IpAddr>,
    /// `raw = {}`: length and base64 payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<toml::Table>,
    /// `schema = { ... }` or `schema = { file = "layout.toml" }`: a declarative binary layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<toml::Table>,
    /// `netflow = { ... }`: NetFlow v5/v9 and IPFIX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netflow: Option<toml::Table>,
    /// `syslog = { ... }`: RFC 3164 and RFC 5424.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<toml::Table>,
    /// `lua = { file = "parse.lua", columns = [...] }`: a Vector `lua` transform script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lua: Option<toml::Table>,
}

impl DecoderConfig {
    /// The decoder kind and its options; exactly one must be set.
    fn kind(&self) -> Result<(&'static str, &toml::Table), String> {
        let set: Vec<(&'static str, &toml::Table)> = [
            ("raw", self.raw.as_ref()),
            ("schema", self.schema.as_ref()),
            ("netflow", self.netflow.as_ref()),
            ("syslog", self.syslog.as_ref()),
            ("lua", self.lua.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, t)| t.map(|t| (k, t)))
        .collect();
        match set.as_slice() {
            [one] => Ok(*one),
            [] => Err("set one of raw, schema, netflow, syslog, lua".into()),
            many => Err(format!(
                "only one decoder per stream, found {}",
                many.iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    /// The stream name, defaulted.
    pub fn stream_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        self.kind().map(|(k, _)| k.to_owned()).unwrap_or_default()
    }
}

fn field(index: usize, name: &str) -> String {
    format!("decoder[{index}].{name}")
}

fn invalid(field: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// A stream ready to run.
#[derive(Clone)]
pub struct Stream {
    /// Name (output directory).
    pub name: String,
    /// Builds one decoder per worker.
    pub factory: Arc<dyn DecoderFactory>,
    /// The same factory when the decoder is `netflow`: its shared state's counters and
    /// sizes are exported (`sluice_netflow_*`).
    pub netflow: Option<Arc<NetflowFactory>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.name)
            .field("decoder", &self.factory.schema().decoder)
            .finish()
    }
}

#[derive(Clone, Debug)]
struct Route {
    tunnels: Vec<IpAddr>,
    stream: usize,
}

/// Picks the stream of a packet by destination port and tunnel source.
#[derive(Clone, Debug)]
pub struct Router {
    /// Per port: index into `routes` + 1, or 0 for the raw stream.
    by_port: Vec<u16>,
    routes: Vec<Vec<Route>>,
}

impl Router {
    /// The stream index for a packet (0 is the raw stream).
    #[inline]
    pub fn route(&self, dst_port: u16, tunnel_src: Option<IpAddr>) -> usize {
        let slot = self.by_port[usize::from(dst_port)];
        if slot == 0 {
            return 0;
        }
        for route in &self.routes[usize::from(slot) - 1] {
            if route.tunnels.is_empty() || tunnel_src.is_some_and(|t| route.tunnels.contains(&t)) {
                return route.stream;
            }
        }
        0
    }
}

/// Every stream (index 0 is `raw`) and the router.
#[derive(Clone, Debug)]
pub struct Streams {
    /// The streams, `raw` first.
    pub streams: Vec<Stream>,
    /// Packet → stream.
    pub router: Router,
}

impl Streams {
    /// Checks and builds the configured streams; `base_dir` resolves relative file names.
    /// `steered_ports` is `filter.ports` (empty: all ports are steered).
    pub fn build(
        decoders: &[DecoderConfig],
        steered_ports: &[u16],
        base_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let mut streams = vec![Stream {
            name: RAW_STREAM.to_owned(),
            factory: Arc::new(RawFactory::default()),
            netflow: None,
        }];
        let mut claims: BTreeMap<u16, Vec<Route>> = BTreeMap::new();
        for (i, d) in decoders.iter().enumerate() {
            let (kind, options) = d
                .kind()
                .map_err(|reason| invalid(format!("decoder[{i}]"), reason))?;
            let name = d.stream_name();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    field(i, "name"),
                    "use 1-64 lowercase letters, digits, '_' or '-'",
                ));
            }
            if streams.iter().any(|s| s.name == name) {
                return Err(invalid(
                    field(i, "name"),
                    format!("stream {name:?} is defined twice (name it)"),
                ));
            }
            if d.ports.is_empty() {
                return Err(invalid(field(i, "ports"), "at least one port is needed"));
            }
            for port in &d.ports {
                if !steered_ports.is_empty() && !steered_ports.contains(port) {
                    return Err(invalid(
                        field(i, "ports"),
                        format!(
                            "port {port} is not in filter.ports, so no packet would reach this decoder"
                        ),
                    ));
                }
                let routes = claims.entry(*port).or_default();
                let overlaps = routes.iter().any(|r| {
                    r.tunnels.is_empty()
                        || d.tunnel_src.is_empty()
                        || r.tunnels.iter().any(|t| d.tunnel_src.contains(t))
                });
                if overlaps {
                    return Err(invalid(
                        field(i, "ports"),
                        format!(
                            "port {port} is already taken by another decoder for the same tunnels"
                        ),
                    ));
                }
                routes.push(Route {
                    tunnels: d.tunnel_src.clone(),
                    stream: streams.len(),
                });
            }
            let (factory, netflow) =
                build_factory(kind, &name, options, base_dir).map_err(|(f, reason)| {
                    invalid(
                        format!(
                            "decoder[{i}].{kind}{}{f}",
                            if f.is_empty() { "" } else { "." }
                        ),
                        reason,
                    )
                })?;
            streams.push(Stream {
                name,
                factory,
                netflow,
            });
        }
        let mut by_port = vec![0u16; 65536];
        let mut routes = Vec::with_capacity(claims.len());
        for (port, mut list) in claims {
            // Tunnel-specific routes first, the catch-all last.
            list.sort_by_key(|r| r.tunnels.is_empty());
            routes.push(list);
            by_port[usize::from(port)] = routes.len() as u16;
        }
        Ok(Self {
            streams,
            router: Router { by_port, routes },
        })
    }

    /// The `netflow` streams' factories, by stream name.
    pub fn netflow(&self) -> Vec<(String, Arc<NetflowFactory>)> {
        self.streams
            .iter()
            .filter_map(|s| Some((s.name.clone(), Arc::clone(s.netflow.as_ref()?))))
            .collect()
    }

    /// The schema of every stream, by name.
    pub fn schemas(&self) -> Vec<(&str, &RecordSchema)> {
        self.streams
            .iter()
            .map(|s| (s.name.as_str(), s.factory.schema()))
            .collect()
    }
}

/// A built factory, and the same one typed when it is a `netflow` factory.
type BuiltFactory = (Arc<dyn DecoderFactory>, Option<Arc<NetflowFactory>>);

/// The factory for one decoder kind; errors carry (field within the options, reason).
fn build_factory(
    kind: &str,
    name: &str,
    options: &toml::Table,
    base_dir: &Path,
) -> Result<BuiltFactory, (String, String)> {
    let field_err = |e: sluice_decode::ConfigFieldError| (e.field, e.reason);
    match kind {
        "raw" => {
            if let Some(key) = options.keys().next() {
                return Err((key.clone(), "the raw decoder has no options".into()));
            }
            Ok((Arc::new(RawFactory::default()), None))
        }
        "schema" => {
            let layout: LayoutConfig = parse_options(options)?;
            let layout = layout
                .resolve_file(|path| {
                    let path = base_dir.join(path);
                    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                    toml::from_str::<LayoutConfig>(&text)
                        .map_err(|e| e.to_string().trim_end().to_owned())
                })
                .map_err(field_err)?;
            Ok((
                Arc::new(LayoutFactory::new(name, &layout).map_err(field_err)?),
                None,
            ))
        }
        "netflow" => {
            let config: NetflowConfig = parse_options(options)?;
            let netflow = Arc::new(NetflowFactory::for_stream(name, &config).map_err(field_err)?);
            Ok((
                Arc::clone(&netflow) as Arc<dyn DecoderFactory>,
                Some(netflow),
            ))
        }
        "syslog" => {
            let config: SyslogConfig = parse_options(options)?;
            Ok((
                Arc::new(SyslogFactory::new(&config).map_err(field_err)?),
                None,
            ))
        }
        "lua" => {
            let config: LuaConfig = parse_options(options)?;
            // A relative `file` is resolved from the config file's directory, as the
            // `schema` decoder's `file` is.
            let script = config
                .script(|path| std::fs::read_to_string(base_dir.join(path)))
                .map_err(field_err)?;
            Ok((
                Arc::new(LuaFactory::new(name, &config, script).map_err(field_err)?),
                None,
            ))
        }
        other => Err((String::new(), format!("unknown decoder {other}"))),
    }
}

/// A decoder's options table as its config type; serde's message names the key.
fn parse_options<T: serde::de::DeserializeOwned>(
    options: &toml::Table,
) -> Result<T, (String, String)> {
    toml::Value::Table(options.clone())
        .try_into()
        .map_err(|e: toml::de::Error| (String::new(), e.to_string().trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{DecoderConfig, Streams};
    use crate::config::ConfigError;

    const SCRIPT: &str = "function process(event, emit)\n  \
                          event.log.len = #event.log.message\n  \
                          emit(event)\nend\n";

    fn decoders(text: &str) -> Vec<DecoderConfig> {
        #[derive(serde::Deserialize)]
        struct Decoders {
            decoder: Vec<DecoderConfig>,
        }
        toml::from_str::<Decoders>(text)
            .expect("decoder tables")
            .decoder
    }

    fn refused(text: &str, base_dir: &Path) -> (String, String) {
        match Streams::build(&decoders(text), &[], base_dir) {
            Err(ConfigError::InvalidField { field, reason }) => (field, reason),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn a_lua_stream_reads_its_script_beside_the_config() {
        let dir = sluice_testkit::scratch::tempdir("streams").expect("tempdir");
        std::fs::write(dir.path().join("parse.lua"), SCRIPT).expect("script");
        let text = "[[decoder]]\nname = \"acme_lua\"\nports = [5141]\n\
                    lua = { file = \"parse.lua\", columns = [{ name = \"len\", type = \"u16\" }] }\n";
        let streams = Streams::build(&decoders(text), &[5141], dir.path()).expect("builds");
        let schemas = streams.schemas();
        assert_eq!(schemas.len(), 2);
        let (name, schema) = schemas[1];
        assert_eq!((name, schema.decoder.as_str()), ("acme_lua", "lua"));
        assert_eq!(schema.columns.len(), 1);
        assert_eq!(streams.router.route(5141, None), 1);
        assert_eq!(
            streams.streams[1].factory.error_kinds(),
            sluice_decode::lua::ERROR_KINDS
        );
        // Without a name the stream is called after its kind.
        let text = text.replace("name = \"acme_lua\"\n", "");
        let streams = Streams::build(&decoders(&text), &[], dir.path()).expect("builds");
        assert_eq!(streams.streams[1].name, "lua");
    }

    #[test]
    fn lua_errors_name_the_decoder_and_the_key() {
        let dir = sluice_testkit::scratch::tempdir("streams").expect("tempdir");
        std::fs::write(
            dir.path().join("bad.lua"),
            "function process(event, emit)\n  x = = 1\nend\n",
        )
        .expect("script");
        let columns = "columns = [{ name = \"len\", type = \"u16\" }]";
        let case = |lua: &str| {
            refused(
                &format!(
                    "[[decoder]]\nports = [514]\nsyslog = {{}}\n\n[[decoder]]\nports = [5141]\nlua = {{ {lua} }}\n"
                ),
                dir.path(),
            )
        };
        assert_eq!(
            case(&format!("file = \"bad.lua\", {columns}")),
            (
                "decoder[1].lua.file".to_owned(),
                "bad.lua:2: unexpected symbol near '='".to_owned()
            )
        );
        let (field, reason) = case(&format!("file = \"missing.lua\", {columns}"));
        assert_eq!(field, "decoder[1].lua.file");
        assert!(reason.starts_with("cannot read missing.lua: "), "{reason}");
        assert_eq!(
            case(&format!("source = 'x = 1', {columns}")),
            (
                "decoder[1].lua.hooks.process".to_owned(),
                "\"process\" is not defined by the script (nil): define the function, or \
                 write it inline (\"function (...) ... end\")"
                    .to_owned()
            )
        );
        assert_eq!(
            case("source = 'x = 1', columns = [{ name = \"len\", type = \"u128\" }]").0,
            "decoder[1].lua.columns[0].type"
        );
        let (field, reason) = case(&format!("source = 'x = 1', {columns}, timeout = 3"));
        assert_eq!(field, "decoder[1].lua");
        assert!(reason.contains("unknown field `timeout`"), "{reason}");
        let (field, reason) = refused(
            "[[decoder]]\nports = [1]\nsyslog = {}\nlua = {}\n",
            dir.path(),
        );
        assert_eq!(
            (field.as_str(), reason.as_str()),
            (
                "decoder[0]",
                "only one decoder per stream, found syslog and lua"
            )
        );
    }
}
