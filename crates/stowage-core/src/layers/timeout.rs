//! The timeout layer: limits per kind of operation, failing with a
//! retryable error that names the operation and the limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};

use crate::forward::{Around, Call, Op, Outcome, Wraps};
use crate::{
    Error, GetOptions, GetResult, ListStream, ObjectMeta, PutOptions, Result, Storage, StoragePath,
    UploadState, WriteStream,
};

/// Limits per kind of operation; a call past its limit fails with a
/// retryable [`Error::Backend`] whose source is a [`TimedOut`] naming the
/// operation and the limit (dropping the storage's call, which every
/// driver's cancel safety allows).
///
/// | limit | applies to |
/// |---|---|
/// | metadata (default 60 s) | the whole call of `stat`, `delete`, `list_page`, `start_upload`, `abort_upload`, `download_url`, `upload_url`; each wait for the next entry of a `list` (about one page request) |
/// | read (default 60 s) | `get` until its first byte: the call and the wait for the stream's first chunk |
/// | write (default 300 s) | `put`, `copy` and `complete_upload`: the whole call; `put_stream` and `write_chunk`: the time the storage makes no progress, i.e. neither takes a chunk of the data nor finishes (time spent waiting for the caller's data does not count, so a slow client is not cut off) |
/// | stream idle (default none) | each wait for the next chunk of a `get` stream after the first |
///
/// Once a read has its first byte, its stream is not cut unless a stream
/// idle limit is set: a large blob sent to a slow client takes what it
/// takes, and the wait is measured only while the reader is asking, so a
/// reader that pauses is not cut off either. `delete_prefix`,
/// `cleanup_uploads` and `validate` grow with the number of objects and
/// are not limited. A server-side `copy` or `complete_upload` of a large
/// object needs a write limit above its time.
///
/// Set the limits above the driver's own retry budget (the S3 driver
/// retries a request for up to its configured time), or the layer cuts the
/// retries short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutLayer {
    metadata: Option<Duration>,
    read: Option<Duration>,
    write: Option<Duration>,
    stream_idle: Option<Duration>,
}

impl TimeoutLayer {
    /// The defaults: metadata 60 s, read 60 s, write 300 s, no stream idle
    /// limit.
    pub fn new() -> Self {
        Self {
            metadata: Some(Duration::from_secs(60)),
            read: Some(Duration::from_secs(60)),
            write: Some(Duration::from_secs(300)),
            stream_idle: None,
        }
    }

    /// Limits metadata operations (see the table above).
    pub fn with_metadata(mut self, limit: Duration) -> Self {
        self.metadata = Some(limit);
        self
    }

    /// Limits reads until their first byte.
    pub fn with_read(mut self, limit: Duration) -> Self {
        self.read = Some(limit);
        self
    }

    /// Limits writes (whole calls, or the time without progress of
    /// streamed writes).
    pub fn with_write(mut self, limit: Duration) -> Self {
        self.write = Some(limit);
        self
    }

    /// Limits each wait for the next chunk of a read stream.
    pub fn with_stream_idle(mut self, limit: Duration) -> Self {
        self.stream_idle = Some(limit);
        self
    }

    /// Removes every limit, to set only some.
    pub fn unlimited() -> Self {
        Self {
            metadata: None,
            read: None,
            write: None,
            stream_idle: None,
        }
    }

    /// The whole-call limit of `op`, if it has one.
    fn for_call(&self, op: Op) -> Option<Duration> {
        match op {
            Op::Stat
            | Op::Delete
            | Op::ListPage
            | Op::StartUpload
            | Op::AbortUpload
            | Op::DownloadUrl
            | Op::UploadUrl => self.metadata,
            Op::Put | Op::Copy | Op::CompleteUpload => self.write,
            _ => None,
        }
    }
}

impl Default for TimeoutLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Layer for TimeoutLayer {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(TimeoutStorage {
            inner,
            limits: *self,
        })
    }
}

/// The source of a timeout error: which operation, which limit, waiting
/// for what. Find it with [`find_in_chain`](crate::find_in_chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} timed out after {limit:?} ({waiting})")]
#[non_exhaustive]
pub struct TimedOut {
    /// The operation (`stat`, `get`, ...).
    pub operation: &'static str,
    /// The limit it ran into.
    pub limit: Duration,
    /// What it was waiting for: `the whole call`, `the first byte`, `the
    /// next chunk`, `the next entry`, `progress of the write`.
    pub waiting: &'static str,
}

fn timed_out(driver: &'static str, op: Op, limit: Duration, waiting: &'static str) -> Error {
    let source = TimedOut {
        operation: op.name(),
        limit,
        waiting,
    };
    Error::backend(driver, true, source.to_string(), source)
}

/// A storage behind a [`TimeoutLayer`].
#[derive(Debug)]
struct TimeoutStorage {
    inner: Arc<dyn Storage>,
    limits: TimeoutLayer,
}

impl Wraps for TimeoutStorage {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

impl Around for TimeoutStorage {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let Some(limit) = self.limits.for_call(call.op) else {
            return run;
        };
        let driver = self.inner.driver();
        Box::pin(async move {
            match tokio::time::timeout(limit, run).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(driver, call.op, limit, "the whole call")),
            }
        })
    }
}

impl TimeoutStorage {
    /// Runs a streamed write whose data is watched by `progress`, failing
    /// it when the storage makes no progress for `limit`.
    async fn without_stall<T>(
        &self,
        op: Op,
        limit: Duration,
        progress: &Progress,
        run: BoxFuture<'_, Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            result = run => result,
            () = progress.stalled(limit) => {
                Err(timed_out(self.inner.driver(), op, limit, "progress of the write"))
            }
        }
    }
}

crate::forward_storage! {
    impl Storage for TimeoutStorage;
    forward [driver capabilities delete_prefix cleanup_uploads validate metrics];
    around [put stat delete list_page copy download_url upload_url start_upload
            complete_upload abort_upload];

    /// The read limit covers the call and the wait for the first chunk;
    /// the stream idle limit each later wait.
    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        let driver = self.inner.driver();
        let started = Instant::now();
        let mut got = match self.limits.read {
            Some(limit) => match tokio::time::timeout(limit, self.inner.get(path, options)).await {
                Ok(result) => result?,
                Err(_) => return Err(timed_out(driver, Op::Get, limit, "the first byte")),
            },
            None => self.inner.get(path, options).await?,
        };
        if self.limits.read.is_some() || self.limits.stream_idle.is_some() {
            let first = self
                .limits
                .read
                .map(|limit| (limit.saturating_sub(started.elapsed()), limit));
            let stream = std::mem::replace(&mut got.stream, futures::stream::empty().boxed());
            got.stream = Deadlines::new(stream, driver, Op::Get, first, self.limits.stream_idle)
                .boxed();
        }
        Ok(got)
    }

    /// Each wait for the next entry is limited by the metadata limit.
    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let entries = self.inner.list(prefix);
        match self.limits.metadata {
            Some(limit) => Deadlines::new(
                entries,
                self.inner.driver(),
                Op::List,
                Some((limit, limit)),
                Some(limit),
            )
            .boxed(),
            None => entries,
        }
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let Some(limit) = self.limits.write else {
            return self.inner.put_stream(path, data, options).await;
        };
        let progress = Arc::new(Progress::new());
        let data = Tracked {
            data,
            progress: Arc::clone(&progress),
        }
        .boxed();
        let run = self.inner.put_stream(path, data, options);
        self.without_stall(Op::PutStream, limit, &progress, run).await
    }

    async fn write_chunk(
        &self,
        state: &UploadState,
        offset: u64,
        data: WriteStream<'_>,
    ) -> Result<UploadState> {
        let Some(limit) = self.limits.write else {
            return self.inner.write_chunk(state, offset, data).await;
        };
        let progress = Arc::new(Progress::new());
        let data = Tracked {
            data,
            progress: Arc::clone(&progress),
        }
        .boxed();
        let run = self.inner.write_chunk(state, offset, data);
        self.without_stall(Op::WriteChunk, limit, &progress, run).await
    }
}

/// When a streamed write last made progress, and whether it is waiting for
/// the caller's data now.
#[derive(Debug)]
struct Progress {
    origin: Instant,
    /// Nanoseconds after `origin` of the last progress.
    last: AtomicU64,
    waiting_for_data: AtomicBool,
}

impl Progress {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            waiting_for_data: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// Completes once the write has made no progress for `limit`, not
    /// counting the time it waits for the caller's data.
    async fn stalled(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            if self.waiting_for_data.load(Ordering::Relaxed) {
                // Waiting for the caller, not for the backend.
                self.touch();
            } else if self.last() + limit <= Instant::now() {
                return;
            }
        }
    }
}

/// The data of a streamed write, telling [`Progress`] when the storage
/// takes a chunk and when it waits for one.
struct Tracked<'a> {
    data: WriteStream<'a>,
    progress: Arc<Progress>,
}

impl Stream for Tracked<'_> {
    type Item = Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.data.poll_next_unpin(cx);
        match polled {
            Poll::Pending => self
                .progress
                .waiting_for_data
                .store(true, Ordering::Relaxed),
            Poll::Ready(_) => {
                self.progress
                    .waiting_for_data
                    .store(false, Ordering::Relaxed);
                self.progress.touch();
            }
        }
        polled
    }
}

/// A stream whose first item must come within `first` and each later one
/// within `next` of the reader asking for it; past that, it yields a
/// timeout error and ends.
struct Deadlines<S> {
    inner: S,
    driver: &'static str,
    op: Op,
    /// The wait allowed for the first item, and the limit to name.
    first: Option<(Duration, Duration)>,
    next: Option<Duration>,
    delivered: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl<S> Deadlines<S> {
    fn new(
        inner: S,
        driver: &'static str,
        op: Op,
        first: Option<(Duration, Duration)>,
        next: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            driver,
            op,
            first,
            next,
            delivered: false,
            sleep: None,
            done: false,
        }
    }
}

impl<S, T> Stream for Deadlines<S>
where
    S: Stream<Item = Result<T>> + Unpin,
{
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.inner.poll_next_unpin(cx) {
            this.sleep = None;
            this.delivered = true;
            this.done = item.is_none();
            return Poll::Ready(item);
        }
        let (wait, limit, waiting) = match (this.delivered, this.first, this.next) {
            (false, Some((wait, limit)), _) => (wait, limit, "the first byte"),
            (true, _, Some(limit)) => (limit, limit, "the next chunk"),
            _ => return Poll::Pending,
        };
        let waiting = if this.op == Op::List {
            "the next entry"
        } else {
            waiting
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.sleep = None;
                this.done = true;
                Poll::Ready(Some(Err(timed_out(this.driver, this.op, limit, waiting))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::testing::{p, Memory};
    use super::super::LayerExt;
    use super::*;
    use crate::{find_in_chain, ErrorKind, StorageExt};

    /// Memory whose `stat`, first read chunk and end of `put_stream` take
    /// `delay`.
    #[derive(Debug, Default)]
    struct Slow {
        inner: Memory,
        delay: Duration,
    }

    impl Wraps for Slow {
        type Inner = Memory;
        fn wrapped(&self) -> &Memory {
            &self.inner
        }
    }

    crate::forward_storage! {
        impl Storage for Slow;
        forward [driver capabilities put delete delete_prefix list list_page copy download_url
                 upload_url start_upload write_chunk complete_upload abort_upload
                 cleanup_uploads validate metrics];

        async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
            tokio::time::sleep(self.delay).await;
            self.inner.stat(path).await
        }

        async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
            let mut got = self.inner.get(path, options).await?;
            let delay = self.delay;
            let stream = std::mem::replace(&mut got.stream, futures::stream::empty().boxed());
            got.stream = futures::stream::once(async move {
                tokio::time::sleep(delay).await;
                stream
            })
            .flatten()
            .boxed();
            Ok(got)
        }

        async fn put_stream(
            &self,
            path: &StoragePath,
            data: WriteStream<'_>,
            options: PutOptions,
        ) -> Result<ObjectMeta> {
            let meta = self.inner.put_stream(path, data, options).await?;
            tokio::time::sleep(self.delay).await;
            Ok(meta)
        }
    }

    fn slow_storage(delay: Duration, layer: TimeoutLayer) -> (Arc<Slow>, Arc<dyn Storage>) {
        let slow = Arc::new(Slow {
            inner: Memory::default(),
            delay,
        });
        let storage = (slow.clone() as Arc<dyn Storage>).layer(layer);
        (slow, storage)
    }

    fn assert_timed_out(err: &Error, operation: &str, waiting: &str) {
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        assert!(err.is_retryable());
        let source = find_in_chain::<TimedOut>(err).expect("a TimedOut source");
        assert_eq!(source.operation, operation, "{err}");
        assert_eq!(source.waiting, waiting, "{err}");
        assert!(err.to_string().contains(operation), "{err}");
        assert!(err.to_string().contains("50ms"), "{err}");
    }

    #[tokio::test]
    async fn a_slow_metadata_call_fails_retryably_naming_the_operation_and_limit() {
        let limit = Duration::from_millis(50);
        let (slow, storage) = slow_storage(
            Duration::from_millis(500),
            TimeoutLayer::unlimited().with_metadata(limit),
        );
        slow.put(&p("x"), Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        let err = storage.stat(&p("x")).await.unwrap_err();
        assert_timed_out(&err, "stat", "the whole call");
    }

    #[tokio::test]
    async fn a_read_whose_first_byte_is_late_fails_in_its_stream() {
        let (slow, storage) = slow_storage(
            Duration::from_millis(500),
            TimeoutLayer::unlimited().with_read(Duration::from_millis(50)),
        );
        slow.put(&p("x"), Bytes::from_static(b"abcd"), PutOptions::default())
            .await
            .unwrap();
        let mut got = storage.get(&p("x"), GetOptions::default()).await.unwrap();
        let err = got.stream.next().await.unwrap().unwrap_err();
        assert_timed_out(&err, "get", "the first byte");
        assert!(got.stream.next().await.is_none(), "the stream ends there");
    }

    #[tokio::test]
    async fn a_read_within_its_limit_is_not_cut_when_the_reader_pauses() {
        let (slow, storage) = slow_storage(
            Duration::from_millis(10),
            TimeoutLayer::unlimited()
                .with_read(Duration::from_millis(200))
                .with_stream_idle(Duration::from_millis(50)),
        );
        slow.put(&p("x"), Bytes::from_static(b"abcd"), PutOptions::default())
            .await
            .unwrap();
        let mut got = storage.get(&p("x"), GetOptions::default()).await.unwrap();
        let first = got.stream.next().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let second = got.stream.next().await.unwrap().unwrap();
        assert_eq!([first, second].concat(), b"abcd");
        assert!(got.stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_write_stalled_in_the_backend_fails() {
        let (_, storage) = slow_storage(
            Duration::from_millis(500),
            TimeoutLayer::unlimited().with_write(Duration::from_millis(50)),
        );
        let data = futures::stream::iter(vec![Ok(Bytes::from_static(b"abc"))]).boxed();
        let err = storage
            .put_stream(&p("x"), data, PutOptions::default())
            .await
            .unwrap_err();
        assert_timed_out(&err, "put_stream", "progress of the write");
    }

    #[tokio::test]
    async fn a_write_waiting_for_a_slow_caller_is_not_cut() {
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>)
            .layer(TimeoutLayer::unlimited().with_write(Duration::from_millis(50)));
        let data = futures::stream::iter(0..3)
            .then(|i| async move {
                tokio::time::sleep(Duration::from_millis(120)).await;
                Ok(Bytes::from(vec![b'a' + i; 2]))
            })
            .boxed();
        let meta = storage
            .put_stream(&p("x"), data, PutOptions::default())
            .await
            .unwrap();
        assert_eq!(meta.size, 6);
        assert_eq!(storage.get_bytes(&p("x")).await.unwrap(), "aabbcc");
    }

    #[tokio::test]
    async fn a_listing_entry_late_past_the_metadata_limit_fails() {
        let limit = Duration::from_millis(50);
        let (slow, storage) = slow_storage(
            Duration::from_millis(10),
            TimeoutLayer::unlimited().with_metadata(limit),
        );
        slow.put(&p("x"), Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        let listed: Vec<Result<ObjectMeta>> = storage.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        assert!(listed[0].is_ok());
        let pending = Deadlines::new(
            futures::stream::pending::<Result<ObjectMeta>>(),
            "memory",
            Op::List,
            Some((limit, limit)),
            Some(limit),
        );
        let items: Vec<Result<ObjectMeta>> = pending.collect().await;
        assert_eq!(items.len(), 1);
        let err = items.into_iter().next().unwrap().unwrap_err();
        assert_timed_out(&err, "list", "the next entry");
    }
}
