//! A Lua state a script cannot escape from, cannot stall, and cannot grow without bound.
//!
//! - **Libraries**: `string`, `table`, `math`, `utf8`, `coroutine`, and of `os` only
//!   `time`, `date`, `clock`, `difftime`. No `io`, no `package` (so no `require`), no
//!   `debug`; `dofile`, `loadfile` and `string.dump` are removed; `load` takes text chunks
//!   only; `collectgarbage` keeps `collect`, `count`, `step` and `isrunning` (a script may
//!   not stop the collector or change its mode); `print` and `warn` write to the daemon's
//!   debug log. `require` is a function that fails with a message saying why.
//! - **Instructions**: a count hook runs every [`BUDGET_CHECK_INTERVAL`] instructions, in
//!   every coroutine too (a hook set with `set_global_hook` is inherited by threads). Past
//!   the call's budget it raises an error, and from then on it fires at every instruction,
//!   so a script that catches the error with `pcall` meets it again at its next
//!   instruction: the call unwinds to Sluice. The budget is reset before each call.
//! - **Memory**: mlua's allocator refuses allocations past the state's limit (a Lua
//!   memory error, after Lua's own emergency collection).
//!
//! Not bounded: time spent inside one C library call (`string.find` with a pathological
//! pattern over a long payload, `string.rep` within the memory limit) runs no VM
//! instructions and cannot be interrupted.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, VmState};

use super::config::BUDGET_CHECK_INTERVAL;

/// The instruction budget of the call running in a state, shared with its hook. Only
/// the worker that owns the state touches it (atomics because hook closures must be
/// `Send`; uncontended, once per 1000 instructions).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    exhausted: AtomicBool,
}

impl Budget {
    /// A budget of `limit` instructions per call.
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            exhausted: AtomicBool::new(false),
        })
    }

    /// Instructions per call.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Before a call: nothing used.
    pub(crate) fn start(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    /// After a call: whether it ran out. The hook is back to its normal interval.
    pub(crate) fn finish(self: &Arc<Self>, lua: &Lua) -> mlua::Result<bool> {
        if !self.exhausted.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        install_hook(lua, Arc::clone(self), BUDGET_CHECK_INTERVAL)?;
        Ok(true)
    }
}

/// Sets the budget hook on the running thread (the main thread outside calls) and as the
/// hook of threads created from now on, firing every `every` instructions.
fn install_hook(lua: &Lua, budget: Arc<Budget>, every: u32) -> mlua::Result<()> {
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(every),
        move |lua, _debug| {
            let used = budget
                .used
                .fetch_add(u64::from(every), Ordering::Relaxed)
                .saturating_add(u64::from(every));
            if used <= budget.limit {
                return Ok(VmState::Continue);
            }
            budget.exhausted.store(true, Ordering::Relaxed);
            if every != 1 {
                // From now on every instruction of this thread fails, so no `pcall` can
                // keep the call going.
                install_hook(lua, Arc::clone(&budget), 1)?;
            }
            Err(mlua::Error::runtime(format!(
                "instruction budget exhausted (max_instructions = {})",
                budget.limit
            )))
        },
    )
}

/// What the prelude does to the globals (see the module's documentation).
const PRELUDE: &str = r#"
local log = ...
local rawload, rawcollect, error, tostring = load, collectgarbage, error, tostring
local os_time, os_date, os_clock, os_difftime = os.time, os.date, os.clock, os.difftime
load = function(chunk, name, mode, ...)
  return rawload(chunk, name, "t", ...)
end
local collect_options = { collect = true, count = true, step = true, isrunning = true }
collectgarbage = function(option, ...)
  option = option or "collect"
  if not collect_options[option] then
    error("collectgarbage(\"" .. tostring(option) .. "\") is not available in Sluice", 2)
  end
  return rawcollect(option, ...)
end
dofile, loadfile = nil, nil
string.dump = nil
os = { time = os_time, date = os_date, clock = os_clock, difftime = os_difftime }
require = function(name)
  error("require(\"" .. tostring(name) .. "\") is not available in Sluice: "
    .. "the whole parser must be in the script", 2)
end
print = log
warn = log
"#;

/// A sandboxed Lua 5.4 state with the memory limit and the budget hook, for the stream
/// named `stream` (in its log lines).
pub(crate) fn new_state(
    stream: &str,
    max_memory_bytes: usize,
    budget: &Arc<Budget>,
) -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::STRING
            | StdLib::TABLE
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS,
        LuaOptions::default(),
    )?;
    lua.set_memory_limit(max_memory_bytes)?;
    let stream = stream.to_owned();
    let log = lua.create_function(move |_, args: MultiValue| {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let text: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|e| e.to_string()))
                .collect();
            tracing::debug!(stream = %stream, "lua: {}", text.join("\t"));
        }
        Ok(())
    })?;
    lua.load(PRELUDE)
        .set_name("=sluice sandbox")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call::<()>(log)?;
    install_hook(&lua, Arc::clone(budget), BUDGET_CHECK_INTERVAL)?;
    Ok(lua)
}
