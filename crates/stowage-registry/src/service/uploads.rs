//! Blob uploads: start (`POST`, monolithic with `?digest=`, cross-repository
//! mount with `?mount=&from=`), chunks (`PATCH` with `Content-Range`),
//! finish (`PUT ?digest=`), status (`GET`), cancel (`DELETE`). The upload's
//! state is the trait's serializable `UploadState`, kept in the upload store
//! between requests (by default in the storage, so any replica continues
//! any upload).
//!
//! sha256 digests are checked from the upload's running hash (no re-read);
//! sha512 digests while a monolithic upload streams in, and for a chunked
//! upload by assembling it at a temporary path, reading it back once, and
//! copying it into place only when it matches.
//!
//! Finishing an upload (`PUT`) is idempotent, so a client or a load
//! balancer may retry it on any replica: its body is appended only when the
//! recorded upload does not hold it already, completion of a state already
//! completed answers with the stored blob once its bytes are checked, and
//! the upload record is removed last, after the blob is linked.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use stowage::upload::ResumableSha256;
use stowage::{
    CompleteOptions, ErrorKind, GetOptions, PutOptions, StoragePath, UploadState, WriteStream,
};

use super::{body_stream, empty, location, upload_range, DIGEST_HEADER, UPLOAD_UUID};
use crate::digest::{digest_of_stream, verified, Digest};
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::names::parse_digest;
use crate::registry::Registry;
use crate::upload_store::{Finishing, UploadRecord};

fn upload_url(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn blob_url(repo: &str, digest: &Digest) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// 416 for a chunk that does not start where the upload stands, with the
/// `Range` received so far and where to continue.
fn out_of_order(repo: &str, id: &str, size: u64, start: u64) -> RegistryError {
    RegistryError::new(
        ErrorCode::RangeInvalid,
        format!("chunk starts at {start}, but the upload has {size} bytes"),
    )
    .with_header(RANGE, upload_range(size))
    .with_header(axum::http::header::LOCATION, upload_url(repo, id))
    .with_header(UPLOAD_UUID, id.to_string())
}

/// 416 for a `Content-Range` that is not two byte positions.
fn bad_content_range(value: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::RangeInvalid,
        format!(
            "bad Content-Range {value:?}: expected <start>-<end>, \
             byte positions with end >= start"
        ),
    )
}

/// The body as a stream, or `None` when it is empty.
async fn non_empty(body: Body) -> Option<WriteStream<'static>> {
    let mut stream = body_stream(body).peekable();
    Pin::new(&mut stream).peek().await?;
    Some(stream.boxed())
}

/// How much an upload may still grow: the limit on blob sizes and whether
/// a stream went past it.
#[derive(Debug, Default)]
struct SizeLimit {
    /// Bytes the blob may still take; `None`: no limit.
    room: Option<u64>,
    /// Set once a stream carried more than `room`.
    exceeded: Arc<AtomicBool>,
}

impl SizeLimit {
    /// The room left for an upload of `max` bytes at most standing at
    /// `offset`.
    fn new(max: Option<u64>, offset: u64) -> Self {
        Self {
            room: max.map(|max| max.saturating_sub(offset)),
            exceeded: Arc::default(),
        }
    }

    /// Whether `bytes` more fit.
    fn fits(&self, bytes: u64) -> bool {
        self.room.is_none_or(|room| bytes <= room)
    }

    /// `data`, failing as soon as it carries more than the room left (the
    /// chunk in flight is dropped by the storage, as for any failed write).
    fn limit(&self, data: WriteStream<'static>) -> WriteStream<'static> {
        let Some(room) = self.room else {
            return data;
        };
        let exceeded = self.exceeded.clone();
        let mut seen: u64 = 0;
        data.map(move |chunk| -> stowage::Result<bytes::Bytes> {
            let chunk = chunk?;
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > room {
                exceeded.store(true, Ordering::Release);
                return Err(stowage::Error::backend(
                    "registry",
                    false,
                    "the upload is larger than the registry's limit",
                    format!("more than {room} bytes"),
                ));
            }
            Ok(chunk)
        })
        .boxed()
    }

    /// Whether a stream went past the limit.
    fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }
}

/// 413 `SIZE_INVALID`: the blob would be larger than `max`.
fn too_large(max: Option<u64>) -> RegistryError {
    RegistryError::too_large(format!(
        "blob uploads are limited to {} bytes on this registry",
        max.unwrap_or(u64::MAX)
    ))
}

/// The `Content-Length` header, when it is a number.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// What [`Registry::clean_stale_uploads`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StaleUploads {
    /// Upload records removed (with their chunk objects).
    pub(crate) records_removed: u64,
    /// What the driver's own cleanup did, when it ran.
    pub(crate) storage: Option<stowage::CleanupReport>,
    /// Steps that failed (logged at warn; the next cleanup tries again).
    pub(crate) failures: u64,
}

impl Registry {
    async fn link_blob(&self, repo: &str, digest: &Digest) -> RegistryResult<()> {
        self.storage
            .put(
                &layout::layer_link(repo, digest),
                digest.to_string().into(),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUnknown))
    }

    /// Whether the blob of a mount may be linked: the garbage collection
    /// protocol's marker and checks (`usage`). When they fail, the client
    /// uploads the blob instead of mounting it.
    async fn mountable(&self, digest: &Digest, checked_at: std::time::Instant) -> bool {
        match self.guard_mount(digest, checked_at).await {
            Ok(there) => there,
            Err(e) => {
                tracing::warn!(error = %e.message, %digest, "mounting a blob: the garbage collection checks failed; the client uploads it instead");
                false
            }
        }
    }

    fn created(repo: &str, digest: &Digest) -> Response {
        empty(
            StatusCode::CREATED,
            &[
                location(blob_url(repo, digest)),
                (DIGEST_HEADER, digest.to_string()),
            ],
        )
    }

    fn accepted(repo: &str, record: &UploadRecord) -> Response {
        let id = &record.state.id;
        empty(
            StatusCode::ACCEPTED,
            &[
                location(upload_url(repo, id)),
                (RANGE, upload_range(record.state.size)),
                (UPLOAD_UUID, id.clone()),
            ],
        )
    }

    /// `POST /v2/<name>/blobs/uploads/`.
    pub(crate) async fn start_upload(
        &self,
        repo: &str,
        query: &[(String, String)],
        body: Body,
    ) -> RegistryResult {
        let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let (Some(mount), Some(from)) = (param("mount"), param("from")) {
            let digest = parse_digest(mount)?;
            let checked_at = std::time::Instant::now();
            if crate::names::check_repository(from).is_ok()
                && self.linked_blob(from, &digest).await.is_ok()
                && self.mountable(&digest, checked_at).await
            {
                self.link_blob(repo, &digest).await?;
                return Ok(Self::created(repo, &digest));
            }
            // Not mountable: the client uploads instead (the spec's 202).
        }
        if let Some(d) = param("digest") {
            let digest = parse_digest(d)?;
            let limit = SizeLimit::new(self.max_upload_size, 0);
            let data = non_empty(body)
                .await
                .unwrap_or_else(|| futures::stream::empty().boxed());
            // SHA-256 is checked by the storage; another algorithm by the
            // stream itself, which fails at its end on a mismatch so that
            // nothing is stored.
            let mismatch = Arc::new(AtomicBool::new(false));
            let (data, options) = match digest {
                Digest::Sha256(d) => (
                    limit.limit(data),
                    PutOptions::default().with_expected_digest(d),
                ),
                other => (
                    verified(limit.limit(data), other, mismatch.clone()),
                    PutOptions::default(),
                ),
            };
            self.storage
                .put_stream(&layout::blob(digest), data, options)
                .await
                .map_err(|e| {
                    if limit.exceeded() {
                        too_large(self.max_upload_size)
                    } else if mismatch.load(Ordering::Acquire) {
                        RegistryError::new(
                            ErrorCode::DigestInvalid,
                            format!("the content's digest is not {digest}"),
                        )
                    } else {
                        RegistryError::storage(e, ErrorCode::BlobUploadInvalid)
                    }
                })?;
            self.link_blob(repo, &digest).await?;
            return Ok(Self::created(repo, &digest));
        }
        let state = self
            .storage
            .start_upload()
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUploadInvalid))?;
        let record = UploadRecord {
            repository: repo.to_string(),
            state,
        };
        self.uploads.put(&record).await?;
        Ok(Self::accepted(repo, &record))
    }

    /// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk. A chunk that
    /// does not start where the upload stands is refused with 416 and the
    /// `Range` received so far; one that would take the blob past the
    /// size limit with 413 (its `Content-Range` or `Content-Length` says so
    /// before a byte is read, else the stream is cut when it gets there),
    /// and the upload stays where it was.
    pub(crate) async fn patch_upload(
        &self,
        repo: &str,
        id: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> RegistryResult {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let mut record = self.uploads.get(repo, id).await?;
        let size = record.state.size;
        let limit = SizeLimit::new(self.max_upload_size, size);
        if let Some(value) = headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
            let (start, end) =
                parse_content_range(value).ok_or_else(|| bad_content_range(value))?;
            if start != size {
                return Err(out_of_order(repo, id, size, start));
            }
            // end - start + 1 bytes, computed without overflow.
            let length = end.map(|end| (end - start).saturating_add(1));
            if length.is_some_and(|n| !limit.fits(n)) {
                return Err(too_large(self.max_upload_size));
            }
        }
        if content_length(headers).is_some_and(|n| !limit.fits(n)) {
            return Err(too_large(self.max_upload_size));
        }
        if let Some(data) = non_empty(body).await {
            record = self
                .append_chunk(repo, id, &record, data, &limit, None)
                .await?;
        }
        Ok(Self::accepted(repo, &record))
    }

    /// Writes `data` at the end of the upload of `record` (within `limit`)
    /// and records the new state: what PATCH and the final PUT share. A
    /// chunk over the size limit is 413, one at another offset 416. The
    /// final PUT passes its `finishing` record, saved with the new state
    /// before its record.
    async fn append_chunk(
        &self,
        repo: &str,
        id: &str,
        record: &UploadRecord,
        data: WriteStream<'static>,
        limit: &SizeLimit,
        finishing: Option<&Finishing>,
    ) -> Result<UploadRecord, RegistryError> {
        let size = record.state.size;
        let state = self
            .storage
            .write_chunk(&record.state, size, limit.limit(data))
            .await
            .map_err(|e| match e {
                _ if limit.exceeded() => too_large(self.max_upload_size),
                stowage::Error::OffsetMismatch { got, .. } => out_of_order(repo, id, size, got),
                other => RegistryError::storage(other, ErrorCode::BlobUploadInvalid),
            })?;
        if let Some(finishing) = finishing {
            self.uploads.mark_finishing(&state, finishing).await?;
        }
        let next = UploadRecord {
            repository: record.repository.clone(),
            state,
        };
        self.uploads.advance(record, &next).await?;
        Ok(next)
    }

    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk (if any),
    /// then assembly at the blob's path with the digest checked, then the
    /// repository's link, and the upload record removed last. A wrong
    /// digest stores nothing and cancels the upload. A last chunk whose
    /// `Content-Range` does not start where the upload stands gets 416 (with
    /// `Location` and the `Range` received), and the upload stays.
    ///
    /// Retrying it after any step (a lost answer, a failure, another
    /// replica) ends the same way: a body the recorded upload holds already
    /// is not appended again (`is_retry`), and a blob stored by the first
    /// attempt is checked and linked (`blob_holds`). Once the record is
    /// removed the upload is unknown (404 `BLOB_UPLOAD_UNKNOWN`, as
    /// distribution answers).
    pub(crate) async fn finish_upload(
        &self,
        repo: &str,
        id: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
        body: Body,
    ) -> RegistryResult {
        let digest = query
            .iter()
            .find(|(n, _)| n == "digest")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                RegistryError::new(ErrorCode::DigestInvalid, "the digest parameter is missing")
            })?;
        let digest = parse_digest(digest)?;
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let (mut record, contested) = self.uploads.get_contested(repo, id).await?;
        let size = record.state.size;
        let start = match headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
            Some(value) => {
                let (start, _) =
                    parse_content_range(value).ok_or_else(|| bad_content_range(value))?;
                Some(start)
            }
            None => None,
        };
        let data = non_empty(body).await;
        let retry = (data.is_some() || start.is_some())
            && self.is_retry(&record.state, &digest, start).await?;
        if retry {
            // Its body is in the upload already: not appended again.
            tracing::info!(upload = %id, "a retried PUT: its body was appended by an earlier attempt");
        } else {
            if let Some(start) = start.filter(|start| *start != size) {
                return Err(out_of_order(repo, id, size, start));
            }
            if let Some(data) = data {
                let limit = SizeLimit::new(self.max_upload_size, size);
                let finishing = Finishing {
                    digest: digest.to_string(),
                    from: size,
                };
                record = self
                    .append_chunk(repo, id, &record, data, &limit, Some(&finishing))
                    .await?;
            }
        }
        // sha256 is checked from the running hash and the chunks are
        // assembled straight into place, unless another writer raced on the
        // upload (more than one record): then, as for sha512, the assembled
        // bytes are read back and checked before they are stored.
        let done = match digest {
            Digest::Sha256(d) if !contested => self
                .storage
                .complete_upload(
                    &record.state,
                    &layout::blob(digest),
                    CompleteOptions::default().with_expected_digest(d),
                )
                .await
                .map(|_| ()),
            Digest::Sha256(d) => {
                tracing::info!(upload = %id, "another writer raced on this upload: checking the assembled bytes");
                let options = CompleteOptions::default().with_expected_digest(d);
                self.complete_verified(&record.state, &digest, options)
                    .await
            }
            other => {
                self.complete_verified(&record.state, &other, CompleteOptions::default())
                    .await
            }
        };
        match done {
            Ok(_) => {}
            Err(e @ stowage::Error::DigestMismatch { .. }) => {
                let _ = self.storage.abort_upload(&record.state).await;
                self.uploads.remove(id).await?;
                return Err(RegistryError::new(ErrorCode::DigestInvalid, e.to_string()));
            }
            Err(e) => {
                // The chunks are gone: an earlier attempt may have stored
                // the blob, then failed before it could link it or remove
                // the record. Fine when the blob holds exactly this upload.
                let gone = matches!(
                    e.kind(),
                    ErrorKind::InvalidUploadState | ErrorKind::NotFound
                );
                let stored = gone
                    && self
                        .blob_holds(&record.state, &digest)
                        .await
                        .map_err(|check| {
                            RegistryError::storage(check, ErrorCode::BlobUploadInvalid)
                        })?;
                if !stored {
                    return Err(RegistryError::storage(e, ErrorCode::BlobUploadInvalid));
                }
                tracing::info!(upload = %id, "the blob was stored by an earlier attempt of this PUT");
            }
        }
        self.link_blob(repo, &digest).await?;
        self.uploads.remove(id).await?;
        Ok(Self::created(repo, &digest))
    }

    /// Whether a PUT naming `digest` whose body starts at `start` (its
    /// `Content-Range`, when sent) is a retry of the PUT that took the
    /// upload to `state`, so that its body is in already: that PUT left a
    /// finishing record with `state` naming the same digest, and the same
    /// start when one is given.
    ///
    /// # Errors
    /// The upload store's failures.
    async fn is_retry(
        &self,
        state: &UploadState,
        digest: &Digest,
        start: Option<u64>,
    ) -> RegistryResult<bool> {
        let Some(finishing) = self.uploads.finishing(state).await? else {
            return Ok(false);
        };
        Ok(finishing.digest == digest.to_string() && start.is_none_or(|s| s == finishing.from))
    }

    /// Whether the blob `digest` already holds exactly the bytes of the
    /// upload `state` (its size, `digest`, and the upload's running
    /// SHA-256), read back as a stream: what a retried PUT checks when the
    /// upload's chunks are gone.
    ///
    /// # Errors
    /// Failures other than not found while reading the blob.
    async fn blob_holds(&self, state: &UploadState, digest: &Digest) -> stowage::Result<bool> {
        use futures::TryStreamExt;
        let blob = layout::blob(digest);
        if let Digest::Sha256(d) = digest {
            let options = CompleteOptions::default().with_expected_digest(*d);
            let done =
                stowage::upload::finished_already(&*self.storage, state, &blob, &options).await?;
            return Ok(done.is_some());
        }
        let read = match self.storage.get(&blob, GetOptions::default()).await {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if read.meta.size != state.size {
            return Ok(false);
        }
        let sha256 = Arc::new(Mutex::new(ResumableSha256::default()));
        let feed = sha256.clone();
        let stream = read
            .stream
            .inspect_ok(move |piece| feed.lock().expect("hasher lock").update(piece))
            .boxed();
        let actual = digest_of_stream(stream, digest).await?;
        let sha256 = sha256.lock().expect("hasher lock").clone();
        Ok(actual == *digest && sha256.len() == state.size && sha256.digest() == state.digest())
    }

    /// Completes an upload whose digest the storage cannot check from its
    /// running hash (sha512), or whose chunk objects another writer may
    /// have touched: assembles it at a temporary path named after the
    /// upload and its state (with `options`), reads it back hashing, and
    /// copies it to the blob's path only when it matches; the temporary
    /// object is removed either way (and by the stale-upload cleanup,
    /// should the process die meanwhile). The name is the same for every
    /// attempt, so a retry whose first attempt assembled the upload (and
    /// removed its chunks) finds it there and checks it before using it.
    async fn complete_verified(
        &self,
        state: &UploadState,
        digest: &Digest,
        options: CompleteOptions,
    ) -> stowage::Result<()> {
        let temp = StoragePath::parse(format!(
            "{}/{}-{:020}-{}",
            layout::verify_area(),
            state.id,
            state.size,
            state.digest().hex()
        ))
        .expect("a valid path");
        if let Err(e) = self
            .storage
            .complete_upload(state, &temp, options.clone())
            .await
        {
            // Assembled here by an earlier attempt, which removed the
            // chunks: fine when the object holds exactly this upload.
            let gone = matches!(
                e.kind(),
                ErrorKind::InvalidUploadState | ErrorKind::NotFound
            );
            if !gone
                || stowage::upload::finished_already(&*self.storage, state, &temp, &options)
                    .await?
                    .is_none()
            {
                return Err(e);
            }
        }
        let checked = async {
            let read = self.storage.get(&temp, GetOptions::default()).await?;
            let actual = digest_of_stream(read.stream, digest).await?;
            if actual != *digest {
                return Err(stowage::Error::DigestMismatch {
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            self.storage
                .copy(&temp, &layout::blob(digest))
                .await
                .map(|_| ())
        }
        .await;
        if let Err(e) = self.storage.delete(&temp).await {
            tracing::warn!(error = %e.chain(), "a checked upload's temporary object stays until the next cleanup");
        }
        checked
    }

    /// `GET /v2/<name>/blobs/uploads/<id>`.
    pub(crate) async fn upload_status(&self, repo: &str, id: &str) -> RegistryResult {
        let record = self.uploads.get(repo, id).await?;
        let mut response = Self::accepted(repo, &record);
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    /// `DELETE /v2/<name>/blobs/uploads/<id>`: removes every temporary byte.
    pub(crate) async fn cancel_upload(&self, repo: &str, id: &str) -> RegistryResult {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let record = self.uploads.get(repo, id).await?;
        self.storage
            .abort_upload(&record.state)
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUploadUnknown))?;
        self.uploads.remove(id).await?;
        Ok(empty(StatusCode::NO_CONTENT, &[]))
    }

    /// Removes uploads untouched for longer than `older_than`: their records
    /// and their temporary data, then whatever the driver finds stale. Safe
    /// when several replicas run it at once: removing what another replica
    /// removed already succeeds. Returns how many upload records were
    /// removed.
    pub async fn cleanup(&self, older_than: std::time::Duration) -> u64 {
        self.clean_stale_uploads(older_than).await.records_removed
    }

    /// [`Registry::cleanup`], saying what it did (for the garbage
    /// collection's report).
    pub(crate) async fn clean_stale_uploads(
        &self,
        older_than: std::time::Duration,
    ) -> StaleUploads {
        let mut done = StaleUploads::default();
        let stale = match self.uploads.stale(older_than).await {
            Ok(stale) => stale,
            Err(e) => {
                tracing::warn!(error = %e.message, "listing stale upload records failed");
                done.failures += 1;
                Vec::new()
            }
        };
        for (id, record) in stale {
            if let Some(record) = &record {
                if let Err(e) = self.storage.abort_upload(&record.state).await {
                    tracing::warn!(upload = %id, error = %e.chain(), "removing a stale upload's data failed; the next cleanup tries again");
                    done.failures += 1;
                    continue;
                }
            }
            match self.uploads.remove(&id).await {
                Ok(()) => done.records_removed += 1,
                Err(e) => {
                    tracing::warn!(upload = %id, error = %e.message, "removing a stale upload record failed");
                    done.failures += 1;
                }
            }
        }
        self.cleanup_verify_area(older_than).await;
        let removed = done.records_removed;
        match self.storage.cleanup_uploads(older_than).await {
            Ok(report) if report.skipped_lease_held => {
                tracing::debug!(
                    records = removed,
                    "another replica is cleaning up the storage's stale uploads"
                );
                done.storage = Some(report);
            }
            Ok(report) if report.failures > 0 => {
                tracing::warn!(
                    records = removed,
                    ?report,
                    "cleaned up stale uploads; some could not be removed, the next cleanup tries again"
                );
                done.storage = Some(report);
            }
            Ok(report) => {
                tracing::info!(records = removed, ?report, "cleaned up stale uploads");
                done.storage = Some(report);
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), "cleanup of stale uploads failed");
                done.failures += 1;
            }
        }
        done
    }

    /// Removes sha512 uploads' temporary objects older than `older_than`
    /// (left by a process that died while checking one).
    async fn cleanup_verify_area(&self, older_than: std::time::Duration) {
        use futures::TryStreamExt;
        let Some(cutoff) = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age))
        else {
            return;
        };
        let old: Result<Vec<StoragePath>, _> = self
            .storage
            .list(Some(&layout::verify_area()))
            .try_filter(|m| futures::future::ready(m.last_modified.is_some_and(|t| t < cutoff)))
            .map_ok(|m| m.path)
            .try_collect()
            .await;
        match old {
            Ok(old) => {
                for path in old {
                    if let Err(e) = self.storage.delete(&path).await {
                        tracing::warn!(error = %e.chain(), "removing a stale temporary object failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e.chain(), "listing stale temporary objects failed"),
        }
    }
}

/// A `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<size>`):
/// the first byte position and, when given, the last (`end >= start`).
/// Digits only, and no arithmetic that can overflow: a position that does
/// not fit a `u64` is refused.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let v = value.trim();
    let v = v.strip_prefix("bytes").map(str::trim_start).unwrap_or(v);
    let v = v.strip_prefix('=').unwrap_or(v).trim();
    let v = v.split_once('/').map_or(v, |(range, _)| range).trim();
    let (start, end) = v.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let start = number(start)?;
    let end = match end.trim() {
        "" => None,
        text => Some(number(text).filter(|end| *end >= start)?),
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_range_forms() {
        use super::parse_content_range as p;
        assert_eq!(p("0-99"), Some((0, Some(99))));
        assert_eq!(p("100-199"), Some((100, Some(199))));
        assert_eq!(p("bytes 100-199/*"), Some((100, Some(199))));
        assert_eq!(p("bytes=100-199/500"), Some((100, Some(199))));
        assert_eq!(p("100-"), Some((100, None)));
        assert_eq!(p("x"), None);
        assert_eq!(p("-5"), None);
        assert_eq!(p("+5-6"), None);
        assert_eq!(p("9-2"), None);
        assert_eq!(p("1-2-3"), None);
        // Positions at and past u64::MAX: no overflow, no panic.
        assert_eq!(p("0-18446744073709551615"), Some((0, Some(u64::MAX))));
        assert_eq!(p("0-18446744073709551616"), None);
        assert_eq!(p("99999999999999999999999-1"), None);
    }

    #[tokio::test]
    async fn size_limits_count_every_byte() {
        use super::SizeLimit;
        use futures::{StreamExt, TryStreamExt};
        let limit = SizeLimit::new(Some(10), 4);
        assert!(limit.fits(6));
        assert!(!limit.fits(7));
        assert!(SizeLimit::new(None, u64::MAX).fits(u64::MAX));
        assert!(!SizeLimit::new(Some(10), 20).fits(1));
        let chunks = |sizes: &'static [usize]| {
            futures::stream::iter(
                sizes
                    .iter()
                    .map(|n| Ok::<_, stowage::Error>(bytes::Bytes::from(vec![0u8; *n]))),
            )
            .boxed()
        };
        let ok: Vec<bytes::Bytes> = limit.limit(chunks(&[3, 3])).try_collect().await.unwrap();
        assert_eq!(ok.len(), 2);
        assert!(!limit.exceeded());
        let over = limit
            .limit(chunks(&[3, 3, 1]))
            .try_collect::<Vec<_>>()
            .await;
        assert!(over.is_err());
        assert!(limit.exceeded());
    }
}

/// Finishing an upload retried after each of its steps failed once.
#[cfg(test)]
mod retries {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::header::CONTENT_RANGE;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use futures::TryStreamExt;
    use stowage::local::LocalStorage;
    use stowage::{
        CompleteOptions, ObjectMeta, PutOptions, Storage, StorageExt, StoragePath, UploadState,
    };

    use super::UPLOAD_UUID;
    use crate::digest::Digest;
    use crate::errors::ErrorCode;
    use crate::layout;
    use crate::registry::Registry;
    use crate::upload_store::UploadStore;

    /// The step of a finishing PUT that fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        /// Assembling the blob, before anything is written.
        BeforeComplete,
        /// Assembling the blob, after it was stored and the chunks removed.
        AfterComplete,
        /// Linking the blob to the repository.
        Link,
        /// Removing the upload record.
        RecordRemoval,
    }

    /// Local storage that fails the step it is armed for, once.
    #[derive(Debug)]
    struct Faulty {
        inner: LocalStorage,
        armed: Mutex<Option<Fault>>,
    }

    impl Faulty {
        fn arm(&self, fault: Fault) {
            *self.armed.lock().unwrap() = Some(fault);
        }

        /// Whether `fault` is armed; it is not any more.
        fn trips(&self, fault: Fault) -> bool {
            let mut armed = self.armed.lock().unwrap();
            let trips = *armed == Some(fault);
            if trips {
                *armed = None;
            }
            trips
        }
    }

    fn injected() -> stowage::Error {
        stowage::Error::backend("faulty", true, "an injected failure", "the test's fault")
    }

    impl stowage::forward::Wraps for Faulty {
        type Inner = LocalStorage;
        fn wrapped(&self) -> &LocalStorage {
            &self.inner
        }
    }

    stowage::forward_storage! {
        impl Storage for Faulty;
        forward [driver capabilities get put_stream stat delete list list_page copy download_url
                 upload_url start_upload write_chunk abort_upload cleanup_uploads validate
                 metrics];

        async fn put(
            &self,
            path: &StoragePath,
            data: bytes::Bytes,
            options: PutOptions,
        ) -> stowage::Result<ObjectMeta> {
            if path.as_str().contains("/_layers/") && self.trips(Fault::Link) {
                return Err(injected());
            }
            self.inner.put(path, data, options).await
        }

        async fn delete_prefix(&self, prefix: &StoragePath) -> stowage::Result<u64> {
            if prefix.as_str().starts_with("_registry/uploads/")
                && self.trips(Fault::RecordRemoval)
            {
                return Err(injected());
            }
            self.inner.delete_prefix(prefix).await
        }

        async fn complete_upload(
            &self,
            state: &UploadState,
            dest: &StoragePath,
            options: CompleteOptions,
        ) -> stowage::Result<ObjectMeta> {
            if self.trips(Fault::BeforeComplete) {
                return Err(injected());
            }
            let meta = self.inner.complete_upload(state, dest, options).await?;
            if self.trips(Fault::AfterComplete) {
                return Err(injected());
            }
            Ok(meta)
        }
    }

    /// A PUT finishing upload `id` of `app` with `digest`, `body` and the
    /// `Content-Range` `range`: its status, or its error's code.
    async fn finish(
        registry: &Registry,
        id: &str,
        digest: &Digest,
        body: &[u8],
        range: Option<&str>,
    ) -> Result<StatusCode, ErrorCode> {
        let query = [("digest".to_string(), digest.to_string())];
        let mut headers = HeaderMap::new();
        if let Some(range) = range {
            headers.insert(CONTENT_RANGE, HeaderValue::from_str(range).unwrap());
        }
        registry
            .finish_upload("app", id, &query, &headers, Body::from(body.to_vec()))
            .await
            .map(|r| r.status())
            .map_err(|e| e.code)
    }

    /// A PUT (with a last chunk, with or without its `Content-Range`, or
    /// without a body) that fails at any step, retried as it was sent:
    /// 201, the blob holds the upload's bytes (its last chunk once), it is
    /// linked, and nothing else is left. A PUT after that finds the upload
    /// gone (404 `BLOB_UPLOAD_UNKNOWN`, as distribution answers).
    #[tokio::test]
    async fn a_put_retried_after_any_failed_step_stores_the_blob_once_and_links_it() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let faults = [
            Fault::BeforeComplete,
            Fault::AfterComplete,
            Fault::Link,
            Fault::RecordRemoval,
        ];
        let cases = [
            ("a last chunk", 60_000, false),
            ("a last chunk and its Content-Range", 60_000, true),
            ("no body", data.len(), false),
        ];
        for digest in [Digest::sha256_of(&data), Digest::sha512_of(&data)] {
            for fault in faults {
                for (case, patched, ranged) in cases {
                    let what = format!("{} digest, {case}, {fault:?}", digest.algorithm());
                    let storage = Arc::new(Faulty {
                        inner: LocalStorage::in_memory(),
                        armed: Mutex::new(None),
                    });
                    let shared: Arc<dyn Storage> = storage.clone();
                    let registry = Registry::new(shared.clone(), UploadStore::in_storage(shared));
                    let started = registry
                        .start_upload("app", &[], Body::empty())
                        .await
                        .unwrap();
                    let id = started.headers()[UPLOAD_UUID].to_str().unwrap().to_string();
                    let patch = Body::from(data[..patched].to_vec());
                    let r = registry
                        .patch_upload("app", &id, &HeaderMap::new(), patch)
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED, "{what}");
                    let last = &data[patched..];
                    let range = format!("{patched}-{}", data.len() - 1);
                    let range = ranged.then_some(range.as_str());

                    storage.arm(fault);
                    let first = finish(&registry, &id, &digest, last, range).await;
                    assert_eq!(first, Err(ErrorCode::Unknown), "{what}: the first PUT");
                    assert!(!storage.trips(fault), "{what}: the fault was hit");
                    let retried = finish(&registry, &id, &digest, last, range).await;
                    assert_eq!(retried, Ok(StatusCode::CREATED), "{what}: the retry");

                    let blob = storage.get_bytes(&layout::blob(digest)).await.unwrap();
                    assert_eq!(blob.len(), data.len(), "{what}");
                    assert!(blob == data, "{what}: the blob holds the upload's bytes");
                    let link = layout::layer_link("app", digest);
                    assert!(storage.exists(&link).await.unwrap(), "{what}: linked");
                    let mut left: Vec<String> = storage
                        .list(None)
                        .map_ok(|m| m.path.to_string())
                        .try_collect()
                        .await
                        .unwrap();
                    left.sort();
                    let mut expected = vec![layout::blob(digest).to_string(), link.to_string()];
                    expected.sort();
                    assert_eq!(
                        left, expected,
                        "{what}: only the blob and its link are left"
                    );
                    let again = finish(&registry, &id, &digest, last, range).await;
                    assert_eq!(again, Err(ErrorCode::BlobUploadUnknown), "{what}");
                }
            }
        }
    }

    /// A PUT whose body is not a retry's (another digest, or a
    /// `Content-Range` starting where the recorded upload ends) is appended
    /// as before: a retry is recognised by its digest and its start only.
    #[tokio::test]
    async fn only_the_same_put_counts_as_a_retry() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
        let storage = Arc::new(Faulty {
            inner: LocalStorage::in_memory(),
            armed: Mutex::new(None),
        });
        let shared: Arc<dyn Storage> = storage.clone();
        let registry = Registry::new(shared.clone(), UploadStore::in_storage(shared));
        let started = registry
            .start_upload("app", &[], Body::empty())
            .await
            .unwrap();
        let id = started.headers()[UPLOAD_UUID].to_str().unwrap().to_string();
        let head = Body::from(data[..4_000].to_vec());
        registry
            .patch_upload("app", &id, &HeaderMap::new(), head)
            .await
            .unwrap();
        // The first PUT appends 4000-5999 and fails before completing.
        storage.arm(Fault::BeforeComplete);
        let first_digest = Digest::sha256_of(&data[..6_000]);
        let r = finish(
            &registry,
            &id,
            &first_digest,
            &data[4_000..6_000],
            Some("4000-5999"),
        )
        .await;
        assert_eq!(r, Err(ErrorCode::Unknown));
        // A PUT saying its body starts at 4000 with another digest is not
        // that PUT: it is out of order now.
        let digest = Digest::sha256_of(&data);
        let r = finish(&registry, &id, &digest, &data[4_000..], Some("4000-9999")).await;
        assert_eq!(r, Err(ErrorCode::RangeInvalid));
        // The rest, where the upload stands, finishes it.
        let r = finish(&registry, &id, &digest, &data[6_000..], Some("6000-9999")).await;
        assert_eq!(r, Ok(StatusCode::CREATED));
        let blob = storage.get_bytes(&layout::blob(digest)).await.unwrap();
        assert!(blob == data, "the blob holds the upload's bytes");
    }
}
