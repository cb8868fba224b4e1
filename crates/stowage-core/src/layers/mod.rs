//! Layers: small wrappers around any `Arc<dyn Storage>`, each changing one
//! thing and forwarding the rest with [`forward_storage!`](crate::forward_storage)
//! (OpenDAL's layers, object_store's wrappers). Drivers know nothing of
//! them.
//!
//! | layer | what it does |
//! |---|---|
//! | [`TracingLayer`] | a span per operation (`storage.get`, ...) with path, size, outcome and duration; an event when a read stream or a write's data ends |
//! | [`MetricsLayer`] | latency and size histograms and error counts per operation, added to [`Storage::metrics`] |
//! | [`TimeoutLayer`] | limits for metadata operations, reads until the first byte, and writes without progress; a retryable error naming the operation and the limit |
//! | [`ConcurrencyLayer`] | at most N operations at once, a read holding its permit until its stream ends or is dropped |
//! | [`ReadOnlyLayer`] | refuses every write, delete, copy, upload and cleanup, and upload URLs; can be switched at run time |
//!
//! [`LayerExt::layer`] stacks them, the last one added outermost. A stack
//! that reads well from the outside in:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use stowage_core::layers::{
//!     ConcurrencyLayer, LayerExt, MetricsLayer, ReadOnlyLayer, TimeoutLayer, TracingLayer,
//! };
//! use stowage_core::Storage;
//!
//! fn stack(driver: Arc<dyn Storage>, read_only: &ReadOnlyLayer) -> Arc<dyn Storage> {
//!     driver
//!         // innermost: limits apply to the backend's own time, not to waiting for a permit
//!         .layer(TimeoutLayer::new().with_metadata(Duration::from_secs(10)))
//!         .layer(ConcurrencyLayer::new(64))
//!         // refused calls take no permit
//!         .layer(read_only)
//!         // what callers see, waiting and refusals included
//!         .layer(MetricsLayer::new())
//!         .layer(TracingLayer::new())
//! }
//! ```
//!
//! A layer of your own is a [`Layer`] building a wrapper that implements
//! [`Wraps`](crate::forward::Wraps) and calls `forward_storage!`, with the
//! methods it changes listed after `around` (see
//! [`Around`](crate::forward::Around)) or written by hand.

mod concurrency;
mod metrics;
mod read_only;
mod timeout;
mod tracing;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::{ByteStream, ErrorKind, ListStream, ObjectMeta, Result, Storage, WriteStream};

pub use self::concurrency::ConcurrencyLayer;
pub use self::metrics::MetricsLayer;
pub use self::read_only::ReadOnlyLayer;
pub use self::timeout::{TimedOut, TimeoutLayer};
pub use self::tracing::TracingLayer;

/// Something that wraps a storage: the storage it returns behaves like
/// `inner` with one thing changed.
pub trait Layer {
    /// `inner` with this layer around it.
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage>;
}

impl<L: Layer + ?Sized> Layer for &L {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        (**self).layer(inner)
    }
}

/// `storage.layer(l)`: stacking layers on a storage, the last one added
/// outermost.
pub trait LayerExt {
    /// This storage with `layer` around it.
    fn layer<L: Layer>(self, layer: L) -> Arc<dyn Storage>;
}

impl LayerExt for Arc<dyn Storage> {
    fn layer<L: Layer>(self, layer: L) -> Arc<dyn Storage> {
        Layer::layer(&layer, self)
    }
}

/// How a watched stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// It yielded its last item.
    Finished,
    /// It yielded an error of this kind.
    Failed(ErrorKind),
    /// It was dropped before finishing or failing.
    Dropped,
}

impl StreamEnd {
    /// `ok`, the error kind (`not_found`, `transient`, ...) or `dropped`.
    pub(crate) fn label(self) -> String {
        match self {
            Self::Finished => "ok".to_string(),
            Self::Failed(kind) => kind_label(kind),
            Self::Dropped => "dropped".to_string(),
        }
    }
}

/// An error kind as a metric label or a span field: `NotFound` is
/// `not_found`.
pub(crate) fn kind_label(kind: ErrorKind) -> String {
    let name = format!("{kind:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a watched stream calls once, when it ends: the total measured and
/// how it ended.
type OnEnd = Box<dyn FnOnce(u64, StreamEnd) + Send>;

/// A stream passing its items through, adding up `measure` of each, and
/// calling `on_end` exactly once: at its end, at its first error, or when
/// dropped before either.
struct Watched<S, T> {
    inner: S,
    measure: fn(&T) -> u64,
    total: u64,
    on_end: Option<OnEnd>,
}

impl<S, T> Watched<S, T> {
    fn end(&mut self, how: StreamEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.total, how);
        }
    }
}

impl<S, T> Stream for Watched<S, T>
where
    S: Stream<Item = Result<T>> + Unpin,
{
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = this.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(item))) => {
                this.total = this.total.saturating_add((this.measure)(item));
            }
            Poll::Ready(Some(Err(e))) => this.end(StreamEnd::Failed(e.kind())),
            Poll::Ready(None) => this.end(StreamEnd::Finished),
            Poll::Pending => {}
        }
        polled
    }
}

impl<S, T> Drop for Watched<S, T> {
    fn drop(&mut self) {
        self.end(StreamEnd::Dropped);
    }
}

fn byte_len(chunk: &Bytes) -> u64 {
    chunk.len() as u64
}

fn one(_: &ObjectMeta) -> u64 {
    1
}

/// `stream`, calling `on_end` with the bytes it yielded when it ends,
/// fails or is dropped.
pub(crate) fn watch_bytes(
    stream: ByteStream,
    on_end: impl FnOnce(u64, StreamEnd) + Send + 'static,
) -> ByteStream {
    Watched {
        inner: stream,
        measure: byte_len,
        total: 0,
        on_end: Some(Box::new(on_end)),
    }
    .boxed()
}

/// The data of a write, calling `on_end` with the bytes the storage took
/// from it when it ends, fails or is dropped.
pub(crate) fn watch_input(
    stream: WriteStream<'_>,
    on_end: impl FnOnce(u64, StreamEnd) + Send + 'static,
) -> WriteStream<'_> {
    Watched {
        inner: stream,
        measure: byte_len,
        total: 0,
        on_end: Some(Box::new(on_end)),
    }
    .boxed()
}

/// A listing, calling `on_end` with the number of entries it yielded when
/// it ends, fails or is dropped.
pub(crate) fn watch_list(
    stream: ListStream<'_>,
    on_end: impl FnOnce(u64, StreamEnd) + Send + 'static,
) -> ListStream<'_> {
    Watched {
        inner: stream,
        measure: one,
        total: 0,
        on_end: Some(Box::new(on_end)),
    }
    .boxed()
}

/// A small in-memory storage for the layers' unit tests, reading in two
/// chunks so that streams have a middle.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use futures::{StreamExt, TryStreamExt};

    use crate::{
        Capabilities, Error, GetOptions, GetResult, ListStream, Metric, ObjectMeta, PutOptions,
        Result, Storage, StoragePath, WriteStream,
    };

    /// Objects in a map; counts its writes in a metric.
    #[derive(Debug, Default)]
    pub(crate) struct Memory {
        objects: Mutex<BTreeMap<StoragePath, (Bytes, chrono::DateTime<chrono::Utc>)>>,
        puts: AtomicU64,
    }

    /// A test path.
    pub(crate) fn p(s: &str) -> StoragePath {
        StoragePath::parse(s).unwrap()
    }

    #[async_trait]
    impl Storage for Memory {
        fn driver(&self) -> &'static str {
            "memory"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }

        async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
            let (body, at) = self
                .objects
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .ok_or_else(|| Error::not_found(path))?;
            let size = body.len() as u64;
            let range = match options.range {
                Some(r) => r.resolve(path, size)?,
                None => 0..size,
            };
            let part = body.slice(range.start as usize..range.end as usize);
            let middle = part.len() / 2;
            let chunks = vec![Ok(part.slice(..middle)), Ok(part.slice(middle..))];
            let meta = ObjectMeta::new(path.clone(), size).with_last_modified(Some(at));
            Ok(GetResult::new(
                meta,
                range,
                futures::stream::iter(chunks).boxed(),
            ))
        }

        async fn put_stream(
            &self,
            path: &StoragePath,
            data: WriteStream<'_>,
            _options: PutOptions,
        ) -> Result<ObjectMeta> {
            let chunks: Vec<Bytes> = data.try_collect().await?;
            let body = Bytes::from(chunks.concat());
            let size = body.len() as u64;
            let at = chrono::Utc::now();
            self.objects
                .lock()
                .unwrap()
                .insert(path.clone(), (body, at));
            self.puts.fetch_add(1, Ordering::Relaxed);
            Ok(ObjectMeta::new(path.clone(), size).with_last_modified(Some(at)))
        }

        async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
            let objects = self.objects.lock().unwrap();
            let (body, at) = objects.get(path).ok_or_else(|| Error::not_found(path))?;
            Ok(ObjectMeta::new(path.clone(), body.len() as u64).with_last_modified(Some(*at)))
        }

        async fn delete(&self, path: &StoragePath) -> Result<()> {
            self.objects.lock().unwrap().remove(path);
            Ok(())
        }

        fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
            let entries: Vec<Result<ObjectMeta>> = self
                .objects
                .lock()
                .unwrap()
                .iter()
                .filter(|(path, _)| prefix.is_none_or(|prefix| path.is_below(prefix)))
                .map(|(path, (body, at))| {
                    Ok(ObjectMeta::new(path.clone(), body.len() as u64)
                        .with_last_modified(Some(*at)))
                })
                .collect();
            futures::stream::iter(entries).boxed()
        }

        fn metrics(&self) -> Vec<Metric> {
            vec![Metric::counter(
                "memory_puts_total",
                "Objects written.",
                self.puts.load(Ordering::Relaxed),
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::testing::{p, Memory};
    use super::*;
    use crate::{PutOptions, StorageExt};

    #[test]
    fn error_kinds_become_snake_case_labels() {
        assert_eq!(kind_label(ErrorKind::NotFound), "not_found");
        assert_eq!(
            kind_label(ErrorKind::InvalidUploadState),
            "invalid_upload_state"
        );
        assert_eq!(kind_label(ErrorKind::Transient), "transient");
        assert_eq!(StreamEnd::Dropped.label(), "dropped");
        assert_eq!(StreamEnd::Finished.label(), "ok");
    }

    /// Every layer forwards what it does not change: a stack of all five
    /// reads, writes and names the driver like the storage inside.
    #[tokio::test]
    async fn a_stack_of_every_layer_behaves_like_the_storage_inside() {
        let read_only = ReadOnlyLayer::new();
        read_only.set(false);
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>)
            .layer(TimeoutLayer::new().with_metadata(Duration::from_secs(5)))
            .layer(ConcurrencyLayer::new(2))
            .layer(&read_only)
            .layer(MetricsLayer::new())
            .layer(TracingLayer::new());
        assert_eq!(storage.driver(), "memory");
        let path = p("a/b");
        storage
            .put(&path, Bytes::from_static(b"hello"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(storage.get_bytes(&path).await.unwrap(), "hello");
        assert_eq!(storage.stat(&path).await.unwrap().size, 5);
        let listed: Vec<ObjectMeta> = storage
            .list(None)
            .map(|m| m.unwrap())
            .collect::<Vec<_>>()
            .await;
        assert_eq!(listed.len(), 1);
        assert!(storage
            .metrics()
            .iter()
            .any(|m| m.name == "memory_puts_total" && m.value == 1));
        read_only.set(true);
        let err = storage.delete(&path).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(storage.exists(&path).await.unwrap());
    }

    #[tokio::test]
    async fn watched_streams_report_once_however_they_end() {
        let ends = Arc::new(std::sync::Mutex::new(Vec::new()));
        let chunks = || {
            futures::stream::iter(vec![
                Ok(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"de")),
            ])
            .boxed()
        };
        let record = |ends: &Arc<std::sync::Mutex<Vec<(u64, StreamEnd)>>>| {
            let ends = Arc::clone(ends);
            move |n, how| ends.lock().unwrap().push((n, how))
        };
        let mut whole = watch_bytes(chunks(), record(&ends));
        while whole.next().await.is_some() {}
        drop(whole);
        let mut half = watch_bytes(chunks(), record(&ends));
        half.next().await;
        drop(half);
        let failing = vec![
            Ok(Bytes::from_static(b"x")),
            Err(crate::Error::not_found("gone")),
        ];
        let mut failed = watch_bytes(futures::stream::iter(failing).boxed(), record(&ends));
        while failed.next().await.is_some() {}
        drop(failed);
        assert_eq!(
            *ends.lock().unwrap(),
            vec![
                (5, StreamEnd::Finished),
                (3, StreamEnd::Dropped),
                (1, StreamEnd::Failed(ErrorKind::NotFound)),
            ]
        );
    }
}
