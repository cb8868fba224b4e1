//! The metrics layer: latency and size histograms and error counts per
//! operation, in [`Storage::metrics`] next to the driver's own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;

use crate::forward::{Around, Call, Op, Outcome, Wraps};
use crate::metrics::{Histogram, Metric};
use crate::{Error, ErrorKind, GetOptions, GetResult, ListStream, Result, Storage, StoragePath};

use super::StreamEnd;

/// Default latency buckets, in seconds.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Default size buckets, in bytes (1 KiB to 4 GiB).
const SIZE_BUCKETS: [f64; 10] = [
    1_024.0,
    16_384.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// Adds to the storage's [`Storage::metrics`], labelled with the driver
/// and the operation (and the layer's own labels):
///
/// - `stowage_storage_operation_duration_seconds` (histogram): how long
///   each call took, whatever its outcome. For `get`, the call until the
///   stream is handed back (time to first byte, about), not the stream,
///   whose pace is the reader's; for `list`, until the listing ends or is
///   dropped.
/// - `stowage_storage_operation_bytes` (histogram): the bytes each `get`
///   stream delivered (counted when it ends or is dropped), and the bytes
///   written by each successful `put`, `put_stream`, `write_chunk`, `copy`
///   and `complete_upload`.
/// - `stowage_storage_operation_errors_total` (counter): failed calls and
///   failed streams, by error `kind` (`not_found`, `transient`, ...).
///
/// `driver`, `capabilities`, `metrics` and `validate` are not measured.
/// Each storage the layer wraps keeps its own samples: give stacks over
/// the same driver a label to tell them apart ([`Self::with_label`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsLayer {
    durations: Vec<f64>,
    sizes: Vec<f64>,
    labels: Vec<(&'static str, String)>,
}

impl MetricsLayer {
    /// Default buckets (1 ms to 300 s; 1 KiB to 4 GiB), no extra label.
    pub fn new() -> Self {
        Self {
            durations: DURATION_BUCKETS.to_vec(),
            sizes: SIZE_BUCKETS.to_vec(),
            labels: Vec::new(),
        }
    }

    /// Latency buckets: their upper bounds, in seconds.
    pub fn with_duration_buckets(mut self, bounds: &[f64]) -> Self {
        self.durations = bounds.to_vec();
        self
    }

    /// Size buckets: their upper bounds, in bytes.
    pub fn with_size_buckets(mut self, bounds: &[f64]) -> Self {
        self.sizes = bounds.to_vec();
        self
    }

    /// A label on every sample (`location` = `s3_us_east`, say).
    pub fn with_label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl super::Layer for MetricsLayer {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        let mut labels = vec![("driver", inner.driver().to_string())];
        labels.extend(self.labels.iter().cloned());
        Arc::new(Measured {
            inner,
            stats: Arc::new(Stats {
                durations: self.durations.clone(),
                sizes: self.sizes.clone(),
                labels,
                ops: Mutex::default(),
            }),
        })
    }
}

/// A storage behind a [`MetricsLayer`].
#[derive(Debug)]
struct Measured {
    inner: Arc<dyn Storage>,
    stats: Arc<Stats>,
}

/// The samples of one wrapped storage.
#[derive(Debug)]
struct Stats {
    durations: Vec<f64>,
    sizes: Vec<f64>,
    labels: Vec<(&'static str, String)>,
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
}

/// The samples of one operation.
#[derive(Debug)]
struct OpStats {
    durations: Histogram,
    sizes: Option<Histogram>,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn with_op(&self, op: Op, update: impl FnOnce(&mut OpStats)) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let stats = ops.entry(op.name()).or_insert_with(|| OpStats {
            durations: Histogram::new(&self.durations),
            sizes: None,
            errors: BTreeMap::new(),
        });
        update(stats);
    }

    /// One finished call.
    fn call(&self, op: Op, seconds: f64, error: Option<ErrorKind>, bytes: Option<u64>) {
        self.with_op(op, |stats| {
            stats.durations.observe(seconds);
            if let Some(kind) = error {
                *stats.errors.entry(super::kind_label(kind)).or_default() += 1;
            }
            if let Some(bytes) = bytes {
                self.observe_size(stats, bytes);
            }
        });
    }

    /// A `get` stream that ended, failed or was dropped after `bytes`.
    fn stream(&self, op: Op, bytes: u64, end: StreamEnd) {
        self.with_op(op, |stats| {
            self.observe_size(stats, bytes);
            if let StreamEnd::Failed(kind) = end {
                *stats.errors.entry(super::kind_label(kind)).or_default() += 1;
            }
        });
    }

    /// A `list` that ended, failed or was dropped, `seconds` after the call.
    fn listing(&self, seconds: f64, end: StreamEnd) {
        self.with_op(Op::List, |stats| {
            stats.durations.observe(seconds);
            if let StreamEnd::Failed(kind) = end {
                *stats.errors.entry(super::kind_label(kind)).or_default() += 1;
            }
        });
    }

    fn observe_size(&self, stats: &mut OpStats, bytes: u64) {
        stats
            .sizes
            .get_or_insert_with(|| Histogram::new(&self.sizes))
            .observe(bytes as f64);
    }

    fn metrics(&self) -> Vec<Metric> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let labelled = |metric: Metric, op: &'static str| {
            self.labels
                .iter()
                .fold(metric, |m, (k, v)| m.with_label(k, v.clone()))
                .with_label("operation", op)
        };
        let mut out = Vec::new();
        for (&op, stats) in ops.iter() {
            out.push(labelled(
                Metric::histogram(
                    "stowage_storage_operation_duration_seconds",
                    "Storage calls by operation: how long they took.",
                    stats.durations.clone(),
                ),
                op,
            ));
            if let Some(sizes) = &stats.sizes {
                out.push(labelled(
                    Metric::histogram(
                        "stowage_storage_operation_bytes",
                        "Bytes read or written per storage call, by operation.",
                        sizes.clone(),
                    ),
                    op,
                ));
            }
            for (kind, n) in &stats.errors {
                out.push(
                    labelled(
                        Metric::counter(
                            "stowage_storage_operation_errors_total",
                            "Failed storage calls and streams, by operation and error kind.",
                            *n,
                        ),
                        op,
                    )
                    .with_label("kind", kind.clone()),
                );
            }
        }
        out
    }
}

/// The bytes a successful call wrote, for the operations that write.
fn written<T: Outcome>(call: &Call<'_>, outcome: &T) -> Option<u64> {
    match call.op {
        Op::Put | Op::PutStream | Op::Copy | Op::CompleteUpload => outcome.size(),
        Op::WriteChunk => outcome
            .size()
            .map(|size| size.saturating_sub(call.offset.unwrap_or(0))),
        _ => None,
    }
}

impl Wraps for Measured {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

impl Around for Measured {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = run.await;
            let bytes = result.as_ref().ok().and_then(|v| written(&call, v));
            let error = result.as_ref().err().map(Error::kind);
            self.stats
                .call(call.op, started.elapsed().as_secs_f64(), error, bytes);
            result
        })
    }
}

crate::forward_storage! {
    impl Storage for Measured;
    forward [driver capabilities validate];
    around [put_stream put stat delete delete_prefix list_page copy download_url upload_url
            start_upload write_chunk complete_upload abort_upload cleanup_uploads];

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        let started = Instant::now();
        let result = self.inner.get(path, options).await;
        let error = result.as_ref().err().map(Error::kind);
        self.stats
            .call(Op::Get, started.elapsed().as_secs_f64(), error, None);
        let mut got = result?;
        let stats = Arc::clone(&self.stats);
        got.stream = super::watch_bytes(got.stream, move |bytes, end| {
            stats.stream(Op::Get, bytes, end);
        });
        Ok(got)
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let started = Instant::now();
        let stats = Arc::clone(&self.stats);
        super::watch_list(self.inner.list(prefix), move |_, end| {
            stats.listing(started.elapsed().as_secs_f64(), end);
        })
    }

    /// The storage's own metrics, then this layer's.
    fn metrics(&self) -> Vec<Metric> {
        let mut metrics = self.inner.metrics();
        metrics.extend(self.stats.metrics());
        metrics
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::super::testing::{p, Memory};
    use super::super::LayerExt;
    use super::*;
    use crate::metrics::render_prometheus;
    use crate::{PutOptions, StorageExt};

    fn find<'m>(metrics: &'m [Metric], name: &str, op: &str) -> Option<&'m Metric> {
        metrics
            .iter()
            .find(|m| m.name == name && m.labels.iter().any(|(k, v)| *k == "operation" && v == op))
    }

    #[tokio::test]
    async fn calls_streams_and_errors_are_measured_beside_the_drivers_metrics() {
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>)
            .layer(MetricsLayer::new().with_label("location", "test"));
        let path = p("blobs/a");
        storage
            .put(&path, Bytes::from(vec![7u8; 2000]), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(storage.get_bytes(&path).await.unwrap().len(), 2000);
        assert!(storage.stat(&p("missing")).await.is_err());
        let listed = storage.list(None).collect::<Vec<_>>().await;
        assert_eq!(listed.len(), 1);

        let metrics = storage.metrics();
        assert!(
            metrics
                .iter()
                .any(|m| m.name == "memory_puts_total" && m.value == 1),
            "the driver's own metrics come first: {metrics:?}"
        );
        let put = find(
            &metrics,
            "stowage_storage_operation_duration_seconds",
            "put",
        )
        .unwrap();
        assert_eq!(put.value, 1);
        assert!(put.labels.contains(&("driver", "memory".to_string())));
        assert!(put.labels.contains(&("location", "test".to_string())));
        let put_bytes = find(&metrics, "stowage_storage_operation_bytes", "put").unwrap();
        assert_eq!(put_bytes.histogram.as_ref().unwrap().sum(), 2000.0);
        let got_bytes = find(&metrics, "stowage_storage_operation_bytes", "get").unwrap();
        assert_eq!(got_bytes.histogram.as_ref().unwrap().sum(), 2000.0);
        let stat_errors = find(&metrics, "stowage_storage_operation_errors_total", "stat").unwrap();
        assert_eq!(stat_errors.value, 1);
        assert!(stat_errors
            .labels
            .contains(&("kind", "not_found".to_string())));
        assert!(find(
            &metrics,
            "stowage_storage_operation_duration_seconds",
            "list"
        )
        .is_some());
        assert!(find(&metrics, "stowage_storage_operation_bytes", "stat").is_none());

        let text = render_prometheus(&metrics);
        assert!(text.contains("# TYPE stowage_storage_operation_duration_seconds histogram\n"));
        assert!(text.contains(
            "stowage_storage_operation_bytes_bucket{driver=\"memory\",location=\"test\",\
             operation=\"get\",le=\"1024\"} 0\n"
        ));
        assert!(text.contains(
            "stowage_storage_operation_bytes_bucket{driver=\"memory\",location=\"test\",\
             operation=\"get\",le=\"16384\"} 1\n"
        ));
        assert!(text.contains(
            "stowage_storage_operation_errors_total{driver=\"memory\",location=\"test\",\
             operation=\"stat\",kind=\"not_found\"} 1\n"
        ));
    }

    #[tokio::test]
    async fn a_chunk_counts_only_its_own_bytes() {
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>).layer(MetricsLayer::new());
        let data = |n: usize| futures::stream::iter(vec![Ok(Bytes::from(vec![1u8; n]))]).boxed();
        let state = storage.start_upload().await.unwrap();
        let state = storage.write_chunk(&state, 0, data(100)).await.unwrap();
        let state = storage.write_chunk(&state, 100, data(50)).await.unwrap();
        storage.abort_upload(&state).await.unwrap();
        let metrics = storage.metrics();
        let chunks = find(&metrics, "stowage_storage_operation_bytes", "write_chunk").unwrap();
        let histogram = chunks.histogram.as_ref().unwrap();
        assert_eq!((histogram.count(), histogram.sum()), (2, 150.0));
    }
}
