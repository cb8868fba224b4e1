//! The read-only layer: every write refused, reads passing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::forward::{Around, Call, Outcome, Wraps};
use crate::{
    Capabilities, CheckStatus, Error, ListOptions, Result, Storage, StoragePath, ValidationReport,
};

/// Refuses every `put`, `put_stream`, `delete`, `delete_prefix`, `copy`,
/// `start_upload`, `write_chunk`, `complete_upload`, `abort_upload` and
/// `cleanup_uploads`, and every `upload_url`, with
/// [`Error::PermissionDenied`] naming the operation (and the path); reads,
/// `stat`, listings and download URLs pass. The refused call never reaches
/// the storage inside (its future is dropped unpolled).
///
/// While on, `capabilities()` says no direct uploads, and `validate()`
/// writes no probe object: it checks that the storage answers a listing.
///
/// The layer is a switch: clones share it, so a registry can keep one to
/// turn read-only mode on and off at run time (a maintenance window, a
/// migration) for every storage it wraps.
#[derive(Debug, Clone)]
pub struct ReadOnlyLayer {
    on: Arc<AtomicBool>,
}

impl ReadOnlyLayer {
    /// A layer that refuses writes (switch it off with [`Self::set`]).
    pub fn new() -> Self {
        Self {
            on: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Turns read-only mode on or off, for every storage this layer (or a
    /// clone of it) wraps; calls already running are not affected.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    /// Whether writes are refused now.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }
}

impl Default for ReadOnlyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Layer for ReadOnlyLayer {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(ReadOnlyStorage {
            inner,
            on: Arc::clone(&self.on),
        })
    }
}

/// A storage behind a [`ReadOnlyLayer`].
#[derive(Debug)]
struct ReadOnlyStorage {
    inner: Arc<dyn Storage>,
    on: Arc<AtomicBool>,
}

impl ReadOnlyStorage {
    fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    fn refused(&self, op: &str, path: Option<&StoragePath>) -> Error {
        let what = match path {
            Some(path) => format!("{op} of {path}"),
            None => op.to_string(),
        };
        Error::PermissionDenied {
            driver: self.inner.driver(),
            message: format!("{what} refused: the storage is read-only"),
            operation: None,
            source: None,
        }
    }
}

impl Wraps for ReadOnlyStorage {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

/// Only the methods listed after `around` below come here: the writes.
impl Around for ReadOnlyStorage {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if self.is_on() {
            let refused = self.refused(call.op.name(), call.path);
            drop(run);
            return Box::pin(async move { Err(refused) });
        }
        run
    }
}

crate::forward_storage! {
    impl Storage for ReadOnlyStorage;
    forward [driver get stat list list_page download_url metrics];
    around [put_stream put delete delete_prefix copy upload_url start_upload write_chunk
            complete_upload abort_upload cleanup_uploads];

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = self.inner.capabilities();
        if self.is_on() {
            capabilities.direct_upload = false;
        }
        capabilities
    }

    /// The storage's own validation when off; while on, a listing only
    /// (the usual probe writes an object).
    async fn validate(&self) -> ValidationReport {
        if !self.is_on() {
            return self.inner.validate().await;
        }
        let mut report = ValidationReport::new(self.inner.driver());
        report.fact("read_only", "true");
        let check = "list (read-only: no probe object written)";
        match self
            .inner
            .list_page(ListOptions::default().with_max_entries(1))
            .await
        {
            Ok(_) => report.check(check, CheckStatus::Ok, "the storage answers listings"),
            Err(e) => report.fail(check, &e),
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt as _;

    use super::super::testing::{p, Memory};
    use super::super::LayerExt;
    use super::*;
    use crate::{
        CompleteOptions, DownloadUrlOptions, ErrorKind, GetOptions, PutOptions, StorageExt,
        UploadState, UploadUrlOptions,
    };

    fn denied(result: Result<impl std::fmt::Debug>, op: &str) {
        let err = result.expect_err(op);
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{op}: {err}");
        assert!(err.to_string().contains(op), "{op}: {err}");
        assert!(err.to_string().contains("read-only"), "{op}: {err}");
    }

    #[tokio::test]
    async fn every_write_is_refused_and_every_read_passes() {
        let memory = Arc::new(Memory::default());
        let path = p("blobs/one");
        memory
            .put(&path, Bytes::from_static(b"one"), PutOptions::default())
            .await
            .unwrap();
        let storage = (memory.clone() as Arc<dyn Storage>).layer(ReadOnlyLayer::new());
        let other = p("blobs/two");
        let state = UploadState::new();
        let data = || futures::stream::iter(vec![Ok(Bytes::from_static(b"x"))]).boxed();

        denied(
            storage
                .put(&other, Bytes::from_static(b"x"), PutOptions::default())
                .await,
            "put of blobs/two",
        );
        denied(
            storage
                .put_stream(&other, data(), PutOptions::default())
                .await,
            "put_stream of blobs/two",
        );
        denied(storage.delete(&path).await, "delete of blobs/one");
        denied(storage.delete_prefix(&p("blobs")).await, "delete_prefix");
        denied(storage.copy(&path, &other).await, "copy of blobs/one");
        denied(
            storage
                .upload_url(&other, &UploadUrlOptions::default())
                .await,
            "upload_url",
        );
        denied(storage.start_upload().await, "start_upload");
        denied(storage.write_chunk(&state, 0, data()).await, "write_chunk");
        denied(
            storage
                .complete_upload(&state, &other, CompleteOptions::default())
                .await,
            "complete_upload",
        );
        denied(storage.abort_upload(&state).await, "abort_upload");
        denied(
            storage
                .cleanup_uploads(std::time::Duration::from_secs(1))
                .await,
            "cleanup_uploads",
        );

        assert_eq!(storage.get_bytes(&path).await.unwrap(), "one");
        assert!(storage.get(&path, GetOptions::default()).await.is_ok());
        assert_eq!(storage.stat(&path).await.unwrap().size, 3);
        assert_eq!(
            storage
                .list_page(ListOptions::default())
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(storage
            .download_url(&path, &DownloadUrlOptions::default())
            .await
            .is_ok());
        assert!(!storage.capabilities().direct_upload);
        // Nothing reached the storage inside.
        assert!(!memory.exists(&other).await.unwrap());
        assert!(memory.exists(&path).await.unwrap());
    }

    #[tokio::test]
    async fn the_switch_turns_writes_back_on_and_validation_writes_nothing() {
        let layer = ReadOnlyLayer::new();
        let memory = Arc::new(Memory::default());
        let storage = (memory.clone() as Arc<dyn Storage>).layer(&layer);
        let report = storage.validate().await;
        assert!(report.is_ok(), "{report:?}");
        assert!(report.facts.contains(&("read_only".into(), "true".into())));
        assert!(
            memory
                .list_page(ListOptions::default())
                .await
                .unwrap()
                .is_empty(),
            "validation wrote nothing"
        );
        layer.set(false);
        assert!(!layer.is_on());
        let path = p("now/writable");
        storage
            .put(&path, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        let report = storage.validate().await;
        assert!(report.is_ok() && report.checks.len() >= 4, "{report:?}");
        layer.clone().set(true);
        assert!(storage.delete(&path).await.is_err());
    }
}
