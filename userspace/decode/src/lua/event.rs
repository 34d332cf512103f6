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

/// Upvalues of the call's closure ([`push_call`]): the script's `process`, `emit`, `log`'s
/// metatable, the last sender's address as a Lua string, then the strings of [`KEYS`].
const UP_PROCESS: c_int = 1;
const UP_EMIT: c_int = 2;
const UP_META: c_int = 3;
const UP_HOST: c_int = 4;
const UP_KEYS: c_int = 5;
/// Indexes into [`KEYS`].
const KEY_MESSAGE: usize = 0;
const KEY_HOST: usize = 1;
const KEY_PORT: usize = 2;
const KEY_SOURCE_TYPE: usize = 3;
const KEY_LOG: usize = 4;
const VALUE_SOCKET: usize = 5;
/// The strings the event is made with: `log`'s own fields' keys, `log`, `"socket"`.
pub(crate) const KEYS: [&str; 6] = ["message", "host", "port", "source_type", "log", "socket"];

/// Fields of `log` besides the columns (`message`, `host`, `port`, `source_type`): the
/// first of [`KEYS`].
pub(crate) const BASE_KEYS: usize = 4;
const BASE_FIELDS: c_int = BASE_KEYS as c_int;
/// Columns `log` is sized for, at most (a table with more grows as the script sets them).
const SIZED_COLUMNS: usize = 64;

/// Hash slots for a `log` with `columns` declared columns.
pub(crate) fn log_size(columns: usize) -> c_int {
    BASE_FIELDS + c_int::try_from(columns.min(SIZED_COLUMNS)).unwrap_or(0)
}

/// Pushes the closure that makes a payload's event and calls `process` ([`call_c`]), from
/// `process` and `emit`, the two values on top of the stack (popped). Everything a call
/// needs is its upvalue: read without a table lookup (the registry's or a key table's).
///
/// # Safety
/// The two values on top are `process` and `emit`; in a protected call (it allocates);
/// `emitted` outlives the state.
pub(crate) unsafe fn push_call(state: *mut ffi::lua_State, emitted: *mut Emitted) {
    unsafe {
        push_log_meta(state, emitted);
        ffi::lua_pushlstring(state, c"".as_ptr(), 0);
        for key in KEYS {
            ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
        }
        ffi::lua_pushcclosure(state, call_c, UP_KEYS - 1 + KEYS.len() as c_int);
    }
}

/// One payload's call: what [`call_c`] reads.
pub(crate) struct CallArgs<'a> {
    pub emitted: *mut Emitted,
    pub payload: &'a [u8],
    /// The sender's address as text when it is not the last one's.
    pub new_host: Option<&'a [u8]>,
    /// Set once `new_host` is the closure's (a memory error may come before).
    pub host_stored: std::cell::Cell<bool>,
    pub port: ffi::lua_Integer,
    pub received_at: ffi::lua_Integer,
    /// Hash slots `log` is made with ([`log_size`]).
    pub log_size: c_int,
    /// The state's `log` template, if it has one.
    pub template: Option<&'a LogTemplate>,
}

/// Builds the event for the [`CallArgs`] at index 1 (light userdata) and calls `process`.
///
/// # Safety
/// Called by Lua in a protected call as the closure [`push_call`] made, with a pointer to
/// live [`CallArgs`] whose `emitted` is not borrowed. Nothing owned is alive in this frame
/// when a Lua error leaves it.
unsafe extern "C-unwind" fn call_c(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let args = &*ffi::lua_touserdata(state, 1).cast::<CallArgs<'_>>();
        let up = |state, index: c_int| ffi::lua_pushvalue(state, ffi::lua_upvalueindex(index));
        let key = |state, key: usize| up(state, UP_KEYS + key as c_int);
        up(state, UP_PROCESS); // 2
        ffi::lua_createtable(state, 0, 1); // 3: event
        ffi::lua_createtable(state, 0, args.log_size); // 4: log
        if let Some(template) = args.template {
            template::fill(template, ffi::lua_topointer(state, 4));
        }
        key(state, KEY_MESSAGE);
        ffi::lua_pushlstring(state, args.payload.as_ptr().cast(), args.payload.len());
        ffi::lua_rawset(state, 4);
        key(state, KEY_HOST);
        match args.new_host {
            Some(text) => {
                ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
                ffi::lua_copy(state, -1, ffi::lua_upvalueindex(UP_HOST));
                args.host_stored.set(true);
            }
            None => up(state, UP_HOST),
        }
        ffi::lua_rawset(state, 4);
        key(state, KEY_PORT);
        ffi::lua_pushinteger(state, args.port);
        ffi::lua_rawset(state, 4);
        key(state, KEY_SOURCE_TYPE);
        key(state, VALUE_SOCKET);
        ffi::lua_rawset(state, 4);
        up(state, UP_META);
        ffi::lua_setmetatable(state, 4);
        (*args.emitted).current_log = ffi::lua_topointer(state, 4);
        (*args.emitted).received_at = args.received_at;
        key(state, KEY_LOG);
        ffi::lua_pushvalue(state, 4);
        ffi::lua_rawset(state, 3);
        ffi::lua_settop(state, 3);
        up(state, UP_EMIT); // 4
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
unsafe fn push_log_meta(state: *mut ffi::lua_State, emitted: *mut Emitted) {
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
