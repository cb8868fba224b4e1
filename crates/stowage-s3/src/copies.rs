//! Server-side copies (CopyObject, or a multipart copy above the
//! threshold) and the assembly of chunked uploads from their chunk objects
//! with UploadPartCopy, streaming instead where the server refuses it.

use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use stowage_core::multipart::MultipartSink;
use stowage_core::upload::{self, CompleteOptions, UploadState};
use stowage_core::{Error, GetOptions, ObjectMeta, PutOptions, Result, StorageExt, StoragePath};

use crate::error::from_sdk;
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
            self.with_write_settings_copy(request).send()
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
        let upload = self.start_multipart(to_key, to, None).await?;
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

#[cfg(test)]
mod tests {
    use super::{split, split_fixed};

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
