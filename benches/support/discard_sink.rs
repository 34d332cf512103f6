//! The row sink of the decoder benches: it looks at every row (so the decoder's work
//! cannot be optimised away) and forgets it, so a bench measures the decoder alone.

use std::hint::black_box;

use sluice_decode::{PacketContext, RowSink, Value};

/// Looks at every row and counts it.
pub struct Discard(pub u64);

impl RowSink for Discard {
    fn row(&mut self, _ctx: &PacketContext, values: &[Value<'_>]) {
        black_box(values);
        self.0 += 1;
    }
}
