//! `emit(event)`: each call is one row, converted at once (a script may change the same
//! event and emit it again, as Vector scripts do for repeated elements). Rows wait in the
//! state's [`Emitted`] buffer, reused from payload to payload, and leave only when the
//! whole call ended well: all of a payload's rows or none.

use std::sync::Arc;

use mlua::{Lua, Table, Value as LuaValue, ffi};

use super::{
    config::{Accept, ColumnPlan},
    convert::{Cell, CivilTime, Mismatch, Scalar, a, convert},
};
use crate::{DecodeError, Detail, FieldName, Value};

/// An emitted field that does not convert to its column's type.
pub const BAD_FIELD: &str = "bad_field";
/// A declared, not nullable field that an emitted event lacks.
pub const MISSING_FIELD: &str = "missing_field";
/// More rows than `max_rows_per_payload`.
pub const TOO_MANY_ROWS: &str = "too_many_rows";

/// The rows of the call in progress, kept in the state's app data.
pub(crate) struct Emitted {
    columns: Arc<[ColumnPlan]>,
    /// Each column's `event.log` key, as a Lua string made once.
    keys: Vec<mlua::LuaString>,
    /// The same keys as a Lua array, for [`Self::read_row_raw`].
    key_table: Table,
    log_key: mlua::LuaString,
    metric_key: mlua::LuaString,
    /// Cells of the rows, `columns.len()` per row.
    cells: Vec<Cell>,
    /// Strings of the cells.
    bytes: Vec<u8>,
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
}

impl Emitted {
    /// An empty buffer for `columns`, with their keys made in `lua`.
    pub(crate) fn new(
        lua: &Lua,
        columns: Arc<[ColumnPlan]>,
        max_rows: u32,
        max_bytes: usize,
    ) -> mlua::Result<Self> {
        let keys = columns
            .iter()
            .map(|c| lua.create_string(&c.field))
            .collect::<mlua::Result<_>>()?;
        let key_table = lua.create_sequence_from(columns.iter().map(|c| c.field.as_str()))?;
        Ok(Self {
            keys,
            key_table,
            log_key: lua.create_string("log")?,
            metric_key: lua.create_string("metric")?,
            cells: Vec::with_capacity(columns.len() * 4),
            bytes: Vec::new(),
            rows: 0,
            max_rows,
            max_bytes,
            accepting: false,
            discarded: 0,
            failure: None,
            columns,
        })
    }

    /// Forgets the rows (keeping the buffers) before a call.
    pub(crate) fn clear(&mut self) {
        self.cells.clear();
        self.bytes.clear();
        self.rows = 0;
        self.failure = None;
    }

    /// Rows emitted by the call.
    pub(crate) fn rows(&self) -> u32 {
        self.rows
    }

    /// Each row's values, in column order, into `row` (emptied, then reused).
    pub(crate) fn for_each_row<'b>(
        &'b self,
        row: &mut Vec<Value<'b>>,
        mut f: impl FnMut(&[Value<'b>]),
    ) {
        let width = self.columns.len().max(1);
        for cells in self.cells.chunks_exact(width) {
            row.clear();
            row.extend(cells.iter().map(|c| c.value(&self.bytes)));
            f(row);
        }
        row.clear();
    }

    /// One `emit(event)`: the row, or the error raised in the script.
    pub(crate) fn push(&mut self, lua: &Lua, event: &LuaValue) -> mlua::Result<()> {
        if !self.accepting {
            self.discarded += 1;
            return Ok(());
        }
        if self.rows >= self.max_rows {
            return Err(self.refuse(DecodeError::new(
                TOO_MANY_ROWS,
                FieldName::None,
                0,
                crate::detail!("more than max_rows_per_payload = {} rows", self.max_rows),
            )));
        }
        let LuaValue::Table(event) = event else {
            return Err(mlua::Error::runtime(format!(
                "emit: an event is a table {{ log = {{ ... }} }}, not {}",
                a(event.type_name())
            )));
        };
        let log = match event.raw_get::<LuaValue>(&self.log_key)? {
            LuaValue::Table(log) => log,
            LuaValue::Nil if !event.raw_get::<LuaValue>(&self.metric_key)?.is_nil() => {
                return Err(mlua::Error::runtime(
                    "emit: metric events are not supported: Sluice records log events",
                ));
            }
            other => {
                return Err(mlua::Error::runtime(format!(
                    "emit: the event's `log` is {}, not a table",
                    a(other.type_name())
                )));
            }
        };
        let (cells, bytes) = (self.cells.len(), self.bytes.len());
        let read = match self.read_row_raw(lua, &log) {
            Ok(RawRow::Done) => Ok(()),
            Ok(RawRow::NeedsLua) => {
                // A value only mlua's API reads (a timestamp table, or the packet's
                // `timestamp` made on first read): the whole row again, field by field.
                self.cells.truncate(cells);
                self.bytes.truncate(bytes);
                (0..self.columns.len()).try_for_each(|i| self.push_cell(lua, &log, i))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = read {
            self.cells.truncate(cells);
            self.bytes.truncate(bytes);
            return Err(self.refuse(e));
        }
        if self.bytes.len() > self.max_bytes {
            self.cells.truncate(cells);
            self.bytes.truncate(bytes);
            return Err(self.refuse(DecodeError::new(
                super::LUA_MEMORY,
                FieldName::None,
                0,
                crate::detail!(
                    "the emitted strings exceed {} bytes (max_memory_bytes)",
                    self.max_bytes
                ),
            )));
        }
        self.rows += 1;
        Ok(())
    }

    /// Reads every column of `log` in one pass over the raw Lua API (one lock and one
    /// protected call per row, instead of a table lookup through mlua per column, which
    /// took most of the decoder's time): the cells are pushed, or the first column that
    /// does not convert is the error, or [`RawRow::NeedsLua`] when a value needs
    /// [`Self::push_cell`].
    fn read_row_raw(&mut self, lua: &Lua, log: &Table) -> Result<RawRow, DecodeError> {
        let mut outcome = Ok(RawRow::Done);
        let Self {
            columns,
            key_table,
            cells,
            bytes,
            ..
        } = self;
        // SAFETY: the closure runs inside mlua's protected call with `log` at index 1 and
        // the key table at index 2, both tables. It calls only functions that raise no
        // Lua error: raw gets (no metamethods, no allocation), type queries, and reads of
        // numbers, booleans and strings that convert nothing. A string's bytes are copied
        // (by `convert`) before its value is popped. The stack is left empty.
        let called = unsafe {
            lua.exec_raw::<()>((log, &*key_table), |state| {
                for (i, column) in columns.iter().enumerate() {
                    ffi::lua_rawgeti(state, 2, i as ffi::lua_Integer + 1);
                    let kind = ffi::lua_rawget(state, 1);
                    let read = match kind {
                        ffi::LUA_TNIL if column.field == "timestamp" => Read::NeedsLua,
                        ffi::LUA_TNIL if column.column.nullable => Read::Cell(Cell::Null),
                        ffi::LUA_TNIL => Read::Fail(missing(column)),
                        ffi::LUA_TTABLE if matches!(column.accept, Accept::Timestamp(_)) => {
                            Read::NeedsLua
                        }
                        _ => match convert(raw_scalar(state, kind), column.accept, bytes) {
                            Ok(cell) => Read::Cell(cell),
                            Err(m) => Read::Fail(mismatch(column, &m)),
                        },
                    };
                    ffi::lua_settop(state, 2);
                    match read {
                        Read::Cell(cell) => cells.push(cell),
                        Read::Fail(e) => {
                            outcome = Err(e);
                            break;
                        }
                        Read::NeedsLua => {
                            outcome = Ok(RawRow::NeedsLua);
                            break;
                        }
                    }
                }
                ffi::lua_settop(state, 0);
            })
        };
        match called {
            Ok(()) => outcome,
            Err(e) => Err(DecodeError::new(
                super::LUA_ERROR,
                FieldName::None,
                0,
                Detail::message(super::state::first_line(&e)),
            )),
        }
    }

    /// Converts column `i` of `log` into the next cell.
    fn push_cell(&mut self, lua: &Lua, log: &Table, i: usize) -> Result<(), DecodeError> {
        let (Some(column), Some(key)) = (self.columns.get(i), self.keys.get(i)) else {
            return Ok(());
        };
        let lua_error = |e: mlua::Error| field_error(column, &e.to_string());
        let mut value = log.raw_get::<LuaValue>(key).map_err(lua_error)?;
        if value.is_nil() && column.field == "timestamp" {
            // The packet's `timestamp` is made when first read (see `state.rs`).
            value = log.get::<LuaValue>(key).map_err(lua_error)?;
        }
        let cell = match &value {
            LuaValue::Nil if column.column.nullable => Cell::Null,
            LuaValue::Nil => return Err(missing(column)),
            LuaValue::Table(t) if matches!(column.accept, Accept::Timestamp(_)) => {
                timestamp_table(lua, t)
                    .and_then(|c| c.micros())
                    .map(Cell::Timestamp)
                    .map_err(|m| mismatch(column, &m))?
            }
            LuaValue::String(s) => {
                let bytes = s.as_bytes();
                convert(Scalar::Str(&bytes[..]), column.accept, &mut self.bytes)
                    .map_err(|m| mismatch(column, &m))?
            }
            other => convert(scalar(other), column.accept, &mut self.bytes)
                .map_err(|m| mismatch(column, &m))?,
        };
        self.cells.push(cell);
        Ok(())
    }

    /// Keeps `error` as the call's failure and gives the error to raise in the script.
    fn refuse(&mut self, error: DecodeError) -> mlua::Error {
        let text = match error.field_text() {
            Some(field) => format!("emit: column {field}: {}", error.message()),
            None => format!("emit: {}", error.message()),
        };
        self.failure.get_or_insert(error);
        mlua::Error::runtime(text)
    }
}

/// What one column of a row read over the raw API gave.
enum Read {
    Cell(Cell),
    Fail(DecodeError),
    NeedsLua,
}

/// How [`Emitted::read_row_raw`] ended.
enum RawRow {
    /// Every column read.
    Done,
    /// A value needs mlua's API: read the row with [`Emitted::push_cell`].
    NeedsLua,
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

/// A non-string, non-table Lua value as a [`Scalar`].
fn scalar(value: &LuaValue) -> Scalar<'static> {
    match value {
        LuaValue::Nil => Scalar::Nil,
        LuaValue::Boolean(b) => Scalar::Bool(*b),
        LuaValue::Integer(n) => Scalar::Int(*n),
        LuaValue::Number(f) => Scalar::Float(*f),
        other => Scalar::Other(other.type_name()),
    }
}

fn mismatch(column: &ColumnPlan, m: &Mismatch) -> DecodeError {
    DecodeError::new(
        BAD_FIELD,
        FieldName::Static(column.name),
        0,
        Detail::message(m.to_string()),
    )
}

fn field_error(column: &ColumnPlan, text: &str) -> DecodeError {
    DecodeError::new(
        BAD_FIELD,
        FieldName::Static(column.name),
        0,
        Detail::message(text.to_owned()),
    )
}

/// The fields of a Vector timestamp table (`year`, `month`, `day`, `hour`, `min`, `sec`
/// required, `nanosec` optional).
fn timestamp_table(_lua: &Lua, t: &Table) -> Result<CivilTime, Mismatch> {
    let field = |key: &'static str, required: bool| -> Result<i64, Mismatch> {
        match t.raw_get::<LuaValue>(key) {
            Ok(LuaValue::Integer(n)) => Ok(n),
            Ok(LuaValue::Number(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(f as i64),
            Ok(LuaValue::Nil) if !required => Ok(0),
            Ok(other) => Err(Mismatch::BadTime(format!(
                "a timestamp table needs an integer `{key}`, it has {}",
                a(other.type_name())
            ))),
            Err(e) => Err(Mismatch::BadTime(e.to_string())),
        }
    };
    Ok(CivilTime {
        year: field("year", true)?,
        month: field("month", true)?,
        day: field("day", true)?,
        hour: field("hour", true)?,
        min: field("min", true)?,
        sec: field("sec", true)?,
        nanosec: field("nanosec", false)?,
    })
}
