//! Reads that resume: when a GetObject body breaks mid-stream (connection
//! reset, closed early, or silent for `s3_progress_timeout_seconds`), the
//! driver asks again for the bytes not yet delivered (`Range` from the next
//! byte to the end of what was asked for, `If-Match` the first response's
//! ETag) and the stream goes on where it stopped. A caller sees one
//! uninterrupted stream.
//!
//! If the object changed in between, the server answers 412 (or, for a
//! server that ignores `If-Match`, another ETag): the stream ends with an
//! error, and never mixes bytes of two versions.
//!
//! Budget: failures in a row without a byte delivered in between count
//! against the retry policy (`s3_max_attempts`, `s3_retry_timeout_seconds`
//! from the first failure of the run); each byte delivered starts a fresh
//! budget, so a long download over a flaky link is not cut short by
//! failures spread over hours. Every resumption is logged at warn and
//! counted (`stowage_s3_read_resumes_total`).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::{ByteStream as SdkBody, ByteStreamError};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use stowage_core::{Error, Result, StoragePath};

use crate::error::{from_sdk, DRIVER};
use crate::retry::transient_cause;
use crate::S3Storage;

/// Where a streamed read stands.
struct Reader {
    storage: S3Storage,
    path: StoragePath,
    key: String,
    /// The first response's ETag, pinned with `If-Match` on every
    /// resumption; `None` when the server sent none (no resumption).
    etag: Option<String>,
    /// Absolute offset of the next byte to deliver.
    next: u64,
    /// Absolute end (exclusive) of the bytes asked for; `None` when the
    /// response had no length (no resumption).
    end: Option<u64>,
    /// Bytes to drop at the start of the current body (a resumption the
    /// server answered from an earlier offset than asked).
    skip: u64,
    body: SdkBody,
    /// When the current run of failures began and how many it has: reset
    /// by every byte delivered.
    streak: Option<(Instant, u32)>,
    /// The `s3_progress_timeout_seconds` timer: armed at the first wait and
    /// moved only when it fires before the current wait's deadline, so a
    /// fast read does not arm and cancel a timer for every network chunk.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The bytes a stream delivers from a body.
pub(crate) struct Span {
    /// Absolute offset of the first byte to deliver.
    pub(crate) start: u64,
    /// Absolute end (exclusive) of the bytes to deliver; `None` when the
    /// answer had no length (no resumption).
    pub(crate) end: Option<u64>,
    /// Bytes at the start of `body` before `start` (an answer that ignored
    /// the range and sent the whole object), dropped.
    pub(crate) skip: u64,
}

/// The body of a GetObject answer as a stream that delivers exactly
/// `span` and resumes after a break; `etag` is the answer's ETag.
pub(crate) fn resuming_stream(
    storage: S3Storage,
    path: StoragePath,
    key: String,
    etag: Option<String>,
    span: Span,
    body: SdkBody,
) -> stowage_core::ByteStream {
    let reader = Reader {
        storage,
        path,
        key,
        etag,
        next: span.start,
        end: span.end,
        skip: span.skip,
        body,
        streak: None,
        idle: None,
    };
    stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// What one ranged request of the rest of a read gave.
enum Attempt {
    /// The body from the next byte (after `skip`).
    Body(SdkBody),
    /// A failure worth another attempt, with its cause.
    Transient(String),
    /// The end of the read (the object changed, or a permanent error).
    Fatal(Error),
}

/// The bytes `start..end` of the object at `key`, pinned to `etag`, as the
/// chunks the network delivered (no copy): one ranged GetObject, resumed
/// like any read when it breaks. The read-ahead of large reads
/// (read_ahead.rs) fetches its ranges with it.
pub(crate) async fn fetch_range(
    storage: S3Storage,
    path: StoragePath,
    key: String,
    etag: String,
    start: u64,
    end: u64,
) -> Result<Vec<Bytes>> {
    let mut reader = Reader {
        storage,
        path,
        key,
        etag: Some(etag.clone()),
        next: start,
        end: Some(end),
        skip: 0,
        body: SdkBody::from_static(b""),
        streak: None,
        idle: None,
    };
    // The first request goes through the retry policy, as any request
    // (counted as retries); a body that breaks later resumes.
    let request = reader.rest_request(&etag, end);
    let sent = reader
        .storage
        .retrying("GetObject", &reader.key, || request.clone().send())
        .await;
    reader.body = match reader.take_answer(&etag, sent) {
        Attempt::Body(body) => body,
        Attempt::Transient(cause) => reader.resume(cause).await?,
        Attempt::Fatal(e) => return Err(e),
    };
    let mut chunks = Vec::new();
    while let Some(chunk) = reader.next_chunk().await? {
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// The first offset of a `Content-Range: bytes START-END/SIZE` value.
fn range_start(content_range: &str) -> Option<u64> {
    content_range
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

impl Reader {
    fn what(&self) -> String {
        format!("s3://{}/{}", self.storage.bucket(), self.key)
    }

    /// The next bytes, resuming as often as the policy allows; `None` at
    /// the end of what was asked for.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let idle = self.storage.config.progress_timeout;
        loop {
            let cause = match self.next_or_idle(idle).await {
                Ok(Ok(Some(mut chunk))) => {
                    if self.skip > 0 {
                        let dropped = self.skip.min(chunk.len() as u64);
                        let _ = chunk.split_to(dropped as usize);
                        self.skip -= dropped;
                    }
                    if let Some(end) = self.end {
                        let room = end.saturating_sub(self.next);
                        if chunk.len() as u64 > room {
                            chunk.truncate(room as usize);
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    self.next += chunk.len() as u64;
                    self.streak = None;
                    return Ok(Some(chunk));
                }
                Ok(Ok(None)) => match self.end {
                    Some(end) if self.next < end => format!(
                        "the body ended at byte {}, {} bytes early",
                        self.next,
                        end - self.next
                    ),
                    _ => return Ok(None),
                },
                Ok(Err(e)) => format!("the body broke: {}", DisplayErrorContext(&e)),
                Err(_) => format!("no byte arrived for {} s", idle.as_secs()),
            };
            self.body = self.resume(cause).await?;
        }
    }

    /// The body's next item, or `Err(())` when no byte arrived for `idle`
    /// since this wait began. Bytes already received take no timer and no
    /// clock reading; a wait reads the clock once, and the one timer is
    /// moved only when it fires before this wait's deadline (at most once
    /// per `idle` of a steady read).
    async fn next_or_idle(
        &mut self,
        idle: Duration,
    ) -> std::result::Result<std::result::Result<Option<Bytes>, ByteStreamError>, ()> {
        let Reader {
            body, idle: timer, ..
        } = self;
        let mut deadline = None;
        std::future::poll_fn(|cx| {
            // The body's state lives in the body: a `try_next` dropped
            // while pending loses nothing.
            let next = body.try_next();
            let mut next = std::pin::pin!(next);
            if let Poll::Ready(item) = next.as_mut().poll(cx) {
                return Poll::Ready(Ok(item));
            }
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + idle);
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            // An earlier wait's deadline is never later than this one's.
            while timer.as_mut().poll(cx).is_ready() {
                if tokio::time::Instant::now() >= deadline {
                    return Poll::Ready(Err(()));
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }

    /// Asks for the bytes not yet delivered, pinned to the first ETag.
    async fn resume(&mut self, first_cause: String) -> Result<SdkBody> {
        let what = self.what();
        let (Some(etag), Some(end)) = (self.etag.clone(), self.end) else {
            return Err(Error::Backend {
                driver: DRIVER,
                retryable: true,
                message: format!(
                    "reading {what}: {first_cause} (the answer had no ETag or length, so the \
                     read cannot resume)"
                ),
                operation: None,
                source: None,
            });
        };
        let retries = self.storage.retries.clone();
        let policy = retries.policy;
        let mut cause = first_cause;
        loop {
            let (since, failures) = {
                let streak = self.streak.get_or_insert_with(|| (Instant::now(), 0));
                streak.1 += 1;
                *streak
            };
            let wait = policy.backoff(failures);
            if !policy.allows_another(failures, since, wait) {
                if policy.max_attempts > 1 {
                    retries.counters.count_exhausted();
                }
                tracing::warn!(
                    operation = "GetObject",
                    key = %self.key,
                    attempts = failures,
                    offset = self.next,
                    cause = %cause,
                    "S3 read failed after its whole retry budget"
                );
                return Err(Error::Backend {
                    driver: DRIVER,
                    retryable: true,
                    message: format!(
                        "reading {what}: {cause} (gave up at byte {} after {failures} attempts \
                         to resume)",
                        self.next
                    ),
                    operation: None,
                    source: None,
                });
            }
            retries
                .counters
                .read_resumes
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                operation = "GetObject",
                key = %self.key,
                attempt = failures,
                offset = self.next,
                backoff_ms = wait.as_millis() as u64,
                cause = %cause,
                "resuming S3 read from the next byte"
            );
            tokio::time::sleep(wait).await;
            match self.ask_rest(&etag, end).await {
                Attempt::Body(body) => return Ok(body),
                Attempt::Transient(c) => cause = c,
                Attempt::Fatal(e) => return Err(e),
            }
        }
    }

    /// One ranged GetObject of the bytes `next..end`, pinned to `etag`.
    async fn ask_rest(&mut self, etag: &str, end: u64) -> Attempt {
        let sent = self.rest_request(etag, end).send().await;
        self.take_answer(etag, sent)
    }

    /// The request of the bytes `next..end`, pinned to `etag`.
    fn rest_request(
        &self,
        etag: &str,
        end: u64,
    ) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
        self.storage
            .client
            .get_object()
            .bucket(self.storage.bucket())
            .key(&self.key)
            .range(format!("bytes={}-{}", self.next, end - 1))
            .if_match(etag)
    }

    /// What the answer to [`Reader::rest_request`] means for the read.
    fn take_answer(
        &mut self,
        etag: &str,
        sent: std::result::Result<
            aws_sdk_s3::operation::get_object::GetObjectOutput,
            aws_sdk_s3::error::SdkError<
                aws_sdk_s3::operation::get_object::GetObjectError,
                aws_smithy_runtime_api::http::Response,
            >,
        >,
    ) -> Attempt {
        let what = self.what();
        match sent {
            Ok(out) => {
                // A server that ignores If-Match still says which
                // version it sent.
                if let Some(now) = out.e_tag() {
                    if now != etag {
                        return Attempt::Fatal(self.changed(etag, Some(now)));
                    }
                }
                // Without a Content-Range the server sent the whole
                // object (it ignored the Range).
                let start = out.content_range().and_then(range_start).unwrap_or(0);
                if start > self.next {
                    return Attempt::Fatal(Error::Backend {
                        driver: DRIVER,
                        retryable: false,
                        message: format!(
                            "reading {what}: asked for bytes from {}, the server answered \
                             from byte {start}",
                            self.next
                        ),
                        operation: None,
                        source: None,
                    });
                }
                self.skip = self.next - start;
                Attempt::Body(out.body)
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                // 412: If-Match failed, another version is there;
                // 404: the object is gone.
                if matches!(status, Some(412 | 404)) || e.code() == Some("PreconditionFailed") {
                    let now = (status == Some(404)).then_some("deleted");
                    return Attempt::Fatal(self.changed(etag, now));
                }
                match transient_cause(&e) {
                    Some(c) => Attempt::Transient(c),
                    None => Attempt::Fatal(from_sdk(
                        e,
                        self.storage.op("GetObject", &self.key),
                        self.path.as_str(),
                    )),
                }
            }
        }
    }

    /// The error of a read whose object was replaced while being read.
    fn changed(&self, etag: &str, now: Option<&str>) -> Error {
        self.storage
            .retries
            .counters
            .reads_changed
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            key = %self.key,
            offset = self.next,
            etag = %etag,
            "an S3 object changed while being read; the read ends with an error"
        );
        let now = now.map(|n| format!(", now {n}")).unwrap_or_default();
        Error::Backend {
            driver: DRIVER,
            retryable: false,
            message: format!(
                "reading {}: the object changed while it was being read (ETag was {etag}{now}); \
                 the bytes delivered, up to offset {}, were all of the old version and none of \
                 the new one is mixed in",
                self.what(),
                self.next
            ),
            operation: None,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/1000"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */1000"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
