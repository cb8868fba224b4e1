//! The driver's retry policy (the S3 driver's numbers, in a module of its
//! own): which failures are worth another attempt, how long to wait before
//! it, and how many attempts and how much time one request may use. Every
//! retry is logged at warn and counted.
//!
//! Retried (see [`transient_cause`]):
//!
//! - connection errors (refused, reset, closed before the answer) and
//!   attempts without an answer before their deadline;
//! - HTTP 408, 429, 500, 502, 503 and 504 (Azure's `ServerBusy`,
//!   `OperationTimedOut`, `InternalError`);
//! - `Md5Mismatch` and `Crc64Mismatch` (Azurite: `InvalidOperation`
//!   naming the MD5): the server found a body damaged on the way, and the
//!   driver sends it again from memory.
//!
//! Never retried: any other 4xx (denied, not found, a bad block list, a
//! failed condition), because the same request gets the same answer.
//!
//! Waits are "full jitter" exponential backoff: before retry `n` the driver
//! sleeps a uniformly random time between zero and
//! `min(15 s, 100 ms x 2^(n-1))`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use stowage_core::Metric;

use crate::config::{AzureConfig, MAX_ATTEMPTS_LIMIT};
use crate::error::{error_chain, Failure, StatusFailure};

/// The shared policy (attempts, budget, jittered backoff) of core.
pub(crate) use stowage_core::retry_policy::RetryPolicy;

/// The policy `config` asks for.
fn policy_of(config: &AzureConfig) -> RetryPolicy {
    RetryPolicy::new(
        config.max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT),
        config.retry_timeout,
    )
}

/// How many operations [`OPERATIONS`] names.
const OPERATION_COUNT: usize = 11;

/// The operations whose retries are counted separately (label `operation`
/// of `stowage_azure_retries_total`); others count as `other`.
const OPERATIONS: [&str; OPERATION_COUNT] = [
    "AbortCopyBlob",
    "CopyBlob",
    "DeleteBlob",
    "GetBlob",
    "GetBlobProperties",
    "GetBlockList",
    "ListBlobs",
    "PutBlob",
    "PutBlock",
    "PutBlockFromURL",
    "PutBlockList",
];

/// The causes of `stowage_azure_direct_url_fallbacks_total`.
pub(crate) const URL_FALLBACK_CAUSES: [&str; 3] = [
    "sas_grants_more_than_read",
    "sas_without_read",
    "sas_expired",
];

/// What the driver did, for `Storage::metrics()`.
#[derive(Debug, Default)]
pub(crate) struct RetryCounters {
    /// Retries by operation ([`OPERATIONS`], then `other`).
    retries: [AtomicU64; OPERATION_COUNT + 1],
    /// Requests that failed with a transient error after their budget.
    exhausted: AtomicU64,
    /// Requests that took more than one attempt, by the attempts they took.
    attempts: [AtomicU64; MAX_ATTEMPTS_LIMIT as usize + 1],
    /// Broken read bodies asked for again from the next byte.
    pub(crate) read_resumes: AtomicU64,
    /// Reads ended because the blob changed (ETag) meanwhile.
    pub(crate) reads_changed: AtomicU64,
    /// Ranged reads answered with the whole blob (served by skipping).
    pub(crate) ranges_ignored: AtomicU64,
    /// Copies refused because their source changed after it was read.
    pub(crate) copies_source_changed: AtomicU64,
    /// Writes whose commit answer was lost or refused, found committed
    /// after all (the committed block list is this write's, or the blob
    /// holds the expected digest).
    pub(crate) commits_reconciled: AtomicU64,
    /// Writes whose staged blocks another write's commit discarded.
    pub(crate) writes_superseded: AtomicU64,
    /// Server-side copies (Put Block From URL, Copy Blob) the server
    /// refused, after which the bytes went through this process.
    pub(crate) server_copies_refused: AtomicU64,
    /// Download URLs not handed out, by cause ([`URL_FALLBACK_CAUSES`]).
    url_fallbacks: [AtomicU64; 3],
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

    /// Records that a request ended after `attempts` attempts.
    pub(crate) fn count_attempts(&self, attempts: u32) {
        if attempts > 1 {
            let i = (attempts as usize).min(self.attempts.len() - 1);
            self.attempts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a download URL not handed out for `cause`.
    pub(crate) fn count_url_fallback(&self, cause: &str) {
        if let Some(i) = URL_FALLBACK_CAUSES.iter().position(|c| *c == cause) {
            self.url_fallbacks[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// All retries so far.
    #[cfg(test)]
    pub(crate) fn total_retries(&self) -> u64 {
        self.retries.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The retry policy of one driver and its counters, shared by clones.
#[derive(Debug)]
pub(crate) struct Retries {
    /// The policy.
    pub(crate) policy: RetryPolicy,
    /// What it did.
    pub(crate) counters: RetryCounters,
}

impl Retries {
    /// The policy of `config`, with counters at zero.
    pub(crate) fn new(config: &AzureConfig) -> Arc<Self> {
        Arc::new(Self {
            policy: policy_of(config),
            counters: RetryCounters::default(),
        })
    }

    /// The counters as metric samples (`stowage_azure_*`).
    pub(crate) fn metrics(&self) -> Vec<Metric> {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out: Vec<Metric> = OPERATIONS
            .iter()
            .copied()
            .chain(std::iter::once("other"))
            .zip(c.retries.iter())
            .map(|(op, n)| {
                Metric::counter(
                    "stowage_azure_retries_total",
                    "Azure requests sent again after a transient failure (connection error, \
                     timeout, 5xx, throttling, a damaged body), by operation.",
                    load(n),
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
                    "stowage_azure_retried_requests_total",
                    "Azure requests that took more than one attempt, by the number of attempts \
                     they took: how close requests come to azure_max_attempts.",
                    load(count),
                )
                .with_label("attempts", n.to_string()),
            );
        }
        let single = [
            (
                "stowage_azure_retries_exhausted_total",
                "Azure requests that failed with a transient error after their whole retry \
                 budget (azure_max_attempts, azure_retry_timeout_seconds).",
                &c.exhausted,
            ),
            (
                "stowage_azure_read_resumes_total",
                "Blob reads whose body broke and was asked for again from the next byte.",
                &c.read_resumes,
            ),
            (
                "stowage_azure_reads_changed_total",
                "Blob reads that ended with an error because the blob was replaced while \
                 being read.",
                &c.reads_changed,
            ),
            (
                "stowage_azure_ranges_ignored_total",
                "Ranged reads answered with the whole blob; the driver skipped to the range.",
                &c.ranges_ignored,
            ),
            (
                "stowage_azure_copies_source_changed_total",
                "Copies refused because their source was replaced after it was read.",
                &c.copies_source_changed,
            ),
            (
                "stowage_azure_commits_reconciled_total",
                "Writes whose Put Block List answer was lost or refused, found committed \
                 after all (the committed block list was the write's own, or the blob holds \
                 the expected digest).",
                &c.commits_reconciled,
            ),
            (
                "stowage_azure_writes_superseded_total",
                "Writes that failed because another write of the same blob committed first \
                 and Azure discarded their staged blocks.",
                &c.writes_superseded,
            ),
            (
                "stowage_azure_server_copies_refused_total",
                "Server-side copies (Put Block From URL, Copy Blob) the server refused; the \
                 bytes then went through this process.",
                &c.server_copies_refused,
            ),
        ];
        for (name, help, value) in single {
            out.push(Metric::counter(name, help, load(value)));
        }
        for (cause, count) in URL_FALLBACK_CAUSES.iter().zip(c.url_fallbacks.iter()) {
            out.push(
                Metric::counter(
                    "stowage_azure_direct_url_fallbacks_total",
                    "Download URLs not handed out (None), by cause: without an account key \
                     only the configured SAS could be, and it grants more than reading, does \
                     not grant reading, or has expired.",
                    load(count),
                )
                .with_label("cause", *cause),
            );
        }
        out
    }
}

/// Whether an error answer may change when the request is sent again.
pub(crate) fn retryable_answer(s: &StatusFailure) -> bool {
    if matches!(s.status, 408 | 429 | 500 | 502 | 503 | 504) {
        return true;
    }
    match s.code.as_deref().unwrap_or("") {
        "ServerBusy" | "OperationTimedOut" | "InternalError" | "Md5Mismatch" | "Crc64Mismatch" => {
            true
        }
        // Azurite's answer to a damaged body.
        "InvalidOperation" => s
            .message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("md5")),
        _ => false,
    }
}

/// Why a failed attempt may succeed when sent again; `None` when sending
/// it again cannot change the answer.
pub(crate) fn transient_cause(failure: &Failure) -> Option<String> {
    match failure {
        Failure::Timeout(_) => Some(failure.to_string()),
        Failure::Transport(e) if e.is_builder() => None,
        Failure::Transport(e) => Some(format!("connection error: {}", error_chain(e))),
        Failure::Status(s) => retryable_answer(s).then(|| failure.to_string()),
        Failure::Invalid(_) => None,
    }
}

/// Sends a request until it succeeds, fails with an error that another
/// attempt cannot change, or `policy`'s budget (attempts and time) is
/// spent; sleeps a jittered backoff between attempts. `f` sends one
/// attempt. Each retry is logged at warn (operation, blob, attempt, cause)
/// and counted in `counters`.
///
/// # Errors
/// The last attempt's failure.
///
/// # Cancel safety
/// Dropping the future drops the attempt in flight; the request may or may
/// not have reached the service.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    counters: &RetryCounters,
    operation: &'static str,
    blob: &str,
    mut f: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    // The time budget starts when an attempt first fails: a large block
    // that is slow but moving uses none of it.
    let mut started: Option<Instant> = None;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let failure = match f().await {
            Ok(value) => {
                counters.count_attempts(attempt);
                return Ok(value);
            }
            Err(failure) => failure,
        };
        let Some(cause) = transient_cause(&failure) else {
            counters.count_attempts(attempt);
            return Err(failure);
        };
        let wait = policy.backoff(attempt);
        let started = *started.get_or_insert_with(Instant::now);
        if !policy.allows_another(attempt, started, wait) {
            counters.count_attempts(attempt);
            if policy.max_attempts > 1 {
                counters.count_exhausted();
                tracing::warn!(
                    operation,
                    blob = %blob,
                    attempts = attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    cause = %cause,
                    "Azure request failed after its whole retry budget"
                );
            }
            return Err(failure);
        }
        counters.count_retry(operation);
        tracing::warn!(
            operation,
            blob = %blob,
            attempt,
            backoff_ms = wait.as_millis() as u64,
            cause = %cause,
            "retrying Azure request"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(max_attempts: u32) -> RetryPolicy {
        let mut policy = RetryPolicy::new(max_attempts, Duration::from_secs(60));
        policy.base_backoff = Duration::from_millis(1);
        policy.max_backoff = Duration::from_millis(4);
        policy
    }

    fn status(status: u16, code: &str, message: Option<&str>) -> Failure {
        Failure::Status(StatusFailure {
            status,
            code: (!code.is_empty()).then(|| code.to_string()),
            message: message.map(str::to_string),
            content_range: None,
        })
    }

    #[test]
    fn transient_failures_are_retried_and_final_ones_not() {
        for (s, code, message) in [
            (503, "ServerBusy", None),
            (500, "OperationTimedOut", None),
            (500, "InternalError", None),
            (502, "", None),
            (504, "", None),
            (429, "", None),
            (408, "", None),
            (400, "Md5Mismatch", None),
            (
                400,
                "InvalidOperation",
                Some("Provided contentMD5 doesn't match."),
            ),
            (503, "SlowDown", None),
        ] {
            assert!(
                transient_cause(&status(s, code, message)).is_some(),
                "{s} {code}"
            );
        }
        for (s, code) in [
            (404, "BlobNotFound"),
            (404, "ContainerNotFound"),
            (403, "AuthenticationFailed"),
            (403, "AuthorizationFailure"),
            (400, "InvalidBlockList"),
            (412, "ConditionNotMet"),
            (416, "InvalidRange"),
            (400, "InvalidOperation"),
            (501, "APINotImplemented"),
        ] {
            assert!(
                transient_cause(&status(s, code, None)).is_none(),
                "{s} {code}"
            );
        }
        assert!(transient_cause(&Failure::Timeout(Duration::from_secs(3))).is_some());
        assert!(transient_cause(&Failure::Invalid("x".into())).is_none());
    }

    #[tokio::test]
    async fn retries_until_success_and_stops_at_final_errors() {
        let counters = RetryCounters::default();
        let mut calls = 0;
        let result: Result<u32, Failure> = retry(&policy(5), &counters, "GetBlob", "b", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(status(503, "ServerBusy", None))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(counters.total_retries(), 2);
        let mut calls = 0;
        let result: Result<(), Failure> = retry(&policy(5), &counters, "GetBlob", "b", || {
            calls += 1;
            async { Err(status(403, "AuthenticationFailed", None)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a refused key is not sent again");
        let mut calls = 0;
        let result: Result<(), Failure> = retry(&policy(4), &counters, "PutBlock", "b", || {
            calls += 1;
            async { Err(Failure::Timeout(Duration::from_millis(1))) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 4, "max_attempts counts the first attempt");
        assert_eq!(counters.exhausted.load(Ordering::Relaxed), 1);
        let names: Vec<&str> = Retries::new(&AzureConfig::new("a", "c"))
            .metrics()
            .iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"stowage_azure_retries_total"));
        assert!(names.contains(&"stowage_azure_direct_url_fallbacks_total"));
    }
}
