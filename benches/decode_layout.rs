//! Placeholder: the layout decoder's benchmark is being written.
fn main() {}
