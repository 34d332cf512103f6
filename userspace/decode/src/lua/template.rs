//! Each call's `log` table made with its keys already in place, so that the script's
//! field assignments store into them instead of inserting them.
//!
//! A script sets a dozen or more fields of `log` per payload. In a new table each is an
//! insertion (`luaH_newkey`: the key's main position, a free node, a collision moved),
//! about 5% of a worker's time with the ACME script. To Lua a key whose value is nil is
//! the same as an absent one: a read gives nil, `next`/`pairs` skip it, the length
//! ignores it, and a table whose fields were set and then cleared is in exactly that
//! state. So each state keeps a [`LogTemplate`]: the node array of a table of `log`'s size
//! holding the event's own fields and every column's field, values emptied. [`fill`]
//! copies it over the empty node array `lua_createtable` just made; an assignment then
//! finds its key and stores in place. A field the script never sets stays an empty node
//! (if the collector walks the table meanwhile it marks such keys dead, as it does for any
//! cleared field, and a later assignment inserts the key again); a field outside the
//! template is inserted as before. Free nodes are found by a walk that checks each node's
//! key, so the new table's free-node hint (at its end) stays valid.
//!
//! The keys are strings kept alive by the template's table (values `true`), anchored in
//! the registry for the state's life. The node layout is the one `rawtable` mirrors; on
//! top of its probe, [`LogTemplate::new`] checks on each state that a copy reads as an
//! empty table through the API and takes an assignment of every key in place (the node
//! array neither grows nor moves), else the state makes `log` without it.

use std::os::raw::{c_int, c_void};

use mlua::ffi;

use super::{
    convert::Scalar,
    rawtable::{self, Field, Node, Table},
};

/// A node array to copy into each new `log` table.
pub(crate) struct LogTemplate {
    nodes: Box<[Node]>,
    /// Its size as `Table::lsizenode` (log2 of the node count).
    lsizenode: u8,
}

// SAFETY: the nodes point to strings of the state the template belongs to, are read only
// to be copied into that state's tables, and move with it (a state is used by the thread
// that owns it, never shared).
unsafe impl Send for LogTemplate {}

impl LogTemplate {
    /// The template of a `log` table made with `lua_createtable(state, 0, log_size)` and
    /// holding `keys` (each once); `None` if a copy does not behave as a new table would. Leaves the
    /// stack as found and the template's table referenced in the registry (for the
    /// state's life: it keeps the keys alive).
    ///
    /// # Safety
    /// In a protected call, on a state whose `rawtable` probe passed; `keys` are strings.
    pub(crate) unsafe fn new(
        state: *mut ffi::lua_State,
        log_size: c_int,
        keys: &[&str],
    ) -> Option<Self> {
        // SAFETY: API calls on a running state with room for the values pushed; the node
        // arrays are read within their `2^lsizenode` nodes. Nothing owned lives in this
        // frame when a memory error leaves it.
        unsafe {
            let top = ffi::lua_gettop(state);
            ffi::lua_createtable(state, 0, log_size);
            let empty = ffi::lua_topointer(state, -1).cast::<Table>();
            ffi::lua_createtable(state, 0, log_size);
            let full = ffi::lua_topointer(state, -1).cast::<Table>();
            for key in keys {
                ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
                ffi::lua_pushboolean(state, 1);
                ffi::lua_rawset(state, -3);
            }
            let lsizenode = (*full).lsizenode;
            // Size 0 is the dummy node all empty tables share: never written.
            let template = (lsizenode > 0 && (*empty).lsizenode == lsizenode).then(|| {
                let count = 1usize << lsizenode;
                let cleared = *(*empty).node;
                let nodes: Box<[Node]> = std::slice::from_raw_parts((*full).node, count)
                    .iter()
                    .map(|node| node.with_value_of(&cleared))
                    .collect();
                Self { nodes, lsizenode }
            });
            ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
            ffi::lua_settop(state, top);
            let template = template?;
            let works = template.check(state, log_size, keys);
            ffi::lua_settop(state, top);
            works.then_some(template)
        }
    }

    /// Whether a table filled from the template reads as empty through the API, and
    /// every key's assignment lands in the node it was copied to.
    ///
    /// # Safety
    /// As [`Self::new`]; leaves values on the stack.
    unsafe fn check(&self, state: *mut ffi::lua_State, log_size: c_int, keys: &[&str]) -> bool {
        // SAFETY: as `new`'s.
        unsafe {
            ffi::lua_createtable(state, 0, log_size);
            let table = ffi::lua_gettop(state);
            let pointer = ffi::lua_topointer(state, table);
            if !fill(self, pointer) {
                return false;
            }
            let nodes = (*pointer.cast::<Table>()).node;
            ffi::lua_pushnil(state);
            if ffi::lua_next(state, table) != 0 || ffi::lua_rawlen(state, table) != 0 {
                return false;
            }
            for (i, key) in keys.iter().enumerate() {
                let value = i as ffi::lua_Integer + 1;
                ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
                let key_index = ffi::lua_gettop(state);
                if ffi::lua_rawget(state, table) != ffi::LUA_TNIL {
                    return false;
                }
                ffi::lua_settop(state, key_index - 1);
                ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
                ffi::lua_pushinteger(state, value);
                ffi::lua_rawset(state, table);
            }
            if (*pointer.cast::<Table>()).node != nodes {
                return false;
            }
            keys.iter().enumerate().all(|(i, key)| {
                let value = i as ffi::lua_Integer + 1;
                ffi::lua_pushlstring(state, key.as_ptr().cast(), key.len());
                let key_index = ffi::lua_gettop(state);
                let short = rawtable::short_key(state, key_index);
                let in_place = short.is_null()
                    || matches!(
                        rawtable::get(pointer, short),
                        Field::Scalar(Scalar::Int(n)) if n == value
                    );
                let read = ffi::lua_rawget(state, table) == ffi::LUA_TNUMBER
                    && ffi::lua_tointegerx(state, -1, std::ptr::null_mut()) == value;
                ffi::lua_settop(state, key_index - 1);
                in_place && read
            })
        }
    }
}

/// Copies `template`'s nodes into `table`, a table just made by `lua_createtable` with
/// the template's size (nothing else was stored in it); `false` (and the table left as
/// is) if its node array is not the template's size.
///
/// # Safety
/// `table` is the `lua_topointer` of such a table, of the state `template` was made on.
#[inline]
pub(crate) unsafe fn fill(template: &LogTemplate, table: *const c_void) -> bool {
    // SAFETY: a table of `lsizenode` has `2^lsizenode` nodes, all empty; the template's
    // keys are alive (see the module's documentation).
    unsafe {
        let table = table.cast::<Table>();
        if (*table).lsizenode != template.lsizenode {
            return false;
        }
        std::ptr::copy_nonoverlapping(
            template.nodes.as_ptr(),
            (*table).node.cast_mut(),
            template.nodes.len(),
        );
        true
    }
}
