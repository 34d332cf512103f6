//! Reading an emitted table's fields where Lua 5.4 keeps them, for `emit`: the column
//! reads without the C API's per-call work.
//!
//! Every row reads each column's field from the `log` table. Over the C API a field costs
//! a push of its key, a `lua_rawget` (a stack slot, an index check, the generic lookup's
//! type switch), a type query, a read through the stack and, per row, a pop: about 20 ns,
//! most of `emit`'s time. [`get`] does the lookup `lua_rawget` ends in for a short-string
//! key (`luaH_getshortstr`: the key's main position in the node array by its hash, then
//! the collision chain, interned keys compared by address) and reads the value in place:
//! nil, a boolean, a number or a string. Anything else (a table under a timestamp column,
//! a function) is left to the API, as are keys longer than Lua's short strings.
//!
//! It mirrors three structures private to Lua 5.4 (`Table`, `Node`, `TString` of
//! lobject.h, the same from 5.4.0 to 5.4.9). So that a different Lua build can never be
//! read with the wrong layout, [`probe`] checks each new state: it must report version
//! 5.4, and a table holding every kind of value must read the same both ways, or the
//! state's `emit` uses the API alone.

use std::os::raw::{c_int, c_void};

use mlua::ffi;

use super::convert::Scalar;

/// `TString` (lobject.h): only the fields read here, at their offsets.
#[repr(C)]
pub(crate) struct TString {
    next: *const c_void,
    tt: u8,
    marked: u8,
    extra: u8,
    /// Length of a short string.
    shrlen: u8,
    hash: u32,
    /// Length of a long string.
    lnglen: usize,
    contents: [u8; 0],
}

/// `Node` (lobject.h): the value's fields, the key's type, the chain link, the key.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Node {
    value: u64,
    tt: u8,
    key_tt: u8,
    next: i32,
    key: *const TString,
}

impl Node {
    /// This node's key and chain link with `other`'s value.
    pub(crate) fn with_value_of(&self, other: &Node) -> Node {
        Node {
            value: other.value,
            tt: other.tt,
            ..*self
        }
    }
}

/// `Table` (lobject.h), up to its node array.
#[repr(C)]
pub(crate) struct Table {
    next: *const c_void,
    tt: u8,
    marked: u8,
    flags: u8,
    /// log2 of the node array's size.
    pub(crate) lsizenode: u8,
    alimit: u32,
    array: *const c_void,
    pub(crate) node: *const Node,
}

/// A short string's type tag in its header (`LUA_VSHRSTR`).
const SHORT_STRING: u8 = 0x04;
/// Value type tags (`tt_`), collectable ones with their collectable bit (`ctb`).
const TAG_FALSE: u8 = 0x01;
const TAG_TRUE: u8 = 0x11;
const TAG_INT: u8 = 0x03;
const TAG_FLOAT: u8 = 0x13;
const TAG_SHORT_STRING: u8 = 0x44;
const TAG_LONG_STRING: u8 = 0x54;
/// The low four bits of every nil variant (nil, empty slot, absent key).
const TYPE_MASK: u8 = 0x0f;

/// A field's value as read in place.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field<'a> {
    /// Absent or nil.
    Nil,
    /// A boolean, number or string (borrowing the string's bytes).
    Scalar(Scalar<'a>),
    /// Another type: read it through the API.
    Other,
}

/// The key at stack index `index` if it is a short string (a key [`get`] can look up),
/// else null.
///
/// # Safety
/// `state` is running and `index` valid; the probe of this state passed.
pub(crate) unsafe fn short_key(state: *mut ffi::lua_State, index: c_int) -> *const TString {
    // SAFETY: a string's `lua_topointer` is its `TString`; its header is read only.
    unsafe {
        if ffi::lua_type(state, index) != ffi::LUA_TSTRING {
            return std::ptr::null();
        }
        let key = ffi::lua_topointer(state, index).cast::<TString>();
        if key.is_null() || (*key).tt != SHORT_STRING {
            return std::ptr::null();
        }
        key
    }
}

/// `table[key]`, raw (no metamethod), as `lua_rawget` finds it.
///
/// # Safety
/// `table` is a live table's `lua_topointer` and `key` a live short string's
/// ([`short_key`]), both of a state whose probe passed; nothing changes the table or
/// collects garbage while the result is used.
#[inline(always)]
pub(crate) unsafe fn get<'a>(table: *const c_void, key: *const TString) -> Field<'a> {
    // SAFETY: as the function's; a node array has `2^lsizenode` nodes and each chain
    // link (`next`) is an offset to another node of it, as `luaH_getshortstr` walks them.
    unsafe {
        let table = table.cast::<Table>();
        let size_mask = (1u32 << (*table).lsizenode) - 1;
        let mut node = (*table).node.add(((*key).hash & size_mask) as usize);
        loop {
            if (*node).key_tt == TAG_SHORT_STRING && std::ptr::eq((*node).key, key) {
                return value(node);
            }
            let next = (*node).next;
            if next == 0 {
                return Field::Nil;
            }
            node = node.offset(next as isize);
        }
    }
}

/// The value of `node`.
///
/// # Safety
/// As [`get`].
#[inline(always)]
unsafe fn value<'a>(node: *const Node) -> Field<'a> {
    // SAFETY: the tag says which member of the value's union is set; a string value
    // points to a live `TString` whose bytes follow its header.
    unsafe {
        let bits = (*node).value;
        match (*node).tt {
            TAG_INT => Field::Scalar(Scalar::Int(bits as i64)),
            TAG_FLOAT => Field::Scalar(Scalar::Float(f64::from_bits(bits))),
            TAG_SHORT_STRING => {
                let s = bits as usize as *const TString;
                Field::Scalar(Scalar::Str(std::slice::from_raw_parts(
                    std::ptr::addr_of!((*s).contents).cast::<u8>(),
                    usize::from((*s).shrlen),
                )))
            }
            TAG_LONG_STRING => {
                let s = bits as usize as *const TString;
                Field::Scalar(Scalar::Str(std::slice::from_raw_parts(
                    std::ptr::addr_of!((*s).contents).cast::<u8>(),
                    (*s).lnglen,
                )))
            }
            TAG_TRUE => Field::Scalar(Scalar::Bool(true)),
            TAG_FALSE => Field::Scalar(Scalar::Bool(false)),
            tag if tag & TYPE_MASK == 0 => Field::Nil,
            _ => Field::Other,
        }
    }
}

/// Keys of the probe table: each holds a kind of value (see [`probe_table`]); the
/// last is never set.
const PROBE_KEYS: [&str; 13] = [
    "probe_0", "probe_1", "probe_2", "probe_3", "probe_4", "probe_5", "probe_6", "probe_7",
    "probe_8", "probe_9", "probe_10", "probe_11", "probe_12",
];
/// A long string (more than Lua's 40 bytes of a short one), as a value and as a key.
const LONG_TEXT: &str = "a long string of more than forty bytes, kept apart from the short";

/// Whether this state's Lua is the 5.4 whose layout this module mirrors: version 5.4, and
/// a probe table of every kind of value (integers, a float, booleans, short and long
/// strings, a table, a field set to nil, an absent one, a long key) reads the same here as
/// through the API.
///
/// # Safety
/// In a protected call (it allocates); leaves the stack as found.
pub(crate) unsafe fn probe(state: *mut ffi::lua_State) -> bool {
    // SAFETY: API calls on a running state; the layout is only read once the version is
    // 5.4 and every key is a short string whose bytes the API agrees on.
    unsafe {
        #[cfg(test)]
        if tests::FORCE_API.with(std::cell::Cell::get) {
            return false;
        }
        if ffi::lua_version(state) != 504.0 {
            return false;
        }
        let top = ffi::lua_gettop(state);
        let matches = probe_table(state);
        ffi::lua_settop(state, top);
        matches
    }
}

/// [`probe`]'s table, pushed and compared.
///
/// # Safety
/// As [`probe`], with the version checked; values are left on the stack.
unsafe fn probe_table(state: *mut ffi::lua_State) -> bool {
    // Nothing owned lives in this frame: a memory error may leave it.
    unsafe {
        ffi::lua_createtable(state, 0, 0);
        let table = ffi::lua_gettop(state);
        let unset = PROBE_KEYS.len() - 1;
        for (i, key) in PROBE_KEYS.iter().take(unset).enumerate() {
            ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
            match i {
                0 => ffi::lua_pushinteger(state, 0x1122_3344_5566_7788),
                1 => ffi::lua_pushinteger(state, -1),
                2 => ffi::lua_pushnumber(state, -2.5),
                3 => ffi::lua_pushboolean(state, 1),
                4 => ffi::lua_pushboolean(state, 0),
                5 => {
                    ffi::lua_pushlstring(state, c"short".as_ptr(), 5);
                }
                6 => {
                    ffi::lua_pushlstring(state, LONG_TEXT.as_ptr().cast(), LONG_TEXT.len());
                }
                7 => ffi::lua_createtable(state, 0, 0),
                8 => {
                    ffi::lua_pushlstring(state, c"".as_ptr(), 0);
                }
                _ => ffi::lua_pushinteger(state, i as ffi::lua_Integer),
            }
            ffi::lua_rawset(state, table);
        }
        // A field that was set and then cleared, and a long key.
        for value in [true, false] {
            ffi::lua_pushlstring(state, c"probe_1".as_ptr(), 7);
            if value {
                ffi::lua_pushboolean(state, 1);
            } else {
                ffi::lua_pushnil(state);
            }
            ffi::lua_rawset(state, table);
        }
        ffi::lua_pushlstring(state, LONG_TEXT.as_ptr().cast(), LONG_TEXT.len());
        ffi::lua_pushinteger(state, 7);
        ffi::lua_rawset(state, table);

        let pointer = ffi::lua_topointer(state, table);
        PROBE_KEYS.iter().all(|key| {
            ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
            let key_index = ffi::lua_gettop(state);
            let short = short_key(state, key_index);
            let mut len = 0usize;
            let bytes = ffi::lua_tolstring(state, key_index, &mut len);
            // The key's bytes where the mirror puts them.
            let same_key = !short.is_null()
                && std::ptr::eq(std::ptr::addr_of!((*short).contents).cast(), bytes)
                && usize::from((*short).shrlen) == len;
            ffi::lua_pushvalue(state, key_index);
            let kind = ffi::lua_rawget(state, table);
            let same = same_key && agrees(state, kind, get(pointer, short));
            ffi::lua_settop(state, key_index - 1);
            same
        })
    }
}

/// Whether `field` is the value on top of the stack, of type `kind`.
///
/// # Safety
/// The top value has type `kind`.
unsafe fn agrees(state: *mut ffi::lua_State, kind: c_int, field: Field<'_>) -> bool {
    unsafe {
        match (kind, field) {
            (ffi::LUA_TNIL, Field::Nil) => true,
            (ffi::LUA_TBOOLEAN, Field::Scalar(Scalar::Bool(b))) => {
                (ffi::lua_toboolean(state, -1) != 0) == b
            }
            (ffi::LUA_TNUMBER, Field::Scalar(Scalar::Int(n))) => {
                ffi::lua_isinteger(state, -1) != 0
                    && ffi::lua_tointegerx(state, -1, std::ptr::null_mut()) == n
            }
            (ffi::LUA_TNUMBER, Field::Scalar(Scalar::Float(f))) => {
                ffi::lua_isinteger(state, -1) == 0
                    && ffi::lua_tonumberx(state, -1, std::ptr::null_mut()).to_bits() == f.to_bits()
            }
            (ffi::LUA_TSTRING, Field::Scalar(Scalar::Str(s))) => {
                let mut len = 0usize;
                let bytes = ffi::lua_tolstring(state, -1, &mut len);
                std::ptr::eq(bytes.cast::<u8>(), s.as_ptr()) && len == s.len()
            }
            (ffi::LUA_TTABLE, Field::Other) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    thread_local! {
        /// Makes [`super::probe`] fail on this thread, so that states made here read every
        /// field over the API (tests compare both ways).
        pub(crate) static FORCE_API: Cell<bool> = const { Cell::new(false) };
    }

    /// `f`'s result with states that read fields over the API only.
    pub(crate) fn over_the_api<T>(f: impl FnOnce() -> T) -> T {
        FORCE_API.with(|force| force.set(true));
        let result = f();
        FORCE_API.with(|force| force.set(false));
        result
    }
}
