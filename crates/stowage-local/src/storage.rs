//! `LocalStorage`: the `Storage` trait over an `object_store` store.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Digest as _;
use stowage_core::upload::{self, CompleteOptions, UploadState};
use stowage_core::{
    Capabilities, Error, GetOptions, GetResult, ListOptions, ListPage, ListStream, ObjectMeta,
    PutOptions, Result, Sha256Digest, Storage, StoragePath, WriteStream,
};

use crate::error::{from_object_store, DRIVER};
use crate::paths::{from_store, to_store};
use crate::LocalConfig;

/// Size of the pieces a streamed write hands to the file writer.
const WRITE_CHUNK: usize = 2 * 1024 * 1024;
/// Pieces being written at once.
const WRITE_CONCURRENCY: usize = 2;

/// Size of the pieces a read hands out.
const READ_CHUNK: usize = 1024 * 1024;

/// Streams `range` of an open file in [`READ_CHUNK`] pieces, read on the
/// blocking pool straight into the buffers handed out (no intermediate copy)
/// and a few pieces ahead of the consumer.
fn file_stream(
    mut file: std::fs::File,
    range: std::ops::Range<u64>,
    display: String,
) -> Result<stowage_core::ByteStream> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(range.start))
        .map_err(|e| Error::backend(DRIVER, false, format!("seeking in {display}"), e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = range.end - range.start;
        while left > 0 {
            let want = left.min(READ_CHUNK as u64);
            let mut piece = Vec::with_capacity(want as usize);
            let read = (&mut file).take(want).read_to_end(&mut piece);
            let item = match read {
                Ok(0) => Err(Error::backend(
                    DRIVER,
                    false,
                    format!("{display} ended {left} bytes early"),
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                )),
                Ok(n) => {
                    left -= n as u64;
                    Ok(Bytes::from(piece))
                }
                Err(e) => Err(Error::backend(
                    DRIVER,
                    false,
                    format!("reading {display}"),
                    e,
                )),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                // The reader went away, or the error was handed over.
                return;
            }
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}

/// Objects as files under a directory, or in memory.
#[derive(Clone)]
pub struct LocalStorage {
    pub(crate) store: Arc<dyn ObjectStore>,
    root: Option<PathBuf>,
}

impl std::fmt::Debug for LocalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.root {
            Some(root) => f.debug_struct("LocalStorage").field("root", root).finish(),
            None => f
                .debug_struct("LocalStorage")
                .field("root", &"<memory>")
                .finish(),
        }
    }
}

impl LocalStorage {
    /// Objects under `dir`, created when missing.
    ///
    /// # Errors
    /// [`Error::Config`] when the directory cannot be created or used.
    pub fn open(dir: impl AsRef<FsPath>) -> Result<Self> {
        let dir = dir.as_ref();
        let problem = |msg: String| {
            let mut errs = stowage_core::config::ConfigErrors::default();
            errs.push("storage_path", msg);
            Error::Config(errs)
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| problem(format!("cannot create {}: {e}", dir.display())))?;
        let root = dir
            .canonicalize()
            .map_err(|e| problem(format!("cannot resolve {}: {e}", dir.display())))?;
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| problem(format!("cannot use {}: {e}", root.display())))?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(fs),
            root: Some(root),
        })
    }

    /// Objects under the configured `storage_path`.
    ///
    /// # Errors
    /// As [`LocalStorage::open`].
    pub fn from_config(config: &LocalConfig) -> Result<Self> {
        Self::open(&config.storage_path)
    }

    /// Objects in memory, gone when dropped; for tests.
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            root: None,
        }
    }

    /// Objects in `store`: any `object_store` store the embedder has (an
    /// `InMemory`, a `LocalFileSystem` of its own, a cloud store, one
    /// wrapped in object_store's limit or throttle layers), with this
    /// driver's behaviour on top: chunked uploads under `_uploads/`, no
    /// direct URLs, and writes as atomic as the store's. The storage
    /// reports driver `local` and has no [`root`](Self::root).
    pub fn from_object_store(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, root: None }
    }

    /// The root directory (`None` in memory).
    pub fn root(&self) -> Option<&FsPath> {
        self.root.as_deref()
    }

    pub(crate) fn meta(&self, m: object_store::ObjectMeta) -> Result<ObjectMeta> {
        Ok(ObjectMeta::new(from_store(&m.location)?, m.size)
            .with_etag(m.e_tag)
            .with_last_modified(Some(m.last_modified)))
    }
}

fn digest_mismatch(expected: Sha256Digest, actual: Sha256Digest) -> Error {
    Error::DigestMismatch {
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

#[async_trait]
impl Storage for LocalStorage {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_server_side_copy(true)
    }

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        let location = to_store(path);
        let err = |e| from_object_store(e, path.as_str());
        let mut request = object_store::GetOptions::default();
        let mut resolved = None;
        if let Some(range) = options.range {
            let head = self.store.head(&location).await.map_err(err)?;
            let r = range.resolve(path, head.size)?;
            if r.is_empty() {
                let meta = self.meta(head)?;
                return Ok(GetResult::new(meta, 0..0, futures::stream::empty().boxed()));
            }
            request.range = Some(GetRange::Bounded(r.clone()));
            resolved = Some(r);
        }
        let result = self.store.get_opts(&location, request).await.map_err(err)?;
        let range = resolved.unwrap_or(result.range.clone());
        let meta = self.meta(result.meta.clone())?;
        let display = path.to_string();
        let stream = match result.payload {
            // A file: read it in large pieces on a blocking-capable reader
            // (object_store's own stream reads 8 KiB at a time).
            object_store::GetResultPayload::File(file, _) => {
                file_stream(file, range.clone(), display)?
            }
            object_store::GetResultPayload::Stream(s) => {
                s.map_err(move |e| from_object_store(e, &display)).boxed()
            }
        };
        Ok(GetResult::new(meta, range, stream))
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        mut data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let location = to_store(path);
        let err = |e| from_object_store(e, path.as_str());
        let upload = self.store.put_multipart(&location).await.map_err(err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, WRITE_CHUNK);
        // Hashed only when there is a digest to check.
        let mut hasher = options.expected_digest.map(|_| sha2::Sha256::new());
        let mut size = 0u64;
        loop {
            let next = match data.try_next().await {
                Ok(next) => next,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            let Some(chunk) = next else { break };
            if let Err(e) = writer.wait_for_capacity(WRITE_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(err(e));
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        if let (Some(expected), Some(hasher)) = (options.expected_digest, hasher) {
            let actual = Sha256Digest::from_bytes(hasher.finalize().into());
            if actual != expected {
                let _ = writer.abort().await;
                return Err(digest_mismatch(expected, actual));
            }
        }
        let result = writer.finish().await.map_err(err)?;
        Ok(ObjectMeta::new(path.clone(), size)
            .with_etag(result.e_tag)
            .with_content_type(options.content_type))
    }

    async fn put(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        if let Some(expected) = options.expected_digest {
            let actual = Sha256Digest::of(&data);
            if actual != expected {
                return Err(digest_mismatch(expected, actual));
            }
        }
        let size = data.len() as u64;
        let result = self
            .store
            .put(&to_store(path), PutPayload::from_bytes(data))
            .await
            .map_err(|e| from_object_store(e, path.as_str()))?;
        Ok(ObjectMeta::new(path.clone(), size)
            .with_etag(result.e_tag)
            .with_content_type(options.content_type))
    }

    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
        let head = self
            .store
            .head(&to_store(path))
            .await
            .map_err(|e| from_object_store(e, path.as_str()))?;
        self.meta(head)
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        match self.store.delete(&to_store(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(from_object_store(e, path.as_str())),
        }
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let location = prefix.map(to_store);
        let shown = prefix.map(ToString::to_string).unwrap_or_default();
        self.store
            .list(location.as_ref())
            .map_err(move |e| from_object_store(e, &shown))
            .and_then(|m| futures::future::ready(self.meta(m)))
            .boxed()
    }

    /// Reads only the directories the page needs, in order (listing.rs).
    async fn list_page(&self, options: ListOptions) -> Result<ListPage> {
        self.walk_page(options).await
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath) -> Result<ObjectMeta> {
        self.store
            .copy(&to_store(from), &to_store(to))
            .await
            .map_err(|e| from_object_store(e, from.as_str()))?;
        self.stat(to).await
    }

    /// A single chunk is renamed into place (no copy); several are streamed
    /// into the destination.
    async fn complete_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        state.check()?;
        upload::check_digest(state, &options)?;
        if state.chunks.len() != 1 {
            return upload::complete_by_streaming(self, state, dest, options).await;
        }
        let chunk = state.chunk_path(0);
        let gone = || Error::InvalidUploadState {
            reason: "chunk 0 of the upload is gone (expired or already completed)".into(),
        };
        let meta = match self.stat(&chunk).await {
            Ok(meta) => meta,
            // A retry of a completion that already happened finds the
            // object, checked against the upload's digest.
            Err(Error::NotFound { .. }) => {
                return upload::finished_already(self, state, dest, &options)
                    .await?
                    .ok_or_else(gone);
            }
            Err(e) => return Err(e),
        };
        if meta.size != state.size {
            return Err(Error::InvalidUploadState {
                reason: format!(
                    "chunk 0 has {} bytes, the state says {}",
                    meta.size, state.size
                ),
            });
        }
        match self
            .store
            .rename(&to_store(&chunk), &to_store(dest))
            .await
            .map_err(|e| from_object_store(e, dest.as_str()))
        {
            Ok(()) => {}
            // Another completion of the same state renamed it first.
            Err(Error::NotFound { .. }) => {
                return upload::finished_already(self, state, dest, &options)
                    .await?
                    .ok_or_else(gone);
            }
            Err(e) => return Err(e),
        }
        let _ = upload::remove_chunk_objects(self, state).await;
        self.stat(dest).await
    }

    async fn validate(&self) -> stowage_core::ValidationReport {
        let mut report = stowage_core::validate::probe(self).await;
        match &self.root {
            Some(root) => report.fact("root", root.display().to_string()),
            None => report.fact("root", "<memory>"),
        }
        report
    }
}
