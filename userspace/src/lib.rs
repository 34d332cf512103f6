//! Sluice: GRE-encapsulated UDP in, compressed records out, through XDP and AF_XDP.
//!
//! Data flow (see docs/ARCHITECTURE.md): a [`source`] receives frames and copies them into
//! [`pipeline::frames::FrameBatch`]es; workers strip and parse them ([`decap`]), give each
//! datagram its provenance ([`record`]) and its stream's decoder ([`streams`]), and batch
//! and compress the rows ([`pipeline::batch`]); the [`sink`] writes each batch durably.
//! [`accounting`] keeps the promise that every packet seen is recorded or dropped under a
//! named reason.

pub mod accounting;
pub mod app;
pub mod config;
pub mod decap;
pub mod detail;
pub mod kernel;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod source;
pub mod streams;
pub mod upload;
