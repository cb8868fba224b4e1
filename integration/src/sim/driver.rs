//! One seed: the random operations, the model of what should be stored,
//! and the checks after every step (the rules are in [`super::check`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use stowage_core::upload::{UploadState, UPLOADS_AREA};
use stowage_core::{
    ByteRange, CompleteOptions, Error, GetOptions, PutOptions, Result, Sha256Digest, Storage,
    StoragePath, WriteStream,
};
use stowage_s3::S3Storage;

use super::check::{self, Violation};
use super::faults::{self, FaultConfig, FaultLayer};
use super::{mix64, SeedReport, SimOptions};
use crate::S3Env;

/// The keys the operations pick from: few, so that writes, copies and
/// deletes meet the same objects often.
const KEYS: [&str; 5] = ["blobs/a", "blobs/b", "blobs/c d", "manifests/e", "f"];

/// Chunked uploads in progress at most.
const MAX_UPLOADS: usize = 2;

/// Steps between two listings of the whole root.
const SWEEP_EVERY: usize = 5;

/// Requests a `cleanup_uploads` may send one after the other (lease,
/// listings, deletes, part listings, aborts).
const CLEANUP_REQUESTS: u32 = 30;

/// How long past its deadline an operation may run before it is given up
/// as hung.
const HANG_GRACE: Duration = Duration::from_secs(60);

/// An expected digest no content of the simulation has.
const WRONG: &[u8] = b"not the bytes that were sent";

/// The S3 part size the simulation uses: the smallest S3 allows.
const PART_SIZE: u64 = 5 * 1024 * 1024;

/// A deterministic random generator (splitmix64).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(mix64(seed ^ 0x5354_4f57_4147_4553))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }
}

/// `len` bytes derived from `fill`: every write has content of its own, so
/// a mix of two versions shows.
fn bytes_of(fill: u64, len: u64) -> Bytes {
    let len = usize::try_from(len).expect("simulated objects fit in memory");
    let mut out = Vec::with_capacity(len + 8);
    let mut x = fill;
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        out.extend_from_slice(&mix64(x).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// `data` as a stream of pieces of `piece` bytes.
fn pieces(data: &Bytes, piece: u64) -> WriteStream<'static> {
    let piece = usize::try_from(piece.max(1)).unwrap_or(usize::MAX);
    let parts: Vec<Bytes> = (0..data.len())
        .step_by(piece)
        .map(|i| data.slice(i..data.len().min(i.saturating_add(piece))))
        .collect();
    futures::stream::iter(parts.into_iter().map(Ok)).boxed()
}

fn path_of(key: &str) -> StoragePath {
    StoragePath::parse(key).expect("simulation keys are valid paths")
}

/// Parts of `part` bytes needed for `size` bytes (at least one).
fn parts(size: u64, part: u64) -> u32 {
    u32::try_from(size.div_ceil(part.max(1)).max(1)).unwrap_or(u32::MAX)
}

/// Retries the driver has given up after its whole budget, so far.
fn exhausted_total(storage: &S3Storage) -> u64 {
    storage
        .metrics()
        .iter()
        .filter(|m| m.name == "stowage_s3_retries_exhausted_total")
        .map(|m| m.value)
        .sum()
}

/// Which expected digest a write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestChoice {
    None,
    Right,
    Wrong,
}

impl DigestChoice {
    fn label(self) -> &'static str {
        match self {
            DigestChoice::None => "",
            DigestChoice::Right => ", expected digest",
            DigestChoice::Wrong => ", wrong expected digest",
        }
    }
}

/// A `write_chunk` step.
#[derive(Debug, Clone)]
struct ChunkWrite {
    upload: usize,
    size: u64,
    fill: u64,
    piece: u64,
    /// Write the same chunk again from the old state afterwards.
    duplicate: bool,
    /// Continue with the state the second write returned.
    keep_duplicate: bool,
    /// Write at an offset other than the upload's.
    wrong_offset: bool,
}

/// A `complete_upload` step.
#[derive(Debug, Clone)]
struct Completion {
    upload: usize,
    dest: &'static str,
    wrong_digest: bool,
    twice: bool,
}

/// One step.
#[derive(Debug, Clone)]
enum Op {
    Put {
        key: &'static str,
        size: u64,
        fill: u64,
        digest: DigestChoice,
    },
    PutStream {
        key: &'static str,
        size: u64,
        fill: u64,
        piece: u64,
        digest: DigestChoice,
    },
    Get {
        key: &'static str,
        range: Option<ByteRange>,
    },
    Stat {
        key: &'static str,
    },
    Copy {
        from: &'static str,
        to: &'static str,
    },
    Delete {
        key: &'static str,
    },
    StartUpload,
    WriteChunk(ChunkWrite),
    Complete(Completion),
    Abort {
        upload: usize,
    },
    Cleanup,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put {
                key, size, digest, ..
            } => write!(f, "put {key:?} ({size} bytes{})", digest.label()),
            Op::PutStream {
                key,
                size,
                piece,
                digest,
                ..
            } => write!(
                f,
                "put_stream {key:?} ({size} bytes in pieces of {piece}{})",
                digest.label()
            ),
            Op::Get { key, range: None } => write!(f, "get {key:?}"),
            Op::Get {
                key,
                range: Some(r),
            } => write!(f, "get {key:?} range {r}"),
            Op::Stat { key } => write!(f, "stat {key:?}"),
            Op::Copy { from, to } => write!(f, "copy {from:?} -> {to:?}"),
            Op::Delete { key } => write!(f, "delete {key:?}"),
            Op::StartUpload => f.write_str("start_upload"),
            Op::WriteChunk(w) => {
                write!(f, "write_chunk #{} ({} bytes", w.upload, w.size)?;
                if w.wrong_offset {
                    f.write_str(", at a wrong offset")?;
                }
                if w.duplicate {
                    f.write_str(", then again from the old state")?;
                }
                f.write_str(")")
            }
            Op::Complete(c) => {
                write!(f, "complete_upload #{} -> {:?}", c.upload, c.dest)?;
                if c.wrong_digest {
                    f.write_str(" with a wrong digest")?;
                }
                if c.twice {
                    f.write_str(", twice")?;
                }
                Ok(())
            }
            Op::Abort { upload } => write!(f, "abort_upload #{upload}"),
            Op::Cleanup => f.write_str("cleanup_uploads(0)"),
        }
    }
}

/// A chunked upload in progress and every byte written to it so far.
#[derive(Debug, Clone)]
struct Upload {
    state: UploadState,
    data: Vec<u8>,
    /// A `cleanup_uploads(0)` ran since it started: its chunks may be gone.
    cleaned: bool,
}

/// How a timed call ended.
enum Timed<T> {
    Done(T, Duration),
    Hung(Duration),
}

/// Runs `future`, giving up `HANG_GRACE` after `limit`.
async fn run_timed<T>(limit: Duration, future: impl Future<Output = T>) -> Timed<T> {
    let started = Instant::now();
    let wait = limit + HANG_GRACE;
    match tokio::time::timeout(wait, future).await {
        Ok(value) => Timed::Done(value, started.elapsed()),
        Err(_) => Timed::Hung(wait),
    }
}

/// The state of one seed's run.
#[derive(Debug)]
struct Sim {
    seed: u64,
    options: SimOptions,
    faulty: S3Storage,
    direct: S3Storage,
    sdk: aws_sdk_s3::Client,
    bucket: String,
    /// The root with a trailing `/`: where multipart uploads are listed.
    prefix: String,
    layer: FaultLayer,
    rng: Rng,
    min_chunk: u64,
    copy_threshold: u64,
    copy_part: u64,
    /// What each key should hold (absent: nothing).
    model: BTreeMap<String, Bytes>,
    uploads: Vec<Upload>,
    /// Multipart uploads already reported or excused.
    known_uploads: HashSet<String>,
    step: usize,
    op_text: String,
    outcome: String,
    violations: Vec<Violation>,
    failed_calls: usize,
    next_sweep: usize,
}

/// Runs one seed (see [`super::run_seed`]).
pub(crate) async fn run(env: &S3Env, options: &SimOptions, seed: u64) -> SeedReport {
    let started = Instant::now();
    let base = env.config("sim");
    let sdk = env.sdk().await;
    let layer = FaultLayer::new(
        FaultConfig {
            seed,
            rate: options.fault_rate,
            kinds: options.kinds.clone(),
            bucket: base.bucket.clone(),
            root: base.root.clone(),
            path_style: base.path_style,
        },
        faults::default_https_client(),
        Some(sdk.clone()),
    );
    let mut config = base.clone();
    config.part_size = PART_SIZE;
    // Reads of 2 MiB and more fetch two 1 MiB ranges ahead (read_ahead.rs,
    // off by default): the faults reach those requests too.
    config.read_ahead_ranges = 2;
    config.read_ahead_range_size = 1024 * 1024;
    config.max_attempts = options.max_attempts;
    config.retry_timeout = options.retry_timeout;
    config.request_timeout = options.request_timeout;
    config.first_byte_timeout = options.request_timeout;
    config.progress_timeout = options.request_timeout;
    config.connect_timeout = Duration::from_secs(2);
    let built = (
        S3Storage::with_http_client(config.clone(), layer.http_client()).await,
        S3Storage::new(base.clone()).await,
    );
    let (faulty, direct) = match built {
        (Ok(faulty), Ok(direct)) => (faulty, direct),
        (Err(e), _) | (_, Err(e)) => {
            let violation = Violation {
                seed,
                step: 0,
                operation: "building the drivers".into(),
                message: e.to_string(),
                faults: Vec::new(),
                replay: options.replay_command(seed),
            };
            println!("{violation}");
            return SeedReport {
                seed,
                operations: 0,
                failed_calls: 0,
                faults: layer.stats(),
                fingerprint: layer.fingerprint(),
                violations: vec![violation],
                elapsed: started.elapsed(),
            };
        }
    };
    let mut sim = Sim {
        seed,
        options: options.clone(),
        faulty,
        direct,
        sdk,
        bucket: config.bucket.clone(),
        prefix: format!("{}/", config.root),
        layer,
        rng: Rng::new(seed),
        min_chunk: config.min_chunk_size,
        copy_threshold: config.multipart_copy_threshold,
        copy_part: config.multipart_copy_part_size,
        model: BTreeMap::new(),
        uploads: Vec::new(),
        known_uploads: HashSet::new(),
        step: 0,
        op_text: String::new(),
        outcome: String::new(),
        violations: Vec::new(),
        failed_calls: 0,
        next_sweep: SWEEP_EVERY,
    };
    sim.run_steps().await;
    sim.final_checks().await;
    sim.teardown().await;
    SeedReport {
        seed,
        operations: options.ops,
        failed_calls: sim.failed_calls,
        faults: sim.layer.stats(),
        fingerprint: sim.layer.fingerprint(),
        violations: sim.violations,
        elapsed: started.elapsed(),
    }
}

impl Sim {
    async fn run_steps(&mut self) {
        for step in 1..=self.options.ops {
            self.step = step;
            self.layer.set_step(step);
            let op = self.next_op();
            self.op_text = op.to_string();
            self.outcome.clear();
            let exhausted_before = exhausted_total(&self.faulty);
            let started = Instant::now();
            self.execute(op).await;
            let took = started.elapsed();
            self.check_multipart(exhausted_before).await;
            if step >= self.next_sweep {
                self.next_sweep += SWEEP_EVERY;
                self.sweep(false).await;
            }
            if self.options.verbose {
                println!(
                    "  seed {} step {step}: {} -> {}[{:.1} s]",
                    self.seed,
                    self.op_text,
                    self.outcome,
                    took.as_secs_f64()
                );
                for event in self.layer.events_in(step) {
                    println!("    fault: {event}");
                }
            }
        }
    }

    /// Records a violation of the current step and prints it.
    fn violation(&mut self, message: impl Into<String>) {
        let violation = Violation {
            seed: self.seed,
            step: self.step,
            operation: self.op_text.clone(),
            message: message.into(),
            faults: self
                .layer
                .events_in(self.step)
                .iter()
                .map(ToString::to_string)
                .collect(),
            replay: self.options.replay_command(self.seed),
        };
        println!("{violation}");
        self.violations.push(violation);
    }

    /// Notes a call's outcome for the step's report.
    fn note<T>(&mut self, result: &Result<T>) {
        match result {
            Ok(_) => self.outcome.push_str("ok; "),
            Err(e) => {
                self.failed_calls += 1;
                self.outcome
                    .push_str(&format!("error: {}; ", check::one_line(e)));
            }
        }
    }

    /// The value of a timed call that sent up to `requests` requests in
    /// sequence, recording a violation when it ran past its deadline or
    /// never returned (`None`).
    fn judge_time<T>(&mut self, what: &str, requests: u32, timed: Timed<T>) -> Option<T> {
        let limit = self.options.deadline(requests);
        match timed {
            Timed::Done(value, took) => {
                if took > limit {
                    self.violation(format!(
                        "{what} took {:.1} s, past its deadline of {:.1} s ({requests} requests \
                         of retry_timeout + request_timeout, plus slack)",
                        took.as_secs_f64(),
                        limit.as_secs_f64()
                    ));
                }
                Some(value)
            }
            Timed::Hung(waited) => {
                self.violation(format!(
                    "{what} did not return within {:.1} s (deadline {:.1} s); given up",
                    waited.as_secs_f64(),
                    limit.as_secs_f64()
                ));
                None
            }
        }
    }

    /// The truth at `key`, or `None` (with a violation) when it cannot be
    /// read.
    async fn truth(&mut self, key: &str) -> Option<Option<Bytes>> {
        match check::read_truth(&self.direct, &path_of(key)).await {
            Ok(now) => Some(now),
            Err(e) => {
                self.violation(format!("reading {key:?} without faults failed: {e}"));
                None
            }
        }
    }

    fn set_model(&mut self, key: &str, now: Option<Bytes>) {
        match now {
            Some(bytes) => {
                self.model.insert(key.to_string(), bytes);
            }
            None => {
                self.model.remove(key);
            }
        }
    }

    /// Requests a streamed write of `size` bytes may send in sequence: one
    /// PUT below a part, else create, the parts, complete, abort and HEADs.
    fn stream_write_requests(&self, size: u64) -> u32 {
        if size < PART_SIZE {
            1
        } else {
            parts(size, PART_SIZE) + 5
        }
    }

    // ---- choosing the next step ----

    fn next_op(&mut self) -> Op {
        loop {
            let roll = self.rng.below(100);
            let uploads = self.uploads.len();
            let op = match roll {
                0..=11 => {
                    let key = self.any_key();
                    let size = self.size();
                    Op::Put {
                        key,
                        size,
                        fill: self.rng.next_u64(),
                        digest: self.digest_choice(),
                    }
                }
                12..=25 => {
                    let key = self.any_key();
                    let size = self.size();
                    let piece = self.piece(size);
                    Op::PutStream {
                        key,
                        size,
                        fill: self.rng.next_u64(),
                        piece,
                        digest: self.digest_choice(),
                    }
                }
                26..=43 => {
                    let key = self.existing_key(80);
                    let size = self.model.get(key).map_or(0, |b| b.len() as u64);
                    Op::Get {
                        key,
                        range: self.range(size),
                    }
                }
                44..=47 => Op::Stat {
                    key: self.existing_key(70),
                },
                48..=55 => {
                    let from = self.existing_key(85);
                    let others: Vec<&'static str> =
                        KEYS.iter().copied().filter(|k| *k != from).collect();
                    let to = others[self.rng.index(others.len())];
                    Op::Copy { from, to }
                }
                56..=61 => Op::Delete {
                    key: self.existing_key(70),
                },
                62..=68 if uploads < MAX_UPLOADS => Op::StartUpload,
                69..=83 if uploads > 0 => {
                    let upload = self.rng.index(uploads);
                    let size = self.chunk_size();
                    let piece = self.piece(size);
                    Op::WriteChunk(ChunkWrite {
                        upload,
                        size,
                        fill: self.rng.next_u64(),
                        piece,
                        duplicate: self.rng.chance(25),
                        keep_duplicate: self.rng.chance(50),
                        wrong_offset: self.rng.chance(8),
                    })
                }
                84..=93 if uploads > 0 => Op::Complete(Completion {
                    upload: self.rng.index(uploads),
                    dest: self.any_key(),
                    wrong_digest: self.rng.chance(10),
                    twice: self.rng.chance(35),
                }),
                94..=95 if uploads > 0 => Op::Abort {
                    upload: self.rng.index(uploads),
                },
                97..=99 => Op::Cleanup,
                _ => continue,
            };
            return op;
        }
    }

    fn any_key(&mut self) -> &'static str {
        KEYS[self.rng.index(KEYS.len())]
    }

    /// A key that holds an object, `percent` of the time when there is one.
    fn existing_key(&mut self, percent: u64) -> &'static str {
        let present: Vec<&'static str> = KEYS
            .iter()
            .copied()
            .filter(|k| self.model.contains_key(*k))
            .collect();
        if !present.is_empty() && self.rng.chance(percent) {
            present[self.rng.index(present.len())]
        } else {
            self.any_key()
        }
    }

    /// Sizes around the part size, mostly small.
    fn size(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=7 => 0,
            8..=15 => 1,
            16..=59 => 2 + self.rng.below(64 * 1024),
            60..=66 => PART_SIZE - 1,
            67..=73 => PART_SIZE,
            74..=80 => PART_SIZE + 1,
            81..=85 => 2 * PART_SIZE + 1 + self.rng.below(4096),
            _ => 64 * 1024 + self.rng.below(1024 * 1024),
        }
    }

    /// Chunk sizes: small, the smallest server-side assembly takes, or
    /// more than a part (a multipart write of its own).
    fn chunk_size(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=4 => 0,
            5..=54 => 1 + self.rng.below(64 * 1024),
            55..=84 => self.min_chunk,
            _ => PART_SIZE + 1 + self.rng.below(1024),
        }
    }

    /// The pieces a stream hands over: all at once, or up to 1 MiB each.
    fn piece(&mut self, size: u64) -> u64 {
        if self.rng.chance(30) {
            size.max(1)
        } else {
            1 + self.rng.below(1024 * 1024)
        }
    }

    fn digest_choice(&mut self) -> DigestChoice {
        match self.rng.below(10) {
            0..=5 => DigestChoice::None,
            6..=8 => DigestChoice::Right,
            _ => DigestChoice::Wrong,
        }
    }

    /// An offset at or near the edges of an object of `size` bytes.
    fn position(&mut self, size: u64) -> u64 {
        match self.rng.below(5) {
            0 => 0,
            1 => size.saturating_sub(1),
            2 => size,
            3 => size + 1,
            _ => self.rng.below(size.max(1)),
        }
    }

    /// A read range for an object of `size` bytes, valid or not.
    fn range(&mut self, size: u64) -> Option<ByteRange> {
        match self.rng.below(8) {
            0 | 1 => None,
            2 => {
                let start = self.position(size);
                let len = match self.rng.below(4) {
                    0 => 0,
                    1 => 1,
                    _ => 1 + self.rng.below(size.max(1)),
                };
                Some(ByteRange::Bounded {
                    start,
                    end: start + len,
                })
            }
            3 => Some(ByteRange::From(self.position(size))),
            4 => Some(ByteRange::Suffix(match self.rng.below(4) {
                0 => 0,
                1 => size + 7,
                _ => 1 + self.rng.below(size.max(1)),
            })),
            5 if size > PART_SIZE => {
                let start = PART_SIZE - 1 - self.rng.below(16);
                Some(ByteRange::Bounded {
                    start,
                    end: PART_SIZE + 1 + self.rng.below(16),
                })
            }
            5 => Some(ByteRange::From(0)),
            _ => {
                let start = self.rng.below(size.max(1));
                Some(ByteRange::Bounded {
                    start,
                    end: start + 1 + self.rng.below(64 * 1024),
                })
            }
        }
    }

    // ---- running a step ----

    async fn execute(&mut self, op: Op) {
        match op {
            Op::Put {
                key,
                size,
                fill,
                digest,
            } => self.put(key, size, fill, digest, None).await,
            Op::PutStream {
                key,
                size,
                fill,
                piece,
                digest,
            } => self.put(key, size, fill, digest, Some(piece)).await,
            Op::Get { key, range } => self.get(key, range).await,
            Op::Stat { key } => self.stat(key).await,
            Op::Copy { from, to } => self.copy(from, to).await,
            Op::Delete { key } => self.delete(key).await,
            Op::StartUpload => self.start_upload().await,
            Op::WriteChunk(w) => self.write_chunk(w).await,
            Op::Complete(c) => self.complete(c).await,
            Op::Abort { upload } => self.abort(upload).await,
            Op::Cleanup => self.cleanup().await,
        }
    }

    /// `put` (one request, whatever the size) or, with `piece`,
    /// `put_stream` in pieces of that size.
    async fn put(
        &mut self,
        key: &str,
        size: u64,
        fill: u64,
        digest: DigestChoice,
        piece: Option<u64>,
    ) {
        let path = path_of(key);
        let data = bytes_of(fill, size);
        let options = match digest {
            DigestChoice::None => PutOptions::default(),
            DigestChoice::Right => {
                PutOptions::default().with_expected_digest(Sha256Digest::of(&data))
            }
            DigestChoice::Wrong => {
                PutOptions::default().with_expected_digest(Sha256Digest::of(WRONG))
            }
        };
        let old = self.model.get(key).cloned();
        let requests = match piece {
            None => 1,
            Some(_) => self.stream_write_requests(size),
        };
        let limit = self.options.deadline(requests);
        let timed = match piece {
            None => run_timed(limit, self.faulty.put(&path, data.clone(), options)).await,
            Some(piece) => {
                run_timed(
                    limit,
                    self.faulty.put_stream(&path, pieces(&data, piece), options),
                )
                .await
            }
        };
        let result = self.judge_time("the write", requests, timed);
        let Some(now) = self.truth(key).await else {
            return;
        };
        if let Some(result) = &result {
            self.note(result);
            let wrong = digest == DigestChoice::Wrong;
            if let Some(problem) =
                check::after_write(result, wrong, old.as_ref(), &data, now.as_ref())
            {
                self.violation(format!("{key:?}: {problem}"));
            }
        }
        self.set_model(key, now);
    }

    async fn get(&mut self, key: &str, range: Option<ByteRange>) {
        let path = path_of(key);
        let stored = self.model.get(key).cloned();
        let mut options = GetOptions::default();
        if let Some(r) = range {
            options = options.with_range(r);
        }
        let requests = 4;
        let limit = self.options.deadline(requests);
        let faulty = &self.faulty;
        let read = async {
            let read = faulty.get(&path, options).await?;
            let span = read.range.clone();
            let size = read.meta.size;
            let bytes = read.bytes().await?;
            Ok::<_, Error>((span, size, bytes))
        };
        let timed = run_timed(limit, read).await;
        let Some(got) = self.judge_time("the read", requests, timed) else {
            return;
        };
        self.note(&got);
        if let Some(problem) = check::after_read(&path, stored.as_ref(), range, &got) {
            self.violation(format!("{key:?}: {problem}"));
        }
    }

    async fn stat(&mut self, key: &str) {
        let path = path_of(key);
        let stored = self.model.get(key).cloned();
        let limit = self.options.deadline(1);
        let timed = run_timed(limit, self.faulty.stat(&path)).await;
        let Some(got) = self.judge_time("stat", 1, timed) else {
            return;
        };
        self.note(&got);
        if let Some(problem) = check::after_stat(stored.as_ref(), &got) {
            self.violation(format!("{key:?}: {problem}"));
        }
    }

    async fn copy(&mut self, from: &str, to: &str) {
        let (from_path, to_path) = (path_of(from), path_of(to));
        let source = self.model.get(from).cloned();
        let old = self.model.get(to).cloned();
        let size = source.as_ref().map_or(0, |b| b.len() as u64);
        let requests = if size > self.copy_threshold {
            parts(size, self.copy_part) + 8
        } else {
            3
        };
        let limit = self.options.deadline(requests);
        let timed = run_timed(limit, self.faulty.copy(&from_path, &to_path)).await;
        let result = self.judge_time("the copy", requests, timed);
        let Some(now_from) = self.truth(from).await else {
            return;
        };
        let Some(now_to) = self.truth(to).await else {
            return;
        };
        if now_from != source {
            self.violation(format!(
                "the copy changed its source {from:?} from {} to {}",
                check::show(source.as_ref()),
                check::show(now_from.as_ref())
            ));
        }
        if let Some(result) = &result {
            self.note(result);
            let problem = match (&source, result) {
                (None, Ok(_)) => Some("copying a missing object returned Ok".to_string()),
                (Some(_), Err(Error::NotFound { .. })) => Some(format!(
                    "the copy failed with NotFound although {from:?} exists"
                )),
                (None, Err(_)) if now_to != old => Some(format!(
                    "copying a missing object changed the destination from {} to {}",
                    check::show(old.as_ref()),
                    check::show(now_to.as_ref())
                )),
                (None, Err(_)) => None,
                (Some(src), _) => {
                    check::after_write(result, false, old.as_ref(), src, now_to.as_ref())
                }
            };
            if let Some(problem) = problem {
                self.violation(format!("copy {from:?} -> {to:?}: {problem}"));
            }
        }
        self.set_model(from, now_from);
        self.set_model(to, now_to);
    }

    async fn delete(&mut self, key: &str) {
        let path = path_of(key);
        let old = self.model.get(key).cloned();
        let limit = self.options.deadline(1);
        let timed = run_timed(limit, self.faulty.delete(&path)).await;
        let result = self.judge_time("the delete", 1, timed);
        let Some(now) = self.truth(key).await else {
            return;
        };
        if let Some(result) = &result {
            self.note(result);
            if let Some(problem) = check::after_delete(result, old.as_ref(), now.as_ref()) {
                self.violation(format!("{key:?}: {problem}"));
            }
        }
        self.set_model(key, now);
    }

    async fn start_upload(&mut self) {
        let limit = self.options.deadline(1);
        let timed = run_timed(limit, self.faulty.start_upload()).await;
        let Some(result) = self.judge_time("start_upload", 1, timed) else {
            return;
        };
        self.note(&result);
        if let Ok(state) = result {
            if let Err(e) = state.check() {
                self.violation(format!("start_upload returned an inconsistent state: {e}"));
                return;
            }
            if state.size != 0 {
                self.violation(format!(
                    "start_upload returned a state of {} bytes",
                    state.size
                ));
                return;
            }
            self.uploads.push(Upload {
                state,
                data: Vec::new(),
                cleaned: false,
            });
        }
    }

    async fn write_chunk(&mut self, w: ChunkWrite) {
        let Some(upload) = self.uploads.get(w.upload) else {
            return;
        };
        let state = upload.state.clone();
        let mut expected = upload.data.clone();
        let chunk = bytes_of(w.fill, w.size);
        let requests = self.stream_write_requests(w.size) + 1;
        let limit = self.options.deadline(requests);
        if w.wrong_offset {
            let offset = if state.size > 0 {
                state.size - 1
            } else {
                state.size + 1
            };
            let timed = run_timed(
                limit,
                self.faulty
                    .write_chunk(&state, offset, pieces(&chunk, w.piece)),
            )
            .await;
            let Some(result) = self.judge_time("write_chunk", requests, timed) else {
                return;
            };
            self.note(&result);
            match result {
                Err(Error::OffsetMismatch { expected, got })
                    if expected == state.size && got == offset => {}
                Err(e) => self.violation(format!(
                    "a chunk at offset {offset} of an upload at {} failed with \"{}\", not an \
                     offset mismatch naming {}",
                    state.size,
                    check::one_line(&e),
                    state.size
                )),
                Ok(_) => self.violation(format!(
                    "a chunk at offset {offset} was accepted by an upload at {}",
                    state.size
                )),
            }
            return;
        }
        let timed = run_timed(
            limit,
            self.faulty
                .write_chunk(&state, state.size, pieces(&chunk, w.piece)),
        )
        .await;
        let Some(result) = self.judge_time("write_chunk", requests, timed) else {
            return;
        };
        self.note(&result);
        expected.extend_from_slice(&chunk);
        let next = match result {
            Ok(next) => next,
            Err(Error::OffsetMismatch { expected: at, .. }) => {
                self.violation(format!(
                    "a chunk at the upload's own offset {} failed with an offset mismatch \
                     (expected {at})",
                    state.size
                ));
                return;
            }
            // The old state stays valid.
            Err(_) => return,
        };
        if let Some(problem) = check::after_chunk(&state, &next, &expected) {
            self.violation(format!("write_chunk: {problem}"));
            return;
        }
        let mut chosen = next;
        if w.duplicate {
            let timed = run_timed(
                limit,
                self.faulty
                    .write_chunk(&state, state.size, pieces(&chunk, w.piece)),
            )
            .await;
            if let Some(again) = self.judge_time("write_chunk again", requests, timed) {
                self.note(&again);
                match again {
                    Ok(dup) => match check::after_chunk(&state, &dup, &expected) {
                        Some(problem) => self.violation(format!(
                            "the same chunk written again from the old state: {problem}"
                        )),
                        None if w.keep_duplicate => chosen = dup,
                        None => {}
                    },
                    Err(Error::OffsetMismatch { .. }) => self.violation(
                        "the same chunk written again from the old state failed with an offset \
                         mismatch: the old state must stay valid",
                    ),
                    Err(_) => {}
                }
            }
        }
        if let Some(upload) = self.uploads.get_mut(w.upload) {
            upload.state = chosen;
            upload.data = expected;
        }
    }

    async fn complete(&mut self, c: Completion) {
        let Some(upload) = self.uploads.get(c.upload) else {
            return;
        };
        let state = upload.state.clone();
        let cleaned = upload.cleaned;
        let data = Bytes::from(upload.data.clone());
        let dest = path_of(c.dest);
        let digest = if c.wrong_digest {
            Sha256Digest::of(WRONG)
        } else {
            Sha256Digest::of(&data)
        };
        let old = self.model.get(c.dest).cloned();
        let chunks = u32::try_from(state.chunks.len()).unwrap_or(u32::MAX);
        let requests = 2 * chunks + parts(state.size, PART_SIZE) + 12;
        let limit = self.options.deadline(requests);
        let options = CompleteOptions::default().with_expected_digest(digest);
        let timed = run_timed(
            limit,
            self.faulty.complete_upload(&state, &dest, options.clone()),
        )
        .await;
        let first = self.judge_time("complete_upload", requests, timed);
        let Some(now) = self.truth(c.dest).await else {
            return;
        };
        let mut completed = false;
        if let Some(result) = &first {
            self.note(result);
            completed = result.is_ok();
            if let Some(problem) =
                check::after_write(result, c.wrong_digest, old.as_ref(), &data, now.as_ref())
            {
                self.violation(format!("complete_upload to {:?}: {problem}", c.dest));
            }
            if let (Ok(_), Some(stored), false) = (result, &now, c.wrong_digest) {
                if Sha256Digest::of(stored) != digest {
                    self.violation(format!(
                        "the completed object {:?} has digest {}, not the expected {digest}",
                        c.dest,
                        Sha256Digest::of(stored)
                    ));
                }
            }
        }
        self.set_model(c.dest, now.clone());
        if c.wrong_digest {
            // Refused: the upload stays, to be completed later.
            return;
        }
        if c.twice {
            let timed = run_timed(limit, self.faulty.complete_upload(&state, &dest, options)).await;
            let second = self.judge_time("complete_upload again", requests, timed);
            let Some(now2) = self.truth(c.dest).await else {
                return;
            };
            if let Some(result) = &second {
                self.note(result);
                let holds_data = now2.as_ref() == Some(&data);
                let problem = match result {
                    Ok(_) if !holds_data => Some(format!(
                        "completing the same state again returned Ok but the object is {}, not \
                         the upload's {}",
                        check::show(now2.as_ref()),
                        check::show(Some(&data))
                    )),
                    Ok(_) => None,
                    Err(e) if completed && !holds_data => Some(format!(
                        "completing the same state again failed ({}) and the completed object \
                         changed to {}",
                        check::one_line(e),
                        check::show(now2.as_ref())
                    )),
                    Err(_) if completed => None,
                    Err(_) => check::after_write(result, false, now.as_ref(), &data, now2.as_ref()),
                };
                if let Some(problem) = problem {
                    self.violation(format!("complete_upload to {:?}: {problem}", c.dest));
                }
                completed |= result.is_ok();
            }
            self.set_model(c.dest, now2);
        }
        if completed || cleaned {
            self.uploads.remove(c.upload);
        }
    }

    async fn abort(&mut self, index: usize) {
        let Some(upload) = self.uploads.get(index) else {
            return;
        };
        let state = upload.state.clone();
        let limit = self.options.deadline(3);
        let timed = run_timed(limit, self.faulty.abort_upload(&state)).await;
        if let Some(result) = self.judge_time("abort_upload", 3, timed) {
            self.note(&result);
            if result.is_ok() {
                let area = state.area();
                match check::listed(&self.direct, Some(&area)).await {
                    Ok(left) if left.is_empty() => {}
                    Ok(left) => self.violation(format!(
                        "abort_upload returned Ok but {} temporary objects remain under {area}",
                        left.len()
                    )),
                    Err(e) => self.violation(format!("listing {area} without faults failed: {e}")),
                }
            }
        }
        self.uploads.remove(index);
    }

    async fn cleanup(&mut self) {
        let limit = self.options.deadline(CLEANUP_REQUESTS);
        let timed = run_timed(limit, self.faulty.cleanup_uploads(Duration::ZERO)).await;
        if let Some(result) = self.judge_time("cleanup_uploads", CLEANUP_REQUESTS, timed) {
            self.note(&result);
            if let Ok(report) = &result {
                self.outcome.push_str(&format!("{report:?}; "));
            }
        }
        for upload in &mut self.uploads {
            upload.cleaned = true;
        }
    }

    // ---- checks after the step ----

    /// No multipart upload may stay open under the root after an operation
    /// returned, unless a CreateMultipartUpload answer was lost in the step
    /// or a request spent its whole budget (judged at the end instead).
    async fn check_multipart(&mut self, exhausted_before: u64) {
        let open = match check::open_uploads(&self.sdk, &self.bucket, &self.prefix).await {
            Ok(open) => open,
            Err(e) => {
                self.violation(format!("listing multipart uploads failed: {e}"));
                return;
            }
        };
        let new: Vec<(String, String)> = open
            .into_iter()
            .filter(|(_, id)| !self.known_uploads.contains(id))
            .collect();
        if new.is_empty() {
            return;
        }
        for (_, id) in &new {
            self.known_uploads.insert(id.clone());
        }
        let keys: Vec<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
        let excused = self.layer.lost_create_answer_in(self.step)
            || exhausted_total(&self.faulty) > exhausted_before;
        if excused {
            self.outcome.push_str(&format!(
                "{} multipart upload(s) left open after a lost CreateMultipartUpload answer or a \
                 spent retry budget ({}), judged after the final cleanup; ",
                new.len(),
                keys.join(", ")
            ));
        } else {
            let message = format!(
                "{} multipart upload(s) open after the operation returned: {}",
                new.len(),
                keys.join(", ")
            );
            self.violation(message);
        }
    }

    /// The root's listing against the model; with `contents`, every
    /// object's bytes too.
    async fn sweep(&mut self, contents: bool) {
        let listed = match check::listed(&self.direct, None).await {
            Ok(listed) => listed,
            Err(e) => {
                self.violation(format!("listing the root without faults failed: {e}"));
                return;
            }
        };
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        let uploads_area = format!("{UPLOADS_AREA}/");
        for meta in &listed {
            let path = meta.path.as_str();
            if path.starts_with(&uploads_area) {
                continue;
            }
            seen.insert(path.to_string());
            match self.model.get(path) {
                None => problems.push(format!(
                    "{path:?} ({} bytes) is stored, but no write that returned put it there \
                     and no failed write was checked to have left it",
                    meta.size
                )),
                Some(data) if data.len() as u64 != meta.size => problems.push(format!(
                    "{path:?} is listed with {} bytes; it holds {}",
                    meta.size,
                    data.len()
                )),
                Some(_) => {}
            }
        }
        for key in self.model.keys() {
            if !seen.contains(key) {
                problems.push(format!("{key:?} is missing from the listing"));
            }
        }
        for problem in problems {
            self.violation(format!("listing: {problem}"));
        }
        if !contents {
            return;
        }
        let keys: Vec<String> = self.model.keys().cloned().collect();
        for key in keys {
            let Some(now) = self.truth(&key).await else {
                continue;
            };
            let expected = self.model.get(&key).cloned();
            if now != expected {
                self.violation(format!(
                    "{key:?} holds {}, the model {}",
                    check::show(now.as_ref()),
                    check::show(expected.as_ref())
                ));
            }
        }
    }

    /// After the last step: `cleanup_uploads(0)` with faults paused, then
    /// no multipart upload and no chunked-upload data may remain, and the
    /// root must match the model, contents included.
    async fn final_checks(&mut self) {
        self.step = self.options.ops + 1;
        self.layer.set_step(self.step);
        self.layer.pause(true);
        self.op_text = "final cleanup_uploads(0), faults paused".into();
        // Multipart uploads initiated in the last second are not older than
        // a zero age on servers with second-resolution timestamps.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let limit = self.options.deadline(CLEANUP_REQUESTS);
        let timed = run_timed(limit, self.faulty.cleanup_uploads(Duration::ZERO)).await;
        let report = match self.judge_time("cleanup_uploads", CLEANUP_REQUESTS, timed) {
            Some(Ok(report)) => format!("{report:?}"),
            Some(Err(e)) => {
                self.violation(format!("cleanup_uploads(0) failed without faults: {e}"));
                format!("failed: {}", check::one_line(&e))
            }
            None => "hung".to_string(),
        };
        match check::open_uploads(&self.sdk, &self.bucket, &self.prefix).await {
            Ok(open) if open.is_empty() => {}
            Ok(open) => {
                let keys: Vec<&str> = open.iter().map(|(k, _)| k.as_str()).collect();
                let message = format!(
                    "{} multipart upload(s) remain after cleanup_uploads(0) ({report}): {}",
                    open.len(),
                    keys.join(", ")
                );
                self.violation(message);
            }
            Err(e) => self.violation(format!("listing multipart uploads failed: {e}")),
        }
        let area = path_of(UPLOADS_AREA);
        match check::listed(&self.direct, Some(&area)).await {
            Ok(left) => {
                let data: Vec<&str> = left
                    .iter()
                    .map(|m| m.path.as_str())
                    .filter(|p| check::is_upload_data(p))
                    .collect();
                if !data.is_empty() {
                    let message = format!(
                        "{} chunked-upload object(s) remain after cleanup_uploads(0) ({report}): {}",
                        data.len(),
                        data.join(", ")
                    );
                    self.violation(message);
                }
            }
            Err(e) => self.violation(format!("listing {UPLOADS_AREA} without faults failed: {e}")),
        }
        self.op_text = "final listing and contents".into();
        self.sweep(true).await;
    }

    /// Removes everything the seed left under its root (no checks).
    async fn teardown(&mut self) {
        if let Ok(all) = check::listed(&self.direct, None).await {
            for meta in all {
                let _ = self.direct.delete(&meta.path).await;
            }
        }
        if let Ok(open) = check::open_uploads(&self.sdk, &self.bucket, &self.prefix).await {
            for (key, id) in open {
                let _ = self
                    .sdk
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_bytes_and_steps_depend_only_on_the_seed() {
        assert_eq!(bytes_of(7, 1000), bytes_of(7, 1000));
        assert_ne!(bytes_of(7, 1000), bytes_of(8, 1000));
        assert_eq!(bytes_of(7, 13).len(), 13);
        let draws = |seed| {
            let mut rng = Rng::new(seed);
            (0..32).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[tokio::test]
    async fn pieces_cover_the_data_in_order() {
        let data = bytes_of(1, 10_001);
        let joined: Vec<Bytes> = futures::TryStreamExt::try_collect(pieces(&data, 1000))
            .await
            .unwrap();
        assert_eq!(joined.len(), 11);
        assert_eq!(joined.concat(), data.to_vec());
        assert_eq!(parts(0, PART_SIZE), 1);
        assert_eq!(parts(PART_SIZE, PART_SIZE), 1);
        assert_eq!(parts(PART_SIZE + 1, PART_SIZE), 2);
    }
}
