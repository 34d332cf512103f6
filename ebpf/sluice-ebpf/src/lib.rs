//! Placeholder so the userspace build script can depend on this crate (cargo rebuilds the
//! embedded object when it changes); the program itself is the `sluice` binary target.
#![no_std]
