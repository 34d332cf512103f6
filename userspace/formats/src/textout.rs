//! Where text forms are appended ([`TextOut`]): a `Vec<u8>`, or a [`Line`] — a row being
//! written whose end is kept in a register instead of its vector's length field.
//!
//! A row of text is a few dozen appends (a key, a value, quotes), each of which, on a
//! `Vec`, reads the length from memory, checks the capacity and stores the length back:
//! one long chain through memory, each read waiting on the store before it (store
//! forwarding, ~5 cycles) — most of what writing a row cost in the daemon's profile.
//! A [`Line`] reads the vector's buffer, length and capacity once, appends by moving its
//! own copy of the length (a local the compiler keeps in a register), and sets the
//! vector's length when it is dropped. The bytes are the same either way.
//!
//! The length stays in a register only while no call that is not inlined is given the
//! line: one such call anywhere in a row's code keeps the whole line in memory. So the
//! text forms a row appends are inlined, and those that are not (a timestamp's, a
//! formatted float's) return their text for the line to append; the line grows through a
//! function given its fields.

/// Something text is appended to.
pub trait TextOut {
    /// Makes room for at least `additional` more bytes.
    fn reserve(&mut self, additional: usize);

    /// Appends `bytes`.
    fn extend_from_slice(&mut self, bytes: &[u8]);

    /// Appends `byte`.
    fn push(&mut self, byte: u8);

    /// Appends the first `len` bytes of `src` (at most `N`) by copying all `N`: a copy of
    /// a fixed size compiles to a few vector moves, where one of `len` bytes calls
    /// `memcpy`, which was a third of what a short text cost (a record has a few dozen).
    fn push_prefix<const N: usize>(&mut self, src: &[u8; N], len: usize);

    /// Appends what `fill` writes into `max` zeroed bytes at the end: the first `n` of
    /// them, `n` being what it returns (at most `max`).
    fn fill_with(&mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize);
}

impl TextOut for Vec<u8> {
    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }

    #[inline(always)]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }

    #[inline(always)]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    #[inline(always)]
    fn push_prefix<const N: usize>(&mut self, src: &[u8; N], len: usize) {
        let len = len.min(N);
        Vec::reserve(self, N);
        let start = self.len();
        // SAFETY: `reserve(N)` left at least `N` bytes of spare capacity after `start`,
        // and `src` is `N` readable bytes outside the vector (borrowed shared while the
        // vector is borrowed mutably). The first `len <= N` of the bytes written are
        // initialized before `set_len` makes them part of the vector; the rest stay spare
        // capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.as_mut_ptr().add(start), N);
            self.set_len(start + len);
        }
    }

    #[inline(always)]
    fn fill_with(&mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) {
        let start = self.len();
        self.resize(start + max, 0);
        let written = self.get_mut(start..).map_or(0, fill).min(max);
        self.truncate(start + written);
    }
}

/// A line being appended to a vector: the vector's length is set when the line is
/// dropped (or [`Line::finish`]ed), and kept in `len` until then.
pub struct Line<'a> {
    vec: &'a mut Vec<u8>,
    /// The vector's buffer, refreshed whenever it grows.
    ptr: *mut u8,
    /// Bytes written: the vector's length once the line ends. Bytes from the vector's own
    /// length up to this are initialized.
    len: usize,
    /// The vector's capacity.
    cap: usize,
}

impl<'a> Line<'a> {
    /// A line appended to `vec`.
    #[inline(always)]
    pub fn new(vec: &'a mut Vec<u8>) -> Self {
        Self {
            ptr: vec.as_mut_ptr(),
            len: vec.len(),
            cap: vec.capacity(),
            vec,
        }
    }

    /// Ends the line: the vector holds everything appended.
    #[inline(always)]
    pub fn finish(self) {}

    /// Room for `n` more bytes.
    #[inline(always)]
    fn room(&mut self, n: usize) {
        if self.cap - self.len < n {
            (self.ptr, self.cap) = grow(self.vec, self.len, n);
        }
    }
}

/// Grows `vec`, whose first `len` bytes are initialized, for `n` more bytes past them;
/// returns its buffer and capacity. It takes the line's fields, not the line: a call
/// given the line's address would keep it in memory, and its length with it.
#[cold]
#[inline(never)]
fn grow(vec: &mut Vec<u8>, len: usize, n: usize) -> (*mut u8, usize) {
    // SAFETY: the bytes up to `len` are initialized (the line's invariant); the vector's
    // length is `len` before it reallocates, so they move with it.
    unsafe { vec.set_len(len) };
    vec.reserve(n);
    (vec.as_mut_ptr(), vec.capacity())
}

impl Drop for Line<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `len <= cap`, and the bytes up to it are initialized.
        unsafe { self.vec.set_len(self.len) };
    }
}

impl TextOut for Line<'_> {
    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        self.room(additional);
    }

    #[inline(always)]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.room(bytes.len());
        // SAFETY: `room` left `bytes.len()` bytes of capacity after `len`, at `ptr` (the
        // vector's buffer); `bytes` is not in the vector (borrowed shared while the line
        // holds the vector mutably).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(self.len), bytes.len());
        }
        self.len += bytes.len();
    }

    #[inline(always)]
    fn push(&mut self, byte: u8) {
        self.room(1);
        // SAFETY: `room` left a byte of capacity after `len`.
        unsafe { self.ptr.add(self.len).write(byte) };
        self.len += 1;
    }

    #[inline(always)]
    fn push_prefix<const N: usize>(&mut self, src: &[u8; N], len: usize) {
        self.room(N);
        // SAFETY: `room` left `N` bytes of capacity after `len`; `src` is outside the
        // vector. Only the first `len <= N` bytes written count as the line's.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(self.len), N);
        }
        self.len += len.min(N);
    }

    #[inline(always)]
    fn fill_with(&mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) {
        self.room(max);
        // SAFETY: `room` left `max` bytes of capacity after `len`, zeroed here before the
        // slice over them is made; the slice ends before anything else uses the line.
        let written = unsafe {
            let spare = self.ptr.add(self.len);
            spare.write_bytes(0, max);
            fill(std::slice::from_raw_parts_mut(spare, max))
        };
        self.len += written.min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The appends of step `i`: texts of varying lengths, fixed-size copies, single bytes.
    fn append<O: TextOut>(out: &mut O, i: u32) {
        out.extend_from_slice(format!("{i}:").as_bytes());
        let mut fixed = [0u8; 16];
        fixed[..3].copy_from_slice(b"abc");
        out.push_prefix(&fixed, (i % 4) as usize);
        out.push(b'|');
        out.reserve(100);
        out.fill_with(8, |spare| {
            spare[..3].copy_from_slice(b"xyz");
            (i % 9) as usize
        });
    }

    /// Appends through a line leave the vector as the same appends to the vector itself,
    /// across growth, from an empty vector and after existing bytes.
    #[test]
    fn a_line_appends_what_the_vector_would() {
        for start in [Vec::new(), b"head,".to_vec()] {
            let mut direct = start.clone();
            let mut through_line = start;
            let mut line = Line::new(&mut through_line);
            for i in 0..500 {
                append(&mut direct, i);
                append(&mut line, i);
            }
            line.finish();
            assert_eq!(through_line, direct);
        }
    }
}
