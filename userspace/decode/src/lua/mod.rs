//! The `lua` decoder (`lua = { ... }` in a `[[decoder]]`): a parser written for Vector's
//! `lua` transform (version 2) runs here unchanged, on every worker.
//!
//! Teams that parse device payloads in Vector with a Lua `process(event, emit)` hook
//! (`string.unpack` over `event.log.message`, fields set, `emit(event)`) keep their
//! script: Sluice gives it the same event Vector's `socket` source (mode `udp`) gives, in
//! Lua 5.4 as Vector embeds it, and turns each emitted event into one row of typed columns
//! declared in the config. Each worker has its own Lua state, loaded once; the script is
//! sandboxed, its calls have a CPU-time budget and its state a memory limit, and what
//! goes wrong is a counted decode error of its own kind — the worker keeps going.
//!
//! - [`config`]: the options ([`LuaConfig`]), checked naming the offending key.
//! - `sandbox`: the state's libraries, the instruction budget's hook and the memory limit.
//! - `blockcache`: freed small blocks kept for the state's next objects of their size.
//! - `watchdog`: the CPU-time budget of a call, enforced from outside it.
//! - `state`: loading the script, the hooks, the call per payload and its outcome.
//! - `event`: the payload's event, built over the raw C API, and the call itself.
//! - `emit`, `convert`: `emit(event)`, from emitted fields to column values.
//! - `rawtable`: reading an emitted field where Lua keeps it, checked per state.
//! - `template`: each call's `log` made with its keys in place, checked per state.
//! - `unpack`: `string.unpack` in one pass, Lua's own for what it does not cover.
//! - `decoder`: a worker's decoder, and rebuilding a broken state.
//!
//! The reference, with what is supported and what is refused, is `docs/decoders.md`
//! ("The `lua` decoder").

pub mod config;

mod blockcache;
mod convert;
mod decoder;
mod emit;
mod event;
mod rawtable;
mod sandbox;
mod state;
mod template;
mod unpack;
mod watchdog;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use config::{ColumnConfig, HooksConfig, LuaConfig, Script, TimerConfig};
pub use decoder::LuaDecoder;
pub use emit::{BAD_FIELD, MISSING_FIELD, TOO_MANY_ROWS};

use crate::{ConfigFieldError, Decoder, DecoderFactory, RecordSchema};
use state::{LuaState, Program};

/// The script raised an error (or called `emit` with something that is not a log event).
pub const LUA_ERROR: &str = "lua_error";
/// A call ran past its CPU-time budget (`max_call_cpu_ms`) or its instruction budget
/// (`max_instructions`).
pub const LUA_BUDGET: &str = "lua_budget";
/// The state ran out of memory (`max_memory_bytes`).
pub const LUA_MEMORY: &str = "lua_memory";

/// Every error kind of this decoder (the `kind` label's bounded set).
pub const ERROR_KINDS: [&str; 6] = [
    LUA_ERROR,
    LUA_BUDGET,
    LUA_MEMORY,
    BAD_FIELD,
    MISSING_FIELD,
    TOO_MANY_ROWS,
];

/// Builds `lua` decoders, one Lua state per worker, from one checked script.
#[derive(Debug)]
pub struct LuaFactory {
    program: Arc<Program>,
    schema: Arc<RecordSchema>,
}

impl LuaFactory {
    /// Checks `config` and loads `script` once (see [`LuaConfig::script`]), running its
    /// top level and its `init` hook, so that every mistake is refused here, naming the
    /// key (`file` with Lua's message and line, `hooks.process`, `columns[2].type`, ...).
    /// `name` is the stream's name, for log lines.
    pub fn new(name: &str, config: &LuaConfig, script: Script) -> Result<Self, ConfigFieldError> {
        let options = config.check()?;
        let columns: Arc<[config::ColumnPlan]> = options.columns.clone().into();
        let schema = RecordSchema {
            decoder: "lua".into(),
            columns: columns.iter().map(|c| c.column.clone()).collect(),
        };
        let program = Program {
            stream: name.to_owned(),
            script,
            options,
            columns,
        };
        LuaState::new(&program).map_err(|e| ConfigFieldError::new(e.key, e.message))?;
        Ok(Self {
            program: Arc::new(program),
            schema: Arc::new(schema),
        })
    }

    /// A decoder with its concrete type (benchmarks and tools; the daemon uses
    /// [`DecoderFactory::build`]).
    pub fn decoder(&self) -> LuaDecoder {
        LuaDecoder::new(Arc::clone(&self.program), Arc::clone(&self.schema))
    }
}

impl DecoderFactory for LuaFactory {
    fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    fn build(&self) -> Box<dyn Decoder> {
        Box::new(self.decoder())
    }

    fn error_kinds(&self) -> &'static [crate::DecodeErrorKind] {
        &ERROR_KINDS
    }
}
