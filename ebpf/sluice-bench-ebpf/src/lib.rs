//! Placeholder so the bench crate's build script can depend on this crate (cargo rebuilds
//! the embedded object when it changes); the programs are the `sluice-bench` binary target.
#![no_std]
