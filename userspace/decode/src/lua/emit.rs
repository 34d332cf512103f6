//! `emit(event)`: each call is one row, converted at once (a script may change the same
//! event and emit it again, as Vector scripts do for repeated elements). Rows wait in the
//! state's [`Emitted`] buffer, reused from payload to payload, and leave only when the
//! whole call ended well: all of a payload's rows or none.
//!
//! `emit` is a C function ([`emit_c`]) reading the event over the raw Lua API: no mlua
//! callback, lock or protected call per row (that machinery was most of a row's cost).
//! The columns' fields are read in place (`rawtable`) where the state's Lua allows it.

use std::{
    os::raw::{c_int, c_void},
    sync::Arc,
};

use mlua::ffi;

use super::{
    config::{Accept, ColumnPlan},
    convert::{Cell, CivilTime, Mismatch, Scalar, Strings, a, convert_into},
    rawtable::{self, Field, TString},
};
use crate::{DecodeError, Detail, FieldName, Value};

/// An emitted field that does not convert to its column's type.
pub const BAD_FIELD: &str = "bad_field";
/// A declared, not nullable field that an emitted event lacks.
pub const MISSING_FIELD: &str = "missing_field";
/// More rows than `max_rows_per_payload`.
pub const TOO_MANY_ROWS: &str = "too_many_rows";

/// Keys after the columns' in `emit`'s key table (see [`key_names`]).
const EXTRA_KEYS: [&str; 9] = [
    "log", "metric", "year", "month", "day", "hour", "min", "sec", "nanosec",
];
const KEY_LOG: usize = 0;
const KEY_METRIC: usize = 1;
const KEY_YEAR: usize = 2;

/// The strings of `emit`'s key table, in order: each column's `event.log` field, then
/// [`EXTRA_KEYS`]. [`emit_c`] reads keys from it by index (made once, no string is
/// interned per row).
pub(crate) fn key_names(columns: &[ColumnPlan]) -> impl Iterator<Item = &str> {
    columns
        .iter()
        .map(|c| c.field.as_str())
        .chain(EXTRA_KEYS.iter().copied())
}

/// The rows of the call in progress, owned by the state and reached by [`emit_c`]
/// through its first upvalue.
pub(crate) struct Emitted {
    columns: Arc<[ColumnPlan]>,
    /// Whether a column reads the field `timestamp` (made when first read, see `state.rs`).
    reads_timestamp: bool,
    /// Index of `log` in the key table, less one (after the columns' keys).
    log_key: usize,
    /// Whether `emit`'s keys are its upvalues (else its key table; see [`push_emit`]).
    keys_in_upvalues: bool,
    /// Each column's key as [`rawtable::get`] looks it up (null where it cannot: a long
    /// key); empty where the state's Lua is not the layout `rawtable` reads.
    raw_keys: Vec<*const TString>,
    /// Cells of the rows, `columns.len()` per row.
    cells: Vec<Cell>,
    /// Strings of the cells.
    strings: Strings,
    rows: u32,
    max_rows: u32,
    max_bytes: usize,
    /// Whether rows are taken (in `process`); emits from `init` and `shutdown` are
    /// counted in `discarded` instead.
    pub(crate) accepting: bool,
    /// Events emitted outside `process`, not recorded.
    pub(crate) discarded: u64,
    /// Why the call's rows cannot be used, when `emit` refused one (the script may have
    /// caught the error it raised).
    pub(crate) failure: Option<DecodeError>,
    /// The `log` table of the call in progress (its address, for `log`'s `__index`, see
    /// `event.rs`) and the packet's receive time.
    pub(crate) current_log: *const c_void,
    pub(crate) received_at: i64,
    /// The message `emit` raises, kept here so that nothing owned is alive in the frame
    /// that `lua_error` leaves.
    raising: String,
}

impl Emitted {
    /// An empty buffer for `columns`.
    pub(crate) fn new(columns: Arc<[ColumnPlan]>, max_rows: u32, max_bytes: usize) -> Self {
        Self {
            reads_timestamp: columns.iter().any(|c| c.field == "timestamp"),
            log_key: columns.len() + KEY_LOG,
            keys_in_upvalues: false,
            raw_keys: Vec::new(),
            cells: Vec::with_capacity(columns.len() * 4),
            strings: Strings::default(),
            rows: 0,
            max_rows,
            max_bytes,
            accepting: false,
            discarded: 0,
            failure: None,
            raising: String::new(),
            current_log: std::ptr::null(),
            received_at: 0,
            columns,
        }
    }

    /// Forgets the rows (keeping the buffers) before a call.
    pub(crate) fn clear(&mut self) {
        self.cells.clear();
        self.strings.clear();
        self.rows = 0;
        self.failure = None;
    }

    /// Rows emitted by the call.
    pub(crate) fn rows(&self) -> u32 {
        self.rows
    }

    /// How many columns `emit` reads in place (`rawtable`), not over the API.
    #[cfg(test)]
    pub(crate) fn columns_read_in_place(&self) -> usize {
        self.raw_keys.iter().filter(|k| !k.is_null()).count()
    }

    /// Each row's values, in column order, into `row` (emptied, then reused).
    ///
    /// Each value is written straight into its slot, and the row is emptied by forgetting
    /// its values: they only borrow (no owned `Cow`), so there is nothing to drop, and
    /// the check of each value that `clear` would make is saved.
    pub(crate) fn for_each_row<'b>(
        &'b self,
        row: &mut Vec<Value<'b>>,
        mut f: impl FnMut(&[Value<'b>]),
    ) {
        let width = self.columns.len().max(1);
        row.clear();
        row.reserve(width);
        for cells in self.cells.chunks_exact(width) {
            for (slot, cell) in row.spare_capacity_mut().iter_mut().zip(cells) {
                cell.write_value(&self.strings, slot);
            }
            // SAFETY: the row is empty with room for `width` values (above, and after
            // each row), and its first `cells.len()` (= `width`) slots were written.
            unsafe { row.set_len(cells.len()) };
            f(row);
            // SAFETY: a shorter length; the values forgotten own nothing (see above).
            unsafe { row.set_len(0) };
        }
    }

    /// One `emit(event)` with the event at stack index 1 and the key table at `keys`:
    /// the row pushed, or `false` with the message to raise in [`Self::raising`].
    ///
    /// # Safety
    /// `state` is in a call of [`emit_c`]; `keys` says where the keys are
    /// (see [`raw_get_key`]). Only calls that raise no Lua error are made (raw gets, type queries, reads
    /// of numbers, booleans and strings that convert nothing); the stack is left as found.
    unsafe fn push(&mut self, state: *mut ffi::lua_State, keys: c_int) -> bool {
        if !self.accepting {
            self.discarded += 1;
            return true;
        }
        if self.rows >= self.max_rows {
            return self.refuse(DecodeError::new(
                TOO_MANY_ROWS,
                FieldName::None,
                0,
                crate::detail!("more than max_rows_per_payload = {} rows", self.max_rows),
            ));
        }
        let top = unsafe { ffi::lua_gettop(state) };
        let read = unsafe { self.read_event(state, keys) };
        unsafe { ffi::lua_settop(state, top) };
        match read {
            Ok(()) => {
                self.rows += 1;
                true
            }
            Err(Refusal::Row(e)) => self.refuse(e),
            Err(Refusal::Event(message)) => {
                self.raising = message;
                false
            }
        }
    }

    /// Reads the event at index 1 into a row (cells dropped again when it fails).
    ///
    /// # Safety
    /// As [`Self::push`]; values are pushed above the caller's top.
    unsafe fn read_event(
        &mut self,
        state: *mut ffi::lua_State,
        keys: c_int,
    ) -> Result<(), Refusal> {
        let event_kind = unsafe { ffi::lua_type(state, 1) };
        if event_kind != ffi::LUA_TTABLE {
            return Err(Refusal::Event(format!(
                "emit: an event is a table {{ log = {{ ... }} }}, not {}",
                a(unsafe { type_name(state, 1, event_kind) })
            )));
        }
        let extra = self.columns.len();
        let log_kind = unsafe { raw_get_key(state, 1, keys, extra + KEY_LOG) };
        if log_kind != ffi::LUA_TTABLE {
            let metric = log_kind == ffi::LUA_TNIL
                && unsafe { raw_get_key(state, 1, keys, extra + KEY_METRIC) } != ffi::LUA_TNIL;
            return Err(Refusal::Event(if metric {
                "emit: metric events are not supported: Sluice records log events".to_owned()
            } else {
                format!(
                    "emit: the event's `log` is {}, not a table",
                    a(unsafe { type_name(state, -1, log_kind) })
                )
            }));
        }
        let log = unsafe { ffi::lua_gettop(state) };
        let (cells, strings) = (self.cells.len(), self.strings.mark());
        let read = unsafe { self.read_row(state, log, keys) };
        let read = read.and_then(|()| {
            if self.strings.len() > self.max_bytes {
                Err(DecodeError::new(
                    super::LUA_MEMORY,
                    FieldName::None,
                    0,
                    crate::detail!(
                        "the emitted strings exceed {} bytes (max_memory_bytes)",
                        self.max_bytes
                    ),
                ))
            } else {
                Ok(())
            }
        });
        if read.is_err() {
            self.cells.truncate(cells);
            self.strings.truncate(strings);
        }
        read.map_err(Refusal::Row)
    }

    /// Reads every column of the table at `log` into cells: the first column that does
    /// not convert is the error.
    ///
    /// # Safety
    /// As [`Self::push`].
    unsafe fn read_row(
        &mut self,
        state: *mut ffi::lua_State,
        log: c_int,
        keys: c_int,
    ) -> Result<(), DecodeError> {
        let Self {
            columns,
            raw_keys,
            cells,
            strings,
            ..
        } = self;
        // SAFETY: as this function's.
        let read =
            unsafe { Self::read_columns(state, log, keys, columns, raw_keys, cells, strings) };
        // SAFETY: back to the table's index, which was the top before the columns.
        unsafe { ffi::lua_settop(state, log) };
        read
    }

    /// The loop of [`Self::read_row`]: each column's value read in place (`raw_keys`),
    /// or else pushed and read. Values pushed stay on the stack until the row is read
    /// (one `settop` a row instead of one a column), where the stack has room for them all
    /// and for the two values a column pushes above its own while it is read (a key, then
    /// a timestamp table's key); else each is popped again (`pop_each`).
    ///
    /// # Safety
    /// As [`Self::push`]; `raw_keys` are this state's (see the field).
    #[inline(always)]
    unsafe fn read_columns(
        state: *mut ffi::lua_State,
        log: c_int,
        keys: c_int,
        columns: &[ColumnPlan],
        raw_keys: &[*const TString],
        cells: &mut Vec<Cell>,
        strings: &mut Strings,
    ) -> Result<(), DecodeError> {
        let room = c_int::try_from(columns.len().saturating_add(2)).unwrap_or(c_int::MAX);
        // Made when a value is first pushed.
        let mut pop_each = None;
        // SAFETY: the table at `log`, alive while it is on the stack.
        let table = unsafe { ffi::lua_topointer(state, log) };
        for (i, column) in columns.iter().enumerate() {
            let key = raw_keys.get(i).copied().unwrap_or(std::ptr::null());
            // SAFETY: `key` is a short string key of this state (the probe passed) and
            // `table` a table; nothing below runs Lua code or allocates in Lua while a
            // string read in place is used (`convert` copies it).
            let field = if key.is_null() {
                Field::Other
            } else {
                unsafe { rawtable::get(table, key) }
            };
            // SAFETY: raw gets and reads that raise nothing; a string's bytes are copied
            // (by `convert`) while its value is on the stack.
            let converted = match field {
                Field::Nil => None,
                Field::Scalar(scalar) => Some(convert_into(scalar, column.accept, strings, cells)),
                Field::Other => unsafe {
                    // `lua_checkstack` raises nothing (it returns 0 when the stack cannot
                    // grow).
                    let pop_each =
                        *pop_each.get_or_insert_with(|| ffi::lua_checkstack(state, room) == 0);
                    let kind = raw_get_key(state, log, keys, i);
                    let converted = match kind {
                        ffi::LUA_TNIL => None,
                        ffi::LUA_TTABLE if matches!(column.accept, Accept::Timestamp(_)) => Some(
                            timestamp_table(state, keys, columns.len())
                                .and_then(|c| c.micros())
                                .map(|micros| cells.push(Cell::Timestamp(micros))),
                        ),
                        _ => Some(convert_into(
                            raw_scalar(state, kind),
                            column.accept,
                            strings,
                            cells,
                        )),
                    };
                    if pop_each {
                        ffi::lua_settop(state, log);
                    }
                    converted
                },
            };
            match converted {
                Some(Ok(())) => {}
                None if column.column.nullable => cells.push(Cell::Null),
                None => return Err(missing(column)),
                Some(Err(m)) => return Err(mismatch(column, &m)),
            }
        }
        Ok(())
    }

    /// Keeps `error` as the call's failure and the message to raise in the script.
    fn refuse(&mut self, error: DecodeError) -> bool {
        self.raising = match error.field_text() {
            Some(field) => format!("emit: column {field}: {}", error.message()),
            None => format!("emit: {}", error.message()),
        };
        self.failure.get_or_insert(error);
        false
    }
}

/// Why `emit` raised: the row does not convert (the payload's rows are refused whatever
/// the script does next), or the event is not a log event at all (a script error).
enum Refusal {
    Row(DecodeError),
    Event(String),
}

/// `emit(event)`. Upvalues: the state's [`Emitted`] (light userdata), then the keys
/// ([`key_names`]) each in an upvalue of its own, or, when there are more than
/// [`MAX_KEY_UPVALUES`], the key table.
///
/// # Safety
/// Called by Lua only, as a C closure made by [`push_emit`], while the [`Emitted`] it
/// points to is alive and not otherwise borrowed (the state owns it, and only reaches it
/// between calls into Lua). Nothing owned is alive in this frame when `lua_error` or a
/// call that may raise (`lua_getfield` through `__index`) leaves it.
pub(crate) unsafe extern "C-unwind" fn emit_c(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let emitted = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)).cast::<Emitted>();
        if emitted.is_null() {
            return 0;
        }
        ffi::lua_settop(state, 1);
        let keys = if (*emitted).keys_in_upvalues {
            KEYS_IN_UPVALUES
        } else {
            ffi::lua_pushvalue(state, ffi::lua_upvalueindex(2));
            2
        };
        let top = ffi::lua_gettop(state);
        // Read through the pointer, no reference held: `__index` below is Lua code, which
        // may call `emit` again.
        if (*emitted).reads_timestamp && (*emitted).accepting {
            // The packet's `timestamp` is made when first read: read it once through
            // `__index`, which stores it in `log` (see `event.rs`).
            let log_key = (*emitted).log_key;
            if ffi::lua_type(state, 1) == ffi::LUA_TTABLE
                && raw_get_key(state, 1, keys, log_key) == ffi::LUA_TTABLE
            {
                ffi::lua_getfield(state, -1, c"timestamp".as_ptr());
            }
            ffi::lua_settop(state, top);
        }
        let emitted = &mut *emitted;
        if emitted.push(state, keys) {
            return 0;
        }
        let message = &emitted.raising;
        ffi::lua_pushlstring(state, message.as_ptr().cast(), message.len());
        ffi::lua_error(state)
    }
}

/// Keys past this many are read from a key table (a C closure has at most 255 upvalues).
const MAX_KEY_UPVALUES: usize = 254;
/// The `keys` argument that means "in the closure's upvalues".
const KEYS_IN_UPVALUES: c_int = 0;

/// Pushes the emit closure for `emitted`, with the key table ([`key_names`]) on top of
/// the stack (popped): each key an upvalue of its own, where they fit, since an upvalue
/// is read without a table lookup (18 keys a row). With `in_place` (the state's probe
/// passed, see `rawtable`), the columns' keys are noted for reading fields in place;
/// the closure's upvalues keep them alive.
///
/// # Safety
/// `state` has the key table on top, in a protected call (the stack grows); `emitted`
/// outlives every call of the closure and is not borrowed.
pub(crate) unsafe fn push_emit(state: *mut ffi::lua_State, emitted: *mut Emitted, in_place: bool) {
    unsafe {
        let keys = ffi::lua_gettop(state);
        if in_place {
            let columns = (&*emitted).columns.len();
            let mut raw_keys = Vec::with_capacity(columns);
            for i in 1..=columns {
                ffi::lua_rawgeti(state, keys, i as ffi::lua_Integer);
                raw_keys.push(rawtable::short_key(state, -1));
                ffi::lua_settop(state, keys);
            }
            (*emitted).raw_keys = raw_keys;
        }
        let count = ffi::lua_rawlen(state, keys) as usize;
        let in_upvalues = count <= MAX_KEY_UPVALUES;
        (*emitted).keys_in_upvalues = in_upvalues;
        ffi::lua_pushlightuserdata(state, emitted.cast::<c_void>());
        if in_upvalues {
            ffi::luaL_checkstack(state, count as c_int + 1, std::ptr::null());
            for i in 1..=count {
                ffi::lua_rawgeti(state, keys, i as ffi::lua_Integer);
            }
            ffi::lua_pushcclosure(state, emit_c, count as c_int + 1);
        } else {
            ffi::lua_pushvalue(state, keys);
            ffi::lua_pushcclosure(state, emit_c, 2);
        }
        ffi::lua_rotate(state, keys, 1);
        ffi::lua_settop(state, keys);
    }
}

/// Pushes `t[key]` (raw) for the table at `table`, where `key` is key `index` (0-based)
/// of the closure's upvalues (`keys` is [`KEYS_IN_UPVALUES`]) or of the key table at
/// absolute index `keys`: the value's type.
///
/// # Safety
/// In a call of [`emit_c`]; `table` is an absolute index of a table, and the keys hold
/// that index.
unsafe fn raw_get_key(
    state: *mut ffi::lua_State,
    table: c_int,
    keys: c_int,
    index: usize,
) -> c_int {
    unsafe {
        if keys == KEYS_IN_UPVALUES {
            ffi::lua_pushvalue(state, ffi::lua_upvalueindex(index as c_int + 2));
        } else {
            ffi::lua_rawgeti(state, keys, index as ffi::lua_Integer + 1);
        }
        ffi::lua_rawget(state, table)
    }
}

/// The Lua type name of the value at `index` of type `kind`, as mlua names it
/// (`integer` and `number` apart).
///
/// # Safety
/// `index` is a valid index holding a value of type `kind`.
pub(crate) unsafe fn type_name(
    state: *mut ffi::lua_State,
    index: c_int,
    kind: c_int,
) -> &'static str {
    match kind {
        ffi::LUA_TNIL | ffi::LUA_TNONE => "nil",
        ffi::LUA_TBOOLEAN => "boolean",
        ffi::LUA_TNUMBER if unsafe { ffi::lua_isinteger(state, index) } != 0 => "integer",
        ffi::LUA_TNUMBER => "number",
        ffi::LUA_TSTRING => "string",
        ffi::LUA_TTABLE => "table",
        ffi::LUA_TFUNCTION => "function",
        ffi::LUA_TTHREAD => "thread",
        ffi::LUA_TLIGHTUSERDATA => "lightuserdata",
        _ => "userdata",
    }
}

/// The fields of the Vector timestamp table on top of the stack (`year`, `month`, `day`,
/// `hour`, `min`, `sec` required, `nanosec` optional).
///
/// # Safety
/// The top value is a table; `keys` says where the keys are (see [`raw_get_key`]) and
/// `columns` is the number of columns before the extra keys.
unsafe fn timestamp_table(
    state: *mut ffi::lua_State,
    keys: c_int,
    columns: usize,
) -> Result<CivilTime, Mismatch> {
    let table = unsafe { ffi::lua_gettop(state) };
    let field = |offset: usize, required: bool| -> Result<i64, Mismatch> {
        // SAFETY: a raw get on the table and reads of the number it gave, then popped.
        unsafe {
            let kind = raw_get_key(state, table, keys, columns + KEY_YEAR + offset);
            let value = match kind {
                ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -1) != 0 => {
                    Ok(ffi::lua_tointegerx(state, -1, std::ptr::null_mut()))
                }
                ffi::LUA_TNUMBER => {
                    let f = ffi::lua_tonumberx(state, -1, std::ptr::null_mut());
                    if f.fract() == 0.0 && f.abs() < 1e15 {
                        Ok(f as i64)
                    } else {
                        Err(kind)
                    }
                }
                ffi::LUA_TNIL if !required => Ok(0),
                _ => Err(kind),
            };
            let name = value.map_err(|kind| type_name(state, -1, kind));
            ffi::lua_settop(state, table);
            name.map_err(|got| {
                Mismatch::BadTime(format!(
                    "a timestamp table needs an integer `{}`, it has {}",
                    EXTRA_KEYS[KEY_YEAR + offset],
                    a(got)
                ))
            })
        }
    };
    Ok(CivilTime {
        year: field(0, true)?,
        month: field(1, true)?,
        day: field(2, true)?,
        hour: field(3, true)?,
        min: field(4, true)?,
        sec: field(5, true)?,
        nanosec: field(6, false)?,
    })
}

/// The value on top of the stack, of Lua type `kind` (not nil), as a [`Scalar`]; a
/// string borrows the stack's copy.
///
/// # Safety
/// `state` is a running Lua state whose top value has type `kind`; the returned string
/// must not be used after that value is popped.
unsafe fn raw_scalar<'a>(state: *mut ffi::lua_State, kind: std::os::raw::c_int) -> Scalar<'a> {
    // SAFETY (every call): the top value exists and has type `kind`, checked by the match;
    // none of these calls converts a value or raises an error.
    unsafe {
        match kind {
            ffi::LUA_TBOOLEAN => Scalar::Bool(ffi::lua_toboolean(state, -1) != 0),
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -1) != 0 => {
                Scalar::Int(ffi::lua_tointegerx(state, -1, std::ptr::null_mut()))
            }
            ffi::LUA_TNUMBER => Scalar::Float(ffi::lua_tonumberx(state, -1, std::ptr::null_mut())),
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                let ptr = ffi::lua_tolstring(state, -1, &mut len);
                if ptr.is_null() {
                    Scalar::Str(&[])
                } else {
                    Scalar::Str(std::slice::from_raw_parts(ptr.cast::<u8>(), len))
                }
            }
            ffi::LUA_TTABLE => Scalar::Other("table"),
            ffi::LUA_TFUNCTION => Scalar::Other("function"),
            ffi::LUA_TUSERDATA => Scalar::Other("userdata"),
            ffi::LUA_TLIGHTUSERDATA => Scalar::Other("lightuserdata"),
            ffi::LUA_TTHREAD => Scalar::Other("thread"),
            _ => Scalar::Other("value"),
        }
    }
}

/// The error of a column that is not nullable and was not emitted.
fn missing(column: &ColumnPlan) -> DecodeError {
    DecodeError::new(
        MISSING_FIELD,
        FieldName::Static(column.name),
        0,
        Detail::message(format!(
            "the emitted event has no field {:?} (the column is not nullable)",
            column.field
        )),
    )
}

fn mismatch(column: &ColumnPlan, m: &Mismatch) -> DecodeError {
    DecodeError::new(
        BAD_FIELD,
        FieldName::Static(column.name),
        0,
        Detail::message(m.to_string()),
    )
}
