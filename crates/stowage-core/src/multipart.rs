//! The bounded, concurrent multipart writer, written once: a driver supplies
//! only "upload part", "complete" and "abort" for one started upload
//! ([`MultipartSink`]); [`write_multipart`] cuts the stream into parts,
//! keeps several in flight, checks the digest, and aborts on any failure or
//! when its future is dropped.
//!
//! Memory: at most `concurrency` parts in flight plus the one being filled,
//! so about `(concurrency + 1) x part size` whatever the object size. With a
//! driver-wide budget (`permits`), a part takes a permit only when it is
//! full and about to be sent, and holds it until sent: a slow or silent
//! writer holds no permit while its part fills, so it cannot starve the
//! others. Each write keeps at most one part buffer outside the budget
//! (the one filling, or full and waiting for a permit), so all writes
//! together hold at most `(permits + writes) x part size`.
//!
//! Cost trap: a multipart upload that is neither completed nor aborted keeps
//! its parts (and their storage cost) on S3 until a lifecycle rule removes
//! them; this writer aborts on every failure path, and
//! [`Storage::cleanup_uploads`](crate::Storage::cleanup_uploads) catches
//! what a killed process left.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use sha2::Digest as _;
use tokio::task::JoinSet;

use crate::storage::WriteStream;
use crate::{Error, ObjectMeta, Result, Sha256Digest};

/// A backend's multipart limits, which the driver supplies (S3's live in
/// stowage-s3): the writer grows the part size so an upload never needs
/// more than `max_parts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartLimits {
    /// The smallest part but the last.
    pub min_part_size: u64,
    /// The largest part.
    pub max_part_size: u64,
    /// The most parts of one upload.
    pub max_parts: u32,
}

impl PartLimits {
    /// The three limits (usable in a `const`).
    pub const fn new(min_part_size: u64, max_part_size: u64, max_parts: u32) -> Self {
        Self {
            min_part_size,
            max_part_size,
            max_parts,
        }
    }
}

/// A part that was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The entity tag the backend returned for it.
    pub etag: String,
    /// Its size.
    pub size: u64,
}

impl CompletedPart {
    /// Part `number` (1-based) of `size` bytes, with the entity tag the
    /// backend returned.
    pub fn new(number: u32, etag: impl Into<String>, size: u64) -> Self {
        Self {
            number,
            etag: etag.into(),
            size,
        }
    }
}

/// One started multipart upload of a backend.
#[async_trait]
pub trait MultipartSink: Send + Sync + 'static {
    /// Uploads part `number` (1-based).
    async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart>;
    /// Completes the upload with its parts in order.
    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<ObjectMeta>;
    /// Aborts the upload, removing its parts.
    async fn abort(&self) -> Result<()>;
}

/// How [`write_multipart`] cuts and sends parts.
#[derive(Debug)]
#[non_exhaustive]
pub struct MultipartOptions {
    /// The size of each part (the first 500 parts; see [`part_size_for`]).
    pub part_size: u64,
    /// The backend's limits.
    pub limits: PartLimits,
    /// Parts uploading at once.
    pub concurrency: usize,
    /// Parts being sent across every write of a driver: a part takes a
    /// permit when it is full and ready to send and holds it until it is
    /// sent, so many concurrent writes together send at most `permits`
    /// parts at once, and a write that stalls mid-part holds none. Each
    /// write also holds the one part it is filling, outside the budget.
    pub budget: Option<Arc<tokio::sync::Semaphore>>,
    /// A permit of `budget` the caller already holds for `initial` (the
    /// full first part it read before choosing a multipart upload).
    pub initial_permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl MultipartOptions {
    /// Parts of `part_size` within `limits`, `concurrency` at once, with
    /// no shared budget and no permit held (set `budget` and
    /// `initial_permit` after).
    pub fn new(part_size: u64, limits: PartLimits, concurrency: usize) -> Self {
        Self {
            part_size,
            limits,
            concurrency,
            budget: None,
            initial_permit: None,
        }
    }
}

/// The size of part `number` (1-based): `base` for the first 500 parts,
/// doubling every further 500, capped at the largest part, so that an
/// upload of unknown length never needs more than the limit's parts (on S3,
/// from 5 MiB, 10,000 parts hold about 27 TB).
pub fn part_size_for(base: u64, number: u32, limits: &PartLimits) -> u64 {
    let doublings = (number.saturating_sub(1) / 500).min(20);
    base.saturating_mul(1 << doublings)
        .min(limits.max_part_size)
}

/// The base part size for an upload of `size` bytes (when known): at least
/// `configured`, and large enough that `size` fits in the limit's parts.
pub fn base_part_size(configured: u64, size: Option<u64>, limits: &PartLimits) -> u64 {
    let needed = size.map_or(0, |s| s.div_ceil(u64::from(limits.max_parts)));
    configured
        .max(needed)
        .clamp(limits.min_part_size, limits.max_part_size)
}

/// Aborts the upload from a background task when dropped while armed, so a
/// cancelled write leaves no orphaned multipart upload. Drivers that drive a
/// multipart upload themselves (server-side copies) hold one too. The task
/// runs on the runtime the guard is dropped in: a program about to exit
/// waits for it with [`wait_for_aborts`].
pub struct AbortOnDrop {
    sink: Option<Arc<dyn MultipartSink>>,
}

impl std::fmt::Debug for AbortOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortOnDrop")
            .field("armed", &self.sink.is_some())
            .finish()
    }
}

impl AbortOnDrop {
    /// Armed: dropping it aborts `sink`'s upload.
    pub fn new(sink: Arc<dyn MultipartSink>) -> Self {
        Self { sink: Some(sink) }
    }

    /// Disarms it once the upload was completed or aborted.
    pub fn disarm(&mut self) {
        self.sink = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                // Counted from here, before the task exists, so that a
                // caller who dropped a write and then calls
                // `wait_for_aborts` waits for this abort too.
                let running = RunningAbort::start();
                handle.spawn(async move {
                    // The whole tally moves into the task (not only the
                    // field assigned below), so it ends with the task.
                    let mut running = running;
                    let result = sink.abort().await;
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "aborting a cancelled multipart upload failed");
                    }
                    // Counted as finished when `running` drops, here.
                    running.succeeded = result.is_ok();
                });
            }
        }
    }
}

/// The aborts dropped [`AbortOnDrop`] guards started, process-wide.
struct DroppedAborts {
    running: AtomicUsize,
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// Woken when `running` falls to zero.
    idle: tokio::sync::Notify,
}

static DROPPED_ABORTS: DroppedAborts = DroppedAborts {
    running: AtomicUsize::new(0),
    succeeded: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    idle: tokio::sync::Notify::const_new(),
};

/// One abort in flight; counted as finished when dropped (as failed unless
/// it succeeded, also when its task was cancelled before it could run).
struct RunningAbort {
    succeeded: bool,
}

impl RunningAbort {
    fn start() -> Self {
        DROPPED_ABORTS.running.fetch_add(1, Ordering::SeqCst);
        Self { succeeded: false }
    }
}

impl Drop for RunningAbort {
    fn drop(&mut self) {
        let outcome = if self.succeeded {
            &DROPPED_ABORTS.succeeded
        } else {
            &DROPPED_ABORTS.failed
        };
        // The outcome first: whoever sees `running` at zero sees it too.
        outcome.fetch_add(1, Ordering::SeqCst);
        if DROPPED_ABORTS.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            DROPPED_ABORTS.idle.notify_waiters();
        }
    }
}

/// How the aborts started by dropped [`AbortOnDrop`] guards stand,
/// process-wide: finished ones counted since the process started,
/// [`AbortTally::since`] for those of one stretch of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AbortTally {
    /// Aborts that finished: the upload is gone (or was already completed
    /// or aborted).
    pub succeeded: u64,
    /// Aborts that failed, each logged as a warning, or whose task ended
    /// with its runtime before they could finish: their upload may stay
    /// open until `cleanup_uploads` or a lifecycle rule removes it.
    pub failed: u64,
    /// Aborts still running.
    pub running: usize,
}

impl AbortTally {
    /// The aborts that finished after `earlier` was taken (the running
    /// count stays this tally's own).
    #[must_use]
    pub fn since(self, earlier: AbortTally) -> AbortTally {
        AbortTally {
            succeeded: self.succeeded.saturating_sub(earlier.succeeded),
            failed: self.failed.saturating_sub(earlier.failed),
            running: self.running,
        }
    }
}

/// How the aborts started by dropped [`AbortOnDrop`] guards stand now.
pub fn dropped_aborts() -> AbortTally {
    AbortTally {
        succeeded: DROPPED_ABORTS.succeeded.load(Ordering::SeqCst),
        failed: DROPPED_ABORTS.failed.load(Ordering::SeqCst),
        running: DROPPED_ABORTS.running.load(Ordering::SeqCst),
    }
}

/// Waits until no abort started by a dropped [`AbortOnDrop`] guard is
/// running, or `timeout` passes, and tells how they stand.
///
/// A guard aborts from a task of the runtime, which ends with the runtime:
/// a program that cancels a write (on a signal, say) and is about to exit
/// drops the write's future first, then calls this, so that the upload it
/// cancelled is really aborted before the process ends. Needs a runtime
/// with its time driver enabled.
pub async fn wait_for_aborts(timeout: std::time::Duration) -> AbortTally {
    let idle = async {
        loop {
            let mut notified = std::pin::pin!(DROPPED_ABORTS.idle.notified());
            // Registered before the check, so a wake-up in between is kept.
            notified.as_mut().enable();
            if DROPPED_ABORTS.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(timeout, idle).await;
    dropped_aborts()
}

/// Writes `initial` followed by `data` as parts of `sink`, then completes
/// it. On any failure, or a digest other than `expected`, aborts the upload
/// and returns the error; nothing becomes visible.
///
/// # Errors
/// [`Error::DigestMismatch`], [`Error::Backend`] when more than
/// more parts than the limits allow would be needed, or whatever the stream or the sink fail with.
///
/// # Cancel safety
/// Dropping the future cancels the part uploads and aborts the multipart
/// upload from a background task, also while it is being completed: the
/// upload then ends either completed (the abort finds nothing to abort) or
/// aborted, never left open.
pub async fn write_multipart(
    sink: Arc<dyn MultipartSink>,
    initial: Bytes,
    data: WriteStream<'_>,
    options: MultipartOptions,
    expected: Option<Sha256Digest>,
) -> Result<ObjectMeta> {
    // Armed until the upload is completed or aborted: a future dropped at
    // any await below (completion included) leaves no open upload.
    let mut guard = AbortOnDrop::new(sink.clone());
    let result = match drive(sink.clone(), initial, data, options, expected).await {
        Ok(parts) => sink.complete(parts).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        abort_quietly(&*sink).await;
    }
    guard.disarm();
    result
}

async fn abort_quietly(sink: &dyn MultipartSink) {
    if let Err(e) = sink.abort().await {
        tracing::warn!(error = %e, "aborting a failed multipart upload failed");
    }
}

async fn drive(
    sink: Arc<dyn MultipartSink>,
    initial: Bytes,
    mut data: WriteStream<'_>,
    options: MultipartOptions,
    expected: Option<Sha256Digest>,
) -> Result<Vec<CompletedPart>> {
    let concurrency = options.concurrency.max(1);
    // The content is hashed only when a digest is to be checked: a pass of
    // SHA-256 costs as much CPU as the rest of the writer.
    let mut hasher = expected.map(|_| sha2::Sha256::new());
    let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
    let mut done = Vec::new();
    let mut number: u32 = 0;
    let limits = options.limits;
    let mut target = part_size_for(options.part_size, 1, &limits) as usize;
    // Each part buffer is allocated at exactly its size and filled to it, so
    // a part never holds more memory than its bytes.
    let mut buf = BytesMut::with_capacity(target);

    // With a driver-wide budget, a permit is taken when a part is full and
    // ready to send, and travels with the part until it is sent: a write
    // waiting for its next bytes holds none.
    let budget = options.budget.clone();
    let acquire = || {
        let budget = budget.clone();
        async move {
            match budget {
                Some(b) => b
                    .acquire_owned()
                    .await
                    .map(Some)
                    .map_err(|_| Error::Backend {
                        driver: "multipart",
                        retryable: false,
                        message: "the part budget was closed".into(),
                        operation: None,
                        source: None,
                    }),
                None => Ok(None),
            }
        }
    };
    let mut permit = options.initial_permit;

    // Sends `buf` as the next part once this write has a free slot.
    macro_rules! launch {
        ($part:expr) => {{
            while tasks.len() >= concurrency {
                done.push(join_next(&mut tasks).await?);
            }
            if permit.is_none() {
                permit = acquire().await?;
            }
            let held = permit.take();
            number += 1;
            if number > limits.max_parts {
                return Err(Error::Backend {
                    driver: "multipart",
                    retryable: false,
                    message: format!("the object needs more than {} parts", limits.max_parts),
                    operation: None,
                    source: None,
                });
            }
            let part: Bytes = $part;
            let sink = sink.clone();
            let n = number;
            tasks.spawn(async move {
                let result = sink.upload_part(n, part).await;
                drop(held);
                result
            });
        }};
    }

    if let Some(h) = hasher.as_mut() {
        h.update(&initial);
    }
    let mut pending = Some(initial);
    loop {
        let mut chunk = match pending.take() {
            Some(c) => c,
            None => match data.try_next().await? {
                Some(c) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&c);
                    }
                    c
                }
                None => break,
            },
        };
        while !chunk.is_empty() {
            if buf.is_empty() && chunk.len() >= target {
                // A whole part already in one piece: sent without a copy.
                let whole = chunk.split_to(target);
                launch!(whole);
                target = part_size_for(options.part_size, number + 1, &limits) as usize;
                continue;
            }
            let n = (target - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk.split_to(n));
            if buf.len() == target {
                launch!(std::mem::take(&mut buf).freeze());
                target = part_size_for(options.part_size, number + 1, &limits) as usize;
                buf = BytesMut::with_capacity(target);
            }
        }
    }
    if !buf.is_empty() || number == 0 {
        launch!(std::mem::take(&mut buf).freeze());
    }
    if let (Some(expected), Some(hasher)) = (expected, hasher) {
        let actual = Sha256Digest::from_bytes(hasher.finalize().into());
        if actual != expected {
            tasks.abort_all();
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    while !tasks.is_empty() {
        done.push(join_next(&mut tasks).await?);
    }
    done.sort_by_key(|p| p.number);
    Ok(done)
}

async fn join_next(tasks: &mut JoinSet<Result<CompletedPart>>) -> Result<CompletedPart> {
    match tasks.join_next().await {
        Some(Ok(part)) => part,
        Some(Err(join)) => Err(Error::Backend {
            driver: "multipart",
            retryable: false,
            message: format!("part upload task failed: {join}"),
            operation: None,
            source: None,
        }),
        None => unreachable!("join_next is called only with tasks running"),
    }
}

#[cfg(test)]
mod tests {
    const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
    const MAX_PARTS: u32 = 10_000;
    const LIMITS: PartLimits = PartLimits {
        min_part_size: MIN_PART_SIZE,
        max_part_size: 5 * 1024 * 1024 * 1024,
        max_parts: MAX_PARTS,
    };
    use super::*;

    /// A sink that keeps parts in memory and records how many part
    /// buffers were alive at once.
    struct CountingSink {
        parts: std::sync::Mutex<Vec<(u32, Bytes)>>,
        alive: std::sync::atomic::AtomicUsize,
        peak: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[async_trait]
    impl MultipartSink for CountingSink {
        async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.alive.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            self.alive.fetch_sub(1, SeqCst);
            let size = data.len() as u64;
            self.parts.lock().unwrap().push((number, data));
            Ok(CompletedPart {
                number,
                etag: number.to_string(),
                size,
            })
        }
        async fn complete(&self, parts: Vec<CompletedPart>) -> Result<ObjectMeta> {
            let size = parts.iter().map(|p| p.size).sum();
            Ok(ObjectMeta::new(
                crate::StoragePath::parse("x").unwrap(),
                size,
            ))
        }
        async fn abort(&self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_budget_bounds_parts_across_writes_and_keeps_bytes_intact() {
        use futures::StreamExt;
        let budget = Arc::new(tokio::sync::Semaphore::new(3));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let data: Vec<u8> = (0..(23 * MIN_PART_SIZE as usize + 7))
            .map(|i| (i % 253) as u8)
            .collect();
        let mut writes = Vec::new();
        for _ in 0..4 {
            let sink = Arc::new(CountingSink {
                parts: Default::default(),
                alive: Default::default(),
                peak: peak.clone(),
            });
            let stream = futures::stream::iter(
                data.chunks(300_000)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            )
            .boxed();
            let options = MultipartOptions {
                part_size: MIN_PART_SIZE,
                limits: LIMITS,
                concurrency: 4,
                budget: Some(budget.clone()),
                initial_permit: None,
            };
            let expected = Some(Sha256Digest::of(&data));
            let s = sink.clone();
            writes.push(tokio::spawn(async move {
                let meta = write_multipart(s.clone(), Bytes::new(), stream, options, expected)
                    .await
                    .unwrap();
                let mut parts = s.parts.lock().unwrap().clone();
                parts.sort_by_key(|p| p.0);
                (
                    meta,
                    parts
                        .into_iter()
                        .flat_map(|p| p.1.to_vec())
                        .collect::<Vec<u8>>(),
                )
            }));
        }
        for w in writes {
            let (meta, bytes) = w.await.unwrap();
            assert_eq!(meta.size, data.len() as u64);
            assert_eq!(bytes, data);
        }
        // Every write's own concurrency is 4, but 4 writes together never
        // had more than the budget's 3 parts in flight.
        let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=3).contains(&peak), "peak parts in flight {peak}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_stalled_mid_part_holds_no_permit_of_the_budget() {
        use futures::StreamExt;
        // One permit for the whole driver; three writes stall half-way
        // through their first part, and a fourth must still finish.
        let budget = Arc::new(tokio::sync::Semaphore::new(1));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sink = || {
            Arc::new(CountingSink {
                parts: Default::default(),
                alive: Default::default(),
                peak: peak.clone(),
            })
        };
        let options = || MultipartOptions {
            part_size: MIN_PART_SIZE,
            limits: LIMITS,
            concurrency: 2,
            budget: Some(budget.clone()),
            initial_permit: None,
        };
        let mut stalled = Vec::new();
        for _ in 0..3 {
            let half = Bytes::from(vec![7u8; MIN_PART_SIZE as usize / 2]);
            let stream: WriteStream<'static> = futures::stream::iter(vec![Ok(half)])
                .chain(futures::stream::pending())
                .boxed();
            let (s, o) = (sink(), options());
            stalled.push(tokio::spawn(async move {
                write_multipart(s, Bytes::new(), stream, o, None).await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            budget.available_permits(),
            1,
            "stalled writes hold no permit"
        );
        let data: Vec<u8> = (0..(3 * MIN_PART_SIZE as usize + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        let stream: WriteStream<'static> =
            futures::stream::iter(vec![Ok(Bytes::from(data.clone()))]).boxed();
        let meta = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            write_multipart(sink(), Bytes::new(), stream, options(), None),
        )
        .await
        .expect("a write beside stalled ones finishes")
        .unwrap();
        assert_eq!(meta.size, data.len() as u64);
        for s in stalled {
            s.abort();
        }
    }

    /// A sink whose abort takes `delay` and is then recorded.
    struct SlowAbort {
        delay: std::time::Duration,
        aborted: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl MultipartSink for SlowAbort {
        async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart> {
            Ok(CompletedPart {
                number,
                etag: String::new(),
                size: data.len() as u64,
            })
        }
        async fn complete(&self, _parts: Vec<CompletedPart>) -> Result<ObjectMeta> {
            Ok(ObjectMeta::new(crate::StoragePath::parse("x").unwrap(), 0))
        }
        async fn abort(&self) -> Result<()> {
            tokio::time::sleep(self.delay).await;
            self.aborted
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_aborts_outlasts_the_abort_a_dropped_guard_started() {
        use std::sync::atomic::Ordering::SeqCst;
        use std::time::Duration;
        let before = dropped_aborts();
        let sink = Arc::new(SlowAbort {
            delay: Duration::from_secs(1),
            aborted: Default::default(),
        });
        drop(AbortOnDrop::new(sink.clone()));
        // Counted as soon as the guard is dropped, and running until the
        // abort ends.
        let early = wait_for_aborts(Duration::from_millis(10)).await;
        assert!(early.running >= 1, "{early:?}");
        let done = wait_for_aborts(Duration::from_secs(10)).await.since(before);
        assert!(sink.aborted.load(SeqCst), "the abort finished");
        assert!(done.succeeded >= 1, "{done:?}");

        // A disarmed guard starts nothing.
        let quiet = Arc::new(SlowAbort {
            delay: Duration::ZERO,
            aborted: Default::default(),
        });
        let mut guard = AbortOnDrop::new(quiet.clone());
        guard.disarm();
        drop(guard);
        wait_for_aborts(Duration::from_secs(10)).await;
        assert!(!quiet.aborted.load(SeqCst));
    }

    #[test]
    fn part_sizes_keep_any_object_under_the_part_limit() {
        assert_eq!(part_size_for(MIN_PART_SIZE, 1, &LIMITS), MIN_PART_SIZE);
        assert_eq!(part_size_for(MIN_PART_SIZE, 500, &LIMITS), MIN_PART_SIZE);
        assert_eq!(
            part_size_for(MIN_PART_SIZE, 501, &LIMITS),
            2 * MIN_PART_SIZE
        );
        let total: u64 = (1..=MAX_PARTS)
            .map(|n| part_size_for(MIN_PART_SIZE, n, &LIMITS))
            .sum();
        assert!(
            total > 5 * (1u64 << 40),
            "10,000 growing parts reach past 5 TiB"
        );
        assert_eq!(
            base_part_size(MIN_PART_SIZE, Some(1 << 40), &LIMITS),
            (1u64 << 40).div_ceil(10_000)
        );
        assert_eq!(base_part_size(1, None, &LIMITS), MIN_PART_SIZE);
    }
}
