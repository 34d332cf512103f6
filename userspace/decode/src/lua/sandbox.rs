//! A Lua state a script cannot escape from, cannot stall, and cannot grow without bound.
//!
//! - **Libraries**: `string` (its `unpack` Sluice's faster one, see `unpack`), `table`,
//!   `math`, `utf8`, `coroutine`, and of `os` only `time`, `date`, `clock`, `difftime`.
//!   No `io`, no `package` (so no `require`), no `debug`; `dofile`, `loadfile` and `string.dump` are removed; `load` takes text chunks
//!   only; `collectgarbage` keeps `collect`, `count`, `step` and `isrunning` (a script may
//!   not stop the collector or change its mode); `print` and `warn` write to the daemon's
//!   debug log. `require` is a function that fails with a message saying why.
//! - **CPU time**: each call has a budget of its thread's CPU time, enforced from outside
//!   by the `watchdog`; every coroutine body starts with its `watch()`, the budget's check
//!   on coroutine threads.
//! - **Instructions** (only with `max_instructions`): a count hook runs every
//!   [`BUDGET_CHECK_INTERVAL`] instructions, in every coroutine too (a hook set with
//!   `set_global_hook` is inherited by threads), and checks the CPU budget as well. Past
//!   the call's budget it raises an error, and from then on it fires at every instruction,
//!   so a script that catches the error with `pcall` meets it again at its next
//!   instruction: the call unwinds to Sluice. The budget is reset before each call.
//! - **Memory**: mlua's allocator refuses allocations past the state's limit (a Lua
//!   memory error, after Lua's own emergency collection).
//!
//! Not bounded: time spent inside one C library call (`string.find` with a pathological
//! pattern over a long payload, `string.rep` within the memory limit) runs no VM
//! instructions and cannot be interrupted.

use std::ptr::NonNull;
use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, VmState, ffi};

use super::{config::BUDGET_CHECK_INTERVAL, state::MainThread, watchdog::CallClock};

/// The instruction budget of the call running in a state, shared with its hook. Only
/// the worker that owns the state touches it (atomics because hook closures must be
/// `Send`; uncontended, once per 1000 instructions).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    exhausted: AtomicBool,
    /// The CPU budget, checked by the hook too (the hook replaces the watchdog's `watch`
    /// in coroutines).
    clock: Arc<CallClock>,
}

impl Budget {
    /// A budget of `limit` instructions per call.
    pub(crate) fn new(limit: u64, clock: Arc<CallClock>) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            exhausted: AtomicBool::new(false),
            clock,
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

    /// After a call: whether it ran out. The hook is back to its normal interval (also
    /// when `reinstall`: the watchdog's hook replaced it).
    pub(crate) fn finish(self: &Arc<Self>, lua: &Lua, reinstall: bool) -> mlua::Result<bool> {
        let exhausted = self.exhausted.swap(false, Ordering::Relaxed);
        if exhausted || reinstall {
            install_hook(lua, Arc::clone(self), BUDGET_CHECK_INTERVAL)?;
        }
        Ok(exhausted)
    }
}

/// Sets the budget hook on the running thread (the main thread outside calls) and as the
/// hook of threads created from now on, firing every `every` instructions.
fn install_hook(lua: &Lua, budget: Arc<Budget>, every: u32) -> mlua::Result<()> {
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(every),
        move |lua, _debug| {
            if budget.clock.stop_if_over_budget() {
                if every != 1 {
                    install_hook(lua, Arc::clone(&budget), 1)?;
                }
                return Err(mlua::Error::runtime(budget.clock.message().to_owned()));
            }
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

/// The collector's pause (`collectgarbage("incremental", pause)`): a cycle starts when the
/// heap has grown to this percentage of what the last one kept, against Lua's 200. A call
/// makes garbage only (the event, its tables, the payload's string), so each cycle marks
/// the same live state (the libraries, the script's tables) again; waiting for four times
/// that instead of twice halves the marking, and `decode_lua` runs 3–5% faster (400
/// against 200, 300, 600 and 1000, alternating: past it the larger heap costs more in
/// cache than is saved). The heap stays bounded by `max_memory_bytes`: an allocation
/// refused there runs a full collection first (Lua's emergency collection).
const GC_PAUSE: std::os::raw::c_int = 400;

/// What the prelude does to the globals (see the module's documentation).
const PRELUDE: &str = r#"
local log, watch = ...
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
if watch then
  local create, wrap, type = coroutine.create, coroutine.wrap, type
  local function watched(f)
    if type(f) ~= "function" then
      return f
    end
    return function(...)
      watch()
      return f(...)
    end
  end
  coroutine.create = function(f)
    return create(watched(f))
  end
  coroutine.wrap = function(f)
    return wrap(watched(f))
  end
end
"#;

/// The main thread of `lua` (the registry's entry for it).
pub(crate) fn main_thread(lua: &Lua) -> mlua::Result<MainThread> {
    let mut main = std::ptr::null_mut();
    // SAFETY: reads the registry's main thread entry, and leaves the stack as it was.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_MAINTHREAD);
            main = ffi::lua_tothread(state, -1);
            ffi::lua_settop(state, 0);
        })?;
    }
    NonNull::new(main)
        .map(MainThread)
        .ok_or_else(|| mlua::Error::runtime("the state has no main thread"))
}

/// A sandboxed Lua 5.4 state with the memory limit and the CPU budget's clock, and the
/// instruction budget's hook if there is one, for the stream named `stream` (in its log
/// lines).
pub(crate) fn new_state(
    stream: &str,
    max_memory_bytes: usize,
    clock: &Arc<CallClock>,
    budget: Option<&Arc<Budget>>,
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
    // SAFETY: a protected call on the new state, which only sets the collector's pause.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_gc(state, ffi::LUA_GCINC, GC_PAUSE, 0, 0);
        })
    }?;
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
    clock.set_main(main_thread(&lua)?.0.as_ptr());
    // With an instruction budget, its hook checks the CPU budget in coroutines too.
    let watch = match budget {
        // SAFETY: `watch_c` is a C function that raises no error.
        None => Some(unsafe { lua.create_c_function(super::watchdog::watch_c) }?),
        Some(_) => None,
    };
    lua.load(PRELUDE)
        .set_name("=sluice sandbox")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call::<()>((log, watch))?;
    // SAFETY: a protected call on the new state; `install` leaves the stack as found.
    unsafe { lua.exec_raw::<()>((), |state| super::unpack::install(state)) }?;
    if let Some(budget) = budget {
        install_hook(&lua, Arc::clone(budget), BUDGET_CHECK_INTERVAL)?;
    }
    Ok(lua)
}
