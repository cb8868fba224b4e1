//! Layers of the embedder's own, written with `stowage::forward_storage!`
//! and stacked with the built-in `MetricsLayer` and `TracingLayer` over the
//! local driver:
//!
//! - `ProtectedPrefix` refuses every write, delete, copy into, upload
//!   completion and upload URL at or below a prefix (`_registry` here),
//!   before the call reaches the storage: the methods it checks are listed
//!   after `around`, the rest are forwarded;
//! - `OperationCounts` counts the calls of each operation and their
//!   failures, and adds them to the storage's `metrics()` (what a
//!   registry's `/metrics` renders): every method returning a `Result` goes
//!   through its `around`, `list` and `metrics` are written by hand.
//!
//! The generated impls deny `clippy::missing_trait_methods`: a method added
//! to the `Storage` trait later must be placed in a list or written.
//!
//! Needs no network and no server; the tracing layer's spans and events are
//! logged at debug level (`RUST_LOG` changes the filter):
//!
//! ```text
//! cargo run -p stowage --example custom_layer
//! ```

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::TryStreamExt;
use stowage::core::layers::{Layer, LayerExt, MetricsLayer, TracingLayer};
use stowage::forward::{Around, Call, Op, Outcome, Wraps};
use stowage::local::LocalStorage;
use stowage::{
    Error, ErrorKind, ListStream, Metric, ObjectMeta, PutOptions, Result, Storage, StorageExt,
    StoragePath,
};

/// Refuses writes at or below `prefix` in every storage it wraps.
#[derive(Debug, Clone)]
struct ProtectedPrefix {
    prefix: StoragePath,
}

impl Layer for ProtectedPrefix {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(Protected {
            inner,
            prefix: self.prefix.clone(),
        })
    }
}

/// A storage behind a [`ProtectedPrefix`].
#[derive(Debug)]
struct Protected {
    inner: Arc<dyn Storage>,
    prefix: StoragePath,
}

impl Protected {
    /// Whether `call` writes at or below the prefix; deleting a prefix
    /// above it counts too. A copy writes its destination only.
    fn touches(&self, call: &Call<'_>) -> bool {
        let written = match call.op {
            Op::Copy => call.to,
            _ => call.path,
        };
        written.is_some_and(|path| {
            *path == self.prefix
                || path.is_below(&self.prefix)
                || (call.op == Op::DeletePrefix && self.prefix.is_below(path))
        })
    }
}

impl Wraps for Protected {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

/// Only the methods listed after `around` below come here: the writes.
impl Around for Protected {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if !self.touches(&call) {
            return run;
        }
        // Dropped unpolled: the storage inside never sees the call.
        drop(run);
        let refused = Error::PermissionDenied {
            driver: self.inner.driver(),
            message: format!(
                "{} of {} refused: {} is protected",
                call.op,
                call.to
                    .or(call.path)
                    .map_or_else(String::new, ToString::to_string),
                self.prefix
            ),
            operation: None,
            source: None,
        };
        Box::pin(async move { Err(refused) })
    }
}

stowage::forward_storage! {
    impl Storage for Protected;
    forward [driver capabilities get stat list list_page download_url start_upload write_chunk
             abort_upload cleanup_uploads validate metrics];
    around [put_stream put delete delete_prefix copy upload_url complete_upload];
}

/// Counts the calls of every storage it wraps, by operation. Clones share
/// the counts, so the embedder keeps one to read them.
#[derive(Debug, Clone, Default)]
struct OperationCounts {
    counts: Arc<Mutex<BTreeMap<&'static str, Tally>>>,
}

/// The calls of one operation.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    calls: u64,
    failures: u64,
}

impl OperationCounts {
    fn record(&self, op: Op, failed: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = counts.entry(op.name()).or_default();
        tally.calls += 1;
        if failed {
            tally.failures += 1;
        }
    }

    /// The counts so far, by operation name.
    fn snapshot(&self) -> BTreeMap<&'static str, Tally> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Layer for OperationCounts {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(Counted {
            inner,
            counts: self.clone(),
        })
    }
}

/// A storage behind an [`OperationCounts`].
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn Storage>,
    counts: OperationCounts,
}

impl Wraps for Counted {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

impl Around for Counted {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let result = run.await;
            self.counts.record(call.op, result.is_err());
            result
        })
    }
}

stowage::forward_storage! {
    impl Storage for Counted;
    forward [driver capabilities validate];
    around [get put_stream put stat delete delete_prefix list_page copy download_url upload_url
            start_upload write_chunk complete_upload abort_upload cleanup_uploads];

    /// Counted when it starts: its entries (and its failure, if any) come
    /// later, as a stream.
    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        self.counts.record(Op::List, false);
        self.inner.list(prefix)
    }

    /// The storage's own metrics, then two counters per operation.
    fn metrics(&self) -> Vec<Metric> {
        let mut metrics = self.inner.metrics();
        for (operation, tally) in self.counts.snapshot() {
            metrics.push(
                Metric::counter(
                    "example_storage_calls_total",
                    "Storage calls by operation, as the example layer counts them.",
                    tally.calls,
                )
                .with_label("operation", operation),
            );
            metrics.push(
                Metric::counter(
                    "example_storage_call_failures_total",
                    "Failed storage calls by operation, as the example layer counts them.",
                    tally.failures,
                )
                .with_label("operation", operation),
            );
        }
        metrics
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,stowage_core::layers=debug")
            }),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_layer: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> std::result::Result<(), Box<dyn StdError>> {
    let dir = tempfile::tempdir()?;
    let driver: Arc<dyn Storage> = Arc::new(LocalStorage::open(dir.path())?);
    let counts = OperationCounts::default();
    // The last layer added is the outermost: the guard sits next to the
    // driver, so the counts, the metrics and the tracing spans outside it
    // all see its refusals (as permission_denied failures).
    let storage = driver
        .layer(ProtectedPrefix {
            prefix: StoragePath::parse("_registry")?,
        })
        .layer(&counts)
        .layer(MetricsLayer::new().with_label("location", "example"))
        .layer(TracingLayer::new());

    let blob = StoragePath::parse("blobs/sha256/ab/abcd")?;
    storage
        .put(&blob, "layer bytes".into(), PutOptions::default())
        .await?;
    let read = storage.get_bytes(&blob).await?;
    println!("read back {} bytes of {blob}", read.len());
    let missing = StoragePath::parse("blobs/sha256/00/0000")?;
    println!("{missing} exists: {}", storage.exists(&missing).await?);
    let listed: Vec<ObjectMeta> = storage.list(None).try_collect().await?;
    println!("listed {} object(s)", listed.len());

    let protected = StoragePath::parse("_registry/uploads/state")?;
    match storage
        .put(&protected, "x".into(), PutOptions::default())
        .await
    {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => println!("refused: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    match storage.copy(&blob, &protected).await {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => println!("refused: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    if storage.exists(&protected).await? {
        return Err(format!("{protected} was written").into());
    }

    println!("\ncalls counted by the example layer:");
    for (operation, tally) in counts.snapshot() {
        println!(
            "  {operation:<8} {} call(s), {} failed",
            tally.calls, tally.failures
        );
    }
    println!("\nin Prometheus text (the example's counters and the errors of MetricsLayer):");
    let text = stowage::metrics::render_prometheus(&storage.metrics());
    for line in text.lines().filter(|line| {
        line.starts_with("example_storage_") || line.starts_with("stowage_storage_operation_errors")
    }) {
        println!("  {line}");
    }
    Ok(())
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
