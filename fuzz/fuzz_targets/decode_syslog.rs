//! Placeholder: the syslog decoder's fuzz target is being written.
#![no_main]
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
