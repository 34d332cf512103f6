//! `sluice-upload`: the durable spool of sealed batches and their create-only upload to
//! Google Cloud Storage.
//!
//! The daemon's sink thread hands every sealed batch to [`Spool::commit`]; only when that
//! returns is the batch accepted (it is on disk, fsynced, under its final name). An
//! [`Uploader`] — a tokio runtime on threads of its own, so the packet path never sees
//! tokio — uploads what the spool holds, oldest first, and removes each file only after
//! Cloud Storage has the object. Object names are fixed when a batch is committed
//! ([`ObjectNamer`]) and recorded in the spool file's name, and every upload is
//! create-only, so a restart, a crash or a retry never writes an object twice.
//!
//! ```text
//! sink thread ──commit──▶ Spool (dir: <encoded object name>.spool files)
//!                            │ pending(), oldest first
//!                            ▼
//!                 Uploader (tokio, `concurrency` uploads at a time)
//!                   write_object(..).set_if_generation_match(0)
//!                            │ 200 → ok, 412 → exists: remove the file
//!                            ▼ other errors: back off, retry, the file stays
//!                     gs://bucket/prefix/...
//! ```
//!
//! Operating notes live in `docs/upload.md`.

pub mod backoff;
pub mod config;
mod log_limit;
pub mod metrics;
pub mod naming;
pub mod plan;
pub mod spool;
#[cfg(feature = "client")]
pub mod uploader;

pub use config::{ConfigError, CredentialsSource, StartupProbe, UploadConfig};
pub use metrics::{HistogramSnapshot, UploadMetrics, UploadOutcome, UploadSnapshot};
pub use naming::{BootId, ObjectNamer, RunId};
pub use plan::ObjectPolicy;
pub use spool::{Committed, FullCause, PlannedObject, Spool, SpoolError, SpoolStats, SpooledBatch};
#[cfg(feature = "client")]
pub use uploader::{ShutdownReport, UploadError, UploadWatch, Uploader};
