//! Resumable chunked uploads: the serializable state, and the generic
//! implementation (one temporary object per chunk) that drivers reuse.
//!
//! Chunks live at `_uploads/<id>/<index>` below the driver's root, so the
//! `_uploads` top-level name is reserved.

mod hasher;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

pub use hasher::ResumableSha256;

use crate::storage::WriteStream;
use crate::{
    Error, GetOptions, ObjectMeta, PutOptions, Result, Sha256Digest, Storage, StoragePath,
};

/// The top-level name under which temporary upload data is kept.
pub const UPLOADS_AREA: &str = "_uploads";

/// The state format version this build writes and reads.
pub const UPLOAD_STATE_VERSION: u32 = 1;

/// Where a resumable upload stands. Small (about 200 bytes of JSON plus 8
/// per chunk) and serde-serializable: a registry keeps it in its database
/// between requests and may resume in another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UploadState {
    /// Format version ([`UPLOAD_STATE_VERSION`]).
    pub version: u32,
    /// Random id (32 lowercase hex digits) naming the temporary data.
    pub id: String,
    /// When the upload started.
    pub started_at: DateTime<Utc>,
    /// Bytes received so far: the offset the next chunk must start at.
    pub size: u64,
    /// Sizes of the stored chunks, in order.
    pub chunks: Vec<u64>,
    /// A random tag per stored chunk, part of its object's key, so that a
    /// racing or retried write of the same offset (another replica, a
    /// retried PATCH) stores its bytes under another key and never replaces
    /// a chunk this state records; assembly reads exactly these objects.
    /// Empty in states written before tags existed (keys without a tag).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_tags: Vec<String>,
    /// Running SHA-256 of the bytes received.
    pub sha256: ResumableSha256,
}

impl Default for UploadState {
    fn default() -> Self {
        Self::new()
    }
}

impl UploadState {
    /// A new, empty upload with a fresh id.
    pub fn new() -> Self {
        Self {
            version: UPLOAD_STATE_VERSION,
            id: uuid::Uuid::new_v4().simple().to_string(),
            started_at: Utc::now(),
            size: 0,
            chunks: Vec::new(),
            chunk_tags: Vec::new(),
            sha256: ResumableSha256::default(),
        }
    }

    /// Checks a state that came from outside (a database, a client).
    ///
    /// # Errors
    /// [`Error::InvalidUploadState`] naming what is inconsistent.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::InvalidUploadState {
                reason: reason.to_string(),
            })
        };
        if self.version != UPLOAD_STATE_VERSION {
            return Err(Error::InvalidUploadState {
                reason: format!(
                    "version {} is not supported (this build reads {UPLOAD_STATE_VERSION})",
                    self.version
                ),
            });
        }
        if self.id.len() != 32
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad("id must be 32 lowercase hex digits");
        }
        if self.chunks.iter().sum::<u64>() != self.size || self.sha256.len() != self.size {
            return bad("chunk sizes, size and hash length disagree");
        }
        if !self.sha256.is_consistent() {
            return bad("hash state is corrupt");
        }
        if !self.chunk_tags.is_empty()
            && (self.chunk_tags.len() != self.chunks.len()
                || !self.chunk_tags.iter().all(|t| valid_tag(t)))
        {
            return bad("chunk tags must be one per chunk, 16 lowercase hex digits each");
        }
        Ok(())
    }

    /// The digest of the bytes received so far.
    pub fn digest(&self) -> Sha256Digest {
        self.sha256.digest()
    }

    /// Where this upload's temporary data lives.
    pub fn area(&self) -> StoragePath {
        StoragePath::parse(format!("{UPLOADS_AREA}/{}", self.id)).expect("id was checked")
    }

    /// The temporary object of chunk `index`: `_uploads/<id>/<index>-<tag>`
    /// (without a tag for states written before tags existed).
    pub fn chunk_path(&self, index: usize) -> StoragePath {
        let name = match self.chunk_tags.get(index) {
            Some(tag) => format!("{UPLOADS_AREA}/{}/{index:06}-{tag}", self.id),
            None => format!("{UPLOADS_AREA}/{}/{index:06}", self.id),
        };
        StoragePath::parse(name).expect("id and tags were checked")
    }

    /// The state as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("state serializes")
    }

    /// A state from JSON, checked.
    ///
    /// # Errors
    /// [`Error::InvalidUploadState`].
    pub fn from_json(json: &str) -> Result<Self> {
        let state: Self = serde_json::from_str(json).map_err(|e| Error::InvalidUploadState {
            reason: format!("not an upload state: {e}"),
        })?;
        state.check()?;
        Ok(state)
    }
}

/// Options of [`Storage::complete_upload`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CompleteOptions {
    /// Fail with [`Error::DigestMismatch`] unless the upload has this digest.
    pub expected_digest: Option<Sha256Digest>,
}

impl CompleteOptions {
    /// Requires `digest`.
    pub fn with_expected_digest(mut self, digest: Sha256Digest) -> Self {
        self.expected_digest = Some(digest);
        self
    }
}

/// What a [`Storage::cleanup_uploads`] round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Stale resumable uploads whose temporary data was removed.
    pub uploads_removed: u64,
    /// Orphaned backend multipart uploads aborted.
    pub multipart_aborted: u64,
    /// Backend multipart uploads started before the threshold but kept
    /// because a part was written since.
    pub multipart_kept_active: u64,
    /// Items whose removal failed (a temporary object, a multipart upload,
    /// or the listing of its parts): each was logged at warn, the round
    /// went on, and the next round tries again.
    pub failures: u64,
    /// The round did nothing because another process holds the cleanup
    /// lease (drivers that take one: S3).
    pub skipped_lease_held: bool,
}

impl CleanupReport {
    /// The report of a round skipped because another process holds the
    /// cleanup lease.
    pub fn skipped() -> Self {
        Self {
            skipped_lease_held: true,
            ..Self::default()
        }
    }
}

/// Stores a chunk as its own temporary object, hashing it on the way.
/// The generic [`Storage::write_chunk`].
///
/// # Errors
/// [`Error::OffsetMismatch`], [`Error::InvalidUploadState`], write failures.
pub async fn write_chunk_object<S: Storage + ?Sized>(
    storage: &S,
    state: &UploadState,
    offset: u64,
    data: WriteStream<'_>,
) -> Result<UploadState> {
    state.check()?;
    if offset != state.size {
        return Err(Error::OffsetMismatch {
            expected: state.size,
            got: offset,
        });
    }
    let hasher = Arc::new(Mutex::new((state.sha256.clone(), 0u64)));
    let feed = hasher.clone();
    let data = data
        .map_ok(move |chunk| {
            let mut h = feed.lock().expect("hasher lock");
            h.0.update(&chunk);
            h.1 += chunk.len() as u64;
            chunk
        })
        .boxed();
    let index = state.chunks.len();
    // A fresh tag: the chunk's key is this write's own.
    let mut next = state.clone();
    if next.chunk_tags.len() == index {
        next.chunk_tags.push(new_tag());
    } else {
        // An untagged (older) state continues untagged.
        next.chunk_tags.clear();
    }
    let path = next.chunk_path(index);
    let mut data = data.peekable();
    // An empty chunk stores nothing.
    if std::pin::Pin::new(&mut data).peek().await.is_none() {
        return Ok(state.clone());
    }
    storage
        .put_stream(&path, data.boxed(), PutOptions::default())
        .await?;
    let (sha256, written) = hasher.lock().expect("hasher lock").clone();
    if written == 0 {
        storage.delete(&path).await?;
        return Ok(state.clone());
    }
    next.size += written;
    next.chunks.push(written);
    next.sha256 = sha256;
    Ok(next)
}

fn new_tag() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].to_string()
}

fn valid_tag(tag: &str) -> bool {
    tag.len() == 16
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks the expected digest against the state, before any byte moves.
///
/// # Errors
/// [`Error::DigestMismatch`].
pub fn check_digest(state: &UploadState, options: &CompleteOptions) -> Result<()> {
    if let Some(expected) = options.expected_digest {
        let actual = state.digest();
        if actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(())
}

/// Completes an upload by copying its one chunk, or streaming its chunks
/// into the destination (written atomically and digest-checked again), then
/// removes the chunks. The generic [`Storage::complete_upload`].
///
/// Completing is idempotent: when a chunk is gone because the same upload
/// was completed already (a retried request, another replica finishing it
/// at the same time), the destination is checked with [`finished_already`]
/// and its metadata returned when it holds exactly the upload's bytes.
///
/// # Errors
/// As [`Storage::complete_upload`]; [`Error::InvalidUploadState`] when a
/// chunk is gone and `dest` does not hold the upload.
pub async fn complete_by_streaming<S: Storage + ?Sized>(
    storage: &S,
    state: &UploadState,
    dest: &StoragePath,
    options: CompleteOptions,
) -> Result<ObjectMeta> {
    state.check()?;
    check_digest(state, &options)?;
    let gone = OnceLock::new();
    let meta = match assemble(storage, state, dest, &gone).await {
        Ok(meta) => meta,
        Err(e) => {
            let Some(&index) = gone.get() else {
                return Err(e);
            };
            // Completed already (a retried request, another replica)?
            let Some(meta) = finished_already(storage, state, dest, &options).await? else {
                return Err(chunk_gone(index));
            };
            tracing::debug!(upload = %state.id, %dest, "the upload was completed already");
            meta
        }
    };
    remove_left_over_chunks(storage, state).await;
    Ok(meta)
}

/// Writes the upload's bytes to `dest`; a chunk found missing is recorded in
/// `gone` (the first one) and fails the assembly, which stores nothing.
async fn assemble<S: Storage + ?Sized>(
    storage: &S,
    state: &UploadState,
    dest: &StoragePath,
    gone: &OnceLock<usize>,
) -> Result<ObjectMeta> {
    match state.chunks.len() {
        0 => {
            storage
                .put(dest, bytes::Bytes::new(), PutOptions::default())
                .await
        }
        1 => {
            let chunk = state.chunk_path(0);
            let meta = storage
                .stat(&chunk)
                .await
                .map_err(|e| missing_chunk(e, 0, gone))?;
            if meta.size != state.chunks[0] {
                return Err(chunk_size_changed(0, state.chunks[0], meta.size));
            }
            storage
                .copy(&chunk, dest)
                .await
                .map_err(|e| missing_chunk(e, 0, gone))
        }
        _ => {
            let chunks = futures::stream::iter(state.chunks.iter().copied().enumerate())
                .then(|(i, expected)| async move {
                    let got = storage
                        .get(&state.chunk_path(i), GetOptions::default())
                        .await
                        .map_err(|e| missing_chunk(e, i, gone))?;
                    if got.meta.size != expected {
                        return Err(chunk_size_changed(i, expected, got.meta.size));
                    }
                    Ok(got.stream)
                })
                .try_flatten()
                .boxed();
            let options = PutOptions::default()
                .with_expected_digest(state.digest())
                .with_size_hint(state.size);
            storage.put_stream(dest, chunks, options).await
        }
    }
}

/// Removes a completed upload's chunks, logging (not failing) when some
/// stay: [`Storage::cleanup_uploads`] removes them later.
async fn remove_left_over_chunks<S: Storage + ?Sized>(storage: &S, state: &UploadState) {
    if let Err(e) = remove_chunk_objects(storage, state).await {
        tracing::warn!(upload = %state.id, error = %e, "completed upload left temporary chunks; cleanup_uploads will remove them");
    }
}

/// Whether `dest` already holds exactly the bytes of the upload `state`
/// (and, when `options` expects a digest, that digest): its size is the
/// upload's and its SHA-256, read back and hashed as it streams (memory
/// bounded by one piece of the read), is the upload's running digest.
/// `Ok(Some(meta))` with `dest`'s metadata when it does; `Ok(None)` when
/// `dest` is missing or holds other bytes.
///
/// This is what makes completion idempotent: a completion that finds a
/// chunk gone asks it before failing, so completing the same state again
/// (a retried request, another replica) answers as the first completion did
/// and never with wrong bytes. Reading `dest` back costs one read of the
/// object, on that path only.
///
/// # Errors
/// [`Error::InvalidUploadState`] for an inconsistent state; failures other
/// than not found while reading `dest`.
pub async fn finished_already<S: Storage + ?Sized>(
    storage: &S,
    state: &UploadState,
    dest: &StoragePath,
    options: &CompleteOptions,
) -> Result<Option<ObjectMeta>> {
    state.check()?;
    let digest = state.digest();
    if options
        .expected_digest
        .is_some_and(|expected| expected != digest)
    {
        return Ok(None);
    }
    let read = match storage.get(dest, GetOptions::default()).await {
        Ok(read) => read,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if read.meta.size != state.size {
        return Ok(None);
    }
    let mut stream = read.stream;
    let mut hasher = ResumableSha256::default();
    while let Some(piece) = stream.try_next().await? {
        hasher.update(&piece);
        if hasher.len() > state.size {
            return Ok(None);
        }
    }
    if hasher.len() != state.size || hasher.digest() != digest {
        return Ok(None);
    }
    Ok(Some(read.meta))
}

/// Maps a chunk's not found to [`chunk_gone`], recording `index` in `gone`.
fn missing_chunk(e: Error, index: usize, gone: &OnceLock<usize>) -> Error {
    match e {
        Error::NotFound { .. } => {
            let _ = gone.set(index);
            chunk_gone(index)
        }
        other => other,
    }
}

fn chunk_gone(index: usize) -> Error {
    Error::InvalidUploadState {
        reason: format!("chunk {index} of the upload is gone (expired or already completed)"),
    }
}

fn chunk_size_changed(index: usize, expected: u64, got: u64) -> Error {
    Error::InvalidUploadState {
        reason: format!("chunk {index} has {got} bytes, the state says {expected}"),
    }
}

/// Removes an upload's temporary chunk objects. The generic
/// [`Storage::abort_upload`].
///
/// # Errors
/// Backend failures.
pub async fn remove_chunk_objects<S: Storage + ?Sized>(
    storage: &S,
    state: &UploadState,
) -> Result<()> {
    state.check()?;
    storage.delete_prefix(&state.area()).await?;
    Ok(())
}

/// The moment `older_than` before now: what was last touched before it is
/// stale. Never panics or wraps: an age reaching past the earliest time
/// chrono represents (`Duration::MAX`, a million years) gives
/// [`DateTime::<Utc>::MIN_UTC`], before which nothing was written, so
/// nothing counts as stale.
pub fn cutoff_for(older_than: Duration) -> DateTime<Utc> {
    cutoff_before(Utc::now(), older_than)
}

/// [`cutoff_for`] from a given `now`.
fn cutoff_before(now: DateTime<Utc>, older_than: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Removes chunk objects of uploads whose newest chunk is older than
/// `older_than`. The generic [`Storage::cleanup_uploads`].
///
/// Only upload areas (`_uploads/<id>/`, `<id>` as [`UploadState::id`]) are
/// considered: other names in `_uploads/` (the S3 driver's cleanup lease)
/// are not uploads. A delete that fails is logged at warn and counted in
/// [`CleanupReport::failures`], and the round goes on; the upload then
/// counts as removed in a later round.
///
/// # Errors
/// Listing `_uploads/` failed.
pub async fn cleanup_chunk_objects<S: Storage + ?Sized>(
    storage: &S,
    older_than: Duration,
) -> Result<CleanupReport> {
    let area = StoragePath::parse(UPLOADS_AREA).expect("valid");
    let cutoff = cutoff_for(older_than);
    let mut newest: HashMap<String, (Option<DateTime<Utc>>, Vec<StoragePath>)> = HashMap::new();
    let mut listing = storage.list(Some(&area));
    while let Some(meta) = listing.try_next().await? {
        let Some(id) = meta.path.segments().nth(1).filter(|id| is_upload_id(id)) else {
            continue;
        };
        let entry = newest.entry(id.to_string()).or_default();
        entry.0 = entry.0.max(meta.last_modified);
        entry.1.push(meta.path);
    }
    drop(listing);
    let mut report = CleanupReport::default();
    for (id, (modified, paths)) in newest {
        if modified.is_none_or(|m| m >= cutoff) {
            continue;
        }
        let mut failed = 0;
        for p in &paths {
            match storage.delete(p).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    failed += 1;
                    tracing::warn!(upload = %id, path = %p, error = %e.chain(), "removing a stale upload's temporary object failed; the next cleanup tries again");
                }
            }
        }
        if failed == 0 {
            report.uploads_removed += 1;
        } else {
            report.failures += failed;
        }
    }
    Ok(report)
}

/// Whether `name` is an upload id (32 lowercase hex digits).
fn is_upload_id(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_never_overflow() {
        let now = Utc::now();
        assert_eq!(
            cutoff_before(now, Duration::from_secs(3600)),
            now - chrono::Duration::hours(1)
        );
        assert_eq!(cutoff_before(now, Duration::ZERO), now);
        // Past what chrono can represent, or past Duration's own range.
        for huge in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX as u64),
            Duration::from_secs(400_000 * 365 * 24 * 3600),
        ] {
            assert_eq!(
                cutoff_before(now, huge),
                DateTime::<Utc>::MIN_UTC,
                "{huge:?}"
            );
            // The public helper takes the same path.
            assert_eq!(cutoff_for(huge), DateTime::<Utc>::MIN_UTC, "{huge:?}");
        }
        // Large but representable: a real moment in the past.
        let old = cutoff_before(now, Duration::from_secs(1000 * 365 * 24 * 3600));
        assert!(old > DateTime::<Utc>::MIN_UTC && old < now);
    }

    #[test]
    fn state_round_trips_and_rejects_tampering() {
        let s = UploadState::new();
        let json = s.to_json();
        assert_eq!(UploadState::from_json(&json).unwrap(), s);
        let bad_id = json.replace(&s.id, "../../etc");
        assert!(matches!(
            UploadState::from_json(&bad_id),
            Err(Error::InvalidUploadState { .. })
        ));
        let bad_version = json.replace("\"version\":1", "\"version\":9");
        let err = UploadState::from_json(&bad_version)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 9"), "{err}");
        let mut lying = s.clone();
        lying.size = 5;
        assert!(lying.check().is_err());
    }
    /// A storage listing fixed objects, refusing to delete some of them.
    #[derive(Debug)]
    struct Listed {
        objects: Vec<ObjectMeta>,
        refused: Vec<StoragePath>,
        deleted: Mutex<Vec<StoragePath>>,
    }

    #[async_trait::async_trait]
    impl Storage for Listed {
        fn driver(&self) -> &'static str {
            "listed"
        }

        fn capabilities(&self) -> crate::Capabilities {
            crate::Capabilities::default()
        }

        async fn get(&self, path: &StoragePath, _: GetOptions) -> Result<crate::GetResult> {
            Err(Error::NotFound {
                path: path.to_string(),
                source: None,
            })
        }

        async fn put_stream(
            &self,
            path: &StoragePath,
            _: WriteStream<'_>,
            _: PutOptions,
        ) -> Result<ObjectMeta> {
            Err(Error::backend(
                "listed",
                false,
                format!("{path}: read-only"),
                std::io::Error::other("read-only"),
            ))
        }

        async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
            Err(Error::NotFound {
                path: path.to_string(),
                source: None,
            })
        }

        async fn delete(&self, path: &StoragePath) -> Result<()> {
            if self.refused.contains(path) {
                return Err(Error::backend(
                    "listed",
                    false,
                    format!("{path}: denied"),
                    std::io::Error::other("denied"),
                ));
            }
            self.deleted.lock().unwrap().push(path.clone());
            Ok(())
        }

        fn list(&self, _: Option<&StoragePath>) -> crate::ListStream<'_> {
            futures::stream::iter(self.objects.clone().into_iter().map(Ok)).boxed()
        }
    }

    #[tokio::test]
    async fn a_failed_delete_does_not_stop_the_cleanup_round() {
        let old = Utc::now() - chrono::Duration::hours(2);
        let object = |path: &str, at: DateTime<Utc>| {
            ObjectMeta::new(StoragePath::parse(path).unwrap(), 1).with_last_modified(Some(at))
        };
        let (a, b, fresh) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        let storage = Listed {
            objects: vec![
                object(&format!("_uploads/{a}/000000-x"), old),
                object(&format!("_uploads/{a}/000001-y"), old),
                object(&format!("_uploads/{b}/000000-z"), old),
                object(&format!("_uploads/{fresh}/000000-w"), Utc::now()),
                // Not an upload (the S3 driver's lease), however old.
                object("_uploads/.cleanup-lease", old),
            ],
            refused: vec![StoragePath::parse(format!("_uploads/{a}/000000-x")).unwrap()],
            deleted: Mutex::default(),
        };
        let report = cleanup_chunk_objects(&storage, Duration::from_secs(3600))
            .await
            .expect("only a failed listing fails the round");
        assert_eq!(report.failures, 1, "{report:?}");
        assert_eq!(report.uploads_removed, 1, "{report:?}");
        let mut deleted: Vec<String> = storage
            .deleted
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                format!("_uploads/{a}/000001-y"),
                format!("_uploads/{b}/000000-z"),
            ],
            "the chunk after the refused one, and the other stale upload"
        );
    }
}
