//! The tracing layer: a span per operation, an event when it finishes, and
//! one when a stream ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::forward::{Around, Call, Op, Outcome, Wraps};
use crate::{
    ErrorKind, GetOptions, GetResult, ListStream, ObjectMeta, PutOptions, Result, Storage,
    StoragePath, UploadState, WriteStream,
};

use super::StreamEnd;

/// A debug-level span per call, named after the operation (`storage.get`,
/// `storage.put_stream`, ...), with the driver, the path (and a copy's
/// `to`, an upload's id, a chunk's offset, a read's range, the size handed
/// in where known); when the call returns, the span records `outcome`
/// (`ok` or the error kind: `not_found`, `transient`, ...), `duration_ms`
/// and the result's size or count, and an event says the same inside it:
/// at debug level, or at warn level for backend, credential and permission
/// failures (with the error's message, which never holds a secret).
///
/// A `get` span covers the call; when its stream ends, fails or is dropped,
/// an event in the span gives the bytes delivered, how it ended and the
/// time since the call. `put_stream` and `write_chunk` spans cover the
/// whole write, and an event says when the data the caller handed in ended
/// (bytes taken, how). A `list` span covers the listing, with an event at
/// its end (entries, how).
///
/// `driver`, `capabilities`, `metrics` and `validate` are not traced.
/// Paths are logged; object contents and credentials never are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracingLayer {
    _private: (),
}

impl TracingLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl super::Layer for TracingLayer {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(Traced { inner })
    }
}

/// A storage behind a [`TracingLayer`].
#[derive(Debug)]
struct Traced {
    inner: Arc<dyn Storage>,
}

/// The span of one call. Span names must be known when compiling, so each
/// operation has its own line.
fn span(driver: &'static str, call: &Call<'_>) -> Span {
    macro_rules! spans {
        ($($op:ident => $name:literal),* $(,)?) => {
            match call.op {
                $(Op::$op => ::tracing::debug_span!(
                    $name,
                    driver,
                    path = call.path.map(display),
                    to = call.to.map(display),
                    upload = call.upload,
                    offset = call.offset,
                    range = call.range.map(display),
                    size = call.size,
                    outcome = Empty,
                    duration_ms = Empty,
                    result_size = Empty,
                    count = Empty
                ),)*
            }
        };
    }
    spans! {
        Get => "storage.get",
        PutStream => "storage.put_stream",
        Put => "storage.put",
        Stat => "storage.stat",
        Delete => "storage.delete",
        DeletePrefix => "storage.delete_prefix",
        List => "storage.list",
        ListPage => "storage.list_page",
        Copy => "storage.copy",
        DownloadUrl => "storage.download_url",
        UploadUrl => "storage.upload_url",
        StartUpload => "storage.start_upload",
        WriteChunk => "storage.write_chunk",
        CompleteUpload => "storage.complete_upload",
        AbortUpload => "storage.abort_upload",
        CleanupUploads => "storage.cleanup_uploads",
    }
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// Failures an operator should see without debug logging.
fn is_serious(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Backend
            | ErrorKind::Transient
            | ErrorKind::Credentials
            | ErrorKind::PermissionDenied
    )
}

/// Records how a call went on its span, and says so in an event.
fn finish<T: Outcome>(span: &Span, op: Op, result: &Result<T>, elapsed: Duration) {
    let duration_ms = millis(elapsed);
    let operation = op.name();
    span.record("duration_ms", duration_ms);
    match result {
        Ok(value) => {
            let (size, count) = (value.size(), value.count());
            span.record("outcome", "ok");
            if let Some(size) = size {
                span.record("result_size", size);
            }
            if let Some(count) = count {
                span.record("count", count);
            }
            ::tracing::debug!(
                parent: span,
                operation,
                outcome = "ok",
                duration_ms,
                size,
                count,
                "storage call finished"
            );
        }
        Err(error) => {
            let outcome = super::kind_label(error.kind());
            span.record("outcome", outcome.as_str());
            let message = error.chain();
            if is_serious(error.kind()) {
                ::tracing::warn!(
                    parent: span,
                    operation,
                    outcome,
                    duration_ms,
                    error = message,
                    "storage call failed"
                );
            } else {
                ::tracing::debug!(
                    parent: span,
                    operation,
                    outcome,
                    duration_ms,
                    error = message,
                    "storage call failed"
                );
            }
        }
    }
}

/// The event at the end of a stream: read bytes, written bytes or listed
/// entries (`what`), how it ended, the time since the call.
fn stream_ended(
    span: &Span,
    op: Op,
    what: &'static str,
    amount: u64,
    end: StreamEnd,
    since: Instant,
) {
    let operation = op.name();
    let outcome = end.label();
    let duration_ms = millis(since.elapsed());
    match end {
        StreamEnd::Failed(kind) if is_serious(kind) => {
            ::tracing::warn!(
                parent: span,
                operation,
                stream = what,
                amount,
                outcome,
                duration_ms,
                "storage stream failed"
            );
        }
        _ => {
            ::tracing::debug!(
                parent: span,
                operation,
                stream = what,
                amount,
                outcome,
                duration_ms,
                "storage stream ended"
            );
        }
    }
}

impl Traced {
    /// Runs `run` in the span of `call`, recording how it went.
    async fn traced<T: Outcome>(
        &self,
        span: Span,
        op: Op,
        run: BoxFuture<'_, Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = run.instrument(span.clone()).await;
        finish(&span, op, &result, started.elapsed());
        result
    }
}

impl Wraps for Traced {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

impl Around for Traced {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let span = span(self.inner.driver(), &call);
        Box::pin(self.traced(span, call.op, run))
    }
}

crate::forward_storage! {
    impl Storage for Traced;
    forward [driver capabilities validate metrics];
    around [put stat delete delete_prefix list_page copy download_url upload_url start_upload
            complete_upload abort_upload cleanup_uploads];

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        let call = Call::new(Op::Get).with_path(path).with_range(options.range);
        let span = span(self.inner.driver(), &call);
        let started = Instant::now();
        let mut got = self
            .traced(span.clone(), Op::Get, self.inner.get(path, options))
            .await?;
        got.stream = super::watch_bytes(got.stream, move |bytes, end| {
            stream_ended(&span, Op::Get, "bytes read", bytes, end, started);
        });
        Ok(got)
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let span = span(self.inner.driver(), &Call::new(Op::List).with_prefix(prefix));
        let started = Instant::now();
        let entries = span.in_scope(|| self.inner.list(prefix));
        super::watch_list(entries, move |count, end| {
            span.record("outcome", end.label().as_str());
            span.record("count", count);
            span.record("duration_ms", millis(started.elapsed()));
            stream_ended(&span, Op::List, "entries listed", count, end, started);
        })
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let call = Call::new(Op::PutStream)
            .with_path(path)
            .with_size(options.size_hint);
        let span = span(self.inner.driver(), &call);
        let data = watch_data(data, &span, Op::PutStream);
        self.traced(span, Op::PutStream, self.inner.put_stream(path, data, options))
            .await
    }

    async fn write_chunk(
        &self,
        state: &UploadState,
        offset: u64,
        data: WriteStream<'_>,
    ) -> Result<UploadState> {
        let call = Call::new(Op::WriteChunk)
            .with_upload(&state.id)
            .with_offset(offset);
        let span = span(self.inner.driver(), &call);
        let data = watch_data(data, &span, Op::WriteChunk);
        self.traced(span, Op::WriteChunk, self.inner.write_chunk(state, offset, data))
            .await
    }
}

/// The data of a write, with an event in `span` when it ends.
fn watch_data<'a>(data: WriteStream<'a>, span: &Span, op: Op) -> WriteStream<'a> {
    let span = span.clone();
    let started = Instant::now();
    super::watch_input(data, move |bytes, end| {
        stream_ended(&span, op, "bytes handed in", bytes, end, started);
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use bytes::Bytes;
    use futures::StreamExt;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::super::testing::{p, Memory};
    use super::super::LayerExt;
    use super::*;
    use crate::StorageExt;

    /// A span or an event as the test subscriber saw it.
    #[derive(Debug, Clone, Default)]
    struct Seen {
        name: String,
        parent: Option<u64>,
        fields: HashMap<String, String>,
    }

    impl Visit for Seen {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.fields
                .insert(field.name().to_string(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.fields
                .insert(field.name().to_string(), value.to_string());
        }
    }

    /// Every span (by id) and event of the test's thread.
    #[derive(Default)]
    struct Recorded {
        next: AtomicU64,
        spans: Mutex<HashMap<u64, Seen>>,
        events: Mutex<Vec<Seen>>,
        entered: Mutex<Vec<u64>>,
    }

    /// A subscriber keeping what it sees in [`Recorded`].
    #[derive(Clone, Default)]
    struct Recorder(Arc<Recorded>);

    impl std::ops::Deref for Recorder {
        type Target = Recorded;
        fn deref(&self) -> &Recorded {
            &self.0
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            let mut seen = Seen {
                name: span.metadata().name().to_string(),
                ..Seen::default()
            };
            span.record(&mut seen);
            self.spans.lock().unwrap().insert(id, seen);
            Id::from_u64(id)
        }

        fn record(&self, span: &Id, values: &Record<'_>) {
            if let Some(seen) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
                values.record(seen);
            }
        }

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let parent = match event.parent() {
                Some(id) => Some(id.into_u64()),
                None if event.is_contextual() => self.entered.lock().unwrap().last().copied(),
                None => None,
            };
            let mut seen = Seen {
                parent,
                ..Seen::default()
            };
            event.record(&mut seen);
            self.events.lock().unwrap().push(seen);
        }

        fn enter(&self, span: &Id) {
            self.entered.lock().unwrap().push(span.into_u64());
        }

        fn exit(&self, _: &Id) {
            self.entered.lock().unwrap().pop();
        }
    }

    impl Recorded {
        /// The spans named `name`, with their ids.
        fn spans(&self, name: &str) -> Vec<(u64, Seen)> {
            let mut found: Vec<(u64, Seen)> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| s.name == name)
                .map(|(id, s)| (*id, s.clone()))
                .collect();
            found.sort_by_key(|(id, _)| *id);
            found
        }

        /// The events whose parent is span `id`.
        fn events_in(&self, id: u64) -> Vec<Seen> {
            self.events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.parent == Some(id))
                .cloned()
                .collect()
        }
    }

    fn field<'s>(seen: &'s Seen, name: &str) -> &'s str {
        seen.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no field {name} in {seen:?}"))
    }

    #[tokio::test]
    async fn calls_and_streams_have_spans_outcomes_and_end_events() {
        let recorder = Recorder::default();
        let _guard = tracing::subscriber::set_default(recorder.clone());
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>).layer(TracingLayer::new());
        let path = p("blobs/traced");
        storage
            .put(&path, Bytes::from_static(b"hello"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(storage.get_bytes(&path).await.unwrap(), "hello");
        assert!(storage.stat(&p("blobs/missing")).await.is_err());
        let data = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"c")),
        ])
        .boxed();
        storage
            .put_stream(&p("blobs/streamed"), data, PutOptions::default())
            .await
            .unwrap();

        let (put_id, put) = recorder.spans("storage.put").remove(0);
        assert_eq!(field(&put, "path"), "blobs/traced");
        assert_eq!(field(&put, "size"), "5");
        assert_eq!(field(&put, "driver"), "memory");
        assert_eq!(field(&put, "outcome"), "ok");
        assert!(put.fields.contains_key("duration_ms"), "{put:?}");
        let finished = recorder.events_in(put_id);
        assert_eq!(finished.len(), 1, "{finished:?}");
        assert_eq!(field(&finished[0], "outcome"), "ok");
        assert_eq!(field(&finished[0], "operation"), "put");

        let (get_id, get) = recorder.spans("storage.get").remove(0);
        assert_eq!(field(&get, "outcome"), "ok");
        assert_eq!(field(&get, "result_size"), "5");
        let events = recorder.events_in(get_id);
        assert_eq!(events.len(), 2, "the call, then the stream: {events:?}");
        assert_eq!(field(&events[1], "stream"), "bytes read");
        assert_eq!(field(&events[1], "amount"), "5");
        assert_eq!(field(&events[1], "outcome"), "ok");

        let (stat_id, stat) = recorder.spans("storage.stat").remove(0);
        assert_eq!(field(&stat, "outcome"), "not_found");
        let failed = recorder.events_in(stat_id);
        assert!(
            field(&failed[0], "error").contains("blobs/missing"),
            "{failed:?}"
        );

        let (stream_id, streamed) = recorder.spans("storage.put_stream").remove(0);
        assert_eq!(field(&streamed, "outcome"), "ok");
        assert_eq!(field(&streamed, "result_size"), "3");
        let events = recorder.events_in(stream_id);
        assert!(
            events
                .iter()
                .any(
                    |e| e.fields.get("stream").map(String::as_str) == Some("bytes handed in")
                        && field(e, "amount") == "3"
                ),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_read_stream_says_so() {
        let recorder = Recorder::default();
        let _guard = tracing::subscriber::set_default(recorder.clone());
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>).layer(TracingLayer::new());
        let path = p("half");
        storage
            .put(&path, Bytes::from_static(b"abcd"), PutOptions::default())
            .await
            .unwrap();
        let mut got = storage.get(&path, GetOptions::default()).await.unwrap();
        got.stream.next().await.unwrap().unwrap();
        drop(got);
        let (get_id, _) = recorder.spans("storage.get").remove(0);
        let events = recorder.events_in(get_id);
        let end = events.last().unwrap();
        assert_eq!(field(end, "outcome"), "dropped");
        assert_eq!(field(end, "amount"), "2");
    }
}
