//! A byte cursor over one syslog payload.
//!
//! Every parser in this decoder walks the payload with it, so bounds are checked in one
//! place: reads past the end return `None` instead of panicking, which is what lets
//! arbitrary (fuzzed, truncated) input through the parsers safely. Positions are offsets
//! into the original payload, so the [`Span`]s it hands out slice that payload directly.

/// A half-open byte range `start..end` of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The range `start..end`.
    pub(crate) const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The bytes of `buf` in this span; empty if the span does not fit (it always does
    /// for spans made by a [`Cursor`] over `buf` or a longer buffer).
    pub(crate) fn slice(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Number of bytes.
    pub(crate) const fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no byte.
    pub(crate) const fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// A read position in `buf`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos` (clamped to the end of `buf`).
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Self {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    /// The buffer being read.
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Current offset.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to `pos` (clamped to the end), e.g. to back out of a failed attempt.
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.buf.len());
    }

    /// Whether every byte has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The byte under the cursor.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The byte `n` places after the cursor.
    pub(crate) fn peek_at(&self, n: usize) -> Option<u8> {
        self.buf.get(self.pos.saturating_add(n)).copied()
    }

    /// Reads one byte.
    pub(crate) fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Reads `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Reads exactly `n` ASCII digits as a number.
    pub(crate) fn fixed_digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        let mut value: u32 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(d - b'0');
        }
        self.pos += n;
        Some(value)
    }

    /// Reads `min..=max` ASCII digits (as many as there are, up to `max`) as a number.
    /// `max` must be at most 9 so the value fits.
    pub(crate) fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.pos;
        let mut value: u32 = 0;
        while self.pos - start < max {
            match self.peek() {
                Some(d) if d.is_ascii_digit() => {
                    value = value * 10 + u32::from(d - b'0');
                    self.pos += 1;
                }
                _ => break,
            }
        }
        if self.pos - start < min {
            self.pos = start;
            return None;
        }
        Some(value)
    }

    /// Reads bytes while `pred` holds and returns their span.
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> Span {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !pred(b) {
                break;
            }
            self.pos += 1;
        }
        Span::new(start, self.pos)
    }

    /// Reads up to the next space (or the end) and returns that span.
    pub(crate) fn token(&mut self) -> Span {
        self.take_while(|b| b != b' ')
    }

    /// Skips spaces; returns how many.
    pub(crate) fn skip_spaces(&mut self) -> usize {
        self.take_while(|b| b == b' ').len()
    }

    /// Everything from the cursor to the end (the cursor does not move).
    pub(crate) fn rest(&self) -> Span {
        Span::new(self.pos, self.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_respect_bounds_and_restore_on_failure() {
        let mut c = Cursor::new(b"12345x", 0);
        assert_eq!(c.digits(1, 3), Some(123));
        assert_eq!(c.pos(), 3);
        assert_eq!(c.digits(3, 4), None);
        assert_eq!(c.pos(), 3);
        assert_eq!(c.digits(1, 4), Some(45));
        assert_eq!(c.fixed_digits(1), None);
        assert_eq!(c.pos(), 5);
    }

    #[test]
    fn fixed_digits_past_the_end_is_none() {
        let mut c = Cursor::new(b"12", 0);
        assert_eq!(c.fixed_digits(3), None);
        assert_eq!(c.fixed_digits(2), Some(12));
        assert!(c.at_end());
        assert_eq!(c.next_byte(), None);
    }

    #[test]
    fn span_slice_out_of_range_is_empty() {
        assert_eq!(Span::new(2, 9).slice(b"abc"), b"");
        assert_eq!(Span::new(1, 3).slice(b"abc"), b"bc");
        assert_eq!(Span::new(3, 1).len(), 0);
    }
}
