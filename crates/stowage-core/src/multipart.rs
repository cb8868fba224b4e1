//! The bounded, concurrent multipart writer, written once: a driver supplies
//! only "upload part", "complete" and "abort" for one started upload
//! ([`MultipartSink`]); [`write_multipart`] cuts the stream into parts,
//! keeps several in flight, checks the digest, and aborts on any failure or
//! when its future is dropped.
//!
//! Memory: at most `concurrency` parts in flight plus the one being filled,
//! so about `(concurrency + 1) x part size` whatever the object size; with a
//! driver-wide budget, concurrent writes share the parts in flight.
//!
//! Cost trap: a multipart upload that is neither completed nor aborted keeps
//! its parts (and their storage cost) on S3 until a lifecycle rule removes
//! them; this writer aborts on every failure path, and
//! [`Storage::cleanup_uploads`](crate::Storage::cleanup_uploads) catches
//! what a killed process left.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use sha2::Digest as _;
use tokio::task::JoinSet;

use crate::storage::WriteStream;
use crate::{Error, ObjectMeta, Result, Sha256Digest};

/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: u32 = 10_000;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// A part that was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The entity tag the backend returned for it.
    pub etag: String,
    /// Its size.
    pub size: u64,
}

/// One started multipart upload of a backend.
#[async_trait]
pub trait MultipartSink: Send + Sync + 'static {
    /// Uploads part `number` (1-based).
    async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart>;
    /// Completes the upload with its parts in order.
    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<ObjectMeta>;
    /// Aborts the upload, removing its parts.
    async fn abort(&self) -> Result<()>;
}

/// How [`write_multipart`] cuts and sends parts.
#[derive(Debug, Clone)]
pub struct MultipartOptions {
    /// The size of each part (the first 500 parts; see [`part_size_for`]).
    pub part_size: u64,
    /// Parts uploading at once.
    pub concurrency: usize,
    /// Parts in flight across every write of a driver: a permit is held
    /// per part being sent, so many concurrent writes together stay within
    /// about `(permits + writes) x part size` of memory.
    pub budget: Option<Arc<tokio::sync::Semaphore>>,
}

/// The size of part `number` (1-based): `base` for the first 500 parts,
/// doubling every further 500, capped at [`MAX_PART_SIZE`], so that an
/// upload of unknown length never needs more than [`MAX_PARTS`] parts
/// (from 5 MiB, 10,000 parts hold about 27 TB).
pub fn part_size_for(base: u64, number: u32) -> u64 {
    let doublings = (number.saturating_sub(1) / 500).min(20);
    base.saturating_mul(1 << doublings).min(MAX_PART_SIZE)
}

/// The base part size for an upload of `size` bytes (when known): at least
/// `configured`, and large enough that `size` fits in [`MAX_PARTS`] parts.
pub fn base_part_size(configured: u64, size: Option<u64>) -> u64 {
    let needed = size.map_or(0, |s| s.div_ceil(u64::from(MAX_PARTS)));
    configured.max(needed).clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// Aborts the upload from a background task when dropped while armed, so a
/// cancelled write leaves no orphaned multipart upload. Drivers that drive a
/// multipart upload themselves (server-side copies) hold one too.
pub struct AbortOnDrop {
    sink: Option<Arc<dyn MultipartSink>>,
}

impl std::fmt::Debug for AbortOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortOnDrop")
            .field("armed", &self.sink.is_some())
            .finish()
    }
}

impl AbortOnDrop {
    /// Armed: dropping it aborts `sink`'s upload.
    pub fn new(sink: Arc<dyn MultipartSink>) -> Self {
        Self { sink: Some(sink) }
    }

    /// Disarms it once the upload was completed or aborted.
    pub fn disarm(&mut self) {
        self.sink = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = sink.abort().await {
                        tracing::warn!(error = %e, "aborting a cancelled multipart upload failed");
                    }
                });
            }
        }
    }
}

/// Writes `initial` followed by `data` as parts of `sink`, then completes
/// it. On any failure, or a digest other than `expected`, aborts the upload
/// and returns the error; nothing becomes visible.
///
/// # Errors
/// [`Error::DigestMismatch`], [`Error::Backend`] when more than
/// [`MAX_PARTS`] would be needed, or whatever the stream or the sink fail with.
///
/// # Cancel safety
/// Dropping the future cancels the part uploads and aborts the multipart
/// upload from a background task.
pub async fn write_multipart(
    sink: Arc<dyn MultipartSink>,
    initial: Bytes,
    data: WriteStream<'_>,
    options: MultipartOptions,
    expected: Option<Sha256Digest>,
) -> Result<ObjectMeta> {
    let mut guard = AbortOnDrop::new(sink.clone());
    let result = drive(sink.clone(), initial, data, options, expected).await;
    guard.disarm();
    match result {
        Ok(parts) => match sink.complete(parts).await {
            Ok(meta) => Ok(meta),
            Err(e) => {
                abort_quietly(&*sink).await;
                Err(e)
            }
        },
        Err(e) => {
            abort_quietly(&*sink).await;
            Err(e)
        }
    }
}

async fn abort_quietly(sink: &dyn MultipartSink) {
    if let Err(e) = sink.abort().await {
        tracing::warn!(error = %e, "aborting a failed multipart upload failed");
    }
}

async fn drive(
    sink: Arc<dyn MultipartSink>,
    initial: Bytes,
    mut data: WriteStream<'_>,
    options: MultipartOptions,
    expected: Option<Sha256Digest>,
) -> Result<Vec<CompletedPart>> {
    let concurrency = options.concurrency.max(1);
    let mut hasher = sha2::Sha256::new();
    let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
    let mut done = Vec::new();
    let mut number: u32 = 0;
    let mut target = part_size_for(options.part_size, 1) as usize;
    // Each part buffer is allocated at exactly its size and filled to it, so
    // a part never holds more memory than its bytes.
    let mut buf = BytesMut::with_capacity(target);

    // Sends `buf` as the next part once a slot is free (this write's
    // concurrency, and the driver-wide budget when there is one).
    macro_rules! launch {
        () => {{
            while tasks.len() >= concurrency {
                done.push(join_next(&mut tasks).await?);
            }
            let permit = match &options.budget {
                Some(budget) => {
                    Some(
                        budget
                            .clone()
                            .acquire_owned()
                            .await
                            .map_err(|_| Error::Backend {
                                driver: "multipart",
                                retryable: false,
                                message: "the part budget was closed".into(),
                                source: None,
                            })?,
                    )
                }
                None => None,
            };
            number += 1;
            if number > MAX_PARTS {
                return Err(Error::Backend {
                    driver: "multipart",
                    retryable: false,
                    message: format!("the object needs more than {MAX_PARTS} parts"),
                    source: None,
                });
            }
            target = part_size_for(options.part_size, number + 1) as usize;
            let part = std::mem::replace(&mut buf, BytesMut::with_capacity(target)).freeze();
            let sink = sink.clone();
            let n = number;
            tasks.spawn(async move {
                let result = sink.upload_part(n, part).await;
                drop(permit);
                result
            });
        }};
    }

    hasher.update(&initial);
    let mut pending = Some(initial);
    loop {
        let mut chunk = match pending.take() {
            Some(c) => c,
            None => match data.try_next().await? {
                Some(c) => {
                    hasher.update(&c);
                    c
                }
                None => break,
            },
        };
        while !chunk.is_empty() {
            let n = (target - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk.split_to(n));
            if buf.len() == target {
                launch!();
            }
        }
    }
    if !buf.is_empty() || number == 0 {
        launch!();
    }
    if let Some(expected) = expected {
        let actual = Sha256Digest::from_bytes(hasher.finalize().into());
        if actual != expected {
            tasks.abort_all();
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    while !tasks.is_empty() {
        done.push(join_next(&mut tasks).await?);
    }
    done.sort_by_key(|p| p.number);
    Ok(done)
}

async fn join_next(tasks: &mut JoinSet<Result<CompletedPart>>) -> Result<CompletedPart> {
    match tasks.join_next().await {
        Some(Ok(part)) => part,
        Some(Err(join)) => Err(Error::Backend {
            driver: "multipart",
            retryable: false,
            message: format!("part upload task failed: {join}"),
            source: None,
        }),
        None => unreachable!("join_next is called only with tasks running"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_keep_any_object_under_the_part_limit() {
        assert_eq!(part_size_for(MIN_PART_SIZE, 1), MIN_PART_SIZE);
        assert_eq!(part_size_for(MIN_PART_SIZE, 500), MIN_PART_SIZE);
        assert_eq!(part_size_for(MIN_PART_SIZE, 501), 2 * MIN_PART_SIZE);
        let total: u64 = (1..=MAX_PARTS)
            .map(|n| part_size_for(MIN_PART_SIZE, n))
            .sum();
        assert!(
            total > 5 * (1u64 << 40),
            "10,000 growing parts reach past 5 TiB"
        );
        assert_eq!(
            base_part_size(MIN_PART_SIZE, Some(1 << 40)),
            (1u64 << 40).div_ceil(10_000)
        );
        assert_eq!(base_part_size(1, None), MIN_PART_SIZE);
    }
}
