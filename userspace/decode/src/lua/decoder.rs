//! One worker's `lua` decoder: its own Lua state, the rows of each payload handed on only
//! when `process` ended well, and the state rebuilt when it is broken (out of memory even
//! after a full collection, or Sluice's own use of it failed) — at most once a second,
//! keeping the old state if the new one cannot be made.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    LUA_ERROR,
    state::{LuaState, ProcessError, Program},
};
use crate::{
    DecodeError, DecodeOutcome, Decoder, Detail, FieldName, PacketContext, RecordSchema, RowSink,
    Value, layout::recycle,
};

/// Least time between two rebuilds of a worker's state.
const REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// One worker's `lua` decoder (see the module's documentation).
pub struct LuaDecoder {
    program: Arc<Program>,
    schema: Arc<RecordSchema>,
    state: Option<LuaState>,
    /// Why there is no state, when there is none.
    unavailable: String,
    last_rebuild: Option<Instant>,
    /// The row handed to the sink; empty between payloads, keeping its capacity.
    row: Vec<Value<'static>>,
}

impl LuaDecoder {
    pub(crate) fn new(program: Arc<Program>, schema: Arc<RecordSchema>) -> Self {
        let mut decoder = Self {
            program,
            schema,
            state: None,
            unavailable: String::new(),
            last_rebuild: None,
            row: Vec::new(),
        };
        decoder.rebuild("start");
        decoder
    }

    /// How many columns this worker's `emit` reads in place (see `rawtable`).
    #[cfg(test)]
    pub(crate) fn columns_read_in_place(&mut self) -> usize {
        self.state
            .as_mut()
            .map_or(0, |s| s.emitted().columns_read_in_place())
    }

    /// Whether this worker's calls make `log` from the state's template (see `template`).
    #[cfg(test)]
    pub(crate) fn has_log_template(&self) -> bool {
        self.state.as_ref().is_some_and(LuaState::has_log_template)
    }

    /// Bytes this worker's Lua state holds (0 without a state).
    pub fn used_memory(&self) -> usize {
        self.state.as_ref().map_or(0, LuaState::used_memory)
    }

    /// A new state for this worker, replacing the old one if it could be made.
    fn rebuild(&mut self, why: &str) {
        let now = Instant::now();
        if self
            .last_rebuild
            .is_some_and(|t| now.duration_since(t) < REBUILD_INTERVAL)
        {
            return;
        }
        self.last_rebuild = Some(now);
        match LuaState::new(&self.program) {
            Ok(state) => {
                if self.state.replace(state).is_some() {
                    tracing::warn!(
                        stream = %self.program.stream,
                        reason = %why,
                        "lua: this worker's Lua state was rebuilt (script loaded and init run again)"
                    );
                }
            }
            Err(e) => {
                self.unavailable = format!("{}: {}", e.key, e.message);
                tracing::warn!(
                    stream = %self.program.stream,
                    reason = %why,
                    error = %self.unavailable,
                    "lua: this worker's Lua state could not be made; retrying in a second"
                );
            }
        }
    }
}

impl Decoder for LuaDecoder {
    fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    fn decode(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        sink: &mut dyn RowSink,
    ) -> Result<DecodeOutcome, DecodeError> {
        if self.state.is_none() {
            self.rebuild("no state");
        }
        let Some(state) = self.state.as_mut() else {
            return Err(DecodeError::new(
                LUA_ERROR,
                FieldName::None,
                0,
                Detail::message(format!("no Lua state: {}", self.unavailable)),
            ));
        };
        match state.process(ctx, payload) {
            Ok(()) => {
                let emitted = state.emitted();
                let rows = emitted.rows();
                let mut row = recycle(std::mem::take(&mut self.row));
                emitted.for_each_row(&mut row, |values| sink.row(ctx, values));
                self.row = recycle(row);
                Ok(DecodeOutcome {
                    rows: u64::from(rows),
                    held: false,
                })
            }
            Err(ProcessError::Decode(e)) => Err(e),
            Err(ProcessError::Memory(e)) => {
                if !state.recover_memory(self.program.options.max_memory_bytes) {
                    self.rebuild("out of memory after a full collection");
                }
                Err(e)
            }
            Err(ProcessError::Broken(message)) => {
                self.rebuild(&message);
                Err(DecodeError::new(
                    LUA_ERROR,
                    FieldName::None,
                    0,
                    Detail::message(message),
                ))
            }
        }
    }
}

impl Drop for LuaDecoder {
    /// The worker stops: the script's `shutdown` hook runs.
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.shutdown(&self.program.stream);
        }
    }
}
