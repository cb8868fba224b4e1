//! Writes: streamed (single PUT or concurrent multipart), server-side copy
//! (multipart above the CopyObject limit), and assembly of chunked uploads
//! with UploadPartCopy.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart as SdkPart, ServerSideEncryption as SdkSse,
    StorageClass,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use stowage_core::multipart::{self, CompletedPart, MultipartOptions, MultipartSink};
use stowage_core::upload::{self, CompleteOptions, UploadState};
use stowage_core::{
    Error, GetOptions, ObjectMeta, PutOptions, Result, StorageExt, StoragePath, WriteStream,
};

use crate::error::{from_sdk, DRIVER};
use crate::retry::transient_cause;
use crate::{S3Storage, ServerSideEncryption};

/// Characters kept as they are in `x-amz-copy-source`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Bodies at least this large have their MD5 computed on a blocking
/// thread, not on the async workers.
const MD5_INLINE_LIMIT: usize = 256 * 1024;

/// The Content-MD5 header value of `data`: the base64 of its MD5 digest.
/// Large bodies are hashed on a blocking thread (about 25 ms per 16 MiB).
pub(crate) async fn content_md5(data: Bytes) -> String {
    fn digest(data: &[u8]) -> String {
        use base64::Engine as _;
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
    }
    if data.len() < MD5_INLINE_LIMIT {
        return digest(&data);
    }
    let copy = data.clone();
    match tokio::task::spawn_blocking(move || digest(&copy)).await {
        Ok(md5) => md5,
        // The blocking pool is shutting down: hash here instead.
        Err(_) => digest(&data),
    }
}

macro_rules! write_settings {
    ($self:expr, $req:expr) => {{
        let c = &$self.config;
        let req = match &c.sse {
            ServerSideEncryption::None => $req,
            ServerSideEncryption::Aes256 => $req.server_side_encryption(SdkSse::Aes256),
            ServerSideEncryption::Kms { key_id } => $req
                .server_side_encryption(SdkSse::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        };
        req.set_storage_class(c.storage_class.as_deref().map(StorageClass::from))
    }};
}

impl S3Storage {
    pub(crate) fn with_write_settings_put(
        &self,
        req: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        write_settings!(self, req)
    }

    /// One PUT when the stream fits in one part, else a multipart upload.
    pub(crate) async fn write_stream(
        &self,
        path: &StoragePath,
        mut data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let part_size = multipart::base_part_size(self.config.part_size, options.size_hint);
        // The first part fills outside the driver's part budget (a writer
        // that stalls holds no shared permit); it takes one when it is
        // complete and about to be sent.
        let mut first = BytesMut::with_capacity(part_size as usize);
        let mut ended = false;
        let mut rest = None;
        while first.len() < part_size as usize {
            match data.try_next().await? {
                Some(mut chunk) => {
                    let room = part_size as usize - first.len();
                    if chunk.len() > room {
                        rest = Some(chunk.split_off(room));
                    }
                    first.extend_from_slice(&chunk);
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let permit = self
            .part_budget
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(DRIVER, false, "part budget", e))?;
        if ended {
            let result = self.put_small(path, first.freeze(), options).await;
            drop(permit);
            return result;
        }
        if let Some(rest) = rest {
            data = futures::stream::once(async move { Ok(rest) })
                .chain(data)
                .boxed();
        }
        let key = self.object_key(path);
        let created = self
            .create_multipart(&key, options.content_type.clone())
            .await
            .map_err(|e| from_sdk(e, self.op("CreateMultipartUpload", &key), path.as_str()))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let sink = Arc::new(S3Multipart {
            storage: self.clone(),
            path: path.clone(),
            key,
            upload_id,
        });
        let options_mp = MultipartOptions {
            part_size,
            concurrency: self.config.upload_concurrency,
            budget: Some(self.part_budget.clone()),
            initial_permit: Some(permit),
        };
        let meta = multipart::write_multipart(
            sink,
            first.freeze(),
            data,
            options_mp,
            options.expected_digest,
        )
        .await?;
        Ok(meta.with_content_type(options.content_type))
    }

    /// CreateMultipartUpload of `key` with the write settings, retried. A
    /// retry after an answer was lost may leave the first upload behind,
    /// unused: `cleanup_uploads` (or a lifecycle rule) aborts it.
    async fn create_multipart(
        &self,
        key: &str,
        content_type: Option<String>,
    ) -> std::result::Result<
        aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput,
        aws_sdk_s3::error::SdkError<
            aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadError,
            aws_sdk_s3::config::http::HttpResponse,
        >,
    > {
        self.retrying("CreateMultipartUpload", key, || {
            let create = self
                .client
                .create_multipart_upload()
                .bucket(self.bucket())
                .key(key)
                .set_content_type(content_type.clone());
            write_settings!(self, create).send()
        })
        .await
    }

    /// Starts a multipart upload of `key` for copies and assembly.
    async fn start_multipart(&self, key: &str, path: &StoragePath) -> Result<S3Multipart> {
        let created = self
            .create_multipart(key, None)
            .await
            .map_err(|e| from_sdk(e, self.op("CreateMultipartUpload", key), path.as_str()))?;
        Ok(S3Multipart {
            storage: self.clone(),
            path: path.clone(),
            key: key.to_string(),
            upload_id: created.upload_id().unwrap_or_default().to_string(),
        })
    }

    fn copy_source(&self, key: &str) -> String {
        format!(
            "{}/{}",
            self.bucket(),
            utf8_percent_encode(key, COPY_SOURCE)
        )
    }

    /// CopyObject, or a multipart copy above the configured threshold.
    pub(crate) async fn copy_object(
        &self,
        from: &StoragePath,
        to: &StoragePath,
    ) -> Result<ObjectMeta> {
        let source = self.head_object(from).await?;
        let to_key = self.object_key(to);
        if source.size > self.config.multipart_copy_threshold {
            if !self.part_copy_refused.load(Ordering::Relaxed) {
                let pieces = split_fixed(source.size, self.config.multipart_copy_part_size)
                    .into_iter()
                    .map(|(start, end)| Piece::Copy {
                        key: self.object_key(from),
                        start,
                        end,
                    })
                    .collect();
                match self.copy_parts(to, &to_key, pieces).await {
                    Ok(()) => return self.head_object(to).await,
                    Err(e) if !self.part_copy_was_refused(&e) => return Err(e),
                    Err(_) => {}
                }
            }
            // Through this process instead, with bounded memory.
            let body = self.get_object(from, GetOptions::default()).await?;
            return self
                .write_stream(
                    to,
                    body.stream,
                    PutOptions::default().with_size_hint(source.size),
                )
                .await;
        }
        let from_key = self.object_key(from);
        let copy_source = self.copy_source(&from_key);
        self.retrying("CopyObject", &to_key, || {
            let request = self
                .client
                .copy_object()
                .bucket(self.bucket())
                .key(&to_key)
                .copy_source(&copy_source);
            write_settings!(self, request).send()
        })
        .await
        .map_err(|e| from_sdk(e, self.op("CopyObject", &to_key), from.as_str()))?;
        self.head_object(to).await
    }

    /// Whether `error` is the server refusing UploadPartCopy; remembers it
    /// (and says so once) so later copies stream instead of asking again.
    fn part_copy_was_refused(&self, error: &Error) -> bool {
        if !matches!(error, Error::PermissionDenied { .. }) {
            return false;
        }
        if !self.part_copy_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                bucket = %self.config.bucket,
                error = %error,
                "the server refused UploadPartCopy (Ceph RGW does for assumed-role sessions); \
                 assembling and copying large objects by streaming them through this process from now on"
            );
        }
        true
    }

    /// A multipart upload of `to_key` from byte ranges of other keys
    /// (UploadPartCopy) and small tails sent as bytes, a few in flight;
    /// aborted on any failure.
    async fn copy_parts(&self, to: &StoragePath, to_key: &str, pieces: Vec<Piece>) -> Result<()> {
        let upload = Arc::new(self.start_multipart(to_key, to).await?);
        // A dropped copy or assembly aborts its multipart upload too.
        let mut guard = stowage_core::multipart::AbortOnDrop::new(upload.clone());
        let result = futures::stream::iter(pieces.into_iter().enumerate())
            .map(|(i, piece)| {
                let upload = upload.clone();
                async move {
                    let number = i as u32 + 1;
                    match piece {
                        Piece::Copy { key, start, end } => {
                            upload.copy_part(number, &key, start, end).await
                        }
                        Piece::Upload(path) => {
                            let bytes = upload.storage.get_bytes(&path).await?;
                            upload.upload_part(number, bytes).await
                        }
                    }
                }
            })
            .buffered(self.config.upload_concurrency)
            .try_collect::<Vec<_>>()
            .await;
        let outcome = match result {
            Ok(parts) => match upload.complete(parts).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = upload.abort().await;
                    Err(e)
                }
            },
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        };
        guard.disarm();
        outcome
    }

    /// Completes a chunked upload: server-side with UploadPartCopy when every
    /// chunk but the last reaches the minimum part size, a copy for a single
    /// chunk, else by streaming the chunks through.
    pub(crate) async fn assemble_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        state.check()?;
        upload::check_digest(state, &options)?;
        let n = state.chunks.len();
        let large_enough = n >= 2
            && state.chunks[..n - 1]
                .iter()
                .all(|&c| c >= self.config.min_chunk_size);
        if !self.config.server_side_assembly
            || n == 0
            || (n >= 2 && !large_enough)
            || (n >= 2 && self.part_copy_refused.load(Ordering::Relaxed))
        {
            return upload::complete_by_streaming(self, state, dest, options).await;
        }
        let dest_key = self.object_key(dest);
        let result = if n == 1 {
            self.copy_object(&state.chunk_path(0), dest)
                .await
                .map(|_| ())
        } else {
            let mut pieces = Vec::new();
            for (i, &size) in state.chunks.iter().enumerate() {
                if i == n - 1 && size < self.config.min_chunk_size {
                    // A short tail is sent as bytes: some servers (Garage)
                    // refuse to copy small objects even as the last part.
                    pieces.push(Piece::Upload(state.chunk_path(i)));
                    continue;
                }
                let key = self.object_key(&state.chunk_path(i));
                for (start, end) in split(size, self.config.max_chunk_size) {
                    pieces.push(Piece::Copy {
                        key: key.clone(),
                        start,
                        end,
                    });
                }
            }
            match self.copy_parts(dest, &dest_key, pieces).await {
                Err(e) if self.part_copy_was_refused(&e) => {
                    return upload::complete_by_streaming(self, state, dest, options).await;
                }
                other => other,
            }
        };
        result.map_err(|e| match e {
            Error::NotFound { .. } => Error::InvalidUploadState {
                reason: "a chunk of the upload is gone (expired or already completed)".into(),
            },
            other => other,
        })?;
        let meta = self.head_object(dest).await?;
        if meta.size != state.size {
            let _ = self.delete_object(dest).await;
            return Err(Error::InvalidUploadState {
                reason: format!(
                    "assembled {} bytes, the upload has {}",
                    meta.size, state.size
                ),
            });
        }
        if let Err(e) = upload::remove_chunk_objects(self, state).await {
            tracing::warn!(upload = %state.id, error = %e, "completed upload left temporary chunks; cleanup_uploads will remove them");
        }
        Ok(meta)
    }
}

/// `size` bytes as ranges of `part` bytes and a shorter last one (the last
/// part of an upload may be small).
fn split_fixed(size: u64, part: u64) -> Vec<(u64, u64)> {
    (0..size.div_ceil(part).max(1))
        .map(|i| (i * part, ((i + 1) * part).min(size)))
        .collect()
}

/// `size` bytes as the fewest ranges of at most `max` bytes, of balanced
/// sizes (each above `max / 2`, so above the minimum part size when
/// `max >= 2 x minimum`); one empty range for an empty object.
fn split(size: u64, max: u64) -> Vec<(u64, u64)> {
    if size == 0 {
        return vec![(0, 0)];
    }
    let n = size.div_ceil(max);
    (0..n).map(|i| (i * size / n, (i + 1) * size / n)).collect()
}

/// Where one part of an assembled object comes from.
enum Piece {
    /// A byte range of an existing key, copied inside S3.
    Copy { key: String, start: u64, end: u64 },
    /// A small object read and uploaded as bytes.
    Upload(StoragePath),
}

/// One started S3 multipart upload.
struct S3Multipart {
    storage: S3Storage,
    path: StoragePath,
    key: String,
    upload_id: String,
}

impl S3Multipart {
    async fn copy_part(
        &self,
        number: u32,
        source_key: &str,
        start: u64,
        end: u64,
    ) -> Result<CompletedPart> {
        let s = &self.storage;
        let source = s.copy_source(source_key);
        match self
            .copy_part_from(number, &source, source_key, start, end)
            .await
        {
            // Ceph RGW decodes the copy source of UploadPartCopy twice, so a
            // key with '%' is not found; the source was seen before the
            // copy started, so try again with '%' encoded once more.
            Err(Error::NotFound { .. }) if source_key.contains('%') => {
                let twice = source.replace("%25", "%2525");
                self.copy_part_from(number, &twice, source_key, start, end)
                    .await
            }
            other => other,
        }
    }

    async fn copy_part_from(
        &self,
        number: u32,
        copy_source: &str,
        source_key: &str,
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
        Ok(CompletedPart {
            number,
            etag,
            size: end - start,
        })
    }
}

/// The number of parts an S3 multipart ETag says it has (`"<md5>-<n>"`),
/// `None` for other ETags.
fn etag_part_count(etag: &str) -> Option<usize> {
    let (_, n) = etag.trim_matches('"').rsplit_once('-')?;
    n.parse().ok()
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
    /// AbortMultipartUpload, retried: `true` when it aborted the upload,
    /// `false` when there was none (completed or aborted already).
    async fn abort_upload(&self) -> Result<bool> {
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

    /// Whether the object at the key is this upload, completed after all:
    /// a HEAD finds it with the parts' total size and, when its ETag has a
    /// `-N` part count, with N equal to the number of parts.
    async fn completed_after_all(&self, parts: &[CompletedPart]) -> Option<ObjectMeta> {
        let s = &self.storage;
        let expected: u64 = parts.iter().map(|p| p.size).sum();
        let meta = match s.head_object(&self.path).await {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "no object after a CompleteMultipartUpload that found no upload");
                return None;
            }
        };
        let count = meta.etag.as_deref().and_then(etag_part_count);
        if meta.size == expected && count.is_none_or(|n| n == parts.len()) {
            s.retries
                .counters
                .completions_reconciled
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                key = %self.key,
                size = meta.size,
                parts = parts.len(),
                "CompleteMultipartUpload found no upload on a retry; a HEAD shows an earlier \
                 attempt completed it: reporting success"
            );
            Some(meta)
        } else {
            tracing::warn!(
                key = %self.key,
                size = meta.size,
                expected_size = expected,
                etag_parts = ?count,
                parts = parts.len(),
                "CompleteMultipartUpload found no upload, and the object at the key is not this \
                 upload's"
            );
            None
        }
    }
}

#[async_trait]
impl MultipartSink for S3Multipart {
    async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart> {
        let s = &self.storage;
        let size = data.len() as u64;
        // Computed once per part, sent with every attempt: the server
        // refuses bytes damaged on the way (BadDigest) and the part is sent
        // again from memory.
        let md5 = if s.config.sends_content_md5() {
            Some(content_md5(data.clone()).await)
        } else {
            None
        };
        let out = s
            .retrying("UploadPart", &self.key, || {
                s.client
                    .upload_part()
                    .bucket(s.bucket())
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(number as i32)
                    .content_length(size as i64)
                    .set_content_md5(md5.clone())
                    .body(SdkBody::from(data.clone()))
                    .send()
            })
            .await
            .map_err(|e| from_sdk(e, s.op("UploadPart", &self.key), self.path.as_str()))?;
        Ok(CompletedPart {
            number,
            etag: out.e_tag().unwrap_or_default().to_string(),
            size,
        })
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
            if e.code() == Some("NoSuchUpload") && retried {
                if let Some(meta) = self.completed_after_all(&parts).await {
                    return Ok(meta);
                }
            } else if transient_cause(&e).is_some() {
                // The last attempt's answer was lost: it may have completed
                // the upload. An abort settles which: it either removes the
                // upload (nothing becomes visible) or finds none.
                if let Ok(false) = self.abort_upload().await {
                    if let Some(meta) = self.completed_after_all(&parts).await {
                        return Ok(meta);
                    }
                }
            }
            return Err(from_sdk(
                e,
                s.op("CompleteMultipartUpload", &self.key),
                self.path.as_str(),
            ));
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
    use super::{etag_part_count, split, split_fixed};

    #[test]
    fn multipart_etags_tell_their_part_count() {
        assert_eq!(
            etag_part_count("\"9b2cf535f27731c974343645a3985328-12\""),
            Some(12)
        );
        assert_eq!(
            etag_part_count("9b2cf535f27731c974343645a3985328-1"),
            Some(1)
        );
        assert_eq!(
            etag_part_count("\"9b2cf535f27731c974343645a3985328\""),
            None
        );
        assert_eq!(etag_part_count(""), None);
    }

    #[test]
    fn split_fixed_keeps_full_parts_and_a_short_tail() {
        assert_eq!(split_fixed(11, 5), vec![(0, 5), (5, 10), (10, 11)]);
        assert_eq!(split_fixed(10, 5), vec![(0, 5), (5, 10)]);
        assert_eq!(split_fixed(0, 5), vec![(0, 0)]);
    }

    #[test]
    fn split_covers_every_byte_once() {
        assert_eq!(split(0, 5), vec![(0, 0)]);
        assert_eq!(split(5, 5), vec![(0, 5)]);
        assert_eq!(split(11, 5), vec![(0, 3), (3, 7), (7, 11)]);
        assert_eq!(split(12, 10), vec![(0, 6), (6, 12)]);
        for (size, max) in [(1000u64, 7u64), (12 * 1024 * 1024 + 3, 10 * 1024 * 1024)] {
            let parts = split(size, max);
            assert_eq!(parts.last().unwrap().1, size);
            assert!(parts.windows(2).all(|w| w[0].1 == w[1].0));
            assert!(parts.iter().all(|(a, b)| b - a <= max && b - a >= max / 2));
        }
    }
}
