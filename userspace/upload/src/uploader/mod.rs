//! The uploader: a tokio runtime on threads of its own (`sluice-upload`,
//! `sluice-upload-rt`) that combines spooled batches into objects and uploads them,
//! oldest first, `concurrency` objects at a time, until it is shut down.
//!
//! [`Uploader::start`] validates the config, builds the client and probes the bucket, so
//! a wrong bucket, endpoint or credentials is one error at start; then it starts the
//! dispatcher. The dispatcher plans objects ([`Spool::plan_objects`]: which batches,
//! decided and made durable before any upload) when a group of batches is due by age or
//! size — on a timer for the next due batch, and at most once a second after commits —
//! and hands planned objects to upload tasks: first whatever an earlier run left, then
//! the new ones. [`Uploader::shutdown`] plans everything that is spooled and keeps
//! uploading for up to `shutdown_grace_secs`, then cancels what is still in flight; all
//! of that stays spooled, with its manifests, for the next start. Dropping an `Uploader`
//! cancels at once (no grace).

mod client;
mod task;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

use self::client::Destination;
use self::task::Shared;
use crate::backoff::Backoff;
use crate::config::{ConfigError, UploadConfig};
use crate::log_limit::LogLimiter;
use crate::metrics::{UploadMetrics, UploadSnapshot};
use crate::plan::ObjectPolicy;
use crate::spool::Spool;

pub use self::client::PROBE_NAME;

/// Why the uploader cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Application Default Credentials could not be loaded.
    #[error(
        "cannot load Application Default Credentials (set GOOGLE_APPLICATION_CREDENTIALS, run on GCE, or use credentials = \"anonymous\" with an emulator endpoint): {source}"
    )]
    Credentials {
        /// What the auth library said.
        source: google_cloud_auth::build_errors::Error,
    },
    /// The credentials could not produce a token at start.
    #[error("cannot authenticate to Cloud Storage: {detail}")]
    Authentication {
        /// What the client said.
        detail: String,
    },
    /// The Cloud Storage client could not be built.
    #[error("cannot build the Cloud Storage client for {endpoint}: {source}")]
    Client {
        /// The endpoint.
        endpoint: String,
        /// What the client library said.
        source: google_cloud_gax::client_builder::Error,
    },
    /// The bucket does not exist at that endpoint (HTTP 404 at start).
    #[error("bucket {bucket:?} does not exist at {endpoint} (HTTP 404)")]
    BucketNotFound {
        /// The configured bucket.
        bucket: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The credentials may not write to the bucket (HTTP 401/403 at start).
    #[error("no permission to create objects in bucket {bucket:?} (HTTP {status}): {detail}")]
    PermissionDenied {
        /// The configured bucket.
        bucket: String,
        /// 401 or 403.
        status: u16,
        /// What the service said.
        detail: String,
    },
    /// Another client error at start (e.g. 400: a bucket name the service refuses).
    #[error("bucket {bucket:?} refused the start-up check (HTTP {status}): {detail}")]
    Refused {
        /// The configured bucket.
        bucket: String,
        /// The HTTP status.
        status: u16,
        /// What the service said.
        detail: String,
    },
    /// The endpoint did not answer at start (`startup_probe = "require"`).
    #[error("cannot reach Cloud Storage endpoint {endpoint} (bucket {bucket:?}): {detail}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The configured bucket.
        bucket: String,
        /// Why (connection refused, timeout, ...).
        detail: String,
    },
    /// The runtime or its threads could not be started.
    #[error("cannot start the uploader's threads: {source}")]
    Threads {
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What [`Uploader::shutdown`] leaves behind.
#[derive(Clone, Debug, PartialEq)]
pub struct ShutdownReport {
    /// True when the spool was empty before the grace period ran out.
    pub drained: bool,
    /// Batches still spooled (uploaded at the next start).
    pub left_files: u64,
    /// Their bytes.
    pub left_bytes: u64,
    /// The counters at the end.
    pub metrics: UploadSnapshot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Run,
    Drain,
    Abort,
}

/// Reads a running uploader's counters (see [`Uploader::watch`]).
#[derive(Clone, Debug)]
pub struct UploadWatch {
    metrics: Arc<UploadMetrics>,
    spool: Arc<Spool>,
}

impl UploadWatch {
    /// The counters now (with the spool's).
    pub fn snapshot(&self) -> UploadSnapshot {
        self.metrics.snapshot(self.spool.stats())
    }
}

/// The running uploader.
#[derive(Debug)]
pub struct Uploader {
    command: watch::Sender<Command>,
    thread: Option<JoinHandle<bool>>,
    metrics: Arc<UploadMetrics>,
    spool: Arc<Spool>,
}

impl Uploader {
    /// Validates `config`, builds the client, checks the bucket (see
    /// [`crate::StartupProbe`]), and starts uploading what `spool` holds.
    ///
    /// Call it from plain threads (the daemon's main thread), not from inside a tokio
    /// runtime: it owns one. Only one uploader may use a spool at a time.
    ///
    /// # Errors
    /// A config error naming the field, missing credentials, an unknown bucket, refused
    /// permissions, or (with `startup_probe = "require"`) an unreachable endpoint.
    pub fn start(config: &UploadConfig, spool: Arc<Spool>) -> Result<Self, UploadError> {
        config.validate()?;
        // One uploader per spool at a time: whatever an earlier one held is free again.
        spool.release_all();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.concurrency.clamp(1, 4))
            // Spool reads, manifests and object assembly: one blocking thread per upload
            // at most (each thread's allocator arena keeps what it once used).
            .max_blocking_threads(config.concurrency.clamp(1, 8))
            .thread_name("sluice-upload-rt")
            .enable_all()
            .build()
            .map_err(|source| UploadError::Threads { source })?;
        let destination = runtime.block_on(async {
            let destination = Destination::connect(config).await?;
            destination
                .probe(
                    &config.prefix,
                    config.attempt_timeout(),
                    config.startup_probe,
                )
                .await?;
            Ok::<_, UploadError>(destination)
        })?;
        let metrics = Arc::new(UploadMetrics::default());
        let shared = Arc::new(Shared::new(
            Arc::clone(&spool),
            destination,
            Arc::clone(&metrics),
            Backoff::new(
                Duration::from_millis(config.backoff_min_ms),
                Duration::from_millis(config.backoff_max_ms),
            ),
            config.clone(),
        ));
        let (command, commands) = watch::channel(Command::Run);
        let dispatcher = Dispatcher {
            shared,
            concurrency: config.concurrency,
            grace: config.shutdown_grace(),
            policy: ObjectPolicy {
                max_age: config.object_max_age(),
                target_bytes: config.object_target(),
            },
        };
        let stats = spool.stats();
        tracing::info!(
            bucket = %config.bucket,
            endpoint = %config.endpoint_or_default(),
            concurrency = config.concurrency,
            object_max_age_secs = config.object_max_age_secs,
            object_target_bytes = config.object_target(),
            spooled_files = stats.files,
            planned_objects = stats.planned_objects,
            spooled_bytes = stats.bytes,
            "uploader started"
        );
        let thread = std::thread::Builder::new()
            .name("sluice-upload".into())
            .spawn(move || {
                let drained = runtime.block_on(dispatcher.run(commands));
                // Blocking reads/removes still running finish on their own; don't wait.
                runtime.shutdown_timeout(Duration::from_secs(1));
                drained
            })
            .map_err(|source| UploadError::Threads { source })?;
        Ok(Self {
            command,
            thread: Some(thread),
            metrics,
            spool,
        })
    }

    /// The counters now (with the spool's).
    pub fn metrics(&self) -> UploadSnapshot {
        self.metrics.snapshot(self.spool.stats())
    }

    /// A handle that reads the counters from other threads (a metrics endpoint) while
    /// the uploader runs.
    pub fn watch(&self) -> UploadWatch {
        UploadWatch {
            metrics: Arc::clone(&self.metrics),
            spool: Arc::clone(&self.spool),
        }
    }

    /// The spool it uploads from.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Uploads for up to the grace period (or until the spool is empty), then stops;
    /// what is left stays spooled. Blocks until the uploader's threads are gone.
    pub fn shutdown(mut self) -> ShutdownReport {
        let drained = self.stop(Command::Drain);
        let metrics = self.metrics();
        ShutdownReport {
            drained,
            left_files: metrics.spool.files,
            left_bytes: metrics.spool.bytes,
            metrics,
        }
    }

    fn stop(&mut self, command: Command) -> bool {
        let _ = self.command.send(command);
        let Some(thread) = self.thread.take() else {
            return false;
        };
        thread.join().unwrap_or_else(|_| {
            tracing::error!("the uploader thread panicked");
            false
        })
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.stop(Command::Abort);
    }
}

/// Plans objects and hands them to upload tasks, oldest first.
struct Dispatcher {
    shared: Arc<Shared>,
    concurrency: usize,
    grace: Duration,
    policy: ObjectPolicy,
}

/// Least time between two plannings triggered by commits (the timer for due batches and
/// shutdown plan at once).
const PLAN_INTERVAL: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Runs until told to stop; returns whether the spool was empty at the end.
    async fn run(self, mut commands: watch::Receiver<Command>) -> bool {
        let spool = Arc::clone(&self.shared.spool);
        let mut tasks = JoinSet::new();
        // Which object each running task holds, to give it back if the task ends early.
        let mut in_flight: HashMap<tokio::task::Id, u64> = HashMap::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        let plan_log = LogLimiter::new(Duration::from_secs(10));
        // Plan at once: an earlier run may have left batches that are due.
        let mut plan_at = Some(tokio::time::Instant::now());
        let mut plan_failures: u32 = 0;
        let mut last_plan = tokio::time::Instant::now();
        loop {
            if plan_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
                last_plan = tokio::time::Instant::now();
                plan_at = self
                    .plan(deadline.is_some(), &plan_log, &mut plan_failures)
                    .await;
            }
            let free = self.concurrency.saturating_sub(tasks.len());
            for object in spool.claim_objects(free) {
                let id = object.id;
                let handle = tasks.spawn(task::upload_object(Arc::clone(&self.shared), object));
                in_flight.insert(handle.id(), id);
            }
            if deadline.is_some()
                && tasks.is_empty()
                && !spool.has_unclaimed_objects()
                && !spool.has_unassigned()
            {
                break;
            }
            let command = *commands.borrow_and_update();
            match command {
                Command::Abort => break,
                Command::Drain if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.grace);
                    // Everything spooled becomes objects now.
                    plan_at = Some(tokio::time::Instant::now());
                    continue;
                }
                Command::Run | Command::Drain => {}
            }
            let grace_over = deadline.unwrap_or_else(far_future);
            let next_plan = plan_at.unwrap_or_else(far_future);
            tokio::select! {
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    match joined {
                        Ok((id, ())) => { in_flight.remove(&id); }
                        Err(e) => {
                            tracing::error!(error = %e, "an upload task failed; its object stays spooled");
                            if let Some(object) = in_flight.remove(&e.id()) {
                                spool.release_object(object);
                            }
                        }
                    }
                }
                () = spool.changed().notified() => {
                    // A commit: a group may have reached the target size. Plan now, or a
                    // second after the last planning when commits come in quick succession.
                    let soon = tokio::time::Instant::now().max(last_plan + PLAN_INTERVAL);
                    plan_at = Some(plan_at.map_or(soon, |at| at.min(soon)));
                }
                changed = commands.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(next_plan), if plan_at.is_some() => {}
                () = tokio::time::sleep_until(grace_over), if deadline.is_some() => {
                    let left = spool.stats();
                    tracing::warn!(
                        files = left.files,
                        bytes = left.bytes,
                        grace_secs = self.grace.as_secs(),
                        "shutdown grace period over: leaving the rest spooled for the next start"
                    );
                    break;
                }
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Cancelled uploads stay spooled (with their manifests), unclaimed for the next
        // uploader.
        for object in in_flight.into_values() {
            spool.release_object(object);
        }
        spool.is_empty()
    }

    /// Plans the objects that are due (all of them when `flush`); returns when to plan
    /// next: when the oldest waiting batch is due, or after a backoff when the manifests
    /// could not be written.
    async fn plan(
        &self,
        flush: bool,
        log: &LogLimiter,
        failures: &mut u32,
    ) -> Option<tokio::time::Instant> {
        let spool = Arc::clone(&self.shared.spool);
        let policy = self.policy;
        let planned = tokio::task::spawn_blocking(move || {
            spool.plan_objects(policy, SystemTime::now(), flush)
        })
        .await;
        let error = match planned {
            Ok(Ok(planned)) => {
                *failures = 0;
                return planned.next_due.map(|due| {
                    let wait = due
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    tokio::time::Instant::now() + wait
                });
            }
            Ok(Err(e)) => e.to_string(),
            Err(join) => join.to_string(),
        };
        let delay = self.shared.backoff.delay(*failures);
        *failures = failures.saturating_add(1);
        if let Some(held_back) = log.allow() {
            tracing::error!(%error, retry_in_ms = delay.as_millis(), similar_held_back = held_back, "cannot plan objects (writing their manifests failed); the batches stay spooled; retrying");
        }
        Some(tokio::time::Instant::now() + delay)
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
