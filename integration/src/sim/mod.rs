//! A seeded fault simulation of the S3 driver against a real S3 server.
//!
//! The driver under test (`S3Storage`, used through the `Storage` trait)
//! sends its requests through a fault layer ([`faults`]) that sits under
//! the SDK, in place of its HTTP client, and disturbs some of them. A
//! second driver on the same root, without the layer, reads the truth.
//! Each seed runs a sequence of random operations, checks the driver's
//! promises after every step, and prints every broken one with the command
//! that replays it.
//!
//! # Faults
//!
//! For each request the layer decides to pass it or to inject one of:
//!
//! | fault | what the driver sees |
//! |---|---|
//! | `reset` | the connection resets before the request is sent; nothing reaches the server |
//! | `drop-answer` | the request is forwarded and handled, then its answer is lost (a connection error) |
//! | `internal-error` | `500 InternalError` with an S3 error body, nothing forwarded |
//! | `slow-down` | `503 SlowDown` with an S3 error body, nothing forwarded |
//! | `cut-body` | the answer arrives, its body ends with an error part way (reads, listings, completions, copies) |
//! | `slow` | 200 to 800 ms pass before the request is forwarded |
//! | `ignore-range` | a ranged GetObject is answered like a server that ignores `Range`: `200` and the whole object (honouring `If-Match`) |
//!
//! A request is disturbed with the configured probability (`--fault-rate`,
//! default 0.15), by a kind that applies to it (`--faults` narrows the
//! set). The decision is a pure function of the seed and the request: its
//! operation (the SDK's `x-id` query parameter, else the method and the
//! query's keys), its key relative to the driver's root (upload ids and
//! chunk tags, random in every run, replaced by their order of first
//! appearance), its part number, its range, and its attempt (how many
//! times the layer has seen the same operation, key, part, upload id and
//! range before). No other randomness enters, so a seed replays the same
//! decisions for the same sequence of requests whatever the timing; each
//! seed prints a fingerprint of its decisions to compare replays with.
//!
//! # Operations
//!
//! From a generator seeded with the seed, each step is one of: `put` or
//! `put_stream` of a new or existing key, with sizes around the part size
//! (0, 1, small, part - 1, part, part + 1, 2 x part + a little; part = 5
//! MiB, the smallest S3 allows) and with no, the right or a wrong expected
//! digest; whole and ranged reads (`Bounded`, `From`, `Suffix`, at and past
//! the edges); `stat`; copies (above 6 MiB as multipart copies); deletes;
//! chunked uploads through the trait: `start_upload`, `write_chunk` (some
//! chunks written a second time from the old state, as a retried request
//! would, some at a wrong offset), `complete_upload` with the expected
//! digest (some with a wrong one, some called twice), `abort_upload`; and
//! `cleanup_uploads(0)`. The driver runs with small budgets: 6 attempts,
//! a 15 s retry budget, 8 s per attempt.
//!
//! # Invariants
//!
//! Checked after every step against the truth and a model of what should
//! be stored:
//!
//! - A write that returned `Ok` stored exactly its bytes. One that returned
//!   an error left the previous object, or the new bytes, or nothing when
//!   there was nothing before; never a mix, and never nothing in place of
//!   an object. A write whose expected digest was wrong fails with a digest
//!   mismatch and changes nothing.
//! - A read that returned `Ok` returned exactly the stored bytes of the
//!   range asked for (and says which range and the object's size); a read
//!   of a missing object is `NotFound`, an invalid range `InvalidRange`,
//!   never the other way round. `stat` agrees with the model.
//! - A copy that returned `Ok` stored the source's bytes; its source never
//!   changes; copying a missing object changes nothing.
//! - A chunk written at the upload's offset gives a state with the new size
//!   and the running digest of all bytes so far; the same chunk written
//!   again from the old state gives an equivalent state; a chunk at another
//!   offset is an offset mismatch naming the expected offset.
//! - A completed upload's object holds exactly the uploaded bytes, whose
//!   digest is the expected one; completing the same state again answers
//!   `Ok` with the same bytes or a clear error, and never changes them.
//! - No multipart upload stays open under the root after an operation
//!   returned. An upload whose CreateMultipartUpload answer was lost (or
//!   left behind by a request that spent its whole retry budget) is judged
//!   only after the final `cleanup_uploads(0)`, run with faults paused;
//!   after it, no multipart upload and no chunked-upload data remain.
//! - No operation runs past its deadline: for each request it may send in
//!   sequence, the retry budget plus one attempt's timeout (no attempt
//!   starts after the budget), plus 10 s of slack.
//! - Every few steps, and with contents at the end, the listing of the root
//!   matches the model: no object appears that no write put there, none
//!   goes missing.
//!
//! # Running and replaying
//!
//! `integration/simulate.sh --seeds 20` starts Ceph RGW (unless
//! `STOWAGE_S3_TEST_ENDPOINT` and the other `STOWAGE_S3_TEST_*` variables
//! point at a server) and runs seeds 1 to 20; it ends with
//! `seeds: N, operations: M, faults: F, violations: V` and exits 0 only
//! when V is 0. Each violation is printed with its seed, step, operation,
//! the faults injected during that step and the command that replays the
//! seed, e.g. `integration/simulate.sh --seed 7 --ops 25`; `--verbose`
//! prints every step and its outcome.

pub mod faults;

mod check;
mod driver;

use std::time::Duration;

pub use check::Violation;
pub use faults::{FaultConfig, FaultEvent, FaultKind, FaultLayer, FaultStats};

use crate::S3Env;

/// The default probability that a request is disturbed.
pub const DEFAULT_FAULT_RATE: f64 = 0.15;

/// The default number of operations per seed.
pub const DEFAULT_OPERATIONS: usize = 25;

/// Slack added to every deadline.
const DEADLINE_SLACK: Duration = Duration::from_secs(10);

/// The splitmix64 finalizer: 64 well-mixed bits from any 64 bits. Every
/// random choice of the simulation derives from it.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Operations per seed.
    pub ops: usize,
    /// The probability that a request is disturbed.
    pub fault_rate: f64,
    /// The faults to inject.
    pub kinds: Vec<FaultKind>,
    /// The driver's `max_attempts`.
    pub max_attempts: u32,
    /// The driver's `retry_timeout`.
    pub retry_timeout: Duration,
    /// The driver's `request_timeout`.
    pub request_timeout: Duration,
    /// Print every step and its outcome.
    pub verbose: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            ops: DEFAULT_OPERATIONS,
            fault_rate: DEFAULT_FAULT_RATE,
            kinds: FaultKind::ALL.to_vec(),
            max_attempts: 6,
            retry_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(8),
            verbose: false,
        }
    }
}

impl SimOptions {
    /// The deadline of an operation that sends up to `requests` requests
    /// one after the other: each may use the retry budget and then one
    /// more attempt, plus slack.
    pub fn deadline(&self, requests: u32) -> Duration {
        (self.retry_timeout + self.request_timeout) * requests + DEADLINE_SLACK
    }

    /// The command that replays `seed` with these options.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut command = format!("integration/simulate.sh --seed {seed} --ops {}", self.ops);
        if (self.fault_rate - DEFAULT_FAULT_RATE).abs() > 1e-12 {
            command.push_str(&format!(" --fault-rate {}", self.fault_rate));
        }
        if self.kinds != FaultKind::ALL {
            let names: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
            command.push_str(&format!(" --faults {}", names.join(",")));
        }
        command
    }
}

/// What one seed did and found.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Operations run.
    pub operations: usize,
    /// Driver calls that returned an error (allowed under faults when they
    /// leave things as the invariants say).
    pub failed_calls: usize,
    /// What the fault layer counted.
    pub faults: FaultStats,
    /// The fingerprint of the fault decisions ([`FaultLayer::fingerprint`]).
    pub fingerprint: u64,
    /// The broken promises.
    pub violations: Vec<Violation>,
    /// How long the seed took.
    pub elapsed: Duration,
}

/// Runs one seed against the server of `env` under a fresh root, removing
/// what it wrote afterwards. Violations are printed as they are found and
/// returned in the report.
pub async fn run_seed(env: &S3Env, options: &SimOptions, seed: u64) -> SeedReport {
    driver::run(env, options, seed).await
}
