//! The driver's retry policy: which failures are worth another attempt,
//! how long to wait before it, and how many attempts and how much time one
//! request may use. Every retry is logged at warn and counted.
//!
//! One policy for every request the driver sends; the SDK's own retry is
//! off (one attempt per SDK call), so attempts do not multiply and the time
//! budget holds. What is retried (see [`transient_cause`]):
//!
//! - connection errors (refused, reset, closed early) and timeouts;
//! - responses that broke while being read;
//! - HTTP 500, 502, 503, 504, 408 and 429;
//! - the codes `SlowDown`, `Throttling`, `ThrottlingException`,
//!   `RequestTimeout`, `InternalError`, `ServiceUnavailable` (also inside a
//!   200 answer, as S3 sends for CompleteMultipartUpload and copies);
//! - `BadDigest`, `InvalidDigest` (Garage's code for a mismatch; the
//!   driver's own Content-MD5 is always well-formed),
//!   `XAmzContentSHA256Mismatch` and `IncompleteBody`: the bytes were
//!   damaged or cut in transit (the server checked them against the
//!   Content-MD5 or the signed SHA-256), and the driver sends them again
//!   from memory.
//!
//! Never retried: any other 4xx (denied, not found, invalid argument,
//! NoSuchUpload, PreconditionFailed) and TLS handshakes that fail on the
//! endpoint's certificate or because it does not speak TLS (`tls.rs`):
//! sending the same request again cannot change the answer. Credential
//! failures are left to the credential source.
//!
//! Waits are "full jitter" exponential backoff: before retry `n` the driver
//! sleeps a uniformly random time between zero and
//! `min(max_backoff, base_backoff x 2^(n-1))`, so many clients throttled at
//! once do not come back in step.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_types::retry::ErrorKind as SdkErrorKind;
use stowage_core::{CredentialsFailure, Metric};

use crate::config::MAX_ATTEMPTS_LIMIT;
use crate::{S3Config, S3Storage};

/// The shared policy (attempts, budget, jittered backoff) of core.
pub(crate) use stowage_core::retry_policy::RetryPolicy;

/// The policy `config` asks for.
fn policy_of(config: &S3Config) -> RetryPolicy {
    RetryPolicy::new(
        config.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT),
        config.retry_timeout,
    )
}

/// How many operations [`OPERATIONS`] names.
const OPERATION_COUNT: usize = 14;

/// The operations whose retries are counted separately (label
/// `operation` of `stowage_s3_retries_total`); others count as `other`.
const OPERATIONS: [&str; OPERATION_COUNT] = [
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CreateMultipartUpload",
    "DeleteObject",
    "DeleteObjects",
    "GetObject",
    "HeadObject",
    "ListMultipartUploads",
    "ListObjectsV2",
    "PutBucketCors",
    "PutObject",
    "UploadPart",
    "UploadPartCopy",
];

/// What the retry policy did, for `Storage::metrics()`. (`Default` covers
/// arrays of up to 32 counters: `MAX_ATTEMPTS_LIMIT` stays below that.)
#[derive(Debug, Default)]
pub(crate) struct RetryCounters {
    /// Retries by operation ([`OPERATIONS`], then `other`).
    retries: [AtomicU64; OPERATION_COUNT + 1],
    /// Requests that failed with a transient error after their budget was
    /// spent.
    exhausted: AtomicU64,
    /// Requests that took more than one attempt, by the attempts they took
    /// (index = attempts, 2 to [`MAX_ATTEMPTS_LIMIT`]).
    attempts: [AtomicU64; MAX_ATTEMPTS_LIMIT as usize + 1],
    /// GetObject bodies that broke and were asked for again from the next
    /// byte.
    pub(crate) read_resumes: AtomicU64,
    /// Reads that ended with an error because the object changed (ETag)
    /// between the first response and a resumption.
    pub(crate) reads_changed: AtomicU64,
    /// CompleteMultipartUpload calls whose answers were lost, found
    /// completed by a HEAD showing the upload's own multipart ETag.
    pub(crate) completions_reconciled: AtomicU64,
    /// Ranged GetObject calls answered with the whole object (the range
    /// was served by skipping to it).
    pub(crate) ranges_ignored: AtomicU64,
    /// Copies refused because their source changed after it was read
    /// (`x-amz-copy-source-if-match` failed).
    pub(crate) copies_source_changed: AtomicU64,
}

impl RetryCounters {
    /// Counts one retry of `operation`.
    pub(crate) fn count_retry(&self, operation: &str) {
        let i = OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(OPERATION_COUNT);
        self.retries[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that gave up with its budget spent.
    pub(crate) fn count_exhausted(&self) {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that a request ended (succeeded, or gave up) after
    /// `attempts` attempts; single attempts are not recorded.
    pub(crate) fn count_attempts(&self, attempts: u32) {
        if attempts > 1 {
            let i = (attempts as usize).min(self.attempts.len() - 1);
            self.attempts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// All retries so far, every operation together.
    #[cfg(test)]
    pub(crate) fn total_retries(&self) -> u64 {
        self.retries.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The retry policy of one driver and its counters, shared by all clones
/// of an [`S3Storage`] (it holds one in an `Arc`).
#[derive(Debug)]
pub(crate) struct Retries {
    /// The policy.
    pub(crate) policy: RetryPolicy,
    /// What it did.
    pub(crate) counters: RetryCounters,
}

impl Retries {
    /// The policy of `config`, with counters at zero.
    pub(crate) fn new(config: &S3Config) -> Arc<Self> {
        Arc::new(Self {
            policy: policy_of(config),
            counters: RetryCounters::default(),
        })
    }

    /// The counters as metric samples: `stowage_s3_retries_total{operation}`,
    /// `stowage_s3_retried_requests_total{attempts}` (2 to the configured
    /// maximum), `stowage_s3_retries_exhausted_total`, `stowage_s3_read_resumes_total`,
    /// `stowage_s3_reads_changed_total`,
    /// `stowage_s3_completions_reconciled_total`,
    /// `stowage_s3_ranges_ignored_total`, `stowage_s3_copies_source_changed_total`.
    pub(crate) fn metrics(&self) -> Vec<Metric> {
        let c = &self.counters;
        let mut out: Vec<Metric> = OPERATIONS
            .iter()
            .copied()
            .chain(std::iter::once("other"))
            .zip(c.retries.iter())
            .map(|(op, n)| {
                Metric::counter(
                    "stowage_s3_retries_total",
                    "S3 requests sent again after a transient failure (connection error, timeout, \
                     5xx, throttling), by operation.",
                    n.load(Ordering::Relaxed),
                )
                .with_label("operation", op)
            })
            .collect();
        for (n, count) in c.attempts.iter().enumerate().skip(2) {
            if n > self.policy.max_attempts as usize {
                break;
            }
            out.push(
                Metric::counter(
                    "stowage_s3_retried_requests_total",
                    "S3 requests that took more than one attempt, by the number of attempts \
                     they took (the last succeeded, or the budget ran out): how close requests \
                     come to s3_max_attempts.",
                    count.load(Ordering::Relaxed),
                )
                .with_label("attempts", n.to_string()),
            );
        }
        out.push(Metric::counter(
            "stowage_s3_retries_exhausted_total",
            "S3 requests that failed with a transient error after using their whole retry \
             budget (s3_max_attempts, s3_retry_timeout_seconds).",
            c.exhausted.load(Ordering::Relaxed),
        ));
        out.push(Metric::counter(
            "stowage_s3_read_resumes_total",
            "Object reads whose body broke and was asked for again from the next byte.",
            c.read_resumes.load(Ordering::Relaxed),
        ));
        out.push(Metric::counter(
            "stowage_s3_reads_changed_total",
            "Object reads that ended with an error because the object was replaced while \
             being read.",
            c.reads_changed.load(Ordering::Relaxed),
        ));
        out.push(Metric::counter(
            "stowage_s3_completions_reconciled_total",
            "CompleteMultipartUpload calls whose answers were lost, confirmed complete by a \
             HEAD that found the upload's own multipart ETag.",
            c.completions_reconciled.load(Ordering::Relaxed),
        ));
        out.push(Metric::counter(
            "stowage_s3_ranges_ignored_total",
            "Ranged reads the server answered with the whole object; the driver skipped to \
             the range asked for.",
            c.ranges_ignored.load(Ordering::Relaxed),
        ));
        out.push(Metric::counter(
            "stowage_s3_copies_source_changed_total",
            "Copies refused because their source was replaced after it was read (the copy \
             is pinned to the source's ETag).",
            c.copies_source_changed.load(Ordering::Relaxed),
        ));
        out
    }
}

/// Why a failed request may succeed when sent again; `None` when sending
/// it again cannot change the answer.
pub(crate) fn transient_cause<E>(err: &SdkError<E, HttpResponse>) -> Option<String>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // A credential source that failed said what is wrong; retrying a
    // credential failure is the source's business, not the request's.
    if CredentialsFailure::find(err).is_some() {
        return None;
    }
    match err {
        SdkError::ConstructionFailure(_) => None,
        SdkError::TimeoutError(_) => Some("timed out".into()),
        SdkError::DispatchFailure(d) => {
            if crate::tls::TlsFailure::of(err).is_some() {
                // An untrusted CA, a certificate for another name, a port
                // without TLS: the same on every attempt.
                None
            } else if d.is_timeout() {
                Some("timed out".into())
            } else if d.is_io() {
                Some(format!("connection error: {}", detail(err)))
            } else if d.is_user() {
                None
            } else {
                match d.as_other() {
                    Some(
                        SdkErrorKind::TransientError
                        | SdkErrorKind::ThrottlingError
                        | SdkErrorKind::ServerError,
                    ) => Some(format!("connection error: {}", detail(err))),
                    _ => None,
                }
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            (status < 400 || retryable_status(status))
                .then(|| format!("broken response (HTTP {status}): {}", detail(err)))
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = err.code().unwrap_or("");
            (retryable_status(status) || retryable_code(code)).then(|| {
                if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status} {code}")
                }
            })
        }
        _ => None,
    }
}

/// Statuses worth another attempt.
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Error codes worth another attempt, whatever the status.
fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeout"
            | "InternalError"
            | "ServiceUnavailable"
            | "BadDigest"
            | "InvalidDigest"
            | "XAmzContentSHA256Mismatch"
            | "IncompleteBody"
    )
}

/// The error with its sources, short enough for a log line.
fn detail<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: std::error::Error + 'static,
{
    DisplayErrorContext(err)
        .to_string()
        .chars()
        .take(300)
        .collect()
}

/// Sends a request until it succeeds, fails with an error that another
/// attempt cannot change, or `policy`'s budget (attempts and time) is
/// spent; sleeps a jittered backoff between attempts. `f` builds and sends
/// one attempt. Each retry is logged at warn (operation, key, attempt,
/// cause) and counted in `counters`.
///
/// # Errors
/// The last attempt's error.
///
/// # Cancel safety
/// Dropping the future drops the attempt in flight; the request may or may
/// not have reached the server.
pub(crate) async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    counters: &RetryCounters,
    operation: &'static str,
    key: &str,
    mut f: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // The time budget starts when an attempt first fails: an attempt that
    // is slow but working (a large part on a slow link) uses none of it,
    // and one that stalls until its deadline is still sent again.
    let mut started: Option<Instant> = None;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let err = match f().await {
            Ok(value) => {
                counters.count_attempts(attempt);
                return Ok(value);
            }
            Err(err) => err,
        };
        let Some(cause) = transient_cause(&err) else {
            counters.count_attempts(attempt);
            return Err(err);
        };
        let wait = policy.backoff(attempt);
        let started = *started.get_or_insert_with(Instant::now);
        if !policy.allows_another(attempt, started, wait) {
            counters.count_attempts(attempt);
            if policy.max_attempts > 1 {
                counters.count_exhausted();
                tracing::warn!(
                    operation,
                    key = %key,
                    attempts = attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    cause = %cause,
                    "S3 request failed after its whole retry budget"
                );
            }
            return Err(err);
        }
        counters.count_retry(operation);
        tracing::warn!(
            operation,
            key = %key,
            attempt,
            backoff_ms = wait.as_millis() as u64,
            cause = %cause,
            "retrying S3 request"
        );
        tokio::time::sleep(wait).await;
    }
}

impl S3Storage {
    /// [`retry`] with this driver's policy and counters.
    ///
    /// # Errors
    /// The last attempt's error.
    pub(crate) async fn retrying<T, E, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        f: F,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        retry(
            &self.retries.policy,
            &self.retries.counters,
            operation,
            key,
            f,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use std::time::Duration;

    fn policy(max_attempts: u32) -> RetryPolicy {
        let mut policy = RetryPolicy::new(max_attempts, Duration::from_secs(60));
        policy.base_backoff = Duration::from_millis(1);
        policy.max_backoff = Duration::from_millis(4);
        policy
    }

    fn service_error(status: u16, code: &str) -> SdkError<HeadObjectError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).build();
        let raw = HttpResponse::new(status.try_into().expect("a status code"), SdkBody::empty());
        SdkError::service_error(HeadObjectError::generic(meta), raw)
    }

    fn io_error() -> SdkError<HeadObjectError, HttpResponse> {
        SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ))))
    }

    #[test]
    fn transient_failures_are_retried_and_final_ones_not() {
        for (status, code) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (200, "InternalError"),
            (502, ""),
            (504, ""),
            (429, ""),
            (400, "RequestTimeout"),
            (400, "BadDigest"),
            (400, "XAmzContentSHA256Mismatch"),
            (400, "InvalidDigest"),
            (503, "ServiceUnavailable"),
        ] {
            assert!(
                transient_cause(&service_error(status, code)).is_some(),
                "{status} {code}"
            );
        }
        for (status, code) in [
            (404, "NoSuchUpload"),
            (404, "NoSuchKey"),
            (403, "AccessDenied"),
            (400, "InvalidArgument"),
            (412, "PreconditionFailed"),
            (416, "InvalidRange"),
            (400, "InvalidPart"),
        ] {
            assert!(
                transient_cause(&service_error(status, code)).is_none(),
                "{status} {code}"
            );
        }
        assert!(transient_cause(&io_error())
            .unwrap()
            .contains("connection error"));
        let timeout: SdkError<HeadObjectError, HttpResponse> =
            SdkError::timeout_error("attempt timeout");
        assert!(transient_cause(&timeout).is_some());
        let construction: SdkError<HeadObjectError, HttpResponse> =
            SdkError::construction_failure("bad input");
        assert!(transient_cause(&construction).is_none());
    }

    #[test]
    fn a_certificate_the_client_does_not_trust_is_not_retried() {
        let untrusted: SdkError<HeadObjectError, HttpResponse> = SdkError::dispatch_failure(
            ConnectorError::io(Box::new(std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            )))),
        );
        assert!(transient_cause(&untrusted).is_none());
        assert!(transient_cause(&io_error()).is_some(), "a reset still is");
    }

    #[tokio::test]
    async fn retries_until_success_and_counts() {
        let counters = RetryCounters::default();
        let mut calls = 0;
        let result: Result<u32, _> = retry(&policy(5), &counters, "HeadObject", "k", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(service_error(503, "SlowDown"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(counters.total_retries(), 2);
        assert_eq!(counters.exhausted.load(Ordering::Relaxed), 0);
        assert_eq!(counters.attempts[3].load(Ordering::Relaxed), 1);
        let first_time: Result<u32, _> =
            retry(&policy(5), &counters, "HeadObject", "k", || async {
                Ok::<u32, SdkError<HeadObjectError, HttpResponse>>(1)
            })
            .await;
        assert!(first_time.is_ok());
        let recorded: u64 = counters
            .attempts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        assert_eq!(
            recorded, 1,
            "requests that took one attempt are not recorded"
        );
    }

    #[tokio::test]
    async fn stops_at_a_final_error_and_at_the_attempt_budget() {
        let counters = RetryCounters::default();
        let mut calls = 0;
        let result: Result<(), _> = retry(&policy(5), &counters, "HeadObject", "k", || {
            calls += 1;
            async { Err(service_error(403, "AccessDenied")) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a 403 is not sent again");

        let mut calls = 0;
        let result: Result<(), _> = retry(&policy(4), &counters, "UploadPart", "k", || {
            calls += 1;
            async { Err(io_error()) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 4, "max_attempts counts the first attempt");
        assert_eq!(counters.total_retries(), 3);
        assert_eq!(counters.exhausted.load(Ordering::Relaxed), 1);
        assert_eq!(counters.attempts[4].load(Ordering::Relaxed), 1);
    }
}
