//! The `Storage` trait every driver implements, and conveniences over it.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::upload::{self, CleanupReport, CompleteOptions, UploadState};
use crate::validate::{self, ValidationReport};
use crate::{
    ByteRange, Capabilities, DirectUrl, DownloadUrlOptions, Error, GetOptions, GetResult,
    ListOptions, ListPage, Metric, ObjectMeta, PutOptions, Result, StoragePath, UploadUrlOptions,
};

/// A stream of bytes handed to a write. It may borrow from the caller.
pub type WriteStream<'a> = BoxStream<'a, Result<Bytes>>;

/// A stream of listed objects.
pub type ListStream<'a> = BoxStream<'a, Result<ObjectMeta>>;

/// The storage a container registry needs.
///
/// Drivers implement the required methods; the provided ones have generic
/// implementations in terms of them that a driver overrides where its
/// backend can do better (server-side assembly, batch deletes). Wrappers
/// (CloudFront, tracing, ...) forward every method.
///
/// All paths are [`StoragePath`]s, relative to the driver's root.
#[async_trait]
pub trait Storage: Debug + Send + Sync + 'static {
    /// The driver's short name (`local`, `s3`, ...), used in errors and logs.
    fn driver(&self) -> &'static str;

    /// What this driver can do.
    fn capabilities(&self) -> Capabilities;

    /// Reads an object, or a range of it, as a stream.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidRange`] for a range that starts
    /// past the end (see [`ByteRange`]).
    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult>;

    /// Writes an object from a stream, holding a bounded amount in memory.
    /// The object becomes visible only when the whole stream was written
    /// (and matched `options.expected_digest` when set); before that, readers
    /// see the previous object or none.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] (nothing is stored), or whatever the stream
    /// or the backend fails with.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no new object and no temporary data that
    /// the driver does not remove (S3 aborts its multipart upload from a
    /// background task).
    async fn put_stream(
        &self,
        path: &StoragePath,
        data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta>;

    /// Writes a small object held in memory.
    ///
    /// # Errors
    /// As [`Storage::put_stream`].
    ///
    /// # Cancel safety
    /// As [`Storage::put_stream`].
    async fn put(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let size = data.len() as u64;
        self.put_stream(
            path,
            futures::stream::once(async move { Ok(data) }).boxed(),
            options.with_size_hint(size),
        )
        .await
    }

    /// Metadata of an object.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta>;

    /// Deletes an object. Deleting a missing object succeeds.
    ///
    /// # Errors
    /// Backend failures.
    async fn delete(&self, path: &StoragePath) -> Result<()>;

    /// Deletes every object below `prefix` (segment-wise) and returns how
    /// many were deleted.
    ///
    /// # Errors
    /// Backend failures; objects deleted before the failure stay deleted.
    async fn delete_prefix(&self, prefix: &StoragePath) -> Result<u64> {
        let paths: Vec<StoragePath> = self
            .list(Some(prefix))
            .map_ok(|m| m.path)
            .try_collect()
            .await?;
        let count = paths.len() as u64;
        futures::stream::iter(paths)
            .map(|p| async move { self.delete(&p).await })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
        Ok(count)
    }

    /// Lists every object below `prefix` (segment-wise; all objects when
    /// `None`), in no guaranteed order, paging through the backend lazily.
    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_>;

    /// One page of the listing below `options.prefix`: objects and, with
    /// `options.delimiter`, the "directories" directly below the prefix,
    /// interleaved in bytewise order of their full path (a directory `a/b`
    /// sorts as `a/b/`), only those sorting strictly after
    /// `options.start_after`, at most `options.max_entries` of them (see
    /// [`crate::listing`]). Pass the page's `next_start_after` as
    /// `start_after` to get the next page; it is `None` on the last one. A
    /// directory's `next_start_after` is its path with a trailing `/`,
    /// which skips everything below it, as S3's StartAfter does.
    ///
    /// The generic implementation ([`crate::listing::list_page_by_listing`])
    /// reads the whole listing below the prefix for every page: fine for
    /// small stores. The S3 driver sends one ListObjectsV2 request; the
    /// local driver reads only the directories the page needs.
    ///
    /// # Errors
    /// Backend failures.
    async fn list_page(&self, options: ListOptions) -> Result<ListPage> {
        crate::listing::list_page_by_listing(self, options).await
    }

    /// Copies an object, inside the backend when it can
    /// ([`Capabilities::server_side_copy`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] when `from` is missing.
    async fn copy(&self, from: &StoragePath, to: &StoragePath) -> Result<ObjectMeta> {
        let source = self.get(from, GetOptions::default()).await?;
        let options = PutOptions {
            content_type: source.meta.content_type.clone(),
            size_hint: Some(source.meta.size),
            ..PutOptions::default()
        };
        self.put_stream(to, source.stream, options).await
    }

    /// A URL a client can download the object from directly, or `None` when
    /// the driver has no such URLs.
    ///
    /// # Errors
    /// Backend or credential failures while signing.
    async fn download_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        let _ = (path, options);
        Ok(None)
    }

    /// A URL a client can upload the object to directly (HTTP PUT), or
    /// `None` when the driver has no such URLs.
    ///
    /// # Errors
    /// Backend or credential failures while signing.
    async fn upload_url(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        let _ = (path, options);
        Ok(None)
    }

    /// Starts a resumable upload. The returned state is small and
    /// serializable: keep it between requests, even across processes.
    ///
    /// # Errors
    /// Backend failures.
    async fn start_upload(&self) -> Result<UploadState> {
        Ok(UploadState::new())
    }

    /// Appends a chunk at `offset`, which must equal the bytes received so
    /// far, and returns the new state (the old one stays valid until then).
    ///
    /// # Errors
    /// [`Error::OffsetMismatch`] carrying the expected offset;
    /// [`Error::InvalidUploadState`].
    ///
    /// # Cancel safety
    /// A dropped write stores no chunk; the old state stays valid and the
    /// chunk can be sent again at the same offset.
    async fn write_chunk(
        &self,
        state: &UploadState,
        offset: u64,
        data: WriteStream<'_>,
    ) -> Result<UploadState> {
        upload::write_chunk_object(self, state, offset, data).await
    }

    /// Assembles the upload at `dest` (checking the digest when asked) and
    /// removes its temporary data.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`]: nothing is written and the upload is kept,
    /// so it can be aborted or continued; [`Error::InvalidUploadState`] when
    /// its temporary data is gone.
    ///
    /// # Cancel safety
    /// `dest` is written atomically; a dropped completion leaves the upload
    /// as it was.
    async fn complete_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        upload::complete_by_streaming(self, state, dest, options).await
    }

    /// Cancels an upload, removing every temporary byte.
    ///
    /// # Errors
    /// Backend failures.
    async fn abort_upload(&self, state: &UploadState) -> Result<()> {
        upload::remove_chunk_objects(self, state).await
    }

    /// Removes uploads untouched for longer than `older_than` (and, on
    /// backends that have them, orphaned multipart uploads).
    ///
    /// # Errors
    /// Backend failures.
    async fn cleanup_uploads(&self, older_than: Duration) -> Result<CleanupReport> {
        upload::cleanup_chunk_objects(self, older_than).await
    }

    /// Writes, reads and deletes a probe object, and reports precisely which
    /// step failed; drivers add their own checks (credentials, signing).
    async fn validate(&self) -> ValidationReport {
        validate::probe(self).await
    }

    /// Counters the driver keeps about itself (fallbacks, cache hits,
    /// credential refreshes); empty for drivers that keep none.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}

/// Conveniences over any [`Storage`].
#[async_trait]
pub trait StorageExt: Storage {
    /// The whole object in memory.
    ///
    /// # Errors
    /// As [`Storage::get`].
    async fn get_bytes(&self, path: &StoragePath) -> Result<Bytes> {
        self.get(path, GetOptions::default()).await?.bytes().await
    }

    /// A range of the object in memory.
    ///
    /// # Errors
    /// As [`Storage::get`].
    async fn get_range_bytes(&self, path: &StoragePath, range: ByteRange) -> Result<Bytes> {
        self.get(path, GetOptions::default().with_range(range))
            .await?
            .bytes()
            .await
    }

    /// Downloads the object to the local file `dest` in parallel ranges,
    /// pinned to one version, the file appearing whole or not at all (see
    /// [`crate::download`]).
    ///
    /// # Errors
    /// As [`crate::download::download_to_file`].
    async fn download_to_file(
        &self,
        path: &StoragePath,
        dest: &std::path::Path,
        options: crate::download::DownloadOptions,
    ) -> Result<ObjectMeta> {
        crate::download::download_to_file(
            self,
            path,
            dest,
            options,
            &crate::download::ignore_events,
        )
        .await
    }

    /// Whether an object exists.
    ///
    /// # Errors
    /// Failures other than not found.
    async fn exists(&self, path: &StoragePath) -> Result<bool> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: Storage + ?Sized> StorageExt for T {}
