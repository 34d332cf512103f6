//! Placeholder: the netflow decoder's benchmark is being written.
fn main() {}
