//! Server-side copies (CopyObject, or a multipart copy above the
//! threshold) and the assembly of chunked uploads from their chunk objects
//! with UploadPartCopy, streaming instead where the server refuses it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use stowage_core::multipart::MultipartSink;
use stowage_core::upload::{self, CompleteOptions, UploadState};
use stowage_core::{Error, GetOptions, ObjectMeta, PutOptions, Result, StorageExt, StoragePath};

use crate::error::from_sdk;
use crate::plan;
use crate::S3Storage;

/// Characters kept as they are in `x-amz-copy-source`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl S3Storage {
    pub(crate) fn copy_source(&self, key: &str) -> String {
        format!(
            "{}/{}",
            self.bucket(),
            utf8_percent_encode(key, COPY_SOURCE)
        )
    }

    /// CopyObject, or a multipart copy above the configured threshold,
    /// pinned to the source's ETag read first (`x-amz-copy-source-if-match`
    /// on every request), so a source replaced mid-copy fails the copy
    /// instead of mixing two versions.
    pub(crate) async fn copy_object(
        &self,
        from: &StoragePath,
        to: &StoragePath,
    ) -> Result<ObjectMeta> {
        let source = self.head_object(from).await?;
        let to_key = self.object_key(to);
        let etag = source.etag.clone();
        if source.size > self.config.multipart_copy_threshold {
            if !self.part_copy_refused() {
                let key = self.object_key(from);
                let pieces = plan::copy_ranges(source.size, self.config.multipart_copy_part_size)
                    .into_iter()
                    .map(|(start, end)| Piece::Copy {
                        key: key.clone(),
                        etag: etag.clone(),
                        start,
                        end,
                    })
                    .collect();
                let pin = etag.as_deref().map(|e| (from, e));
                match self.copy_parts(to, &to_key, pieces, pin).await {
                    Ok(_) => return self.head_object(to).await,
                    Err(e) if !self.part_copy_was_refused(&e) => {
                        return Err(self.source_changed(e, from))
                    }
                    Err(_) => {}
                }
            }
            // Through this process instead, with bounded memory; the read
            // is pinned to the ETag it starts with (resume.rs).
            let body = self.get_object(from, GetOptions::default()).await?;
            if body.meta.etag != etag {
                return Err(self.source_changed(
                    Error::backend(
                        crate::error::DRIVER,
                        false,
                        format!("copying {from}: PreconditionFailed"),
                        std::io::Error::other("the source's ETag changed"),
                    ),
                    from,
                ));
            }
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
                .copy_source(&copy_source)
                .set_copy_source_if_match(etag.clone());
            self.with_write_settings_copy(request).send()
        })
        .await
        .map_err(|e| {
            self.source_changed(
                from_sdk(e, self.op("CopyObject", &to_key), from.as_str()),
                from,
            )
        })?;
        self.head_object(to).await
    }

    /// `error`, counted and explained when it is a copy's source having
    /// been replaced after it was read (a failed copy-source-if-match).
    fn source_changed(&self, error: Error, from: &StoragePath) -> Error {
        let text = error.to_string();
        if !(text.contains("PreconditionFailed") || text.contains("412")) {
            return error;
        }
        self.retries
            .counters
            .copies_source_changed
            .fetch_add(1, Ordering::Relaxed);
        Error::Backend {
            driver: crate::error::DRIVER,
            retryable: false,
            message: format!(
                "copying {from}: the source was replaced while it was being copied; nothing \
                 was written ({text})"
            ),
            operation: None,
            source: None,
        }
    }

    /// Whether UploadPartCopy was refused lately, or the server has none
    /// at all (the GCS profile): then copies above the multipart-copy
    /// threshold and chunked-upload assembly stream the bytes through.
    pub(crate) fn part_copy_refused(&self) -> bool {
        // GCS profile: no UploadPartCopy, so none is ever sent.
        if !self.config.profile.copies_parts() {
            return true;
        }
        let refused = self.part_copy_refused.lock().expect("refusal lock");
        refused.is_some_and(|at| at.elapsed() < PART_COPY_RETRY_AFTER)
    }

    /// Whether `error` is the server refusing UploadPartCopy; remembers it
    /// for [`PART_COPY_RETRY_AFTER`] (and says so) so later copies of this
    /// bucket stream instead of asking again, then tries again.
    fn part_copy_was_refused(&self, error: &Error) -> bool {
        let refused = match error {
            Error::PermissionDenied { message, .. } => message.contains("UploadPartCopy"),
            _ => false,
        };
        if !refused {
            return false;
        }
        let mut at = self.part_copy_refused.lock().expect("refusal lock");
        if at.is_none_or(|t| t.elapsed() >= PART_COPY_RETRY_AFTER) {
            tracing::warn!(
                bucket = %self.config.bucket,
                error = %error,
                retry_after_s = PART_COPY_RETRY_AFTER.as_secs(),
                "the server refused UploadPartCopy (Ceph RGW does for assumed-role sessions); \
                 assembling and copying large objects of this bucket by streaming them through \
                 this process for a while"
            );
        }
        *at = Some(Instant::now());
        true
    }

    /// A multipart upload of `to_key` from byte ranges of other keys
    /// (UploadPartCopy) and small tails sent as bytes, a few in flight;
    /// aborted on any failure. Returns the multipart ETag the object this
    /// upload wrote has (`None` when the parts' ETags do not tell it).
    ///
    /// With `pin` (a source and the ETag its copies are pinned to), the
    /// source is read again once every part is copied and before the upload
    /// is completed: a server that ignores `x-amz-copy-source-if-match`
    /// (Ceph RGW 16 does) may have copied parts of a newer version, and
    /// then the upload is aborted instead, leaving nothing visible.
    async fn copy_parts(
        &self,
        to: &StoragePath,
        to_key: &str,
        pieces: Vec<Piece>,
        pin: Option<(&StoragePath, &str)>,
    ) -> Result<Option<String>> {
        let upload = self.start_multipart(to_key, to, None).await?;
        // A dropped copy or assembly aborts its multipart upload too.
        let mut guard = stowage_core::multipart::AbortOnDrop::new(upload.clone());
        let result = futures::stream::iter(pieces.into_iter().enumerate())
            .map(|(i, piece)| {
                let upload = upload.clone();
                async move {
                    let number = i as u32 + 1;
                    match piece {
                        Piece::Copy {
                            key,
                            etag,
                            start,
                            end,
                        } => {
                            upload
                                .copy_part(number, &key, etag.as_deref(), start, end)
                                .await
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
        let result = match (result, pin) {
            (Ok(parts), Some((source, pinned))) => match self.head_object(source).await {
                Ok(now) if now.etag.as_deref() == Some(pinned) => Ok(parts),
                Ok(now) => Err(Error::Backend {
                    driver: crate::error::DRIVER,
                    retryable: false,
                    message: format!(
                        "copying {source}: PreconditionFailed: its ETag was {pinned} when the \
                         copy started and is {} now",
                        now.etag.as_deref().unwrap_or("none")
                    ),
                    operation: None,
                    source: None,
                }),
                Err(e) => Err(e),
            },
            (other, _) => other,
        };
        let outcome = match result {
            Ok(parts) => {
                let etag = crate::multipart::multipart_etag(&parts);
                match upload.complete(parts).await {
                    Ok(_) => Ok(etag),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(e)
                    }
                }
            }
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        };
        guard.disarm();
        outcome
    }

    /// Completes a chunked upload: server-side with UploadPartCopy when every
    /// chunk but the last reaches the minimum part size (in stages when the
    /// chunks need more than S3's 10,000 parts), a copy for a single chunk,
    /// else by streaming the chunks through. A retry of a completion that
    /// already happened (the chunks are gone) finds the blob and checks its
    /// digest instead.
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
            || (n >= 2 && self.part_copy_refused())
        {
            return upload::complete_by_streaming(self, state, dest, options).await;
        }
        // Checked before any byte moves.
        let stages = plan::assembly_stages(&state.chunks, self.config.max_chunk_size)?;
        let result = if n == 1 {
            self.copy_object(&state.chunk_path(0), dest)
                .await
                .map(|meta| meta.etag)
        } else {
            match self.assemble_in_stages(state, dest, &stages).await {
                Err(e) if self.part_copy_was_refused(&e) => {
                    return upload::complete_by_streaming(self, state, dest, options).await;
                }
                other => other,
            }
        };
        let written = match result {
            Ok(etag) => etag,
            Err(Error::NotFound { .. }) => {
                // A chunk is gone: an earlier completion of this same state
                // may have finished (a retried PUT, another replica).
                if let Some(meta) = upload::finished_already(self, state, dest, &options).await? {
                    return Ok(meta);
                }
                return Err(Error::InvalidUploadState {
                    reason: "a chunk of the upload is gone (expired or already completed)".into(),
                });
            }
            Err(e) => return Err(e),
        };
        let meta = self.head_object(dest).await?;
        if meta.size != state.size {
            // Remove only what this upload wrote: another writer's object
            // at the key stays, and the error says so.
            let ours = written.is_some() && meta.etag == written;
            if ours {
                let _ = self.delete_object(dest).await;
            }
            return Err(Error::InvalidUploadState {
                reason: format!(
                    "assembled {} bytes, the upload has {}{}",
                    meta.size,
                    state.size,
                    if ours {
                        "; the assembled object was removed"
                    } else {
                        "; the object now at the destination is not this upload's and was left"
                    }
                ),
            });
        }
        if let Err(e) = upload::remove_chunk_objects(self, state).await {
            tracing::warn!(upload = %state.id, error = %e, "completed upload left temporary chunks; cleanup_uploads will remove them");
        }
        Ok(meta)
    }

    /// Runs an assembly plan: every stage but the last writes intermediate
    /// objects in the upload's own area (removed with its chunks), the last
    /// writes `dest`. Returns the multipart ETag of `dest`.
    async fn assemble_in_stages(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        stages: &[plan::Stage],
    ) -> Result<Option<String>> {
        let n = state.chunks.len();
        // The sources of the current stage: (key, size, is a chunk).
        let mut sources: Vec<(StoragePath, u64)> = (0..n)
            .map(|i| (state.chunk_path(i), state.chunks[i]))
            .collect();
        let mut written = None;
        for (level, stage) in stages.iter().enumerate() {
            let last = level + 1 == stages.len();
            let mut next = Vec::new();
            for (g, group) in stage.iter().enumerate() {
                let target = if last {
                    dest.clone()
                } else {
                    StoragePath::parse(format!("{}/stage-{level}-{g:06}", state.area()))?
                };
                let group_sources = &sources[group.clone()];
                let sizes: Vec<u64> = group_sources.iter().map(|(_, s)| *s).collect();
                let mut pieces = Vec::new();
                let count = group_sources.len();
                for p in plan::pieces(&sizes, self.config.max_chunk_size) {
                    let (path, size) = &group_sources[p.source];
                    let tail = level == 0 && group.start + p.source == n - 1;
                    if tail && *size < self.config.min_chunk_size && p.source + 1 == count {
                        // A short tail is sent as bytes: some servers
                        // (Garage) refuse to copy small objects even as the
                        // last part.
                        pieces.push(Piece::Upload(path.clone()));
                        continue;
                    }
                    pieces.push(Piece::Copy {
                        key: self.object_key(path),
                        // Chunk keys are this upload's own (a random tag
                        // per write), and intermediates are written once.
                        etag: None,
                        start: p.start,
                        end: p.end,
                    });
                }
                let key = self.object_key(&target);
                written = self.copy_parts(&target, &key, pieces, None).await?;
                next.push((target, sizes.iter().sum()));
            }
            sources = next;
        }
        Ok(written)
    }
}

/// How long after UploadPartCopy was refused copies of the bucket stream
/// before trying it again (a role's policy may change).
const PART_COPY_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Where one part of an assembled object comes from.
enum Piece {
    /// A byte range of an existing key, copied inside S3, pinned to the
    /// source's ETag when known.
    Copy {
        key: String,
        etag: Option<String>,
        start: u64,
        end: u64,
    },
    /// A small object read and uploaded as bytes.
    Upload(StoragePath),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DRIVER;

    fn denied(message: &str) -> Error {
        Error::PermissionDenied {
            driver: DRIVER,
            message: message.into(),
            operation: None,
            source: None,
        }
    }

    #[tokio::test]
    async fn a_refused_part_copy_streams_for_a_while_then_tries_again() {
        let s = S3Storage::new(crate::S3Config::new("bkt")).await.unwrap();
        assert!(!s.part_copy_refused() && s.copies_server_side());
        // A refusal of another request is not a refusal of UploadPartCopy.
        assert!(!s.part_copy_was_refused(&denied("CreateMultipartUpload s3://bkt/k: AccessDenied")));
        assert!(!s.part_copy_refused());
        assert!(s.part_copy_was_refused(&denied("UploadPartCopy s3://bkt/k: AccessDenied")));
        assert!(s.part_copy_refused() && !s.copies_server_side());
        // Clones of the driver (the same bucket) share the decision; a
        // driver of another bucket does not.
        assert!(s.clone().part_copy_refused());
        let other = S3Storage::new(crate::S3Config::new("other")).await.unwrap();
        assert!(!other.part_copy_refused());
        // Once the period is over, server-side copies are tried again.
        *s.part_copy_refused.lock().unwrap() =
            Instant::now().checked_sub(PART_COPY_RETRY_AFTER + Duration::from_secs(1));
        assert!(!s.part_copy_refused() && s.copies_server_side());
    }
}
