//! Garbage collection while registries keep serving (`stowage gc`): blobs
//! no manifest refers to, the repository links to them, and abandoned
//! uploads are removed; nothing a manifest refers to, and nothing a push in
//! progress is about to refer to, is.
//!
//! ```no_run
//! # async fn demo(storage: std::sync::Arc<dyn stowage::Storage>) -> Result<(), stowage_registry::gc::GcError> {
//! use std::time::Duration;
//! use stowage_registry::gc::{self, GcOptions};
//! let report = gc::run(storage, GcOptions::default().with_grace(Duration::from_secs(3600))).await?;
//! println!("{} blobs removed, {} bytes freed", report.blobs_removed, report.bytes_freed);
//! # Ok(()) }
//! ```
//!
//! A run, in order (docs/registry.md, "Garbage collection", gives the
//! reasoning and the race windows):
//!
//! 1. **Record.** It writes `_registry/gc/runs/<run>.json` and reads back
//!    its modification time: the run's start, by the storage's clock, which
//!    every age below is compared with. A heartbeat rewrites the record
//!    every [`HEARTBEAT`]; a run whose heartbeat fails for
//!    [`HEARTBEAT_LOST`] (or that runs past [`MAX_RUN`]) stops deleting for
//!    good. At the end the record is written once more, marked finished,
//!    and left for [`RUN_LINGER`]: registries look at recent records to
//!    decide whether a manifest `PUT` must check its blobs again.
//! 2. **Mark.** Every repository (a walk of `repositories/` a level at a
//!    time), every revision of each and every referrer record: each such
//!    manifest is read and marked with what it names: config, layers,
//!    `subject`, and for an index its child manifests, read in turn.
//! 3. **Sweep.** Every blob not marked and written before `start - grace`
//!    is a candidate. For each, the run writes its tombstone
//!    (`_registry/gc/sweeping/<digest>/<run>`), then keeps the blob if a
//!    "used" marker of it is younger than `start - grace` (a mount, or a
//!    manifest `PUT` during a collection, wrote it) or if the blob itself is
//!    now younger (pushed again), and otherwise deletes it, provided no
//!    more than [`TOMBSTONE_HOLD`] passed since the tombstone; then it
//!    removes the tombstone.
//! 4. **Links** in repositories to the blobs it deleted, older than the
//!    start, are removed.
//! 5. **Uploads** untouched for longer than the grace: their records and
//!    chunk objects, then the driver's own cleanup
//!    ([`stowage::Storage::cleanup_uploads`]).
//! 6. **Leftovers**: other runs' tombstones older than [`TOMBSTONE_DEAD`],
//!    run records older than [`RUN_LINGER`], "used" markers older than
//!    [`MARKER_KEEP`] (or the grace, when longer).
//!
//! Two runs at once do not disturb each other: each has its own record and
//! tombstones, deleting what is gone already succeeds, and each removes
//! only leftovers too old to matter to a run still going.
//!
//! `dry_run` decides the same way and writes and deletes nothing.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use stowage::{CleanupReport, ErrorKind, GetOptions, ObjectMeta, PutOptions, Storage, StoragePath};

use crate::digest::Digest;
use crate::layout;
use crate::registry::Registry;
use crate::service::catalog::RepositoryWalk;
use crate::service::manifests::MAX_MANIFEST_BYTES;
use crate::upload_store::UploadStore;

/// How often a run rewrites its record.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// A run whose record was last rewritten this long ago stops deleting, for
/// good (its record may be taken for a dead run's).
pub const HEARTBEAT_LOST: Duration = Duration::from_secs(5 * 60);
/// How long a run record counts for registries after its last write (a
/// running run rewrites it every [`HEARTBEAT`]): a manifest `PUT` that
/// sees one this recent checks its blobs again. Later runs remove records
/// older than this. It must exceed [`HEARTBEAT_LOST`] plus
/// [`FAST_PATH_LIMIT`] plus the clock difference between registries and
/// the storage (S3 refuses requests from clocks 15 minutes off).
pub const RUN_LINGER: Duration = Duration::from_secs(30 * 60);
/// A manifest `PUT` (or mount) slower than this between checking its
/// blobs and looking for run records checks them again whatever it finds.
pub const FAST_PATH_LIMIT: Duration = Duration::from_secs(60);
/// A run deletes a blob only within this time of writing its tombstone;
/// later, it keeps the blob.
pub const TOMBSTONE_HOLD: Duration = Duration::from_secs(10);
/// A tombstone this old (by the storage's clock) belongs to a run that gave
/// up or died: registries stop waiting for it and runs remove it.
pub const TOMBSTONE_DEAD: Duration = Duration::from_secs(60);
/// The longest a registry request waits for live tombstones to go before
/// it fails (500; the client retries).
pub const TOMBSTONE_WAIT: Duration = Duration::from_secs(20);
/// How often a waiting registry request looks at the tombstones again.
pub const TOMBSTONE_POLL: Duration = Duration::from_millis(100);
/// A run stops deleting after running this long (markers older than
/// [`MARKER_KEEP`] may be gone by then).
pub const MAX_RUN: Duration = Duration::from_secs(24 * 3600);
/// "Used" markers older than this (or than the grace, when longer) are
/// removed at the end of a run.
pub const MARKER_KEEP: Duration = Duration::from_secs(48 * 3600);

/// Manifests read at once while marking.
const MANIFEST_READS_IN_FLIGHT: usize = 16;
/// Blobs decided about at once while sweeping.
const SWEEPS_IN_FLIGHT: usize = 8;
/// Progress is reported at least every this many items.
const PROGRESS_ITEMS: u64 = 10_000;

/// The default [`GcOptions::grace`]: an hour.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What receives progress reports (see [`GcOptions::with_progress`]).
pub type ProgressFn = Arc<dyn Fn(&GcProgress) + Send + Sync>;

/// How [`run`] collects.
#[derive(Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// Unreferenced blobs written within this time before the run started,
    /// or relied on within it (a mount), are kept, and so are uploads
    /// touched within it: a push in progress uploads its blobs before its
    /// manifest. Default [`DEFAULT_GRACE`] (an hour); zero keeps nothing
    /// for that reason (a push still uploading then fails at its manifest
    /// with `MANIFEST_BLOB_UNKNOWN`, never with a dangling manifest).
    pub grace: Duration,
    /// Decide as a run would, and write and delete nothing (default false).
    pub dry_run: bool,
    /// Progress is reported at least this often during a phase (default
    /// 10 s), besides every 10,000 items and at each phase's start.
    pub progress_every: Duration,
    /// Receives the progress reports (default none).
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for GcOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcOptions")
            .field("grace", &self.grace)
            .field("dry_run", &self.dry_run)
            .field("progress_every", &self.progress_every)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            dry_run: false,
            progress_every: Duration::from_secs(10),
            progress: None,
        }
    }
}

impl GcOptions {
    /// Sets [`GcOptions::grace`].
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`GcOptions::dry_run`].
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets [`GcOptions::progress_every`].
    pub fn with_progress_every(mut self, every: Duration) -> Self {
        self.progress_every = every;
        self
    }

    /// Reports progress to `progress` (called on the collecting task: keep
    /// it short, e.g. a line to stderr).
    pub fn with_progress(mut self, progress: impl Fn(&GcProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcPhase {
    /// Reading every manifest of every repository.
    Mark,
    /// Deciding about every blob.
    Sweep,
    /// Removing repository links to deleted blobs.
    Links,
    /// Removing abandoned uploads.
    Uploads,
    /// Done.
    Done,
}

impl GcPhase {
    /// The phase's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Mark => "mark",
            Self::Sweep => "sweep",
            Self::Links => "links",
            Self::Uploads => "uploads",
            Self::Done => "done",
        }
    }
}

impl fmt::Display for GcPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run stands (see [`GcOptions::with_progress`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcProgress {
    /// The phase.
    pub phase: GcPhase,
    /// Repositories walked.
    pub repositories: u64,
    /// Manifests read.
    pub manifests: u64,
    /// Distinct digests marked as referenced.
    pub blobs_marked: u64,
    /// Blobs listed by the sweep.
    pub blobs_listed: u64,
    /// Blobs removed (dry run: that would be).
    pub blobs_removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// A blob a run removed (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemovedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// What a run did (with `dry_run`: what it would have done).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// The run's id (its record is `_registry/gc/runs/<id>.json`).
    pub run_id: String,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The start every age is compared with (the storage's clock, when it
    /// says).
    pub started: Option<DateTime<Utc>>,
    /// Repositories walked.
    pub repositories: u64,
    /// Manifests read (revisions, referrers, index children).
    pub manifests: u64,
    /// Manifests named by a revision, referrer record or index whose bytes
    /// were missing.
    pub manifests_missing: u64,
    /// Manifests whose bytes were not JSON (nothing they name is marked).
    pub manifests_unreadable: u64,
    /// Distinct digests marked as referenced.
    pub blobs_marked: u64,
    /// Blobs listed.
    pub blobs_listed: u64,
    /// Listed blobs that are referenced.
    pub blobs_in_use: u64,
    /// Unreferenced blobs kept because they are younger than the grace.
    pub blobs_kept_recent: u64,
    /// Unreferenced blobs kept because they were relied on within the grace
    /// (a mount; a manifest put while a collection ran).
    pub blobs_kept_used: u64,
    /// Unreferenced blobs kept because deciding took longer than
    /// [`TOMBSTONE_HOLD`] (the next run decides again).
    pub blobs_abandoned: u64,
    /// Candidates already gone (another run removed them).
    pub blobs_gone: u64,
    /// Blobs removed (dry run: that would be).
    pub blobs_removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Each blob removed (dry run: that would be), in the order decided.
    pub removed: Vec<RemovedBlob>,
    /// Repository links to removed blobs, removed (dry run: that would be).
    pub links_removed: u64,
    /// Upload records removed, with their chunk objects (dry run: stale
    /// records found).
    pub uploads_removed: u64,
    /// What the driver's own cleanup of stale uploads did (not run dry).
    pub storage_uploads: Option<CleanupReport>,
    /// Other runs whose records say they are still running.
    pub other_runs: u64,
    /// Records of runs older than [`RUN_LINGER`], removed.
    pub stale_runs_removed: u64,
    /// Dead tombstones of other runs, removed.
    pub tombstones_removed: u64,
    /// Old "used" markers, removed.
    pub markers_removed: u64,
    /// Clean-up steps that failed (each logged at warn; the next run
    /// tries again). Failures that make deleting unsafe end the run
    /// with an error instead.
    pub failures: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Why a run ended early. Whatever it deleted before was unreferenced;
/// running it again is safe.
#[derive(Debug)]
#[non_exhaustive]
pub enum GcError {
    /// A storage request the run depends on failed.
    Storage {
        /// What the run was doing.
        doing: String,
        /// The failure.
        source: stowage::Error,
    },
    /// The run stopped deleting: its record could not be kept fresh, or
    /// it ran past [`MAX_RUN`].
    Stopped {
        /// Why.
        reason: String,
    },
}

impl GcError {
    fn storage(doing: impl Into<String>, source: stowage::Error) -> Self {
        Self::Storage {
            doing: doing.into(),
            source,
        }
    }
}

impl fmt::Display for GcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage { doing, source } => write!(f, "{doing}: {}", source.chain()),
            Self::Stopped { reason } => write!(f, "the garbage collection stopped: {reason}"),
        }
    }
}

impl std::error::Error for GcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Storage { source, .. } => Some(source),
            Self::Stopped { .. } => None,
        }
    }
}

/// `at - duration`; `None` when out of range (nothing is that old).
fn before(at: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
}

/// Whether an object modified at `modified` was modified before `cutoff`
/// (an unknown time or cutoff: no).
fn older(modified: Option<DateTime<Utc>>, cutoff: Option<DateTime<Utc>>) -> bool {
    matches!((modified, cutoff), (Some(m), Some(c)) if m < c)
}

/// Runs a garbage collection on `storage` (see the module documentation).
///
/// # Errors
/// [`GcError::Storage`] when a listing or read the decisions depend on
/// fails (nothing is deleted after it), or a deletion fails;
/// [`GcError::Stopped`] when the run can no longer delete safely.
/// Clean-up steps that fail are counted in [`GcReport::failures`] instead.
///
/// # Cancel safety
/// Dropping the future stops the run: its heartbeat ends, a tombstone it
/// held dies after [`TOMBSTONE_DEAD`], its record after [`RUN_LINGER`];
/// everything it deleted was unreferenced.
pub async fn run(storage: Arc<dyn Storage>, options: GcOptions) -> Result<GcReport, GcError> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let clock = Instant::now();
    let mut report = GcReport {
        run_id: run_id.clone(),
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    let mut progress = Progress::new(&options, clock);
    let lease = if options.dry_run {
        None
    } else {
        Some(Lease::take(&storage, &run_id, &options).await?)
    };
    let start = lease.as_ref().map_or_else(Utc::now, |l| l.start);
    report.started = Some(start);
    other_runs(&*storage, &run_id, start, options.dry_run, &mut report).await?;

    progress.phase(GcPhase::Mark, &report);
    let mut marks = Marks::default();
    let repositories = mark(&*storage, &mut marks, &mut report, &mut progress).await?;

    progress.phase(GcPhase::Sweep, &report);
    let sweeper = Sweeper {
        storage: &*storage,
        run_id: &run_id,
        old_before: before(start, options.grace),
        dry_run: options.dry_run,
        lease: lease.as_ref().map(|l| &*l.state),
    };
    let removed = sweep(&sweeper, &marks, &mut report, &mut progress).await?;
    drop(marks);

    progress.phase(GcPhase::Links, &report);
    if !removed.is_empty() {
        remove_links(&sweeper, &repositories, &removed, start, &mut report).await?;
    }

    progress.phase(GcPhase::Uploads, &report);
    clean_uploads(&storage, options.grace, options.dry_run, &mut report).await;

    if let Some(lease) = lease {
        remove_leftovers(&*storage, start, options.grace, &mut report).await;
        report.elapsed = clock.elapsed();
        lease.finish(&*storage, &report).await;
    }
    report.elapsed = clock.elapsed();
    progress.phase(GcPhase::Done, &report);
    Ok(report)
}

/// Progress reports, at most every `every` or [`PROGRESS_ITEMS`] items.
struct Progress {
    callback: Option<ProgressFn>,
    every: Duration,
    started: Instant,
    last: Instant,
    items: u64,
    phase: GcPhase,
}

impl Progress {
    fn new(options: &GcOptions, started: Instant) -> Self {
        Self {
            callback: options.progress.clone(),
            every: options.progress_every,
            started,
            last: started,
            items: 0,
            phase: GcPhase::Mark,
        }
    }

    /// A new phase starts: reported at once.
    fn phase(&mut self, phase: GcPhase, report: &GcReport) {
        self.phase = phase;
        self.emit(report);
    }

    /// One more item done: reported when enough time or items passed.
    fn tick(&mut self, report: &GcReport) {
        self.items += 1;
        if self.items >= PROGRESS_ITEMS || self.last.elapsed() >= self.every {
            self.emit(report);
        }
    }

    fn emit(&mut self, report: &GcReport) {
        self.items = 0;
        self.last = Instant::now();
        let Some(callback) = &self.callback else {
            return;
        };
        callback(&GcProgress {
            phase: self.phase,
            repositories: report.repositories,
            manifests: report.manifests,
            blobs_marked: report.blobs_marked,
            blobs_listed: report.blobs_listed,
            blobs_removed: report.blobs_removed,
            bytes_freed: report.bytes_freed,
            elapsed: self.started.elapsed(),
        });
    }
}

/// Whether a run may still delete: its heartbeat keeps its record fresh.
#[derive(Debug)]
struct LeaseState {
    /// When the last successful write of the record started.
    last_ok: Mutex<Instant>,
    /// Set for good once the run may no longer delete.
    lost: AtomicBool,
    /// When the run took its lease.
    taken: Instant,
}

impl LeaseState {
    /// `Ok` while the run may delete.
    fn alive(&self) -> Result<(), GcError> {
        let last = *self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        let reason = if self.taken.elapsed() >= MAX_RUN {
            Some(format!(
                "it ran for more than {} hours; start a new run",
                MAX_RUN.as_secs() / 3600
            ))
        } else if self.lost.load(Ordering::SeqCst) || last.elapsed() >= HEARTBEAT_LOST {
            Some(format!(
                "its record could not be rewritten for {} s (storage failures?)",
                HEARTBEAT_LOST.as_secs()
            ))
        } else {
            None
        };
        match reason {
            None => Ok(()),
            Some(reason) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(GcError::Stopped { reason })
            }
        }
    }

    /// The record was written by a request started at `at`.
    fn renewed(&self, at: Instant) {
        let mut last = self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        if at.saturating_duration_since(*last) >= HEARTBEAT_LOST {
            // Too late: another run may have taken the record for a dead
            // run's. Deleting stays off.
            self.lost.store(true, Ordering::SeqCst);
        } else if at > *last {
            *last = at;
        }
    }
}

/// A run's record and its heartbeat.
#[derive(Debug)]
struct Lease {
    record: StoragePath,
    start: DateTime<Utc>,
    body: Value,
    state: Arc<LeaseState>,
    stop: Arc<tokio::sync::Notify>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    /// Writes the run's record, reads back its time (the run's start) and
    /// starts the heartbeat.
    async fn take(
        storage: &Arc<dyn Storage>,
        run_id: &str,
        options: &GcOptions,
    ) -> Result<Self, GcError> {
        let record = layout::gc_run(run_id);
        let body = json!({
            "run": run_id,
            "pid": std::process::id(),
            "started": Utc::now().to_rfc3339(),
            "grace_seconds": options.grace.as_secs(),
            "finished": false,
        });
        let bytes = Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"));
        let at = Instant::now();
        storage
            .put(&record, bytes.clone(), PutOptions::default())
            .await
            .map_err(|e| GcError::storage("writing the run's record", e))?;
        let start = storage
            .stat(&record)
            .await
            .map_err(|e| GcError::storage("reading the run's record back", e))?
            .last_modified
            .unwrap_or_else(Utc::now);
        let state = Arc::new(LeaseState {
            last_ok: Mutex::new(at),
            lost: AtomicBool::new(false),
            taken: at,
        });
        let stop = Arc::new(tokio::sync::Notify::new());
        let heartbeat = tokio::spawn(heartbeat(
            storage.clone(),
            record.clone(),
            bytes,
            state.clone(),
            stop.clone(),
        ));
        Ok(Self {
            record,
            start,
            body,
            state,
            stop,
            heartbeat: Some(heartbeat),
        })
    }

    /// Stops the heartbeat (waiting for a write in flight) and writes the
    /// record a last time, finished, with the run's figures. It stays for
    /// [`RUN_LINGER`] (see the module documentation).
    async fn finish(mut self, storage: &dyn Storage, report: &GcReport) {
        self.stop.notify_one();
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.await;
        }
        let mut body = self.body.clone();
        body["finished"] = json!(true);
        body["blobs_removed"] = json!(report.blobs_removed);
        body["bytes_freed"] = json!(report.bytes_freed);
        body["elapsed_seconds"] = json!(report.elapsed.as_secs_f64());
        let bytes = Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"));
        if let Err(e) = storage
            .put(&self.record, bytes, PutOptions::default())
            .await
        {
            tracing::warn!(error = %e.chain(), "the garbage collection's final record could not be written");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
}

/// Rewrites the run's record every [`HEARTBEAT`] until `stop`.
async fn heartbeat(
    storage: Arc<dyn Storage>,
    record: StoragePath,
    body: Bytes,
    state: Arc<LeaseState>,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
        let at = Instant::now();
        match storage
            .put(&record, body.clone(), PutOptions::default())
            .await
        {
            Ok(_) => state.renewed(at),
            Err(e) => tracing::warn!(
                error = %e.chain(),
                "the garbage collection could not rewrite its record; it stops deleting if this lasts"
            ),
        }
    }
}

/// Looks at the other runs' records: counts those still running and
/// (unless `dry_run`) removes those older than [`RUN_LINGER`].
async fn other_runs(
    storage: &dyn Storage,
    run_id: &str,
    start: DateTime<Utc>,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let ours = layout::gc_run(run_id);
    let records: Vec<ObjectMeta> = storage
        .list(Some(&layout::gc_runs()))
        .try_collect()
        .await
        .map_err(|e| GcError::storage("listing the garbage collection records", e))?;
    let stale_before = before(start, RUN_LINGER);
    for record in records {
        if record.path == ours {
            continue;
        }
        if older(record.last_modified, stale_before) {
            if dry_run {
                continue;
            }
            match storage.delete(&record.path).await {
                Ok(()) => report.stale_runs_removed += 1,
                Err(e) => {
                    tracing::warn!(error = %e.chain(), record = %record.path, "removing an old garbage collection record failed");
                    report.failures += 1;
                }
            }
            continue;
        }
        let finished = match storage.get(&record.path, GetOptions::default()).await {
            Ok(got) => got
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("finished").and_then(Value::as_bool))
                .unwrap_or(false),
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(_) => false,
        };
        if !finished {
            report.other_runs += 1;
            tracing::warn!(record = %record.path, "another garbage collection is running; both go on safely");
        }
    }
    Ok(())
}

/// What the mark phase found.
#[derive(Debug, Default)]
struct Marks {
    /// Digests something refers to.
    marked: HashSet<Digest>,
    /// Manifests read (or queued to be).
    parsed: HashSet<Digest>,
}

/// What a manifest names.
#[derive(Debug, Default)]
struct References {
    /// Blobs: config, layers, `blobs`, `subject`.
    blobs: Vec<Digest>,
    /// Child manifests of an index, read in turn.
    children: Vec<Digest>,
}

/// What the manifest `bytes` names, whatever its media type; `None` when
/// it is not JSON.
fn references(bytes: &[u8]) -> Option<References> {
    let doc: Value = serde_json::from_slice(bytes).ok()?;
    let digest = |v: &Value| {
        v.get("digest")
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok())
    };
    let list = |key: &str| -> Vec<Digest> {
        doc.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(digest)
            .collect()
    };
    let mut out = References {
        blobs: list("layers"),
        children: list("manifests"),
    };
    out.blobs.extend(list("blobs"));
    out.blobs.extend(doc.get("config").and_then(digest));
    out.blobs.extend(doc.get("subject").and_then(digest));
    Some(out)
}

/// The digests of a referrer record's path
/// (`.../_referrers/<alg>/<hex>/<alg>/<hex>`): subject and referrer.
fn referrer_record(prefix: &StoragePath, path: &StoragePath) -> Option<(Digest, Digest)> {
    let rest = path
        .as_str()
        .strip_prefix(prefix.as_str())?
        .strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [subject_alg, subject_hex, alg, hex] = parts.as_slice() else {
        return None;
    };
    let subject = Digest::parse(&format!("{subject_alg}:{subject_hex}")).ok()?;
    let referrer = Digest::parse(&format!("{alg}:{hex}")).ok()?;
    Some((subject, referrer))
}

/// A manifest's bytes: `None` when missing; empty when too large to be a
/// manifest.
async fn read_manifest(storage: &dyn Storage, digest: &Digest) -> stowage::Result<Option<Bytes>> {
    let got = match storage
        .get(&layout::blob(digest), GetOptions::default())
        .await
    {
        Ok(got) => got,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if got.meta.size > MAX_MANIFEST_BYTES as u64 {
        return Ok(Some(Bytes::new()));
    }
    got.bytes().await.map(Some)
}

/// The mark phase: every repository's revisions and referrer records, and
/// what their manifests name. Returns the repositories walked.
async fn mark(
    storage: &dyn Storage,
    marks: &mut Marks,
    report: &mut GcReport,
    progress: &mut Progress,
) -> Result<Vec<String>, GcError> {
    let mut repositories = Vec::new();
    let mut walk = RepositoryWalk::new();
    while let Some(repo) = walk
        .next(storage)
        .await
        .map_err(|e| GcError::storage("walking the repositories", e))?
    {
        let revisions: Vec<ObjectMeta> = storage
            .list(Some(&layout::revisions(&repo)))
            .try_collect()
            .await
            .map_err(|e| GcError::storage(format!("listing the manifests of {repo}"), e))?;
        let mut roots: Vec<Digest> = revisions
            .iter()
            .filter_map(|m| layout::digest_at_end(&m.path))
            .collect();
        let referrers_prefix = layout::all_referrers(&repo);
        let records: Vec<ObjectMeta> = storage
            .list(Some(&referrers_prefix))
            .try_collect()
            .await
            .map_err(|e| GcError::storage(format!("listing the referrers of {repo}"), e))?;
        for record in &records {
            if let Some((subject, referrer)) = referrer_record(&referrers_prefix, &record.path) {
                marks.marked.insert(subject);
                roots.push(referrer);
            }
        }
        mark_manifests(storage, marks, roots, report).await?;
        report.repositories += 1;
        report.blobs_marked = marks.marked.len() as u64;
        progress.tick(report);
        repositories.push(repo);
    }
    Ok(repositories)
}

/// Reads the manifests `roots` (and, for indexes, their children) not read
/// yet, marking each and what it names.
async fn mark_manifests(
    storage: &dyn Storage,
    marks: &mut Marks,
    roots: Vec<Digest>,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut queue: VecDeque<Digest> = roots.into();
    loop {
        let mut batch = Vec::new();
        while batch.len() < MANIFEST_READS_IN_FLIGHT {
            let Some(digest) = queue.pop_front() else {
                break;
            };
            if marks.parsed.insert(digest) {
                batch.push(digest);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let read: Vec<(Digest, stowage::Result<Option<Bytes>>)> = futures::stream::iter(batch)
            .map(|digest| async move { (digest, read_manifest(storage, &digest).await) })
            .buffer_unordered(MANIFEST_READS_IN_FLIGHT)
            .collect()
            .await;
        for (digest, result) in read {
            marks.marked.insert(digest);
            let bytes = match result {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    report.manifests_missing += 1;
                    tracing::warn!(%digest, "a manifest named in a repository is missing its bytes");
                    continue;
                }
                Err(e) => return Err(GcError::storage(format!("reading manifest {digest}"), e)),
            };
            report.manifests += 1;
            let Some(refs) = references(&bytes) else {
                report.manifests_unreadable += 1;
                tracing::warn!(%digest, "a manifest is not JSON: nothing it may name is marked");
                continue;
            };
            marks.marked.extend(refs.blobs);
            for child in refs.children {
                marks.marked.insert(child);
                if !marks.parsed.contains(&child) {
                    queue.push_back(child);
                }
            }
        }
    }
}

/// The sweep's shared state.
#[derive(Debug)]
struct Sweeper<'a> {
    storage: &'a dyn Storage,
    run_id: &'a str,
    /// Blobs and markers written before this are old; `None`: nothing is.
    old_before: Option<DateTime<Utc>>,
    dry_run: bool,
    /// The run's lease (none when dry).
    lease: Option<&'a LeaseState>,
}

/// What the sweep decided about a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swept {
    /// Removed (dry: would be), with its size.
    Removed(u64),
    /// A recent "used" marker.
    KeptUsed,
    /// Written again since it was listed.
    KeptRecent,
    /// Deciding took longer than [`TOMBSTONE_HOLD`].
    Abandoned,
    /// Already gone.
    Gone,
}

impl Sweeper<'_> {
    fn alive(&self) -> Result<(), GcError> {
        self.lease.map_or(Ok(()), LeaseState::alive)
    }

    /// Whether a "used" marker of the blob is recent.
    async fn recently_used(&self, digest: &Digest) -> Result<bool, GcError> {
        let markers: Vec<ObjectMeta> = self
            .storage
            .list(Some(&layout::gc_used(digest)))
            .try_collect()
            .await
            .map_err(|e| GcError::storage(format!("listing the markers of {digest}"), e))?;
        Ok(markers
            .iter()
            .any(|m| !older(m.last_modified, self.old_before)))
    }

    /// Decides about the unreferenced, old blob `digest` of `size` bytes,
    /// under a tombstone (see the module documentation).
    async fn sweep(&self, digest: Digest, size: u64) -> Result<(Digest, Swept), GcError> {
        if self.dry_run {
            let swept = if self.recently_used(&digest).await? {
                Swept::KeptUsed
            } else {
                Swept::Removed(size)
            };
            return Ok((digest, swept));
        }
        self.alive()?;
        let held = Instant::now();
        let tombstone = layout::gc_tombstone(digest, self.run_id);
        self.storage
            .put(
                &tombstone,
                Bytes::from(self.run_id.to_string()),
                PutOptions::default(),
            )
            .await
            .map_err(|e| GcError::storage(format!("writing the tombstone of {digest}"), e))?;
        let decided = self.decide(&digest, held).await;
        // The tombstone goes whatever was decided; one left behind dies
        // after TOMBSTONE_DEAD.
        if let Err(e) = self.storage.delete(&tombstone).await {
            tracing::warn!(error = %e.chain(), %digest, "removing a tombstone failed; it dies on its own");
        }
        decided.map(|swept| (digest, swept))
    }

    async fn decide(&self, digest: &Digest, held: Instant) -> Result<Swept, GcError> {
        if self.recently_used(digest).await? {
            return Ok(Swept::KeptUsed);
        }
        let blob = layout::blob(digest);
        let meta = match self.storage.stat(&blob).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Swept::Gone),
            Err(e) => return Err(GcError::storage(format!("checking blob {digest}"), e)),
        };
        if !older(meta.last_modified, self.old_before) {
            return Ok(Swept::KeptRecent);
        }
        if held.elapsed() >= TOMBSTONE_HOLD {
            return Ok(Swept::Abandoned);
        }
        self.alive()?;
        self.storage
            .delete(&blob)
            .await
            .map_err(|e| GcError::storage(format!("deleting blob {digest}"), e))?;
        Ok(Swept::Removed(meta.size))
    }
}

/// The sweep phase: every blob; the unreferenced old ones decided about.
/// Returns the digests removed (dry: that would be).
async fn sweep(
    sweeper: &Sweeper<'_>,
    marks: &Marks,
    report: &mut GcReport,
    progress: &mut Progress,
) -> Result<HashSet<Digest>, GcError> {
    let mut candidates: Vec<(Digest, u64)> = Vec::new();
    let mut listing = sweeper.storage.list(Some(&layout::blobs()));
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| GcError::storage("listing the blobs", e))?
    {
        report.blobs_listed += 1;
        progress.tick(report);
        let Some(digest) = layout::blob_digest(&meta.path) else {
            continue;
        };
        if marks.marked.contains(&digest) {
            report.blobs_in_use += 1;
        } else if older(meta.last_modified, sweeper.old_before) {
            candidates.push((digest, meta.size));
        } else {
            report.blobs_kept_recent += 1;
        }
    }
    drop(listing);
    let mut removed = HashSet::new();
    let mut decided = futures::stream::iter(candidates)
        .map(|(digest, size)| sweeper.sweep(digest, size))
        .buffer_unordered(SWEEPS_IN_FLIGHT);
    while let Some(outcome) = decided.next().await {
        let (digest, swept) = outcome?;
        match swept {
            Swept::Removed(size) => {
                report.blobs_removed += 1;
                report.bytes_freed += size;
                report.removed.push(RemovedBlob { digest, size });
                removed.insert(digest);
            }
            Swept::KeptUsed => report.blobs_kept_used += 1,
            Swept::KeptRecent => report.blobs_kept_recent += 1,
            Swept::Abandoned => report.blobs_abandoned += 1,
            Swept::Gone => report.blobs_gone += 1,
        }
        progress.tick(report);
    }
    Ok(removed)
}

/// Removes the links of `repositories` to the blobs in `removed`, when
/// written before the run started (a link written since belongs to a blob
/// pushed again).
async fn remove_links(
    sweeper: &Sweeper<'_>,
    repositories: &[String],
    removed: &HashSet<Digest>,
    start: DateTime<Utc>,
    report: &mut GcReport,
) -> Result<(), GcError> {
    for repo in repositories {
        let links: Vec<ObjectMeta> = sweeper
            .storage
            .list(Some(&layout::layer_links(repo)))
            .try_collect()
            .await
            .map_err(|e| GcError::storage(format!("listing the blob links of {repo}"), e))?;
        for link in links {
            let dangling = layout::digest_at_end(&link.path).is_some_and(|d| removed.contains(&d))
                && older(link.last_modified, Some(start));
            if !dangling {
                continue;
            }
            if !sweeper.dry_run {
                sweeper
                    .storage
                    .delete(&link.path)
                    .await
                    .map_err(|e| GcError::storage(format!("removing link {}", link.path), e))?;
            }
            report.links_removed += 1;
        }
    }
    Ok(())
}

/// Removes uploads untouched for longer than `grace` (dry: counts them).
async fn clean_uploads(
    storage: &Arc<dyn Storage>,
    grace: Duration,
    dry_run: bool,
    report: &mut GcReport,
) {
    let store = UploadStore::in_storage(storage.clone());
    if dry_run {
        match store.stale(grace).await {
            Ok(stale) => report.uploads_removed = stale.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e.message, "listing stale uploads failed");
                report.failures += 1;
            }
        }
        return;
    }
    let registry = Registry::new(storage.clone(), store);
    let done = registry.clean_stale_uploads(grace).await;
    report.uploads_removed = done.records_removed;
    report.storage_uploads = done.storage;
    report.failures += done.failures;
}

/// Removes other runs' dead tombstones and old "used" markers (best
/// effort: failures are counted).
async fn remove_leftovers(
    storage: &dyn Storage,
    start: DateTime<Utc>,
    grace: Duration,
    report: &mut GcReport,
) {
    let dead_before = before(start, TOMBSTONE_DEAD);
    let markers_before = before(start, grace.max(MARKER_KEEP));
    for (prefix, cutoff, tombstones) in [
        (layout::gc_tombstones(), dead_before, true),
        (layout::gc_markers(), markers_before, false),
    ] {
        let old: Result<Vec<StoragePath>, _> = storage
            .list(Some(&prefix))
            .try_filter(|m| futures::future::ready(older(m.last_modified, cutoff)))
            .map_ok(|m| m.path)
            .try_collect()
            .await;
        let old = match old {
            Ok(old) => old,
            Err(e) => {
                tracing::warn!(error = %e.chain(), %prefix, "listing old garbage collection objects failed");
                report.failures += 1;
                continue;
            }
        };
        for path in old {
            match storage.delete(&path).await {
                Ok(()) if tombstones => report.tombstones_removed += 1,
                Ok(()) => report.markers_removed += 1,
                Err(e) => {
                    tracing::warn!(error = %e.chain(), %path, "removing an old garbage collection object failed");
                    report.failures += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use futures::future::BoxFuture;
    use futures::FutureExt;
    use stowage::StorageExt;

    use super::*;
    use crate::service::testing::{call, manifest, push_blob, put_manifest, registry};

    fn memory() -> Arc<dyn Storage> {
        Arc::new(stowage::local::LocalStorage::in_memory())
    }

    async fn exists(storage: &dyn Storage, digest: &Digest) -> bool {
        storage.exists(&layout::blob(digest)).await.unwrap()
    }

    fn removed(report: &GcReport) -> HashSet<Digest> {
        report.removed.iter().map(|r| r.digest).collect()
    }

    fn grace(seconds: u64) -> GcOptions {
        GcOptions::default().with_grace(Duration::from_secs(seconds))
    }

    /// Lets the clock move on, so what is written next is younger than
    /// what was written before (a run started now finds it old).
    async fn later() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn nothing_below(storage: &dyn Storage, prefix: &StoragePath) -> bool {
        storage
            .list(Some(prefix))
            .try_next()
            .await
            .unwrap()
            .is_none()
    }

    /// Two images sharing a layer, one deleted: the dry run names its
    /// manifest, config and own layer and changes nothing; the run removes
    /// exactly those and the repository's links to them; the other image
    /// still pulls; a second run finds nothing.
    #[tokio::test]
    async fn a_deleted_image_is_collected_and_the_shared_layer_stays() {
        let storage = memory();
        let r = registry(storage.clone());
        let shared = push_blob(&r, "team/app", b"shared layer").await;
        let only_a = push_blob(&r, "team/app", b"layer of a").await;
        let only_b = push_blob(&r, "team/app", b"layer of b").await;
        let config_a = push_blob(&r, "team/app", b"{\"image\":\"a\"}").await;
        let config_b = push_blob(&r, "team/app", b"{\"image\":\"b\"}").await;
        let a = manifest(&config_a, &[&shared, &only_a]);
        let b = manifest(&config_b, &[&shared, &only_b]);
        let (digest_a, digest_b) = (Digest::sha256_of(&a), Digest::sha256_of(&b));
        let freed = (a.len() + b"layer of a".len() + b"{\"image\":\"a\"}".len()) as u64;
        assert_eq!(
            put_manifest(&r, "team/app", "a", a).await.status,
            StatusCode::CREATED
        );
        assert_eq!(
            put_manifest(&r, "team/app", "b", b).await.status,
            StatusCode::CREATED
        );
        let uri = format!("/v2/team/app/manifests/{digest_a}");
        assert_eq!(
            call(&r, "DELETE", &uri, Vec::new()).await.status,
            StatusCode::ACCEPTED
        );
        later().await;

        let garbage: HashSet<Digest> = [digest_a, only_a, config_a].into();
        let dry = run(storage.clone(), grace(0).with_dry_run(true))
            .await
            .unwrap();
        assert_eq!(removed(&dry), garbage);
        assert_eq!(dry.bytes_freed, freed);
        assert_eq!(dry.links_removed, 2);
        assert_eq!(dry.repositories, 1);
        for d in &garbage {
            assert!(exists(&*storage, d).await, "the dry run removed {d}");
        }
        assert!(
            nothing_below(&*storage, &layout::gc_runs()).await,
            "a dry run writes nothing"
        );

        let done = run(storage.clone(), grace(0)).await.unwrap();
        assert_eq!(removed(&done), garbage);
        assert_eq!(done.bytes_freed, freed);
        assert_eq!(done.links_removed, 2);
        for d in &garbage {
            assert!(!exists(&*storage, d).await, "{d} stayed");
        }
        for d in [shared, only_b, config_b, digest_b] {
            assert!(exists(&*storage, &d).await, "{d} was removed");
        }
        let pulled = call(&r, "GET", "/v2/team/app/manifests/b", Vec::new()).await;
        assert_eq!(pulled.status, StatusCode::OK);
        for (d, status) in [(shared, StatusCode::OK), (only_a, StatusCode::NOT_FOUND)] {
            let uri = format!("/v2/team/app/blobs/{d}");
            assert_eq!(
                call(&r, "HEAD", &uri, Vec::new()).await.status,
                status,
                "{d}"
            );
        }
        assert!(!storage
            .exists(&layout::layer_link("team/app", only_a))
            .await
            .unwrap());
        assert!(nothing_below(&*storage, &layout::gc_tombstones()).await);
        // The run's record stays a while, finished.
        let record = storage
            .get_bytes(&layout::gc_run(&done.run_id))
            .await
            .unwrap();
        let record: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["finished"], true);

        let again = run(storage.clone(), grace(0)).await.unwrap();
        assert_eq!(again.blobs_removed, 0);
        assert_eq!(again.other_runs, 0, "a finished run is not running");
    }

    /// Blobs uploaded for a manifest not put yet are kept within the
    /// grace, and so is an upload in progress; the manifest then goes in.
    /// With no grace the abandoned upload goes.
    #[tokio::test]
    async fn a_push_in_progress_within_the_grace_is_kept() {
        let storage = memory();
        let r = registry(storage.clone());
        let layer = push_blob(&r, "team/wip", b"uploaded, manifest not put yet").await;
        let config = push_blob(&r, "team/wip", b"{}").await;
        let started = call(&r, "POST", "/v2/team/wip/blobs/uploads/", Vec::new()).await;
        assert_eq!(started.status, StatusCode::ACCEPTED);
        let upload = started.header("location");
        let patched = call(&r, "PATCH", &upload, b"half a layer".to_vec()).await;
        assert_eq!(patched.status, StatusCode::ACCEPTED);
        later().await;

        let kept = run(storage.clone(), grace(3600)).await.unwrap();
        assert_eq!(kept.blobs_removed, 0);
        assert_eq!(kept.blobs_kept_recent, 2);
        assert_eq!(kept.uploads_removed, 0);
        assert!(exists(&*storage, &layer).await && exists(&*storage, &config).await);
        let status = call(&r, "GET", &upload, Vec::new()).await.status;
        assert_eq!(status, StatusCode::NO_CONTENT, "the upload goes on");

        let body = manifest(&config, &[&layer]);
        let put = put_manifest(&r, "team/wip", "v1", body).await;
        assert_eq!(put.status, StatusCode::CREATED, "{put:?}");
        later().await;
        let swept = run(storage.clone(), grace(0)).await.unwrap();
        assert_eq!(swept.blobs_removed, 0, "{swept:?}");
        assert_eq!(swept.uploads_removed, 1);
        let status = call(&r, "GET", &upload, Vec::new()).await.status;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

    /// A storage that runs a hook around the first `put` below a prefix:
    /// before it is forwarded, or after.
    struct Hooked {
        inner: Arc<dyn Storage>,
        prefix: &'static str,
        before: bool,
        hook: Mutex<Option<Hook>>,
    }

    impl fmt::Debug for Hooked {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Hooked")
                .field("prefix", &self.prefix)
                .finish()
        }
    }

    impl stowage::forward::Wraps for Hooked {
        type Inner = dyn Storage;
        fn wrapped(&self) -> &dyn Storage {
            &*self.inner
        }
    }

    stowage::forward_storage! {
        impl Storage for Hooked;
        forward [driver capabilities get put_stream stat delete delete_prefix list list_page copy
                 download_url upload_url start_upload write_chunk complete_upload abort_upload
                 cleanup_uploads validate metrics];

        async fn put(
            &self,
            path: &StoragePath,
            data: Bytes,
            options: PutOptions,
        ) -> stowage::Result<ObjectMeta> {
            let hook = if path.as_str().starts_with(self.prefix) {
                self.hook.lock().unwrap().take()
            } else {
                None
            };
            if self.before {
                if let Some(hook) = hook {
                    hook().await;
                }
                return self.inner.put(path, data, options).await;
            }
            let put = self.inner.put(path, data, options).await;
            if let Some(hook) = hook {
                hook().await;
            }
            put
        }
    }

    /// One image, `base`, and an old blob of the same repository nobody
    /// refers to: the run's only candidate. Returns (config, old blob).
    async fn one_candidate(r: &Arc<Registry>) -> (Digest, Digest) {
        let config = push_blob(r, "team/app", b"{}").await;
        let base = push_blob(r, "team/app", b"base layer").await;
        let put = put_manifest(r, "team/app", "base", manifest(&config, &[&base])).await;
        assert_eq!(put.status, StatusCode::CREATED);
        let old = push_blob(r, "team/app", b"an old layer nobody refers to").await;
        later().await;
        (config, old)
    }

    /// A manifest referring to an old unreferenced blob is put after the
    /// mark, just before the run writes the blob's tombstone: the registry
    /// sees the run's record and leaves a "used" marker, and the run keeps
    /// the blob.
    #[tokio::test]
    async fn a_manifest_put_during_the_sweep_keeps_the_old_blob_it_names() {
        let storage = memory();
        let r = registry(storage.clone());
        let (config, old) = one_candidate(&r).await;
        let pusher = r.clone();
        let hook: Hook = Box::new(move || {
            async move {
                let body = manifest(&config, &[&old]);
                let put = put_manifest(&pusher, "team/app", "v1", body).await;
                assert_eq!(put.status, StatusCode::CREATED, "{put:?}");
            }
            .boxed()
        });
        let hooked = Arc::new(Hooked {
            inner: storage.clone(),
            prefix: "_registry/gc/sweeping/",
            before: true,
            hook: Mutex::new(Some(hook)),
        });
        let report = run(hooked, grace(0)).await.unwrap();
        assert_eq!(report.blobs_removed, 0, "{report:?}");
        assert_eq!(report.blobs_kept_used, 1);
        assert!(exists(&*storage, &old).await);
        let pulled = call(&r, "GET", "/v2/team/app/manifests/v1", Vec::new()).await;
        assert_eq!(pulled.status, StatusCode::OK);
        let uri = format!("/v2/team/app/blobs/{old}");
        assert_eq!(
            call(&r, "HEAD", &uri, Vec::new()).await.status,
            StatusCode::OK
        );
    }

    /// The same manifest put once the run's tombstone is on the blob: the
    /// registry waits for the run to decide. Whatever it decided, a
    /// manifest that was accepted names a blob that is there, and one that
    /// was refused left no revision.
    #[tokio::test]
    async fn a_manifest_put_under_a_tombstone_waits_and_never_dangles() {
        let storage = memory();
        let r = registry(storage.clone());
        let (config, old) = one_candidate(&r).await;
        let body = manifest(&config, &[&old]);
        let digest = Digest::sha256_of(&body);
        let pushed: Arc<Mutex<Option<tokio::task::JoinHandle<StatusCode>>>> = Arc::default();
        let (pusher, slot) = (r.clone(), pushed.clone());
        let hook: Hook = Box::new(move || {
            async move {
                let put = tokio::spawn(async move {
                    put_manifest(&pusher, "team/app", "v1", body).await.status
                });
                *slot.lock().unwrap() = Some(put);
                // The registry writes its marker and finds the tombstone.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            .boxed()
        });
        let hooked = Arc::new(Hooked {
            inner: storage.clone(),
            prefix: "_registry/gc/sweeping/",
            before: false,
            hook: Mutex::new(Some(hook)),
        });
        let report = run(hooked, grace(0)).await.unwrap();
        let put = pushed.lock().unwrap().take().expect("the hook ran");
        let status = put.await.unwrap();
        let there = exists(&*storage, &old).await;
        let revision = storage
            .exists(&layout::revision("team/app", digest))
            .await
            .unwrap();
        if status == StatusCode::CREATED {
            assert!(there && revision, "{report:?}");
            assert_eq!(report.blobs_removed, 0);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(!there && !revision, "{report:?}");
            assert_eq!(report.blobs_removed, 1);
        }
    }

    /// Two runs at once: between them they remove exactly the garbage,
    /// and nothing referenced.
    #[tokio::test]
    async fn two_runs_at_once_remove_the_garbage_and_nothing_else() {
        let storage = memory();
        let r = registry(storage.clone());
        let mut garbage = HashSet::new();
        let mut kept = Vec::new();
        for i in 0..6u8 {
            let layer = push_blob(&r, "team/many", format!("layer {i}").as_bytes()).await;
            let config = push_blob(&r, "team/many", format!("{{\"n\":{i}}}").as_bytes()).await;
            let body = manifest(&config, &[&layer]);
            let digest = Digest::sha256_of(&body);
            let put = put_manifest(&r, "team/many", &format!("v{i}"), body).await;
            assert_eq!(put.status, StatusCode::CREATED);
            if i % 2 == 0 {
                let uri = format!("/v2/team/many/manifests/{digest}");
                assert_eq!(
                    call(&r, "DELETE", &uri, Vec::new()).await.status,
                    StatusCode::ACCEPTED
                );
                garbage.extend([layer, config, digest]);
            } else {
                kept.extend([layer, config, digest]);
            }
        }
        later().await;
        let (x, y) = tokio::join!(
            run(storage.clone(), grace(0)),
            run(storage.clone(), grace(0))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let both: HashSet<Digest> = removed(&x).union(&removed(&y)).copied().collect();
        assert_eq!(both, garbage);
        for d in &garbage {
            assert!(!exists(&*storage, d).await, "{d} stayed");
        }
        for d in &kept {
            assert!(exists(&*storage, d).await, "{d} was removed");
        }
        assert!(nothing_below(&*storage, &layout::gc_tombstones()).await);
    }

    #[test]
    fn references_are_read_whatever_the_media_type() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({
            "manifests": [{"digest": d('a')}, {"digest": "md5:nope"}],
            "subject": {"digest": d('b')},
        });
        let refs = references(&serde_json::to_vec(&index).unwrap()).unwrap();
        assert_eq!(refs.children, [Digest::parse(&d('a')).unwrap()]);
        assert_eq!(refs.blobs, [Digest::parse(&d('b')).unwrap()]);
        let image = serde_json::json!({
            "config": {"digest": d('c')},
            "layers": [{"digest": d('e')}, {"digest": d('f')}],
        });
        let refs = references(&serde_json::to_vec(&image).unwrap()).unwrap();
        assert_eq!(refs.blobs.len(), 3);
        assert!(refs.children.is_empty());
        assert!(references(b"not json").is_none());
        let prefix = layout::all_referrers("a/b");
        let record = layout::referrer(
            "a/b",
            Digest::parse(&d('1')).unwrap(),
            Digest::parse(&d('2')).unwrap(),
        );
        let (subject, referrer) = referrer_record(&prefix, &record).unwrap();
        assert_eq!(subject.to_string(), d('1'));
        assert_eq!(referrer.to_string(), d('2'));
    }

    #[test]
    fn a_lease_lost_once_stays_lost() {
        let at = Instant::now();
        let state = LeaseState {
            last_ok: Mutex::new(at),
            lost: AtomicBool::new(false),
            taken: at,
        };
        assert!(state.alive().is_ok());
        state.renewed(at + HEARTBEAT);
        assert!(state.alive().is_ok());
        // A write that lands after a long gap does not bring it back.
        state.renewed(at + HEARTBEAT + HEARTBEAT_LOST);
        assert!(matches!(state.alive(), Err(GcError::Stopped { .. })));
    }
}
