//! The Cloud Storage side: building the client (credentials, endpoint), the start-up
//! probe of the bucket, one create-only upload attempt, and how its errors are sorted
//! into retryable and permanent.
//!
//! The client's own retry loop is switched off (`NeverRetry`): every attempt is one
//! request, bounded by `attempt_timeout_secs`, so that retries are counted, backed off
//! and logged in one place (`task.rs`) and continue for as long as the spool holds the
//! batch rather than for the client's 300 s.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_storage::client::Storage;

use super::UploadError;
use crate::config::{CredentialsSource, StartupProbe, UploadConfig};
use crate::metrics::UploadOutcome;

/// A client bound to one bucket.
#[derive(Debug)]
pub(crate) struct Destination {
    client: Storage,
    /// `projects/_/buckets/<bucket>`, as the client wants it.
    bucket_path: String,
    /// The bare bucket name, for messages.
    pub(crate) bucket: String,
    /// The endpoint, for messages.
    pub(crate) endpoint: String,
}

/// How an attempt ended, with the reason for the log when it failed.
#[derive(Debug)]
pub(crate) struct AttemptResult {
    pub(crate) outcome: UploadOutcome,
    pub(crate) detail: String,
}

impl Destination {
    /// Builds the client: credentials first (a missing ADC is an error here, not at the
    /// first upload), then the endpoint.
    pub(crate) async fn connect(config: &UploadConfig) -> Result<Self, UploadError> {
        let credentials = match config.credentials {
            CredentialsSource::Adc => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|source| UploadError::Credentials { source })?,
            CredentialsSource::Anonymous => {
                google_cloud_auth::credentials::anonymous::Builder::new().build()
            }
        };
        let mut builder = Storage::builder()
            .with_credentials(credentials)
            .with_retry_policy(NeverRetry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let client = builder
            .build()
            .await
            .map_err(|source| UploadError::Client {
                endpoint: config.endpoint_or_default().to_owned(),
                source,
            })?;
        Ok(Self {
            client,
            bucket_path: format!("projects/_/buckets/{}", config.bucket),
            bucket: config.bucket.clone(),
            endpoint: config.endpoint_or_default().to_owned(),
        })
    }

    /// One create-only upload of `payload` (whose CRC32C is known from the spool) as
    /// `object`, bounded by `timeout`.
    pub(crate) async fn upload(
        &self,
        object: &str,
        payload: Bytes,
        crc32c: u32,
        timeout: Duration,
    ) -> AttemptResult {
        let write = self
            .client
            .write_object(&self.bucket_path, object, payload)
            .set_if_generation_match(0)
            .with_known_crc32c(crc32c)
            .send_buffered();
        Self::attempt(timeout, write).await
    }

    /// One create-only upload of the file at `path` (read from its start, streamed),
    /// whose CRC32C is known, as `object`, bounded by `timeout`.
    pub(crate) async fn upload_file(
        &self,
        object: &str,
        path: &Path,
        crc32c: u32,
        timeout: Duration,
    ) -> AttemptResult {
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(e) => {
                return AttemptResult {
                    outcome: UploadOutcome::RetryableError,
                    detail: format!("cannot open {}: {e}", path.display()),
                };
            }
        };
        // Streamed from the file, not collected in memory first (`send_buffered` would
        // hold a whole single-shot object); the known CRC32C goes in the request's
        // metadata, so the client adds no trailing checksum part.
        let write = self
            .client
            .write_object(&self.bucket_path, object, file)
            .set_if_generation_match(0)
            .with_known_crc32c(crc32c)
            .send_unbuffered();
        Self::attempt(timeout, write).await
    }

    async fn attempt<T>(
        timeout: Duration,
        write: impl Future<Output = Result<T, google_cloud_storage::Error>>,
    ) -> AttemptResult {
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(_)) => AttemptResult {
                outcome: UploadOutcome::Ok,
                detail: String::new(),
            },
            Ok(Err(e)) => AttemptResult {
                outcome: classify(&e),
                detail: describe(&e),
            },
            Err(_) => AttemptResult {
                outcome: UploadOutcome::RetryableError,
                detail: format!("attempt timed out after {}s", timeout.as_secs()),
            },
        }
    }

    /// Checks at start that the bucket exists and takes writes, without creating
    /// anything: a write of an empty object with `ifGenerationMatch=1` to a name that
    /// does not exist fails with 412 when bucket and permissions are right, 404 when the
    /// bucket does not exist, 401/403 when the credentials may not write.
    pub(crate) async fn probe(
        &self,
        prefix: &str,
        timeout: Duration,
        mode: StartupProbe,
    ) -> Result<(), UploadError> {
        let object = if prefix.is_empty() {
            PROBE_NAME.to_owned()
        } else {
            format!("{prefix}/{PROBE_NAME}")
        };
        let write = self
            .client
            .write_object(&self.bucket_path, &object, Bytes::new())
            .set_if_generation_match(1)
            .send_buffered();
        let error = match tokio::time::timeout(timeout, write).await {
            Ok(Ok(_)) => {
                tracing::warn!(
                    bucket = %self.bucket,
                    endpoint = %self.endpoint,
                    object,
                    "the endpoint created an object despite ifGenerationMatch=1: it ignores preconditions, so create-only uploads are not guaranteed (an emulator?)"
                );
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(_) => {
                return self.unreachable(mode, format!("no answer within {}s", timeout.as_secs()));
            }
        };
        match error.http_status_code() {
            Some(412) => Ok(()),
            Some(404) => Err(UploadError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
            }),
            Some(status @ (401 | 403)) => Err(UploadError::PermissionDenied {
                bucket: self.bucket.clone(),
                status,
                detail: describe(&error),
            }),
            Some(status @ 400..=499) if status != 408 && status != 429 => {
                Err(UploadError::Refused {
                    bucket: self.bucket.clone(),
                    status,
                    detail: describe(&error),
                })
            }
            _ if error.is_authentication() => Err(UploadError::Authentication {
                detail: describe(&error),
            }),
            _ => self.unreachable(mode, describe(&error)),
        }
    }

    fn unreachable(&self, mode: StartupProbe, detail: String) -> Result<(), UploadError> {
        match mode {
            StartupProbe::Require => Err(UploadError::Unreachable {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                detail,
            }),
            StartupProbe::Warn => {
                tracing::warn!(
                    endpoint = %self.endpoint,
                    bucket = %self.bucket,
                    %detail,
                    "cannot reach the bucket at start; spooling until it is reachable (startup_probe = \"warn\")"
                );
                Ok(())
            }
        }
    }
}

/// Object name (under the prefix) the start-up probe pretends to write; never created.
pub const PROBE_NAME: &str = "_sluice_probe";

/// Sorts a failed attempt: 412 is success ("already there"); 408, 429, 5xx, timeouts,
/// connection and I/O errors, and transient credential errors are retried with backoff;
/// other 4xx (403, 404, 400) and lasting credential errors are permanent.
pub(crate) fn classify(error: &google_cloud_storage::Error) -> UploadOutcome {
    match error.http_status_code() {
        Some(412) => UploadOutcome::Exists,
        Some(408 | 429) => UploadOutcome::RetryableError,
        Some(400..=499) => UploadOutcome::PermanentError,
        Some(_) => UploadOutcome::RetryableError,
        None if error.is_authentication() => {
            let transient = error
                .source()
                .and_then(|s| s.downcast_ref::<google_cloud_auth::errors::CredentialsError>())
                .is_none_or(google_cloud_auth::errors::CredentialsError::is_transient);
            if transient {
                UploadOutcome::RetryableError
            } else {
                UploadOutcome::PermanentError
            }
        }
        None => UploadOutcome::RetryableError,
    }
}

/// One line: the error and, when it adds something, its root cause (the client's error
/// chains repeat themselves; the first and the last link say what happened).
pub(crate) fn describe(error: &google_cloud_storage::Error) -> String {
    let mut text = error.to_string();
    let mut root = error.source();
    while let Some(next) = root.and_then(std::error::Error::source) {
        root = Some(next);
    }
    if let Some(root) = root.map(ToString::to_string)
        && !text.contains(&root)
    {
        text.push_str(": ");
        text.push_str(&root);
    }
    text.replace('\n', " ")
}
