//! Reads that resume: when a Get Blob body breaks mid-stream (connection
//! reset, closed early, or silent for `azure_progress_timeout_seconds`),
//! the driver asks again for the bytes not yet delivered (`x-ms-range` from
//! the next byte to the end of what was asked for, `If-Match` the first
//! answer's ETag) and the stream goes on where it stopped.
//!
//! If the blob changed in between, the service answers 412 (or another
//! ETag, which the driver checks too; a deleted blob answers 404): the
//! stream ends with an error and never mixes bytes of two versions.
//!
//! Budget: failures in a row without a byte delivered in between count
//! against the retry policy; each byte delivered starts a fresh budget.
//! Every resumption is logged at warn and counted
//! (`stowage_azure_read_resumes_total`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Method;
use stowage_core::{Error, Result, StoragePath};

use crate::client::{header, Call};
use crate::error::{error_chain, into_error, DRIVER};
use crate::reads::parse_content_range;
use crate::retry::transient_cause;
use crate::AzureStorage;

/// The bytes a stream delivers from an answer's body.
pub(crate) struct Span {
    /// Absolute offset of the first byte to deliver.
    pub(crate) start: u64,
    /// Absolute end (exclusive) of the bytes to deliver.
    pub(crate) end: u64,
    /// Bytes at the start of the body before `start` (an answer that
    /// covered more than asked), dropped.
    pub(crate) skip: u64,
}

type Body = BoxStream<'static, reqwest::Result<Bytes>>;

/// Where a streamed read stands.
struct Reader {
    storage: AzureStorage,
    path: StoragePath,
    name: String,
    /// The first answer's ETag, pinned on every resumption; `None`: the
    /// read cannot resume.
    etag: Option<String>,
    /// Absolute offset of the next byte to deliver.
    next: u64,
    /// Absolute end (exclusive) of the bytes asked for.
    end: u64,
    /// Bytes to drop at the start of the current body.
    skip: u64,
    body: Body,
    /// When the current run of failures began and how many it has.
    streak: Option<(Instant, u32)>,
}

/// The body of a Get Blob answer as a stream that delivers exactly `span`
/// and resumes after a break; `etag` is the answer's ETag.
pub(crate) fn resuming_stream(
    storage: AzureStorage,
    path: StoragePath,
    name: String,
    etag: Option<String>,
    span: Span,
    response: reqwest::Response,
) -> stowage_core::ByteStream {
    let reader = Reader {
        storage,
        path,
        name,
        etag,
        next: span.start,
        end: span.end,
        skip: span.skip,
        body: response.bytes_stream().boxed(),
        streak: None,
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

impl Reader {
    fn what(&self) -> String {
        format!("{}/{}", self.storage.container(), self.name)
    }

    /// The next bytes, resuming as often as the policy allows; `None` at
    /// the end of what was asked for.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let idle = self.storage.config.progress_timeout;
        loop {
            // Done: the rest of an answer that covered more is not read.
            if self.next >= self.end {
                return Ok(None);
            }
            let cause = match tokio::time::timeout(idle, self.body.next()).await {
                Ok(Some(Ok(mut chunk))) => {
                    if self.skip > 0 {
                        let dropped = self.skip.min(chunk.len() as u64);
                        let _ = chunk.split_to(dropped as usize);
                        self.skip -= dropped;
                    }
                    let room = self.end - self.next;
                    if chunk.len() as u64 > room {
                        chunk.truncate(room as usize);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    self.next += chunk.len() as u64;
                    self.streak = None;
                    return Ok(Some(chunk));
                }
                Ok(None) => format!(
                    "the body ended at byte {}, {} bytes early",
                    self.next,
                    self.end - self.next
                ),
                Ok(Some(Err(e))) => format!("the body broke: {}", error_chain(&e)),
                Err(_) => format!("no byte arrived for {} s", idle.as_secs()),
            };
            self.body = self.resume(cause).await?;
        }
    }

    /// Asks for the bytes not yet delivered, pinned to the first ETag.
    async fn resume(&mut self, first_cause: String) -> Result<Body> {
        let what = self.what();
        let Some(etag) = self.etag.clone() else {
            return Err(Error::Backend {
                driver: DRIVER,
                retryable: true,
                message: format!(
                    "reading {what}: {first_cause} (the answer had no ETag, so the read cannot \
                     resume)"
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
                    operation = "GetBlob",
                    blob = %self.name,
                    attempts = failures,
                    offset = self.next,
                    cause = %cause,
                    "Azure read failed after its whole retry budget"
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
                operation = "GetBlob",
                blob = %self.name,
                attempt = failures,
                offset = self.next,
                backoff_ms = wait.as_millis() as u64,
                cause = %cause,
                "resuming Azure read from the next byte"
            );
            tokio::time::sleep(wait).await;
            let call = Call::blob(Method::GET, &self.name)
                .header(
                    "x-ms-range",
                    format!("bytes={}-{}", self.next, self.end - 1),
                )
                .header("if-match", etag.clone());
            let sent = self
                .storage
                .client
                .send(&call, self.storage.config.first_byte_timeout)
                .await;
            match sent {
                Ok(response) => {
                    let headers = response.headers();
                    // A server that ignores If-Match still says which
                    // version it sent.
                    if let Some(now) = header(headers, "etag") {
                        if now != etag {
                            return Err(self.changed(&etag, Some(now.as_str())));
                        }
                    }
                    // A 200 is the whole blob (the range was ignored).
                    let start = if response.status().as_u16() == 206 {
                        header(headers, "content-range")
                            .and_then(|c| parse_content_range(&c))
                            .and_then(|(span, _)| span)
                            .map(|(first, _)| first)
                    } else {
                        Some(0)
                    };
                    let Some(start) = start.filter(|s| *s <= self.next) else {
                        return Err(Error::Backend {
                            driver: DRIVER,
                            retryable: false,
                            message: format!(
                                "reading {what}: asked to resume at byte {}, the answer does \
                                 not start at or before it",
                                self.next
                            ),
                            operation: None,
                            source: None,
                        });
                    };
                    self.skip = self.next - start;
                    return Ok(response.bytes_stream().boxed());
                }
                Err(f) => {
                    // 412: If-Match failed, another version is there;
                    // 404: the blob is gone.
                    if f.has_status(412) || (f.has_status(404) && !f.has_code("ContainerNotFound"))
                    {
                        let now = f.has_status(404).then_some("deleted");
                        return Err(self.changed(&etag, now));
                    }
                    match transient_cause(&f) {
                        Some(c) => cause = c,
                        None => {
                            return Err(into_error(
                                f,
                                self.storage.op("GetBlob", &self.name),
                                self.path.as_str(),
                            ))
                        }
                    }
                }
            }
        }
    }

    /// The error of a read whose blob was replaced while being read.
    fn changed(&self, etag: &str, now: Option<&str>) -> Error {
        self.storage
            .retries
            .counters
            .reads_changed
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            blob = %self.name,
            offset = self.next,
            etag = %etag,
            "an Azure blob changed while being read; the read ends with an error"
        );
        let now = now.map(|n| format!(", now {n}")).unwrap_or_default();
        Error::Backend {
            driver: DRIVER,
            retryable: false,
            message: format!(
                "reading {}: the blob changed while it was being read (ETag was {etag}{now}); \
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
