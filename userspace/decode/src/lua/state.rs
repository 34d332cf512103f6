//! One worker's Lua state: the script loaded once, its hooks resolved, the event built
//! and `process` called per payload, and the outcome sorted into a decode error kind.
//!
//! The event a script gets, and the call, are `event.rs`'s.

use std::{net::IpAddr, os::raw::c_int, ptr::NonNull, sync::Arc};

use mlua::{Function, Lua, Value as LuaValue, ffi};

use super::{
    LUA_BUDGET, LUA_ERROR, LUA_MEMORY,
    blockcache::Attached,
    config::{Checked, Script},
    emit::{self, Emitted},
    event::{self, CallArgs},
    rawtable,
    sandbox::{self, Budget},
    template::LogTemplate,
    watchdog::CallClock,
};
use crate::{DecodeError, Detail, FieldName, PacketContext};

/// What every worker's state is made from.
#[derive(Debug)]
pub(crate) struct Program {
    /// Stream name, for log lines.
    pub stream: String,
    /// The script.
    pub script: Script,
    /// The checked options.
    pub options: Checked,
    /// The columns, shared by every state's `emit`.
    pub columns: Arc<[super::config::ColumnPlan]>,
}

/// Where a state could not be made: the option to blame and the Lua message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoadError {
    /// `file`/`source` (the script), `hooks.<name>`, or empty (the sandbox itself).
    pub key: String,
    /// What Lua said.
    pub message: String,
}

/// A worker's state.
pub(crate) struct LuaState {
    /// Freed blocks for the state's next allocations; dropped first (fields drop in
    /// order), which gives the state its own allocator back before it is closed.
    blocks: Attached,
    lua: Lua,
    /// `lua`'s main thread, called over the raw API.
    main: MainThread,
    /// Registry reference of the closure that makes a payload's event and calls
    /// `process` (`event::push_call`; the last sender's address as a Lua string is its
    /// upvalue, the [`IpAddr`] in `host`).
    call: c_int,
    /// Hash slots each call's `log` is made with.
    log_size: c_int,
    host: Option<IpAddr>,
    /// The node array each call's `log` starts from, where this state's Lua allows it.
    template: Option<LogTemplate>,
    emit: Function,
    shutdown: Option<Function>,
    /// The CPU budget of each call, and the instruction budget if there is one.
    clock: Arc<CallClock>,
    budget: Option<Arc<Budget>>,
    /// The rows `emit` takes; dropped after `lua` (fields drop in order), whose
    /// finalizers may still call `emit`.
    emitted: EmittedBox,
}

impl LuaState {
    /// Loads `program` into a new state and runs its `init` hook.
    pub(crate) fn new(program: &Program) -> Result<Self, LoadError> {
        let options = &program.options;
        let sandbox_error = |e: mlua::Error| LoadError {
            key: String::new(),
            message: first_line(&e),
        };
        let clock = CallClock::new(options.max_call_cpu_ms);
        let budget = options
            .max_instructions
            .map(|limit| Budget::new(limit, Arc::clone(&clock)));
        let lua = sandbox::new_state(
            &program.stream,
            options.max_memory_bytes,
            &clock,
            budget.as_ref(),
        )
        .map_err(sandbox_error)?;
        let emitted = EmittedBox::new(Emitted::new(
            Arc::clone(&program.columns),
            options.max_rows,
            options.max_memory_bytes,
        ));
        let keys = lua
            .create_sequence_from(emit::key_names(&program.columns))
            .map_err(sandbox_error)?;
        let emitted_ptr = emitted.0.as_ptr();
        let mut in_place = false;
        // SAFETY: the key table is the only value on the stack (the probe leaves it so);
        // `emitted` outlives the state (see the field's documentation).
        let emit = unsafe {
            lua.exec_raw::<Function>(&keys, |state| {
                in_place = rawtable::probe(state);
                emit::push_emit(state, emitted_ptr, in_place);
            })
        }
        .map_err(sandbox_error)?;
        drop(keys);

        let script_key = if program.script.name == "source" {
            "source"
        } else {
            "file"
        };
        let main = sandbox::main_thread(&lua).map_err(sandbox_error)?;
        // SAFETY: the state's main thread, used by this thread only; `blocks` is dropped
        // before `lua` (field order).
        let blocks = unsafe { Attached::new(main.0, options.max_memory_bytes) };
        let mut state = Self {
            blocks,
            main,
            call: ffi::LUA_NOREF,
            log_size: event::log_size(program.columns.len()),
            host: None,
            template: None,
            emit,
            shutdown: None,
            clock,
            budget,
            lua,
            emitted,
        };
        let loaded = state
            .lua
            .load(program.script.text.as_str())
            .set_name(format!("={}", program.script.name))
            .set_mode(mlua::chunk::ChunkMode::Text);
        state
            .guarded(|| loaded.exec())
            .map_err(|message| LoadError {
                key: script_key.into(),
                message,
            })?;
        let process = state.hook("process", &options.process)?;
        let init = options
            .init
            .as_ref()
            .map(|code| state.hook("init", code))
            .transpose()?;
        state.shutdown = options
            .shutdown
            .as_ref()
            .map(|code| state.hook("shutdown", code))
            .transpose()?;
        let mut call = ffi::LUA_NOREF;
        // SAFETY: the arguments are the only values on the stack, made into the closure
        // and popped; `luaL_ref` pops it into the registry. `emitted` outlives the state.
        unsafe {
            state.lua.exec_raw::<()>((process, &state.emit), |lua| {
                event::push_call(lua, emitted_ptr);
                call = ffi::luaL_ref(lua, ffi::LUA_REGISTRYINDEX);
            })
        }
        .map_err(sandbox_error)?;
        state.call = call;
        if in_place {
            let mut keys: Vec<&str> = event::KEYS[..event::BASE_KEYS].to_vec();
            for column in program.columns.iter() {
                if !keys.contains(&column.field.as_str()) {
                    keys.push(&column.field);
                }
            }
            let (mut template, log_size) = (None, state.log_size);
            // SAFETY: nothing is on the stack; the probe of this state passed.
            unsafe {
                state.lua.exec_raw::<()>((), |lua| {
                    template = LogTemplate::new(lua, log_size, &keys);
                })
            }
            .map_err(sandbox_error)?;
            state.template = template;
        }
        if let Some(init) = init {
            state
                .guarded(|| init.call::<()>(&state.emit))
                .map_err(|message| LoadError {
                    key: "hooks.init".into(),
                    message,
                })?;
            state.log_discarded(&program.stream, "init");
        }
        Ok(state)
    }

    /// The rows buffer, between calls into Lua.
    fn emitted_mut(&mut self) -> &mut Emitted {
        // SAFETY: Lua is not running (it reaches the buffer only inside a call), and
        // `&mut self` keeps any other borrow of it out.
        unsafe { &mut *self.emitted.0.as_ptr() }
    }

    /// The function a hook names (`process`) or defines (`function (event, emit) ...
    /// end`), as Vector evaluates it: `return <hook>`.
    fn hook(&self, key: &str, code: &str) -> Result<Function, LoadError> {
        let error = |message: String| LoadError {
            key: format!("hooks.{key}"),
            message,
        };
        let chunk = self
            .lua
            .load(format!("return {code}"))
            .set_name(format!("=hooks.{key}"))
            .set_mode(mlua::chunk::ChunkMode::Text);
        let value = self.guarded(|| chunk.eval::<LuaValue>()).map_err(error)?;
        match value {
            LuaValue::Function(f) => Ok(f),
            LuaValue::Nil => Err(error(format!(
                "{code:?} is not defined by the script (nil): define the function, or write \
                 it inline (\"function (...) ... end\")"
            ))),
            other => Err(error(format!(
                "{code:?} is {}, not a function",
                super::convert::a(other.type_name())
            ))),
        }
    }

    /// Runs `f` with a fresh instruction budget and rows discarded; the Lua message on error.
    fn guarded<T>(&self, f: impl FnOnce() -> mlua::Result<T>) -> Result<T, String> {
        {
            // SAFETY: Lua is not running; the reference ends before `f` runs.
            let emitted = unsafe { &mut *self.emitted.0.as_ptr() };
            emitted.clear();
            emitted.accepting = false;
        }
        self.start_call();
        let result = f();
        match (self.finish_call(), result) {
            (Ok(Some(budget)), _) => Err(budget),
            (Err(e), _) | (Ok(None), Err(e)) => Err(first_line(&e)),
            (Ok(None), Ok(value)) => Ok(value),
        }
    }

    /// Before a call into Lua: its budgets start.
    fn start_call(&self) {
        if let Some(budget) = &self.budget {
            budget.start();
        }
        self.clock.start();
    }

    /// After a call into Lua: the budget error's message if one stopped it. An error is
    /// Sluice's own (the instruction hook could not be set again).
    fn finish_call(&self) -> mlua::Result<Option<String>> {
        let finished = self.clock.finish();
        let counted = match &self.budget {
            Some(budget) => budget.finish(&self.lua, finished.unhooked)?,
            None => false,
        };
        Ok(match &self.budget {
            Some(budget) if counted => Some(budget_text(budget.limit())),
            _ if finished.stopped => Some(self.clock.message().to_owned()),
            _ => None,
        })
    }

    /// Logs (once per hook run) the events `init`/`shutdown` emitted, which have no packet.
    fn log_discarded(&mut self, stream: &str, hook: &str) {
        let n = std::mem::take(&mut self.emitted_mut().discarded);
        if n > 0 {
            tracing::warn!(
                stream = %stream,
                discarded = n,
                "lua: events emitted by hooks.{hook} are not recorded (they belong to no packet)"
            );
        }
    }

    /// Runs the `shutdown` hook, if any; its errors are logged.
    pub(crate) fn shutdown(&mut self, stream: &str) {
        let Some(shutdown) = self.shutdown.take() else {
            return;
        };
        if let Err(message) = self.guarded(|| shutdown.call::<()>(&self.emit)) {
            tracing::warn!(stream = %stream, error = %message, "lua: hooks.shutdown failed");
        }
        self.log_discarded(stream, "shutdown");
    }

    /// Calls `process` for one payload. On success the rows are in [`Self::emitted`].
    pub(crate) fn process(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
    ) -> Result<(), ProcessError> {
        {
            let emitted = self.emitted_mut();
            emitted.clear();
            emitted.accepting = true;
        }
        self.start_call();
        let result = self.call_process(ctx, payload);
        let exhausted = self.finish_call();
        let failure = self.emitted_mut().failure.take();
        match (exhausted, result, failure) {
            (Ok(Some(budget)), _, _) => Err(ProcessError::Decode(DecodeError::new(
                LUA_BUDGET,
                FieldName::None,
                0,
                Detail::message(budget),
            ))),
            (Err(e), _, _) => Err(ProcessError::Broken(first_line(&e))),
            (Ok(None), _, Some(failure)) => Err(if failure.kind == LUA_MEMORY {
                ProcessError::Memory(failure)
            } else {
                ProcessError::Decode(failure)
            }),
            (Ok(None), Ok(None), None) => Ok(()),
            (Ok(None), Ok(Some(raised)), None) => Err(if raised.memory {
                ProcessError::Memory(DecodeError::new(
                    LUA_MEMORY,
                    FieldName::None,
                    0,
                    Detail::message(raised.message),
                ))
            } else {
                ProcessError::Decode(DecodeError::new(
                    LUA_ERROR,
                    FieldName::None,
                    0,
                    Detail::message(raised.message),
                ))
            }),
            (Ok(None), Err(message), None) => Err(ProcessError::Broken(message)),
        }
    }

    /// Calls `process` through the call's closure: `None` when it returned, the error it
    /// raised otherwise.
    fn call_process(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
    ) -> Result<Option<Raised>, String> {
        let new_host = (self.host != Some(ctx.src_ip)).then(|| ip_text(ctx.src_ip));
        let args = CallArgs {
            emitted: self.emitted.0.as_ptr(),
            payload,
            new_host: new_host.as_ref().map(IpText::as_bytes),
            host_stored: std::cell::Cell::new(false),
            port: ffi::lua_Integer::from(ctx.src_port),
            received_at: ctx.received_at,
            log_size: self.log_size,
            template: self.template.as_ref(),
        };
        let state = self.main.0.as_ptr();
        // SAFETY: `state` is this state's main thread, used by this thread only (`&mut
        // self`), and left with the stack it had. Pushing the call's closure (a value the
        // registry holds) and a light userdata allocates nothing; everything that may
        // raise runs in the closure, inside the protected call, and `args` outlives it.
        let raised = unsafe {
            let top = ffi::lua_gettop(state);
            if ffi::lua_checkstack(state, 8) == 0 {
                return Err("the Lua stack cannot grow".into());
            }
            ffi::lua_rawgeti(
                state,
                ffi::LUA_REGISTRYINDEX,
                ffi::lua_Integer::from(self.call),
            );
            ffi::lua_pushlightuserdata(state, std::ptr::from_ref(&args).cast_mut().cast());
            let status = ffi::lua_pcall(state, 1, 0, 0);
            let raised = (status != ffi::LUA_OK).then(|| Raised::from_stack(state, status));
            ffi::lua_settop(state, top);
            raised
        };
        if args.host_stored.get() {
            self.host = Some(ctx.src_ip);
        }
        Ok(raised)
    }

    /// The rows of the last successful [`Self::process`].
    pub(crate) fn emitted(&mut self) -> &Emitted {
        self.emitted_mut()
    }

    /// After a memory error: a full collection; `false` when the state is still nearly
    /// full (its globals hold the memory) or the collection failed, and should be rebuilt.
    pub(crate) fn recover_memory(&mut self, max_memory_bytes: usize) -> bool {
        let collected = self.lua.gc_collect().is_ok();
        self.blocks.flush();
        collected && self.lua.used_memory() <= max_memory_bytes / 4 * 3
    }

    /// Whether calls make `log` from the template.
    #[cfg(test)]
    pub(crate) fn has_log_template(&self) -> bool {
        self.template.is_some()
    }

    /// Bytes the state holds.
    pub(crate) fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }
}

/// An error `process` raised, as Lua's `pcall` returned it.
#[derive(Debug)]
pub(crate) struct Raised {
    /// The first line of its message.
    message: String,
    /// The state ran out of memory (Lua's own message for that: mlua's allocator refused).
    memory: bool,
}

impl Raised {
    /// The error a protected call ended with (`status`), its value on top of the stack: a
    /// string (the script's `error`, Lua's own errors, `emit`'s), or any other value a
    /// script may pass to `error`.
    ///
    /// # Safety
    /// `state` is the state the call failed in, with its error value on top.
    unsafe fn from_stack(state: *mut ffi::lua_State, status: c_int) -> Self {
        // SAFETY: a type query, and the bytes of a string (no conversion).
        unsafe {
            let kind = ffi::lua_type(state, -1);
            if kind != ffi::LUA_TSTRING {
                return Self {
                    message: format!(
                        "(error object is {})",
                        super::convert::a(emit::type_name(state, -1, kind))
                    ),
                    memory: status == ffi::LUA_ERRMEM,
                };
            }
            let mut len = 0usize;
            let ptr = ffi::lua_tolstring(state, -1, &mut len);
            let bytes = if ptr.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(ptr.cast::<u8>(), len)
            };
            let text = String::from_utf8_lossy(bytes);
            let memory = status == ffi::LUA_ERRMEM || text == "not enough memory";
            Self {
                // As an mlua memory error reads (`first_line`).
                message: if memory {
                    format!("out of memory: {text}")
                } else {
                    first_line_of(&text)
                },
                memory,
            }
        }
    }
}

/// Why one payload's `process` failed.
#[derive(Debug)]
pub(crate) enum ProcessError {
    /// A decode error of the script's (budget, error, bad field, ...).
    Decode(DecodeError),
    /// The state ran out of memory.
    Memory(DecodeError),
    /// Sluice's own use of the state failed: it should be rebuilt.
    Broken(String),
}

fn budget_text(limit: u64) -> String {
    format!("instruction budget exhausted (max_instructions = {limit})")
}

/// The first line of a Lua error (its message without the traceback), at most 512 bytes.
pub(crate) fn first_line(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return first_line(cause),
        mlua::Error::RuntimeError(message) | mlua::Error::SyntaxError { message, .. } => {
            message.clone()
        }
        mlua::Error::MemoryError(message) => format!("out of memory: {message}"),
        other => other.to_string(),
    };
    first_line_of(&text)
}

/// The first line of `text`, at most 512 bytes.
fn first_line_of(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut end = line.len().min(512);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.get(..end).unwrap_or_default().to_owned()
}

/// An address as Vector's `host` field has it (`192.0.2.1`, `2001:db8::1`), on the stack.
/// Out of line: made only when the sender changes, it stays out of the call's own code.
#[inline(never)]
fn ip_text(ip: IpAddr) -> IpText {
    use std::io::Write as _;
    let mut text = IpText {
        buf: [0; 46],
        len: 0,
    };
    if let (IpAddr::V4(v4), Some(head)) = (ip, text.buf.first_chunk_mut::<15>()) {
        text.len = crate::iptext::ipv4_text(head, v4.octets());
        return text;
    }
    let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
    // 45 bytes is the longest IPv6 text (with an IPv4 tail): it always fits.
    if write!(cursor, "{ip}").is_ok() {
        text.len = usize::try_from(cursor.position()).unwrap_or(0);
    }
    text
}

struct IpText {
    buf: [u8; 46],
    len: usize,
}

impl IpText {
    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The [`Emitted`] buffer a state's `emit` writes to through a raw pointer (a `Box` would
/// claim unique access while Lua holds the pointer).
struct EmittedBox(NonNull<Emitted>);

impl EmittedBox {
    fn new(emitted: Emitted) -> Self {
        Self(NonNull::from(Box::leak(Box::new(emitted))))
    }
}

impl Drop for EmittedBox {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`; the state, the only other user, is gone.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

// SAFETY: the buffer is reached only from the thread that owns the state (which is `Send`
// as a whole and never shared).
unsafe impl Send for EmittedBox {}

/// A state's main thread.
pub(crate) struct MainThread(pub(crate) NonNull<ffi::lua_State>);

// SAFETY: the thread belongs to a `Lua` that moves with it, and is used only by the thread
// that owns that `Lua` (as mlua's `send` feature allows for the `Lua` itself).
unsafe impl Send for MainThread {}
