//! S3 multipart uploads: starting one, the part uploads and copies, and
//! completion with its reconciliation (a retried CompleteMultipartUpload
//! that finds the upload gone checks the object is there, whole) and abort;
//! the `MultipartSink` the core writer drives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as SdkPart};
use bytes::Bytes;
use stowage_core::multipart::{AbortOnDrop, CompletedPart, MultipartSink};
use stowage_core::{Error, ObjectMeta, Result, StoragePath};
use tracing::Instrument;

use crate::error::{from_sdk, DRIVER};
use crate::retry::transient_cause;
use crate::writes::{body_md5, content_md5, send_body};
use crate::S3Storage;

impl S3Storage {
    /// Starts a multipart upload of `key` (CreateMultipartUpload with the
    /// write settings, retried).
    ///
    /// The request runs in a task of its own, which hands the upload over
    /// with an armed [`AbortOnDrop`]. A caller dropped while the request is
    /// in flight (a client gone, a cancelled copy), or before it took the
    /// answer, would otherwise leave an upload the server created and
    /// nobody knows the id of; the guard, dropped with the unanswered
    /// channel, aborts it instead. The caller disarms it only once it holds
    /// the upload, with no await in between, and arms its own. A retry
    /// after a lost answer may still leave the first upload behind, unused:
    /// `cleanup_uploads` (or a lifecycle rule) aborts it.
    pub(crate) async fn start_multipart(
        &self,
        key: &str,
        path: &StoragePath,
        content_type: Option<String>,
    ) -> Result<Arc<S3Multipart>> {
        let (taken, handed) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let (task_key, task_path) = (key.to_string(), path.clone());
        let create = async move {
            let created = this
                .retrying("CreateMultipartUpload", &task_key, || {
                    let create = this
                        .client
                        .create_multipart_upload()
                        .bucket(this.bucket())
                        .key(&task_key)
                        .set_content_type(content_type.clone());
                    this.with_write_settings_create(create).send()
                })
                .await
                .map_err(|e| {
                    from_sdk(
                        e,
                        this.op("CreateMultipartUpload", &task_key),
                        task_path.as_str(),
                    )
                })
                .map(|out| {
                    let upload = Arc::new(S3Multipart {
                        storage: this.clone(),
                        path: task_path,
                        key: task_key,
                        upload_id: out.upload_id().unwrap_or_default().to_string(),
                        active: AtomicUsize::new(0),
                    });
                    let guard = AbortOnDrop::new(upload.clone());
                    (upload, guard)
                });
            // Refused (the caller is gone): the guard inside aborts.
            let _ = taken.send(created);
        };
        tokio::spawn(create.instrument(tracing::Span::current()));
        let (upload, mut guard) = handed.await.unwrap_or_else(|_| {
            Err(Error::backend(
                DRIVER,
                true,
                format!("starting a multipart upload of {path}"),
                std::io::Error::other(
                    "the task sending CreateMultipartUpload ended without an answer",
                ),
            )
            .with_operation(self.op("CreateMultipartUpload", key).operation()))
        })?;
        guard.disarm();
        Ok(upload)
    }
}

/// One started S3 multipart upload.
pub(crate) struct S3Multipart {
    pub(crate) storage: S3Storage,
    pub(crate) path: StoragePath,
    pub(crate) key: String,
    pub(crate) upload_id: String,
    /// Parts being uploaded now (the MD5 lanes wait for as many).
    pub(crate) active: AtomicUsize,
}

/// Counts a part as in flight on its upload while it lives.
struct PartInFlight<'a>(&'a AtomicUsize);

impl<'a> PartInFlight<'a> {
    /// Counts one more part; returns the guard and the parts in flight,
    /// this one included.
    fn enter(active: &'a AtomicUsize) -> (Self, usize) {
        let now = active.fetch_add(1, Ordering::Relaxed) + 1;
        (Self(active), now)
    }
}

impl Drop for PartInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl S3Multipart {
    pub(crate) async fn copy_part(
        &self,
        number: u32,
        source_key: &str,
        etag: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<CompletedPart> {
        let s = &self.storage;
        let source = s.copy_source(source_key);
        match self
            .copy_part_from(number, &source, source_key, etag, start, end)
            .await
        {
            // Ceph RGW decodes the copy source of UploadPartCopy twice, so a
            // key with '%' is not found; the source was seen before the
            // copy started, so try again with '%' encoded once more.
            Err(Error::NotFound { .. }) if source_key.contains('%') => {
                let twice = source.replace("%25", "%2525");
                self.copy_part_from(number, &twice, source_key, etag, start, end)
                    .await
            }
            other => other,
        }
    }

    pub(crate) async fn copy_part_from(
        &self,
        number: u32,
        copy_source: &str,
        source_key: &str,
        etag: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<CompletedPart> {
        let s = &self.storage;
        let range = (end > start).then(|| format!("bytes={start}-{}", end - 1));
        let out = s
            .retrying("UploadPartCopy", &self.key, || {
                s.client
                    .upload_part_copy()
                    .bucket(s.bucket())
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(number as i32)
                    .copy_source(copy_source)
                    .set_copy_source_range(range.clone())
                    .set_copy_source_if_match(etag.map(str::to_string))
                    .customize()
                    // Ceph RGW answers 411 to an UploadPartCopy without a length.
                    .mutate_request(|req| {
                        req.headers_mut().insert("content-length", "0");
                    })
                    .send()
            })
            .await
            .map_err(|e| from_sdk(e, s.op("UploadPartCopy", &self.key), source_key))?;
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .unwrap_or_default()
            .to_string();
        Ok(CompletedPart::new(number, etag, end - start))
    }
}

/// Whether the SDK client sends a request more than once itself (its retry
/// is meant to be off; see `builder.rs`), so that an error it returns may
/// follow an attempt whose answer was lost.
fn sdk_retries(sdk: &aws_sdk_s3::Client) -> bool {
    sdk.config()
        .retry_config()
        .is_some_and(|r| r.max_attempts() > 1)
}

impl S3Multipart {
    /// UploadPart with a Content-MD5 the server checks on arrival (for a
    /// server whose ETags are not MD5s).
    async fn upload_part_with_md5(&self, number: u32, data: Bytes) -> Result<CompletedPart> {
        let s = &self.storage;
        let size = data.len() as u64;
        let md5 = Some(content_md5(data.clone()).await);
        let out = s
            .retrying("UploadPart", &self.key, || {
                let request = s
                    .client
                    .upload_part()
                    .bucket(s.bucket())
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(number as i32)
                    .content_length(size as i64)
                    .set_content_md5(md5.clone())
                    .body(SdkBody::from(data.clone()));
                send_body!(s, request, size)
            })
            .await
            .map_err(|e| from_sdk(e, s.op("UploadPart", &self.key), self.path.as_str()))?;
        Ok(CompletedPart::new(
            number,
            out.e_tag().unwrap_or_default(),
            size,
        ))
    }

    /// AbortMultipartUpload, retried: `true` when it aborted the upload,
    /// `false` when there was none (completed or aborted already).
    pub(crate) async fn abort_upload(&self) -> Result<bool> {
        let s = &self.storage;
        let sent = s
            .retrying("AbortMultipartUpload", &self.key, || {
                s.client
                    .abort_multipart_upload()
                    .bucket(s.bucket())
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .send()
            })
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) => match from_sdk(
                e,
                s.op("AbortMultipartUpload", &self.key),
                self.path.as_str(),
            ) {
                Error::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Whether the object at the key is this upload, completed after all,
    /// decided only from evidence that names this upload: the multipart
    /// ETag S3 gives a completed upload (the MD5 of the parts' MD5s, then
    /// `-N`), computed from the parts' own ETags. An object of the same
    /// size is not evidence: it may be the one this write was replacing.
    pub(crate) async fn completed_after_all(&self, parts: &[CompletedPart]) -> Outcome {
        let s = &self.storage;
        let Some(expected) = multipart_etag(parts) else {
            return Outcome::Unknown(
                "the parts' ETags are not MD5s (an encrypted bucket?), so the object at the key \
                 cannot be matched to this upload"
                    .into(),
            );
        };
        let meta = match s.head_object(&self.path).await {
            Ok(meta) => meta,
            Err(Error::NotFound { .. }) => return Outcome::NotOurs,
            Err(e) => {
                return Outcome::Unknown(format!("the object at the key could not be read: {e}"))
            }
        };
        let size: u64 = parts.iter().map(|p| p.size).sum();
        let etag = meta
            .etag
            .as_deref()
            .map(|e| e.trim_matches('"').to_string());
        if etag.as_deref() == Some(expected.as_str()) && meta.size == size {
            s.retries
                .counters
                .completions_reconciled
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                key = %self.key,
                size = meta.size,
                parts = parts.len(),
                etag = %expected,
                "CompleteMultipartUpload's answers were lost; the object at the key has this \
                 upload's multipart ETag: an earlier attempt completed it"
            );
            Outcome::Ours(meta)
        } else {
            tracing::warn!(
                key = %self.key,
                etag = ?etag,
                expected_etag = %expected,
                "CompleteMultipartUpload found no upload, and the object at the key is not this \
                 upload's"
            );
            Outcome::NotOurs
        }
    }

    /// The error of a completion whose outcome could not be settled.
    fn outcome_unknown(&self, why: &str, cause: &Error) -> Error {
        Error::Backend {
            driver: DRIVER,
            retryable: false,
            message: format!(
                "completing the multipart upload of s3://{}/{}: the outcome is unknown ({why}); \
                 the last error was: {cause}",
                self.storage.bucket(),
                self.key
            ),
            operation: Some(Box::new(
                self.storage
                    .op("CompleteMultipartUpload", &self.key)
                    .operation(),
            )),
            source: None,
        }
    }
}

/// What a completion whose answers were lost turned out to be.
pub(crate) enum Outcome {
    /// The object at the key is this upload's.
    Ours(ObjectMeta),
    /// The object at the key (or its absence) is not this upload's.
    NotOurs,
    /// Nothing tells, for the reason given.
    Unknown(String),
}

/// The ETag S3 gives a completed multipart upload of `parts` (without
/// quotes): the MD5 of the concatenated binary MD5s of the parts, `-N`;
/// `None` when a part's ETag is not an MD5 (SSE-KMS, SSE-C).
pub(crate) fn multipart_etag(parts: &[CompletedPart]) -> Option<String> {
    use md5::Digest as _;
    let mut outer = md5::Md5::new();
    for part in parts {
        let hex = part.etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        let mut raw = [0u8; 16];
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        outer.update(raw);
    }
    let digest = outer.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{hex}-{}", parts.len()))
}

#[async_trait]
impl MultipartSink for S3Multipart {
    async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart> {
        let s = &self.storage;
        let size = data.len() as u64;
        let md5 = body_md5(&s.config, &data).await;
        // `auto`: the part's MD5 is computed beside the send, then compared
        // with the ETag the server answers (the MD5 of what it received).
        // Hashed in the MD5 lanes with the other parts in flight: they
        // wait for as many parts as this upload has in flight now (a part
        // sent alone, as a registry's chunk, is hashed at once).
        let by_etag = s.config.checks_part_etags();
        let (_counted, in_flight) = PartInFlight::enter(&self.active);
        let mut damaged = 0u32;
        loop {
            let expected = by_etag.then(|| crate::md5_lanes::submit(data.clone(), in_flight));
            let out = s
                .retrying("UploadPart", &self.key, || {
                    let request = s
                        .client
                        .upload_part()
                        .bucket(s.bucket())
                        .key(&self.key)
                        .upload_id(&self.upload_id)
                        .part_number(number as i32)
                        .content_length(size as i64)
                        .set_content_md5(md5.clone())
                        .body(SdkBody::from(data.clone()));
                    send_body!(s, request, size)
                })
                .await
                .map_err(|e| from_sdk(e, s.op("UploadPart", &self.key), self.path.as_str()))?;
            let etag = out.e_tag().unwrap_or_default().to_string();
            let part = CompletedPart::new(number, etag.clone(), size);
            let Some(expected) = expected else {
                return Ok(part);
            };
            let expected = expected.hex().await;
            let got = etag.trim_matches('"');
            if got == expected {
                return Ok(part);
            }
            if got.len() != 32 || !got.bytes().all(|b| b.is_ascii_hexdigit()) {
                // Not an MD5: nothing to compare with. Sent again with a
                // Content-MD5 the server checks on arrival.
                return self.upload_part_with_md5(number, data).await;
            }
            damaged += 1;
            s.retries.counters.count_retry("UploadPart");
            tracing::warn!(
                key = %self.key,
                part = number,
                etag = %got,
                expected_md5 = %expected,
                "the server received a part other than the one sent (its ETag is not the \
                 part's MD5); sending it again"
            );
            if damaged >= s.retries.policy.max_attempts {
                return Err(Error::backend(
                    DRIVER,
                    true,
                    format!(
                        "UploadPart s3://{}/{} part {number}: the server received other bytes \
                         than were sent {damaged} times (ETag {got}, MD5 {expected})",
                        s.bucket(),
                        self.key
                    ),
                    std::io::Error::other("part damaged in transit"),
                ));
            }
        }
    }
    /// CompleteMultipartUpload, retried (S3 may answer 200 with an
    /// InternalError inside). A retry answered NoSuchUpload means an
    /// earlier attempt whose answer was lost completed the upload, if a
    /// HEAD confirms it; a failure with no attempt left is settled by an
    /// abort (no upload to abort: confirmed with a HEAD likewise).
    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<ObjectMeta> {
        let s = &self.storage;
        let sdk_parts: Vec<SdkPart> = parts
            .iter()
            .map(|p| {
                SdkPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        let body = CompletedMultipartUpload::builder()
            .set_parts(Some(sdk_parts))
            .build();
        let mut sent = 0u32;
        let result = s
            .retrying("CompleteMultipartUpload", &self.key, || {
                sent += 1;
                s.client
                    .complete_multipart_upload()
                    .bucket(s.bucket())
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .multipart_upload(body.clone())
                    .send()
            })
            .await;
        if let Err(e) = result {
            let retried = sent > 1 || sdk_retries(&s.client);
            let gone = e.code() == Some("NoSuchUpload");
            let transient = transient_cause(&e).is_some();
            let err = from_sdk(
                e,
                s.op("CompleteMultipartUpload", &self.key),
                self.path.as_str(),
            );
            let settle = if gone && retried {
                // An earlier attempt whose answer was lost may have
                // completed it.
                true
            } else if transient {
                // The last attempt's answer was lost: it may have completed
                // the upload. An abort settles which: it either removes the
                // upload (nothing becomes visible) or finds none (then only
                // this upload's own ETag at the key says it completed).
                !matches!(self.abort_upload().await, Ok(true))
            } else {
                false
            };
            if settle {
                return match self.completed_after_all(&parts).await {
                    Outcome::Ours(meta) => Ok(meta),
                    Outcome::NotOurs => Err(err),
                    Outcome::Unknown(why) => Err(self.outcome_unknown(&why, &err)),
                };
            }
            return Err(err);
        }
        // Some servers (Ceph RGW) answer with an empty ETag: read it back.
        s.head_object(&self.path).await
    }

    async fn abort(&self) -> Result<()> {
        self.abort_upload().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::multipart_etag;
    use stowage_core::multipart::CompletedPart;

    fn part(number: u32, etag: &str) -> CompletedPart {
        CompletedPart::new(number, etag, 5)
    }

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts "hello" and "world": MD5s 5d41402a... and 7d793037...
        let parts = [
            part(1, "\"5d41402abc4b2a76b9719d911017c592\""),
            part(2, "7d793037a0760186574b0282f2f435e7"),
        ];
        // md5(bytes.fromhex(md5("hello")) + bytes.fromhex(md5("world")))
        assert_eq!(
            multipart_etag(&parts).unwrap(),
            "065947336a2f2a95ba8899f3675c3be6-2"
        );
        assert_eq!(multipart_etag(&[part(1, "not-an-md5")]), None);
        assert_eq!(
            multipart_etag(&[part(1, "\"zz41402abc4b2a76b9719d911017c592\"")]),
            None
        );
    }
}
