//! `string.unpack`, faster for the formats binary parsers use, with Lua's own function as
//! the reference for everything else.
//!
//! A Vector parser reads its payload with `string.unpack` a few times a packet, and Lua
//! 5.4's implementation spends most of a call going through the format one option at a
//! time in general helpers (`getdetails`, `getoption`, a stack check per option). Sluice's
//! `string.unpack` ([`unpack_c`]) reads the format and pushes the values in one pass, for
//! the options that need no alignment: the integers `b B h H i[n] I[n] l L j J T` of at
//! most 8 bytes, `f d n`, `c<n>`, `s[n]`, `z`, `x`, spaces and the byte orders `< > =`.
//! Everything else goes, as it came, to Lua's own function: `!` and `X` (alignment),
//! integers of 9 to 16 bytes, arguments that are not strings (or an integer position),
//! and every error — data too short, an unknown option, a size out of limits — so that
//! results and error messages are Lua's. A call the fast path gives up on part way has
//! its pushed values dropped first: unpacking has no other effect.

use std::os::raw::c_int;

use mlua::ffi;

/// Installs Sluice's `string.unpack` over Lua's (kept as its upvalue) in `string`.
///
/// # Safety
/// In a protected call on a state with the `string` library; leaves the stack as found.
pub(crate) unsafe fn install(state: *mut ffi::lua_State) {
    unsafe {
        let top = ffi::lua_gettop(state);
        if ffi::lua_getglobal(state, c"string".as_ptr()) == ffi::LUA_TTABLE
            && ffi::lua_getfield(state, -1, c"unpack".as_ptr()) == ffi::LUA_TFUNCTION
            && ffi::lua_tocfunction(state, -1).is_some()
        {
            ffi::lua_pushcclosure(state, unpack_c, 1);
            ffi::lua_setfield(state, -2, c"unpack".as_ptr());
        }
        ffi::lua_settop(state, top);
    }
}

/// `string.unpack(fmt, s [, pos])`. Upvalue: Lua's own `string.unpack`.
///
/// # Safety
/// Called by Lua as a C closure made by [`install`]. Nothing owned is alive in this frame
/// when an error (Lua's function's, or a memory error) leaves it.
pub(crate) unsafe extern "C-unwind" fn unpack_c(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let arguments = ffi::lua_gettop(state);
        if let Some(results) = fast_unpack(state) {
            return results;
        }
        ffi::lua_settop(state, arguments);
        match ffi::lua_tocfunction(state, ffi::lua_upvalueindex(1)) {
            Some(lua_unpack) => lua_unpack(state),
            None => 0,
        }
    }
}

/// Stack slots made at a time for the values.
const ROOM_STEP: c_int = 16;

/// What an option reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    /// An integer of the option's size, signed or not.
    Int(bool),
    /// A `float` (4 bytes).
    Float32,
    /// A `double` or `lua_Number` (8 bytes).
    Float64,
    /// `c<n>`: that many bytes.
    Chars,
    /// `s[n]`: a string after its length (an unsigned integer of the option's size).
    Prefixed,
    /// `z`: a string up to a zero byte.
    Zero,
    /// `x`: one byte skipped.
    Pad,
}

/// The one pass: the results pushed and their number, or `None` (values possibly pushed)
/// where Lua's function must decide.
///
/// # Safety
/// In a call of [`unpack_c`].
unsafe fn fast_unpack(state: *mut ffi::lua_State) -> Option<c_int> {
    // SAFETY (every call): arguments of this call, read by type; strings' bytes are read
    // while they are on the stack (nothing pushed here removes them).
    unsafe {
        if ffi::lua_type(state, 1) != ffi::LUA_TSTRING
            || ffi::lua_type(state, 2) != ffi::LUA_TSTRING
        {
            return None;
        }
        let format = string_at(state, 1);
        let data = string_at(state, 2);
        let start = match ffi::lua_type(state, 3) {
            ffi::LUA_TNONE | ffi::LUA_TNIL => 1,
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, 3) != 0 => {
                ffi::lua_tointegerx(state, 3, std::ptr::null_mut())
            }
            _ => return None,
        };
        let mut pos = start_position(start, data.len()) - 1;
        if pos > data.len() {
            return None;
        }
        let native_little = cfg!(target_endian = "little");
        let mut little = native_little;
        let mut results: c_int = 0;
        let mut room = 0;
        let mut at = 0;
        // The format is read as Lua reads it, as a C string: up to a zero byte.
        while let Some(&option) = format.get(at).filter(|&&c| c != 0) {
            at += 1;
            let (item, size) = match option {
                b'b' => (Item::Int(true), 1),
                b'B' => (Item::Int(false), 1),
                b'h' => (Item::Int(true), 2),
                b'H' => (Item::Int(false), 2),
                b'l' | b'j' => (Item::Int(true), 8),
                b'L' | b'J' | b'T' => (Item::Int(false), 8),
                b'i' | b'I' => (Item::Int(option == b'i'), int_size(format, &mut at, 4)?),
                b'f' => (Item::Float32, 4),
                b'd' | b'n' => (Item::Float64, 8),
                b'c' => (Item::Chars, number(format, &mut at)?),
                b's' => (Item::Prefixed, int_size(format, &mut at, 8)?),
                b'z' => (Item::Zero, 0),
                b'x' => (Item::Pad, 1),
                b' ' => continue,
                b'<' => {
                    little = true;
                    continue;
                }
                b'>' => {
                    little = false;
                    continue;
                }
                b'=' => {
                    little = native_little;
                    continue;
                }
                _ => return None,
            };
            let bytes = data.get(pos..)?.get(..size)?;
            if item != Item::Pad {
                // Room for this value and the final position (Lua checks for 2 a value;
                // asking for more at once only sends a call near the stack's limit to
                // Lua's function).
                if room < 2 {
                    if ffi::lua_checkstack(state, ROOM_STEP) == 0 {
                        return None;
                    }
                    room = ROOM_STEP;
                }
                room -= 1;
                results += 1;
            }
            match item {
                Item::Int(signed) => ffi::lua_pushinteger(state, integer(bytes, little, signed)),
                // A float's bits, read as the unsigned integer of its size and byte order.
                Item::Float32 => {
                    let bits = integer(bytes, little, false) as u32;
                    ffi::lua_pushnumber(state, f64::from(f32::from_bits(bits)));
                }
                Item::Float64 => {
                    let bits = integer(bytes, little, false) as u64;
                    ffi::lua_pushnumber(state, f64::from_bits(bits));
                }
                Item::Chars => {
                    ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
                }
                Item::Prefixed => {
                    let len = usize::try_from(integer(bytes, little, false) as u64).ok()?;
                    let text = data.get(pos + size..)?.get(..len)?;
                    ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
                    pos += len;
                }
                Item::Zero => {
                    let rest = data.get(pos..)?;
                    let len = rest.iter().position(|&b| b == 0)?;
                    ffi::lua_pushlstring(state, rest.as_ptr().cast(), len);
                    pos += len + 1;
                }
                Item::Pad => {}
            }
            pos += size;
        }
        ffi::lua_pushinteger(state, ffi::lua_Integer::try_from(pos + 1).ok()?);
        Some(results + 1)
    }
}

/// The bytes of the string at `index`.
///
/// # Safety
/// The value at `index` is a string, and stays on the stack while the bytes are used.
unsafe fn string_at<'a>(state: *mut ffi::lua_State, index: c_int) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: a string's bytes, `len` of them, as long as it is on the stack.
    unsafe {
        let bytes = ffi::lua_tolstring(state, index, &mut len);
        if bytes.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(bytes.cast::<u8>(), len)
        }
    }
}

/// Lua's `posrelatI`: a 1-based start position, negative from the end, clipped to 1.
fn start_position(pos: ffi::lua_Integer, len: usize) -> usize {
    if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos.unsigned_abs() > len as u64 {
        1
    } else {
        len - pos.unsigned_abs() as usize + 1
    }
}

/// Lua's `getnum`: the number after an option, read as Lua reads it (it stops taking
/// digits past 214748363), or `None` when there is none.
fn number(format: &[u8], at: &mut usize) -> Option<usize> {
    let digit = |at: usize| format.get(at).filter(|c| c.is_ascii_digit()).copied();
    let mut n = i32::from(digit(*at)? - b'0');
    *at += 1;
    while let Some(d) = digit(*at) {
        if n > (i32::MAX - 9) / 10 {
            break;
        }
        n = n * 10 + i32::from(d - b'0');
        *at += 1;
    }
    usize::try_from(n).ok()
}

/// The size of an integer option (`default` without a number): 1 to 8 bytes here; Lua's
/// function takes 9 to 16 and refuses the rest.
fn int_size(format: &[u8], at: &mut usize, default: usize) -> Option<usize> {
    let size = if format.get(*at).is_some_and(u8::is_ascii_digit) {
        number(format, at)?
    } else {
        default
    };
    (1..=8).contains(&size).then_some(size)
}

/// Lua's `unpackint` for 1 to 8 bytes: sign-extended when `signed`, else zero-extended
/// (an unsigned 8-byte integer wraps into a Lua integer, as in Lua).
#[inline]
fn integer(bytes: &[u8], little: bool, signed: bool) -> ffi::lua_Integer {
    // Whole loads for the usual sizes (a copy into a zeroed word and a load of it stalls
    // on the copy); a byte at a time for the others.
    let word = |raw: Option<[u8; 8]>| {
        raw.map(if little {
            u64::from_le_bytes
        } else {
            u64::from_be_bytes
        })
    };
    let bits = match bytes.len() {
        1 => Some(u64::from(bytes[0])),
        2 => bytes.try_into().ok().map(|raw| {
            u64::from(if little {
                u16::from_le_bytes(raw)
            } else {
                u16::from_be_bytes(raw)
            })
        }),
        4 => bytes.try_into().ok().map(|raw| {
            u64::from(if little {
                u32::from_le_bytes(raw)
            } else {
                u32::from_be_bytes(raw)
            })
        }),
        8 => word(bytes.try_into().ok()),
        _ => None,
    };
    let size = bytes.len().min(8);
    let bits = bits.unwrap_or_else(|| {
        let in_order = |i: usize| {
            if little {
                bytes[size - 1 - i]
            } else {
                bytes[i]
            }
        };
        (0..size).fold(0u64, |bits, i| (bits << 8) | u64::from(in_order(i)))
    });
    if signed && size < 8 {
        let mask = 1u64 << (size * 8 - 1);
        ((bits ^ mask).wrapping_sub(mask)) as i64
    } else {
        bits as i64
    }
}

#[cfg(test)]
mod tests {
    use mlua::{Function, Lua, MultiValue, Value};
    use sluice_testkit::random::Random;

    /// Runs `pcall(string.unpack, ...)` in a state: each result as text.
    const CALL: &str = "return function(fmt, data, pos, with_pos) \
        if with_pos then return pcall(string.unpack, fmt, data, pos) end \
        return pcall(string.unpack, fmt, data) end";

    fn caller(lua: &Lua) -> Function {
        lua.load(CALL).eval().expect("the caller loads")
    }

    fn texts(values: MultiValue) -> Vec<String> {
        values
            .iter()
            .map(|v| match v {
                Value::Nil => "nil".to_owned(),
                Value::Boolean(b) => format!("bool {b}"),
                Value::Integer(n) => format!("int {n}"),
                Value::Number(f) => format!("float {:#x}", f.to_bits()),
                Value::String(s) => format!("string {:?}", s.as_bytes().to_vec()),
                other => format!("other {}", other.type_name()),
            })
            .collect()
    }

    /// `n` drawn from `cases`, as an index.
    fn below(cases: &mut Random, n: usize) -> usize {
        cases.below(n as u64) as usize
    }

    /// Options, with sizes in and out of what the fast path takes, and ones it leaves to
    /// Lua (alignment, 9-16 byte integers, unknown options, bad sizes).
    const OPTIONS: [&str; 48] = [
        "b",
        "B",
        "h",
        "H",
        "i",
        "I",
        "i1",
        "i2",
        "i3",
        "i4",
        "i7",
        "i8",
        "I3",
        "I5",
        "I8",
        "i9",
        "I16",
        "i0",
        "i17",
        "l",
        "L",
        "j",
        "J",
        "T",
        "f",
        "d",
        "n",
        "c0",
        "c1",
        "c3",
        "c",
        "s1",
        "s2",
        "s",
        "z",
        "x",
        " ",
        "<",
        ">",
        "=",
        "!",
        "!4",
        "X",
        "Xi4",
        "?",
        "c99999999999",
        "\0B",
        "i02",
    ];

    /// Sluice's `string.unpack` gives what Lua's gives — values, next position, or the
    /// error message — over many formats, data and start positions, including every error.
    #[test]
    fn the_same_as_luas_own_unpack() {
        let reference = Lua::new();
        let fast = Lua::new();
        // SAFETY: a protected call on a state with the string library.
        unsafe { fast.exec_raw::<()>((), |state| super::install(state)) }.expect("installs");
        let (call_reference, call_fast) = (caller(&reference), caller(&fast));
        let mut cases = Random(0x5eed_1234_abcd_0001);
        let mut fast_ok = 0;
        for case in 0..60_000 {
            let format: String = (0..1 + below(&mut cases, 6))
                .map(|_| OPTIONS[below(&mut cases, OPTIONS.len())])
                .collect();
            let data: Vec<u8> = (0..below(&mut cases, 26))
                .map(|_| match below(&mut cases, 4) {
                    0 => 0,
                    1 => 0xff,
                    _ => cases.bits() as u8,
                })
                .collect();
            let len = data.len() as i64;
            let positions = [1, 2, 0, -1, -5, len, len + 1, len + 2, 100, -100, i64::MIN];
            let with_pos = below(&mut cases, 3) != 0;
            let pos_of = |lua: &Lua, pick: usize| -> Value {
                match pick {
                    0 => Value::Nil,
                    1 => Value::Number(2.0),
                    2 => Value::String(lua.create_string("3").expect("string")),
                    p => Value::Integer(positions[p % positions.len()]),
                }
            };
            let pick = below(&mut cases, positions.len() + 3);
            let run = |lua: &Lua, call: &Function| {
                let data = lua.create_string(&data).expect("data");
                texts(
                    call.call::<MultiValue>((format.as_str(), data, pos_of(lua, pick), with_pos))
                        .expect("pcall returns"),
                )
            };
            let expected = run(&reference, &call_reference);
            assert_eq!(
                run(&fast, &call_fast),
                expected,
                "case {case}: string.unpack({format:?}, {data:02x?}, pos pick {pick}, {with_pos})"
            );
            if expected.first().map(String::as_str) == Some("bool true") {
                fast_ok += 1;
            }
        }
        // Both outcomes are well represented.
        assert!(fast_ok > 10_000, "{fast_ok} successful calls");
    }
}
