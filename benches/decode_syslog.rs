//! Placeholder: the syslog decoder's benchmark is being written.
fn main() {}
