//! Server-side copies and the assembly of chunked uploads.
//!
//! - `copy`: Copy Blob pinned to the source's ETag
//!   (`x-ms-source-if-match`), so a source replaced mid-copy fails the copy
//!   rather than copying another version. Azure may run a copy in the
//!   background (`x-ms-copy-status: pending`): the driver polls until it
//!   succeeds, for at most `azure_copy_timeout_seconds`, then aborts it and
//!   removes the destination it left.
//! - Assembly: each chunk blob (in ranges of at most 256 MiB) becomes a
//!   block of the destination with Put Block From URL, several at once,
//!   then one Put Block List: nothing is visible before that commit. The
//!   chunk's URL carries a SAS signed with the account key for an hour (or
//!   the configured SAS when it grants reading); it is never logged.
//!
//! A server that refuses either (Azurite answers 501 to Put Block From
//! URL) makes copies and assemblies stream the bytes through the process
//! for 10 minutes, then server-side copies are tried again; a single-chunk
//! upload is completed by a copy, and streaming goes through the bounded
//! block writer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use stowage_core::upload::{self, CompleteOptions, UploadState};
use stowage_core::{Error, GetOptions, ObjectMeta, PutOptions, Result, StoragePath};

use crate::auth::{service_sas, Auth, ResponseOverrides, SasRequest, SasResource};
use crate::client::{header, Call};
use crate::error::{into_error, Failure, DRIVER};
use crate::limits::{MAX_BLOCKS, MAX_COPY_BLOCK_SIZE};
use crate::storage::{ServerCopy, SERVER_COPY_RETRY_AFTER};
use crate::writes::{block_id, is_superseded, new_write_id};
use crate::AzureStorage;

/// How long a copy source's SAS lives.
const SOURCE_SAS_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// How a server-side copy failed.
enum CopyError {
    /// The server does not do it (not implemented, or the source cannot be
    /// authorized): stream instead.
    Refused(Error),
    /// Anything else: the copy's error.
    Failed(Error),
}

/// Whether a failed Copy Blob or Put Block From URL means the server will
/// not do server-side copies (rather than that this copy failed).
fn is_refusal(failure: &Failure) -> bool {
    let Some(s) = failure.status() else {
        return false;
    };
    s.status == 501
        || (s.status != 404
            && matches!(
                s.code.as_deref(),
                Some(
                    "APINotImplemented"
                        | "NotImplemented"
                        | "FeatureNotSupported"
                        | "CannotVerifyCopySource"
                )
            ))
}

/// The ranges a chunk of `size` bytes is copied in: at most
/// [`MAX_COPY_BLOCK_SIZE`] each.
fn copy_ranges(size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < size {
        let end = start.saturating_add(MAX_COPY_BLOCK_SIZE).min(size);
        out.push((start, end));
        start = end;
    }
    out
}

impl AzureStorage {
    /// Whether a server-side copy's source can be authorized: by a SAS the
    /// account key signs, or by the configured SAS when it grants reading.
    pub(crate) fn copy_source_authorized(&self) -> bool {
        match self.client.auth() {
            Auth::SharedKey { .. } => true,
            Auth::Sas(sas) => sas.permissions.grants('r'),
        }
    }

    /// The URL a server-side copy reads blob `name` from, with its SAS.
    /// Never logged.
    fn copy_source_url(&self, name: &str) -> Option<String> {
        let base = self.client.blob_url(name);
        match self.client.auth() {
            Auth::SharedKey { account, key } => {
                let sas = service_sas(
                    account,
                    key,
                    &SasRequest {
                        permissions: "r",
                        expiry: Utc::now() + SOURCE_SAS_LIFETIME,
                        https_only: false,
                        resource: SasResource::Blob {
                            container: self.container(),
                            blob: name,
                        },
                        overrides: ResponseOverrides::default(),
                    },
                );
                Some(format!("{base}?{sas}"))
            }
            Auth::Sas(sas) if sas.permissions.grants('r') => {
                Some(format!("{base}?{}", sas.query()))
            }
            Auth::Sas(_) => None,
        }
    }

    /// Remembers that the server refused `kind` of server-side copy
    /// (logged once per window) and counts it.
    fn note_refusal(&self, kind: ServerCopy, error: &Error) {
        self.retries
            .counters
            .server_copies_refused
            .fetch_add(1, Ordering::Relaxed);
        if self.record_refusal(kind) {
            tracing::warn!(
                container = %self.config.container,
                operation = kind.name(),
                error = %error,
                retry_after_s = SERVER_COPY_RETRY_AFTER.as_secs(),
                "the server refused a server-side copy (Azurite does not implement Put Block \
                 From URL); streaming the bytes of these copies through this process for a \
                 while"
            );
        }
    }

    /// `error`, counted and explained when it is a copy's source having
    /// been replaced after it was read.
    fn source_changed(&self, from: &StoragePath, error: Error) -> Error {
        self.retries
            .counters
            .copies_source_changed
            .fetch_add(1, Ordering::Relaxed);
        Error::Backend {
            driver: DRIVER,
            retryable: false,
            message: format!(
                "copying {from}: the source was replaced while it was being copied; nothing \
                 was written ({error})"
            ),
            operation: None,
            source: Some(Box::new(error)),
        }
    }

    /// Copy Blob (pinned to the source's ETag), else streaming.
    pub(crate) async fn copy_blob(
        &self,
        from: &StoragePath,
        to: &StoragePath,
    ) -> Result<ObjectMeta> {
        let source = self.blob_properties(from).await?;
        if !self.server_copy_refused(ServerCopy::CopyBlob) {
            if let Some(url) = self.copy_source_url(&self.blob_name(from)) {
                match self.server_copy(from, to, url, source.etag.clone()).await {
                    Ok(meta) => return Ok(meta),
                    Err(CopyError::Failed(e)) => return Err(e),
                    Err(CopyError::Refused(e)) => self.note_refusal(ServerCopy::CopyBlob, &e),
                }
            }
        }
        self.stream_copy(from, to, &source).await
    }

    /// Copy Blob, waiting for a copy Azure runs in the background.
    async fn server_copy(
        &self,
        from: &StoragePath,
        to: &StoragePath,
        url: String,
        etag: Option<String>,
    ) -> std::result::Result<ObjectMeta, CopyError> {
        let to_name = self.blob_name(to);
        let call = Call::blob(Method::PUT, &to_name)
            .header("x-ms-copy-source", url)
            .header_opt("x-ms-source-if-match", etag);
        let response = match self.send("CopyBlob", &call).await {
            Ok(response) => response,
            Err(f) => {
                let refused = is_refusal(&f);
                let changed = f.has_status(412);
                let e = into_error(f, self.op("CopyBlob", &to_name), from.as_str());
                return Err(match (refused, changed) {
                    (true, _) => CopyError::Refused(e),
                    (_, true) => CopyError::Failed(self.source_changed(from, e)),
                    _ => CopyError::Failed(e),
                });
            }
        };
        let status = header(response.headers(), "x-ms-copy-status");
        let id = header(response.headers(), "x-ms-copy-id");
        match status.as_deref() {
            // A server that copied at once without saying so is done too.
            Some("success") | None => self.blob_properties(to).await.map_err(CopyError::Failed),
            Some("pending") => self
                .await_copy(to, &to_name, id.unwrap_or_default())
                .await
                .map_err(CopyError::Failed),
            Some(other) => Err(CopyError::Failed(Error::backend(
                DRIVER,
                false,
                format!(
                    "CopyBlob {}/{to_name}: the copy ended {other}",
                    self.container()
                ),
                std::io::Error::other("copy failed"),
            ))),
        }
    }

    /// Polls a pending copy until it succeeds, fails or runs out of
    /// `azure_copy_timeout_seconds`; a copy that does not succeed is
    /// aborted and the destination it left removed (when it is still this
    /// copy's), so nothing partial stays visible.
    async fn await_copy(&self, to: &StoragePath, to_name: &str, id: String) -> Result<ObjectMeta> {
        let deadline = Instant::now() + self.config.copy_timeout;
        let mut wait = Duration::from_millis(250);
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            let response = self
                .send("GetBlobProperties", &Call::blob(Method::HEAD, to_name))
                .await
                .map_err(|f| into_error(f, self.op("GetBlobProperties", to_name), to.as_str()))?;
            let headers = response.headers();
            let now_id = header(headers, "x-ms-copy-id").unwrap_or_default();
            let status = header(headers, "x-ms-copy-status").unwrap_or_default();
            let etag = header(headers, "etag");
            if now_id != id {
                return Err(Error::backend(
                    DRIVER,
                    true,
                    format!(
                        "CopyBlob {}/{to_name}: another write replaced the destination while \
                         the copy ran",
                        self.container()
                    ),
                    std::io::Error::other("copy replaced"),
                ));
            }
            let outcome = match status.as_str() {
                "success" => {
                    let size = crate::client::content_length(headers).unwrap_or(0);
                    return Ok(crate::client::meta_from(to, headers, size));
                }
                "pending" if Instant::now() < deadline => continue,
                "pending" => {
                    let abort = Call::blob(Method::PUT, to_name)
                        .query("comp", "copy")
                        .query("copyid", id.clone())
                        .header("x-ms-copy-action", "abort");
                    if let Err(f) = self.send("AbortCopyBlob", &abort).await {
                        tracing::warn!(blob = %to_name, error = %f, "aborting a copy that ran too long failed");
                    }
                    format!(
                        "did not finish within azure_copy_timeout_seconds ({} s) and was aborted",
                        self.config.copy_timeout.as_secs()
                    )
                }
                other => format!("ended {other}"),
            };
            // Remove what the copy left, unless something replaced it.
            let delete = Call::blob(Method::DELETE, to_name).header_opt("if-match", etag);
            if let Err(f) = self.send("DeleteBlob", &delete).await {
                if !f.has_status(404) && !f.has_status(412) {
                    tracing::warn!(blob = %to_name, error = %f, "removing what a failed copy left failed");
                }
            }
            return Err(Error::backend(
                DRIVER,
                true,
                format!(
                    "CopyBlob {}/{to_name}: the copy {outcome}",
                    self.container()
                ),
                std::io::Error::other("copy did not succeed"),
            ));
        }
    }

    /// A copy through this process, pinned to the source's ETag.
    async fn stream_copy(
        &self,
        from: &StoragePath,
        to: &StoragePath,
        source: &ObjectMeta,
    ) -> Result<ObjectMeta> {
        let body = self.get_blob(from, GetOptions::default()).await?;
        if body.meta.etag != source.etag {
            let e = Error::backend(
                DRIVER,
                false,
                format!("copying {from}: ConditionNotMet"),
                std::io::Error::other("the source's ETag changed"),
            );
            return Err(self.source_changed(from, e));
        }
        let mut options = PutOptions::default().with_size_hint(source.size);
        if let Some(ct) = &source.content_type {
            options = options.with_content_type(ct.clone());
        }
        self.write_stream(to, body.stream, options).await
    }

    /// Completes a chunked upload: inside Azure with Put Block From URL
    /// when it can, else the generic streaming completion (a single chunk:
    /// a copy). Idempotent like the generic completion: a chunk found gone
    /// or a commit superseded is settled by whether `dest` holds exactly
    /// the upload's bytes.
    pub(crate) async fn assemble_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        state.check()?;
        upload::check_digest(state, &options)?;
        let blocks: usize = state.chunks.iter().map(|s| copy_ranges(*s).len()).sum();
        let server_side = self.config.server_side_assembly
            && state.chunks.len() > 1
            && blocks <= MAX_BLOCKS as usize
            && !self.server_copy_refused(ServerCopy::PutBlockFromUrl)
            && self.copy_source_authorized();
        if !server_side {
            return upload::complete_by_streaming(self, state, dest, options).await;
        }
        let meta = match self.assemble_in_azure(state, dest).await {
            Ok(meta) => meta,
            Err(CopyError::Refused(e)) => {
                self.note_refusal(ServerCopy::PutBlockFromUrl, &e);
                return upload::complete_by_streaming(self, state, dest, options).await;
            }
            Err(CopyError::Failed(e)) => {
                let settle = matches!(e, Error::NotFound { .. }) || is_superseded(&e);
                if !settle {
                    return Err(e);
                }
                // Completed already (a retried request, another replica)?
                match upload::finished_already(self, state, dest, &options).await? {
                    Some(meta) => meta,
                    None if matches!(e, Error::NotFound { .. }) => {
                        return Err(Error::InvalidUploadState {
                            reason: "a chunk of the upload is gone (expired or already \
                                     completed)"
                                .into(),
                        })
                    }
                    None => return Err(e),
                }
            }
        };
        if let Err(e) = upload::remove_chunk_objects(self, state).await {
            tracing::warn!(upload = %state.id, error = %e, "completed upload left temporary chunks; cleanup_uploads will remove them");
        }
        Ok(meta)
    }

    /// Stages every chunk (in ranges) as a block of `dest` with Put Block
    /// From URL, a few at once, then commits them.
    async fn assemble_in_azure(
        &self,
        state: &UploadState,
        dest: &StoragePath,
    ) -> std::result::Result<ObjectMeta, CopyError> {
        let dest_name = self.blob_name(dest);
        let write = new_write_id();
        let pieces: Vec<(usize, u64, u64)> = state
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(i, size)| {
                copy_ranges(*size)
                    .into_iter()
                    .map(move |(start, end)| (i, start, end))
            })
            .collect();
        let ids: Vec<String> = (1..=pieces.len())
            .map(|n| block_id(&write, n as u32))
            .collect();
        let dest_name = &dest_name;
        // Owned items: a closure over borrowed ones is not general enough
        // for the `Send` check of the enclosing `async_trait` future.
        let jobs: Vec<(usize, u64, u64, String)> = pieces
            .iter()
            .zip(ids.iter())
            .map(|(&(chunk, start, end), id)| (chunk, start, end, id.clone()))
            .collect();
        futures::stream::iter(jobs)
            .map(|(chunk, start, end, id)| async move {
                let chunk_path = state.chunk_path(chunk);
                let source = self.blob_name(&chunk_path);
                let Some(url) = self.copy_source_url(&source) else {
                    return Err(CopyError::Refused(Error::Unsupported {
                        operation: "server-side assembly without a readable copy source",
                        driver: DRIVER,
                    }));
                };
                let call = Call::blob(Method::PUT, dest_name)
                    .query("comp", "block")
                    .query("blockid", id)
                    .header("x-ms-copy-source", url)
                    .header("x-ms-source-range", format!("bytes={start}-{}", end - 1))
                    .timeout(self.config.body_attempt_timeout(end - start));
                match self.send("PutBlockFromURL", &call).await {
                    Ok(_) => Ok(()),
                    Err(f) => {
                        let refused = is_refusal(&f);
                        let e = into_error(
                            f,
                            self.op("PutBlockFromURL", dest_name),
                            chunk_path.as_str(),
                        );
                        Err(if refused {
                            CopyError::Refused(e)
                        } else {
                            CopyError::Failed(e)
                        })
                    }
                }
            })
            .buffer_unordered(self.config.upload_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        self.commit_blocks(dest, dest_name, &ids, state.size, None)
            .await
            .map_err(CopyError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StatusFailure;

    fn status(status: u16, code: &str) -> Failure {
        Failure::Status(StatusFailure {
            status,
            code: Some(code.to_string()),
            message: None,
            content_range: None,
        })
    }

    #[test]
    fn refusals_are_told_from_failures() {
        assert!(is_refusal(&status(501, "APINotImplemented")));
        assert!(is_refusal(&status(403, "CannotVerifyCopySource")));
        assert!(!is_refusal(&status(404, "CannotVerifyCopySource")));
        assert!(!is_refusal(&status(404, "BlobNotFound")));
        assert!(!is_refusal(&status(412, "ConditionNotMet")));
        assert!(!is_refusal(&Failure::Timeout(Duration::from_secs(1))));
    }

    #[test]
    fn chunks_are_copied_in_bounded_ranges() {
        assert!(copy_ranges(0).is_empty());
        assert_eq!(copy_ranges(10), vec![(0, 10)]);
        let m = MAX_COPY_BLOCK_SIZE;
        assert_eq!(copy_ranges(m), vec![(0, m)]);
        assert_eq!(
            copy_ranges(2 * m + 1),
            vec![(0, m), (m, 2 * m), (2 * m, 2 * m + 1)]
        );
    }
}
