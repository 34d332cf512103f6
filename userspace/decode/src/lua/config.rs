//! The `lua` decoder's options, as written in the config (`lua = { ... }` in a
//! `[[decoder]]`): the script, its hooks, the columns its emitted events become, and the
//! limits of each worker's Lua state. Plain serde data; [`LuaConfig::check`] names the
//! offending key, and the script itself is checked by loading it
//! ([`super::LuaFactory::new`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    BytesEncoding, Column, ColumnType, ConfigFieldError,
    layout::{BytesFormat, TimeUnit, field::valid_name},
};

/// CPU time a call may take when `max_call_cpu_ms` is not set, in milliseconds.
pub const DEFAULT_MAX_CALL_CPU_MS: u64 = 50;
/// Bytes a worker's Lua state may hold when `max_memory_bytes` is not set (16 MiB).
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 16 << 20;
/// Rows one payload may emit when `max_rows_per_payload` is not set.
pub const DEFAULT_MAX_ROWS_PER_PAYLOAD: u32 = 1024;
/// How often (in instructions) the budget is checked: a runaway call is stopped at most
/// this many instructions after its budget is spent.
pub const BUDGET_CHECK_INTERVAL: u32 = 1000;

const MAX_INSTRUCTIONS_RANGE: (u64, u64) = (BUDGET_CHECK_INTERVAL as u64, 1_000_000_000);
const MAX_CALL_CPU_MS_RANGE: (u64, u64) = (1, 10_000);
const MAX_MEMORY_RANGE: (u64, u64) = (1 << 20, 1 << 30);
const MAX_ROWS_RANGE: (u32, u32) = (1, 65_536);
const MAX_COLUMNS: usize = 1024;

/// `lua = { file = "parse.lua", hooks = { process = "process" }, columns = [...] }`: a
/// script written for Vector's `lua` transform (version 2), run unchanged on every worker.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LuaConfig {
    /// The script file; a relative path is resolved from the config file's directory.
    /// Exactly one of `file` and `source`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The script itself (Vector's `source`). Exactly one of `file` and `source`.
    #[serde(default)]
    pub source: Option<String>,
    /// Vector's `version`: `"2"` (the default) is the only version.
    #[serde(default)]
    pub version: Option<String>,
    /// The functions Sluice calls.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// The emitted fields that become columns, in column order.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// CPU time one call (`init`, `process` for one payload, `shutdown`) may take, in
    /// milliseconds of its worker thread's CPU time; a call past it is stopped (decode
    /// error `lua_budget`) by a watchdog, within about half as much again. 1 to 10 000,
    /// default 50.
    #[serde(default)]
    pub max_call_cpu_ms: Option<u64>,
    /// Lua VM instructions one call may run, as well (decode error `lua_budget`): exact,
    /// but a count hook makes Lua 5.4 trap on every instruction (~10–30% of a call).
    /// 1000 to 10⁹, off by default; checked every 1000 instructions.
    #[serde(default)]
    pub max_instructions: Option<u64>,
    /// Memory one worker's Lua state may hold, in bytes; an allocation past it fails
    /// (decode error `lua_memory`). 1 MiB to 1 GiB, default 16 MiB.
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    /// Rows one payload may emit; one more is the decode error `too_many_rows`. 1 to
    /// 65 536, default 1024.
    #[serde(default)]
    pub max_rows_per_payload: Option<u32>,
    /// Vector's `timers`: refused (Sluice calls a script only for packets).
    #[serde(default)]
    pub timers: Vec<TimerConfig>,
    /// Vector's `search_dirs`: refused (`require` is not available).
    #[serde(default)]
    pub search_dirs: Option<Vec<PathBuf>>,
}

/// `hooks = { ... }`: each is the name of a function the script defines, or inline Lua
/// code that evaluates to a function (`"function (event, emit) ... end"`), as in Vector.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Called for each payload with `(event, emit)`. Default: `"process"`.
    #[serde(default)]
    pub process: Option<String>,
    /// Called once with `(emit)` when a worker's state is created (and re-created).
    #[serde(default)]
    pub init: Option<String>,
    /// Called once with `(emit)` when a worker stops.
    #[serde(default)]
    pub shutdown: Option<String>,
}

/// One of Vector's timers (`{ interval_seconds = 10, handler = "flush" }`), read only to
/// refuse it by name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TimerConfig {
    /// Seconds between calls.
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    /// The function called.
    #[serde(default)]
    pub handler: Option<String>,
}

/// One column: an emitted `event.log` field and its type.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// Column name: lowercase letters, digits and `_`, not starting with a digit, at most
    /// 64 bytes, unique.
    pub name: String,
    /// `bool`; `u8` `u16` `u32` `u64` (`uint64`); `i8` `i16` `i32` `i64` (`int64`); `f64`
    /// (`float64`); `text` (`string`); `bytes`; `ip`, `ipv4`, `ipv6`; `mac`; `timestamp`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The `event.log` field to read; default: `name`.
    #[serde(default)]
    pub field: Option<String>,
    /// Whether an emitted event may lack the field (the column is then null). Default
    /// `false`: a missing field is the decode error `missing_field`.
    #[serde(default)]
    pub nullable: bool,
    /// How `bytes` are written in text outputs: `"hex"` (the default) or `"base64"`.
    #[serde(default)]
    pub encoding: Option<BytesFormat>,
    /// Unit of a `timestamp` given as a number: `"seconds"` (the default), `"millis"`,
    /// `"micros"` or `"nanos"`.
    #[serde(default)]
    pub unit: Option<TimeUnit>,
}

/// What a column accepts, resolved from its `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// A boolean.
    Bool,
    /// An integer (or a float with an integral value) from 0 to `max`.
    Unsigned { max: u64 },
    /// An integer (or a float with an integral value) from `min` to `max`.
    Signed { min: i64, max: i64 },
    /// A number.
    Float,
    /// A string that is UTF-8.
    Text,
    /// A string.
    Bytes,
    /// An address in text form, of the family if given.
    Ip { family: Option<IpFamily> },
    /// Six bytes, or `aa:bb:cc:dd:ee:ff` (`:` or `-`).
    Mac,
    /// A Vector timestamp table, or a number in this unit since the Unix epoch.
    Timestamp(TimeUnit),
}

/// An address family a column is restricted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpFamily {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// A column, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnPlan {
    /// The output column.
    pub column: Column,
    /// The `event.log` key it is read from.
    pub field: String,
    /// The column name, interned (decode errors name it without allocating).
    pub name: &'static str,
    /// What values are accepted.
    pub accept: Accept,
}

/// The checked options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Hook expressions: process, init, shutdown.
    pub process: String,
    /// `hooks.init`, if set.
    pub init: Option<String>,
    /// `hooks.shutdown`, if set.
    pub shutdown: Option<String>,
    /// Columns in order.
    pub columns: Vec<ColumnPlan>,
    /// CPU time per call, in milliseconds.
    pub max_call_cpu_ms: u64,
    /// Instructions per call, if counted.
    pub max_instructions: Option<u64>,
    /// Bytes per state.
    pub max_memory_bytes: usize,
    /// Rows per payload.
    pub max_rows: u32,
}

/// The script's text and the name its messages use (`parse.lua:12: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Chunk name: the file name as configured, or `source`.
    pub name: String,
    /// Lua source text.
    pub text: String,
}

impl LuaConfig {
    /// The script: `source` as it is, or `file` read by `load` (which gets the path as
    /// written; resolving a relative one is the caller's job). Errors name `file` or
    /// `source`.
    pub fn script<E: std::fmt::Display>(
        &self,
        load: impl FnOnce(&Path) -> Result<String, E>,
    ) -> Result<Script, ConfigFieldError> {
        match (&self.file, &self.source) {
            (Some(_), Some(_)) => Err(ConfigFieldError::new(
                "source",
                "set `file` or `source`, not both",
            )),
            (None, None) => Err(ConfigFieldError::new(
                "file",
                "the script is required: `file = \"parse.lua\"` (or the code inline as `source`)",
            )),
            (None, Some(text)) => Ok(Script {
                name: "source".into(),
                text: text.clone(),
            }),
            (Some(path), None) => {
                let text = load(path).map_err(|e| {
                    ConfigFieldError::new("file", format!("cannot read {}: {e}", path.display()))
                })?;
                Ok(Script {
                    name: path.display().to_string(),
                    text,
                })
            }
        }
    }

    /// Checks every option but the script, naming the first key that is wrong.
    pub(crate) fn check(&self) -> Result<Checked, ConfigFieldError> {
        if let Some(version) = &self.version
            && version != "2"
        {
            return Err(ConfigFieldError::new(
                "version",
                format!(
                    "{version:?} is not supported: scripts of Vector's lua transform version 2 \
                     (hooks and `emit`) run here, version 1 scripts do not"
                ),
            ));
        }
        if let Some(first) = self.timers.first() {
            let handler = first.handler.as_deref().unwrap_or("?");
            return Err(ConfigFieldError::new(
                "timers[0]",
                format!(
                    "timers are not supported (handler {handler:?}): Sluice calls the script \
                     only for packets; keep per-packet work in `hooks.process`"
                ),
            ));
        }
        if self.search_dirs.is_some() {
            return Err(ConfigFieldError::new(
                "search_dirs",
                "not supported: `require` is not available, the whole parser must be in the script",
            ));
        }
        let hook =
            |key: &str, value: &Option<String>| -> Result<Option<String>, ConfigFieldError> {
                match value {
                    Some(code) if code.trim().is_empty() => Err(ConfigFieldError::new(
                        format!("hooks.{key}"),
                        "empty: name a function of the script, or write one inline",
                    )),
                    other => Ok(other.clone()),
                }
            };
        let process = hook("process", &self.hooks.process)?.unwrap_or_else(|| "process".into());
        let init = hook("init", &self.hooks.init)?;
        let shutdown = hook("shutdown", &self.hooks.shutdown)?;
        let max_call_cpu_ms = in_range(
            "max_call_cpu_ms",
            self.max_call_cpu_ms,
            DEFAULT_MAX_CALL_CPU_MS,
            MAX_CALL_CPU_MS_RANGE,
        )?;
        let max_instructions = match self.max_instructions {
            Some(n) if n < MAX_INSTRUCTIONS_RANGE.0 || n > MAX_INSTRUCTIONS_RANGE.1 => {
                return Err(ConfigFieldError::new(
                    "max_instructions",
                    format!(
                        "{n} is out of range: use {} to {} (not counted by default)",
                        MAX_INSTRUCTIONS_RANGE.0, MAX_INSTRUCTIONS_RANGE.1
                    ),
                ));
            }
            other => other,
        };
        let max_memory_bytes = in_range(
            "max_memory_bytes",
            self.max_memory_bytes,
            DEFAULT_MAX_MEMORY_BYTES,
            MAX_MEMORY_RANGE,
        )?;
        let max_rows = in_range(
            "max_rows_per_payload",
            self.max_rows_per_payload,
            DEFAULT_MAX_ROWS_PER_PAYLOAD,
            MAX_ROWS_RANGE,
        )?;
        Ok(Checked {
            process,
            init,
            shutdown,
            columns: columns(&self.columns)?,
            max_call_cpu_ms,
            max_instructions,
            max_memory_bytes: usize::try_from(max_memory_bytes).unwrap_or(usize::MAX),
            max_rows,
        })
    }
}

fn in_range<T: Copy + PartialOrd + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    default: T,
    (lo, hi): (T, T),
) -> Result<T, ConfigFieldError> {
    let value = value.unwrap_or(default);
    if value < lo || value > hi {
        return Err(ConfigFieldError::new(
            key,
            format!("{value} is out of range: use {lo} to {hi} (default {default})"),
        ));
    }
    Ok(value)
}

/// Checks the columns: names, types and their options.
fn columns(configs: &[ColumnConfig]) -> Result<Vec<ColumnPlan>, ConfigFieldError> {
    if configs.is_empty() {
        return Err(ConfigFieldError::new(
            "columns",
            "at least one column is needed: `columns = [{ name = \"seq\", type = \"u32\" }, ...]`",
        ));
    }
    if configs.len() > MAX_COLUMNS {
        return Err(ConfigFieldError::new(
            "columns",
            format!("{} columns, at most {MAX_COLUMNS}", configs.len()),
        ));
    }
    let mut plans: Vec<ColumnPlan> = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let at = |key: &str| format!("columns[{i}].{key}");
        if !valid_name(&c.name) {
            return Err(ConfigFieldError::new(
                at("name"),
                format!(
                    "{:?} is not a column name: use 1-64 lowercase letters, digits and '_', \
                     not starting with a digit",
                    c.name
                ),
            ));
        }
        if plans.iter().any(|p| p.column.name == c.name) {
            return Err(ConfigFieldError::new(
                at("name"),
                format!("column {:?} is declared twice", c.name),
            ));
        }
        let field = c.field.clone().unwrap_or_else(|| c.name.clone());
        if field.is_empty() || field.len() > 255 {
            return Err(ConfigFieldError::new(
                at("field"),
                "use the name of an event.log field (1 to 255 bytes)",
            ));
        }
        let accept = accept_of(&c.ty).ok_or_else(|| {
            ConfigFieldError::new(
                at("type"),
                format!(
                    "{:?} is not a type: use bool, u8, u16, u32, u64 (uint64), i8, i16, i32, \
                     i64 (int64), f64 (float64), text (string), bytes, ip, ipv4, ipv6, mac or \
                     timestamp",
                    c.ty
                ),
            )
        })?;
        if c.encoding.is_some() && accept != Accept::Bytes {
            return Err(ConfigFieldError::new(
                at("encoding"),
                "only `bytes` columns have an encoding",
            ));
        }
        let accept = match (accept, c.unit) {
            (Accept::Timestamp(_), Some(unit)) => Accept::Timestamp(unit),
            (_, Some(_)) => {
                return Err(ConfigFieldError::new(
                    at("unit"),
                    "only `timestamp` columns have a unit",
                ));
            }
            (accept, None) => accept,
        };
        let ty = match accept {
            Accept::Bool => ColumnType::Bool,
            Accept::Unsigned { .. } => ColumnType::UInt64,
            Accept::Signed { .. } => ColumnType::Int64,
            Accept::Float => ColumnType::Float64,
            Accept::Text => ColumnType::String,
            Accept::Bytes => ColumnType::Bytes(match c.encoding.unwrap_or_default() {
                BytesFormat::Hex => BytesEncoding::Hex,
                BytesFormat::Base64 => BytesEncoding::Base64,
            }),
            Accept::Ip { .. } => ColumnType::IpAddr,
            Accept::Mac => ColumnType::MacAddr,
            Accept::Timestamp(_) => ColumnType::Timestamp,
        };
        plans.push(ColumnPlan {
            column: Column {
                name: c.name.clone(),
                ty,
                nullable: c.nullable,
            },
            field,
            name: crate::layout::intern::intern(&c.name),
            accept,
        });
    }
    Ok(plans)
}

/// What a `type` name accepts.
fn accept_of(ty: &str) -> Option<Accept> {
    let unsigned = |bits: u32| Accept::Unsigned {
        max: if bits == 64 {
            // Lua integers are signed 64-bit: the largest one.
            i64::MAX as u64
        } else {
            (1u64 << bits) - 1
        },
    };
    let signed = |bits: u32| {
        let max = if bits == 64 {
            i64::MAX
        } else {
            (1i64 << (bits - 1)) - 1
        };
        Accept::Signed { min: -max - 1, max }
    };
    Some(match ty {
        "bool" => Accept::Bool,
        "u8" => unsigned(8),
        "u16" => unsigned(16),
        "u32" => unsigned(32),
        "u64" | "uint64" => unsigned(64),
        "i8" => signed(8),
        "i16" => signed(16),
        "i32" => signed(32),
        "i64" | "int64" => signed(64),
        "f64" | "float64" => Accept::Float,
        "text" | "string" => Accept::Text,
        "bytes" => Accept::Bytes,
        "ip" => Accept::Ip { family: None },
        "ipv4" => Accept::Ip {
            family: Some(IpFamily::V4),
        },
        "ipv6" => Accept::Ip {
            family: Some(IpFamily::V6),
        },
        "mac" => Accept::Mac,
        "timestamp" => Accept::Timestamp(TimeUnit::Seconds),
        _ => return None,
    })
}
