//! The event a payload's `process` call gets, built over the raw Lua C API, and the call.
//!
//! `{ log = { message = <payload>, host = <sender IP>, port = <sender port>, source_type =
//! "socket" } }`, what Vector's `socket` source (mode `udp`) gives its `lua` transform. The
//! `log` table is made with room for the declared columns, so the script's field
//! assignments do not grow it step by step; its metatable's `__index` makes `timestamp`
//! (a Vector timestamp table) when the script first reads it, so that scripts that never
//! look at it do not pay for it. Building this in C rather than in a Lua wrapper saves the
//! wrapper's call and `setmetatable`, and the nil-valued fields a table constructor needs
//! to be sized.

use std::os::raw::c_int;

use mlua::ffi;

use super::{
    convert::CivilTime,
    emit::Emitted,
    template::{self, LogTemplate},
};

/// Slots of the key table (`KEYS`, 1-based as Lua indexes it).
const KEY_MESSAGE: ffi::lua_Integer = 1;
const KEY_HOST: ffi::lua_Integer = 2;
const KEY_PORT: ffi::lua_Integer = 3;
const KEY_SOURCE_TYPE: ffi::lua_Integer = 4;
const KEY_LOG: ffi::lua_Integer = 5;
const VALUE_SOCKET: ffi::lua_Integer = 6;
/// The strings of the key table, in slot order.
pub(crate) const KEYS: [&str; 6] = ["message", "host", "port", "source_type", "log", "socket"];

/// Fields of `log` besides the columns (`message`, `host`, `port`, `source_type`): the
/// first of [`KEYS`].
pub(crate) const BASE_KEYS: usize = 4;
const BASE_FIELDS: c_int = BASE_KEYS as c_int;
/// Columns `log` is sized for, at most (a table with more grows as the script sets them).
const SIZED_COLUMNS: usize = 64;

/// Registry references of what a call needs, made once per state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventRefs {
    /// The script's `process` function.
    pub process: c_int,
    /// `emit`.
    pub emit: c_int,
    /// `log`'s metatable.
    pub meta: c_int,
    /// The key table ([`KEYS`]).
    pub keys: c_int,
    /// The last sender's address as a Lua string.
    pub host: c_int,
    /// Hash slots `log` is made with.
    pub log_size: c_int,
}

impl EventRefs {
    /// Hash slots for a `log` with `columns` declared columns.
    pub(crate) fn log_size(columns: usize) -> c_int {
        BASE_FIELDS + c_int::try_from(columns.min(SIZED_COLUMNS)).unwrap_or(0)
    }
}

/// One payload's call: what [`call_c`] reads.
pub(crate) struct CallArgs<'a> {
    pub refs: EventRefs,
    pub emitted: *mut Emitted,
    pub payload: &'a [u8],
    /// The sender's address as text when it is not the last one's.
    pub new_host: Option<&'a [u8]>,
    pub port: ffi::lua_Integer,
    pub received_at: ffi::lua_Integer,
    /// The state's `log` template, if it has one.
    pub template: Option<&'a LogTemplate>,
}

/// Builds the event for the [`CallArgs`] at index 1 (light userdata) and calls `process`.
///
/// # Safety
/// Called by Lua in a protected call, with a pointer to live [`CallArgs`] whose references
/// are this state's and whose `emitted` is not borrowed. Nothing owned is alive in this
/// frame when a Lua error leaves it.
pub(crate) unsafe extern "C-unwind" fn call_c(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let args = &*ffi::lua_touserdata(state, 1).cast::<CallArgs<'_>>();
        let refs = args.refs;
        let registry = |state, reference: c_int| {
            ffi::lua_rawgeti(
                state,
                ffi::LUA_REGISTRYINDEX,
                ffi::lua_Integer::from(reference),
            )
        };
        registry(state, refs.process); // 2
        ffi::lua_createtable(state, 0, 1); // 3: event
        registry(state, refs.keys); // 4
        ffi::lua_createtable(state, 0, refs.log_size); // 5: log
        if let Some(template) = args.template {
            template::fill(template, ffi::lua_topointer(state, 5));
        }
        ffi::lua_rawgeti(state, 4, KEY_MESSAGE);
        ffi::lua_pushlstring(state, args.payload.as_ptr().cast(), args.payload.len());
        ffi::lua_rawset(state, 5);
        ffi::lua_rawgeti(state, 4, KEY_HOST);
        match args.new_host {
            Some(text) => {
                ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
                ffi::lua_pushvalue(state, -1);
                ffi::lua_rawseti(
                    state,
                    ffi::LUA_REGISTRYINDEX,
                    ffi::lua_Integer::from(refs.host),
                );
            }
            None => {
                registry(state, refs.host);
            }
        }
        ffi::lua_rawset(state, 5);
        ffi::lua_rawgeti(state, 4, KEY_PORT);
        ffi::lua_pushinteger(state, args.port);
        ffi::lua_rawset(state, 5);
        ffi::lua_rawgeti(state, 4, KEY_SOURCE_TYPE);
        ffi::lua_rawgeti(state, 4, VALUE_SOCKET);
        ffi::lua_rawset(state, 5);
        registry(state, refs.meta);
        ffi::lua_setmetatable(state, 5);
        (*args.emitted).current_log = ffi::lua_topointer(state, 5);
        (*args.emitted).received_at = args.received_at;
        ffi::lua_rawgeti(state, 4, KEY_LOG);
        ffi::lua_pushvalue(state, 5);
        ffi::lua_rawset(state, 3);
        ffi::lua_settop(state, 3);
        registry(state, refs.emit); // 4
        ffi::lua_call(state, 2, 0);
    }
    0
}

/// `log`'s `__index(log, key)`: the packet's `timestamp`, made and stored in `log` when
/// first read, for the `log` of the call in progress; `nil` for anything else. Upvalues:
/// the state's [`Emitted`] (light userdata) and the string `"timestamp"`.
///
/// # Safety
/// Called by Lua as a C closure with those upvalues. Nothing owned is alive in this frame
/// when a Lua error (out of memory) leaves it.
pub(crate) unsafe extern "C-unwind" fn index_c(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let emitted = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)).cast::<Emitted>();
        if emitted.is_null()
            || ffi::lua_rawequal(state, 2, ffi::lua_upvalueindex(2)) == 0
            || ffi::lua_topointer(state, 1) != (*emitted).current_log
        {
            return 0;
        }
        push_timestamp(state, (*emitted).received_at);
        ffi::lua_pushvalue(state, 2);
        ffi::lua_pushvalue(state, -2);
        ffi::lua_rawset(state, 1);
    }
    1
}

/// Pushes `log`'s metatable for `emitted`.
///
/// # Safety
/// `emitted` outlives the state.
pub(crate) unsafe fn push_log_meta(state: *mut ffi::lua_State, emitted: *mut Emitted) {
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_pushlightuserdata(state, emitted.cast());
        ffi::lua_pushlstring(state, c"timestamp".as_ptr(), "timestamp".len());
        ffi::lua_pushcclosure(state, index_c, 2);
        ffi::lua_setfield(state, -2, c"__index".as_ptr());
    }
}

/// Pushes a Vector timestamp table for `micros` since the Unix epoch (UTC): `year`,
/// `month`, `day`, `hour`, `min`, `sec`, `nanosec`, `yday`, `wday` (1 = Sunday), `isdst`.
///
/// # Safety
/// `state` has room for two more values; may raise a memory error.
unsafe fn push_timestamp(state: *mut ffi::lua_State, micros: i64) {
    let (t, yday, wday) = CivilTime::from_micros(micros);
    unsafe {
        ffi::lua_createtable(state, 0, 10);
        for &(key, value) in &[
            (c"year", t.year),
            (c"month", t.month),
            (c"day", t.day),
            (c"hour", t.hour),
            (c"min", t.min),
            (c"sec", t.sec),
            (c"nanosec", t.nanosec),
            (c"yday", yday),
            (c"wday", wday),
        ] {
            ffi::lua_pushinteger(state, value);
            ffi::lua_setfield(state, -2, key.as_ptr());
        }
        ffi::lua_pushboolean(state, 0);
        ffi::lua_setfield(state, -2, c"isdst".as_ptr());
    }
}
