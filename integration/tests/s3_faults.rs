//! The S3 driver under real-world faults, against a real server behind
//! `servers/fault_proxy.py`: connection resets in either direction,
//! throttling, a CompleteMultipartUpload answer lost after the server
//! completed the upload, damaged parts, stalled bodies and writers, an
//! object replaced while being read, listings whose continuation token is
//! dropped or repeated. Each test fails on a driver without the matching
//! fix (issue 16).
//!
//! The 100 MB put/get test runs `STOWAGE_FAULT_ROUNDS` rounds (default 20,
//! about 30 s per server).

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::Digest as _;
use stowage_core::{
    CompleteOptions, GetOptions, PutOptions, Sha256Digest, Storage, StorageExt, StoragePath,
    WriteStream,
};
use stowage_integration::faults::{attempts_report, metric, through_and_direct, FaultProxy};
use stowage_integration::{multipart_uploads, S3Env};
use stowage_s3::{PartChecksum, S3Config, S3Storage};

const MIB: usize = 1024 * 1024;

fn p(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap()
}

/// `len` bytes in which every MiB differs from every other (its first four
/// bytes are its index), so a part sent twice or out of place shows.
fn data(len: usize, seed: u8) -> Bytes {
    let block: Vec<u8> = (0..MIB)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut out = Vec::with_capacity(len);
    let mut index = 0u32;
    while out.len() < len {
        let start = out.len();
        let take = (len - start).min(MIB);
        out.extend_from_slice(&block[..take]);
        for (i, b) in index.to_le_bytes().iter().enumerate() {
            if start + i < out.len() {
                out[start + i] = *b;
            }
        }
        index += 1;
    }
    Bytes::from(out)
}

/// `body` as a stream of `piece`-byte chunks (no copies).
fn stream_of(body: &Bytes, piece: usize) -> WriteStream<'static> {
    let pieces: Vec<stowage_core::Result<Bytes>> = (0..body.len())
        .step_by(piece)
        .map(|a| Ok(body.slice(a..(a + piece).min(body.len()))))
        .collect();
    futures::stream::iter(pieces).boxed()
}

/// Reads `path` whole through `s`, hashing as it goes.
async fn read_digest(
    s: &S3Storage,
    path: &StoragePath,
) -> stowage_core::Result<(u64, Sha256Digest)> {
    let mut got = s.get(path, GetOptions::default()).await?;
    let mut hasher = sha2::Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = got.stream.try_next().await? {
        hasher.update(&chunk);
        n += chunk.len() as u64;
    }
    Ok((n, Sha256Digest::from_bytes(hasher.finalize().into())))
}

fn prefix_of(s: &S3Storage) -> String {
    format!("{}/", s.config().root)
}

async fn assert_no_multipart_uploads(env: &S3Env, s: &S3Storage) {
    let sdk = env.sdk().await;
    // A dropped write aborts from a background task: give it a moment.
    for _ in 0..50 {
        if multipart_uploads(&sdk, &env.bucket, &prefix_of(s))
            .await
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = multipart_uploads(&sdk, &env.bucket, &prefix_of(s)).await;
    panic!("orphaned multipart uploads left: {left:?}");
}

#[tokio::test]
async fn complete_whose_answer_was_lost_is_reconciled() {
    let env = S3Env::get();
    // The server completes the upload; the driver never hears the answer.
    let proxy = FaultProxy::in_front_of(&env, &["--drop-complete-answers", "1"]);
    let (through, direct) = through_and_direct(&env, &proxy, "complete-lost", |_| {}).await;
    let body = data(12 * MIB + 5, 40);
    let meta = through
        .put_stream(
            &p("blob"),
            stream_of(&body, MIB),
            PutOptions::default().with_expected_digest(Sha256Digest::of(&body)),
        )
        .await
        .expect("the upload the server completed is reported completed");
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(proxy.stat("complete_dropped").await, 1);
    assert!(
        proxy.stat("complete_seen").await >= 2,
        "completion was retried"
    );
    assert_eq!(direct.get_bytes(&p("blob")).await.unwrap(), body);
    assert!(
        metric(&through, "stowage_s3_retries_total") >= 1,
        "the retry is counted"
    );
    assert_no_multipart_uploads(&env, &direct).await;

    // No attempt left after the lost answer: the abort that settles the
    // outcome finds the upload completed, and a HEAD confirms it.
    proxy.configure("drop_complete_answers=1").await;
    let mut config = proxy.config(direct.config());
    config.max_attempts = 1;
    let once = S3Storage::new(config).await.unwrap();
    let body = data(11 * MIB + 3, 41);
    let meta = once
        .put_stream(&p("blob2"), stream_of(&body, MIB), PutOptions::default())
        .await
        .expect("settled as completed");
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(proxy.stat("complete_dropped").await, 2);
    assert_eq!(direct.get_bytes(&p("blob2")).await.unwrap(), body);
    assert!(metric(&once, "stowage_s3_completions_reconciled_total") >= 1);
    assert_no_multipart_uploads(&env, &direct).await;
    direct.delete(&p("blob")).await.unwrap();
    direct.delete(&p("blob2")).await.unwrap();
}

#[tokio::test]
async fn puts_and_gets_of_100_mb_survive_a_reset_every_30_mb() {
    let env = S3Env::get();
    let rounds: usize = std::env::var("STOWAGE_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let proxy = FaultProxy::in_front_of(
        &env,
        &["--reset-up-every", "30M", "--reset-down-every", "30M"],
    );
    // The driver's own part size and concurrency (8 MiB x 8), not the
    // tests' small parts: the retry budget is chosen for these.
    let (through, direct) = through_and_direct(&env, &proxy, "resets", |c| {
        let defaults = S3Config::new("x");
        c.part_size = defaults.part_size;
        c.upload_concurrency = defaults.upload_concurrency;
        // Each read is one body, resumed where a reset cuts it (the
        // simulation covers the read-ahead's requests under faults).
        c.read_ahead_ranges = 0;
    })
    .await;
    assert_eq!(through.config().part_size, 8 * MIB as u64);
    for round in 0..rounds {
        let body = data(100 * 1000 * 1000, round as u8);
        let digest = Sha256Digest::of(&body);
        let path = p(&format!("blob-{round}"));
        let meta = through
            .put_stream(
                &path,
                stream_of(&body, 256 * 1024),
                PutOptions::default()
                    .with_expected_digest(digest)
                    .with_size_hint(body.len() as u64),
            )
            .await
            .unwrap_or_else(|e| panic!("put {round}: {}", e.chain()));
        assert_eq!(meta.size, body.len() as u64);
        let (n, got) = read_digest(&through, &path)
            .await
            .unwrap_or_else(|e| panic!("get {round}: {}", e.chain()));
        assert_eq!(n, body.len() as u64, "get {round} whole");
        assert_eq!(got, digest, "get {round} intact");
        direct.delete(&path).await.unwrap();
    }
    let stats = proxy.stats().await;
    // What the retry budget was measured from (docs/s3.md): the attempts
    // each retried request took under this fault load.
    eprintln!(
        "{rounds} rounds: proxy {stats}; retries {}, read resumes {}, retried requests by attempts: {}",
        metric(&through, "stowage_s3_retries_total"),
        metric(&through, "stowage_s3_read_resumes_total"),
        attempts_report(&through)
    );
    assert!(stats["resets_up"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["resets_down"].as_u64().unwrap() >= 1, "{stats}");
    assert!(metric(&through, "stowage_s3_retries_total") >= 1);
    assert!(metric(&through, "stowage_s3_read_resumes_total") >= 1);
    assert_no_multipart_uploads(&env, &direct).await;
}

#[tokio::test]
async fn slowdown_on_a_fifth_of_requests_everything_succeeds() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &["--slowdown-fraction", "0.2", "--seed", "16"]);
    let (s, direct) = through_and_direct(&env, &proxy, "slowdown", |_| {}).await;
    // Small puts (PutObject), stats, whole and ranged gets.
    for i in 0..10u8 {
        let path = p(&format!("small/{i}"));
        let body = data(1000 + i as usize, i);
        s.put(&path, body.clone(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(s.stat(&path).await.unwrap().size, body.len() as u64);
        assert_eq!(s.get_bytes(&path).await.unwrap(), body);
        assert_eq!(
            s.get_range_bytes(
                &path,
                stowage_core::ByteRange::Bounded { start: 10, end: 20 }
            )
            .await
            .unwrap(),
            body.slice(10..20)
        );
    }
    // A multipart write.
    let big = data(12 * MIB + 1, 50);
    s.put_stream(&p("big"), stream_of(&big, MIB), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(s.get_bytes(&p("big")).await.unwrap(), big);
    // A chunked upload assembled with UploadPartCopy, then a multipart copy.
    let mut state = s.start_upload().await.unwrap();
    let mut all = Vec::new();
    for (i, size) in [6 * MIB, 6 * MIB, 1234].into_iter().enumerate() {
        let chunk = data(size, 60 + i as u8);
        all.extend_from_slice(&chunk);
        state = s
            .write_chunk(&state, state.size, stream_of(&chunk, MIB))
            .await
            .unwrap();
    }
    s.complete_upload(
        &state,
        &p("assembled"),
        CompleteOptions::default().with_expected_digest(Sha256Digest::of(&all)),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_bytes(&p("assembled")).await.unwrap(),
        Bytes::from(all)
    );
    s.copy(&p("big"), &p("copied")).await.unwrap();
    assert_eq!(direct.get_bytes(&p("copied")).await.unwrap(), big);
    // Listing, cleanup, deletes.
    let listed: Vec<_> = s.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 13, "{listed:?}");
    s.cleanup_uploads(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(s.delete_prefix(&p("small")).await.unwrap(), 10);
    for path in ["big", "assembled", "copied"] {
        s.delete(&p(path)).await.unwrap();
    }
    let left: Vec<_> = direct.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let slowdowns = proxy.stat("slowdowns").await;
    assert!(slowdowns >= 5, "the proxy throttled {slowdowns} requests");
    assert!(metric(&s, "stowage_s3_retries_total") >= slowdowns);
    assert_no_multipart_uploads(&env, &direct).await;
}

#[tokio::test]
async fn failed_writes_leave_nothing_visible_and_no_multipart_upload() {
    let env = S3Env::get();
    // Every request body is cut every 8 MiB and nothing is retried.
    let proxy = FaultProxy::in_front_of(&env, &["--reset-up-every", "8M"]);
    let (through, direct) = through_and_direct(&env, &proxy, "failed", |c| {
        c.max_attempts = 1;
    })
    .await;
    let body = data(30 * MIB, 70);
    let err = through
        .put_stream(
            &p("multipart"),
            stream_of(&body, MIB),
            PutOptions::default(),
        )
        .await
        .expect_err("a part is cut and not retried");
    assert!(err.is_retryable(), "a connection reset is transient: {err}");
    assert!(!direct.exists(&p("multipart")).await.unwrap());
    assert_no_multipart_uploads(&env, &direct).await;

    // A chunked upload whose chunk write is cut: nothing at the
    // destination, and no multipart upload left.
    let state = through.start_upload().await.unwrap();
    let chunk = data(20 * MIB, 71);
    assert!(through
        .write_chunk(&state, 0, stream_of(&chunk, MIB))
        .await
        .is_err());
    assert!(!direct.exists(&p("dest")).await.unwrap());
    assert_no_multipart_uploads(&env, &direct).await;
    let _ = direct.abort_upload(&state).await;
    let left: Vec<_> = direct.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_read_whose_object_is_replaced_mid_stream_errors_and_never_mixes_bytes() {
    let env = S3Env::get();
    // The first reset comes after 24 MiB: well after the replacement.
    let proxy = FaultProxy::in_front_of(&env, &["--reset-down-every", "24M"]);
    let (through, direct) = through_and_direct(&env, &proxy, "replaced", |_| {}).await;
    let old = data(40 * MIB, 80);
    let new = data(40 * MIB, 81);
    direct
        .put(&p("blob"), old.clone(), PutOptions::default())
        .await
        .unwrap();
    let mut got = through
        .get(&p("blob"), GetOptions::default())
        .await
        .unwrap();
    let mut received = Vec::new();
    while received.len() < 512 * 1024 {
        let chunk = got.stream.try_next().await.unwrap().expect("more bytes");
        received.extend_from_slice(&chunk);
    }
    direct
        .put(&p("blob"), new.clone(), PutOptions::default())
        .await
        .unwrap();
    let err = loop {
        match got.stream.try_next().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!(
                "the read ended without an error after {} bytes",
                received.len()
            ),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("changed"), "{err}");
    assert!(received.len() < old.len(), "the reset came before the end");
    assert!(
        old.starts_with(&received),
        "every byte delivered is of the old version"
    );
    assert!(metric(&through, "stowage_s3_reads_changed_total") >= 1);
    // The new version reads whole.
    assert_eq!(through.get_bytes(&p("blob")).await.unwrap(), new);
    direct.delete(&p("blob")).await.unwrap();
}

#[tokio::test]
async fn a_stalled_body_is_resumed_after_the_request_timeout() {
    let env = S3Env::get();
    let proxy =
        FaultProxy::in_front_of(&env, &["--stall-down-every", "8M", "--stall-seconds", "6"]);
    let (_, direct) = through_and_direct(&env, &proxy, "stalled-read", |_| {}).await;
    // A body silent for 2 s counts as broken (the direct driver keeps the
    // default, so that the set-up put is not cut short).
    let mut config = proxy.config(direct.config());
    config.progress_timeout = Duration::from_secs(2);
    // One body, stalled and resumed: no read-ahead requests beside it (the
    // tests' config turns read-ahead on; the simulation covers it).
    config.read_ahead_ranges = 0;
    let through = S3Storage::new(config).await.unwrap();
    let body = data(20 * MIB, 90);
    direct
        .put(&p("blob"), body.clone(), PutOptions::default())
        .await
        .unwrap();
    let (n, digest) =
        tokio::time::timeout(Duration::from_secs(60), read_digest(&through, &p("blob")))
            .await
            .expect("the read does not hang")
            .unwrap();
    assert_eq!(n, body.len() as u64);
    assert_eq!(digest, Sha256Digest::of(&body));
    assert!(proxy.stat("stalls").await >= 1);
    assert!(metric(&through, "stowage_s3_read_resumes_total") >= 1);
    direct.delete(&p("blob")).await.unwrap();
}

/// The progress timeout counts only while the reader waits for the
/// network: a caller that takes longer than it between chunks (a slow
/// registry client) reads on from the same body, with no resumption.
#[tokio::test]
async fn a_slow_reader_is_not_taken_for_a_stalled_body() {
    let env = S3Env::get();
    let mut config = env.config("slow-reader");
    config.progress_timeout = Duration::from_secs(2);
    config.read_ahead_ranges = 0;
    let storage = S3Storage::new(config).await.unwrap();
    let body = data(12 * MIB, 91);
    storage
        .put(&p("blob"), body.clone(), PutOptions::default())
        .await
        .unwrap();
    let mut got = storage
        .get(&p("blob"), GetOptions::default())
        .await
        .unwrap()
        .stream;
    let mut read = Vec::with_capacity(body.len());
    let mut pauses = 0;
    while let Some(chunk) = got.try_next().await.unwrap() {
        read.extend_from_slice(&chunk);
        // Two pauses of 3 s, the first before the socket's buffers can
        // hold the rest, the second once they may have drained: the timer
        // armed by an earlier wait has long fired by then.
        if pauses < 2 && read.len() >= (pauses + 1) * 4 * MIB {
            tokio::time::sleep(Duration::from_secs(3)).await;
            pauses += 1;
        }
    }
    assert_eq!(pauses, 2);
    assert!(read == body[..], "the bytes read are the bytes written");
    assert_eq!(metric(&storage, "stowage_s3_read_resumes_total"), 0);
    storage.delete(&p("blob")).await.unwrap();
}

/// Writes a 30 MiB multipart blob and eight 1 MiB single PUTs through a
/// proxy that flips one bit every 7 MiB of request bodies, with
/// `checksum` (None: the driver's default); returns whether every stored
/// object is whole, the driver's retry count and the checksum it used
/// (`auto` resolved), after cleaning up.
async fn write_through_damage(
    label: &str,
    checksum: Option<PartChecksum>,
) -> (bool, u64, PartChecksum) {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &["--corrupt-up-every", "7M"]);
    let (through, direct) = through_and_direct(&env, &proxy, label, |c| {
        if let Some(checksum) = checksum {
            c.part_checksum = checksum;
        }
    })
    .await;
    let body = data(30 * MIB + 9, 95);
    through
        .put_stream(&p("blob"), stream_of(&body, MIB), PutOptions::default())
        .await
        .unwrap();
    let small = data(MIB, 96);
    for i in 0..8 {
        through
            .put(
                &p(&format!("small/{i}")),
                small.clone(),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    assert!(proxy.stat("corrupted").await >= 3);
    let mut whole = direct.get_bytes(&p("blob")).await.unwrap() == body;
    for i in 0..8 {
        whole &= direct.get_bytes(&p(&format!("small/{i}"))).await.unwrap() == small;
    }
    let retries = metric(&through, "stowage_s3_retries_total");
    let used = through.config().part_checksum_in_use();
    direct.delete(&p("blob")).await.unwrap();
    direct.delete_prefix(&p("small")).await.unwrap();
    assert_no_multipart_uploads(&env, &direct).await;
    (whole, retries, used)
}

#[tokio::test]
async fn damaged_parts_are_refused_by_the_server_and_sent_again() {
    assert_eq!(
        S3Env::get().config("default").part_checksum,
        PartChecksum::Auto
    );
    // The default: parts checked against their ETags, single PUTs by
    // CRC32C where the server verifies it, else by Content-MD5.
    let (whole, retries, used) = write_through_damage("damaged-default", None).await;
    assert_eq!(used, PartChecksum::Auto);
    assert!(whole, "a damaged body was stored with the default");
    assert!(retries >= 3, "{retries} retries");
    for checksum in [PartChecksum::Md5, PartChecksum::Sha256] {
        let (whole, retries, _) = write_through_damage("damaged", Some(checksum)).await;
        assert!(whole, "a damaged body was stored with {checksum:?}");
        assert!(retries >= 3, "{checksum:?}: {retries} retries");
    }
}

/// The control for the test above: with `none` the payload goes unsigned,
/// nothing checks it, and the same damage is stored. So the checks above
/// are what catches it, not the proxy failing to damage.
#[tokio::test]
async fn unsigned_parts_are_stored_as_received() {
    let (whole, retries, _) = write_through_damage("damaged-none", Some(PartChecksum::Off)).await;
    assert!(
        !whole,
        "the proxy's damage should be stored when nothing checks it"
    );
    assert_eq!(retries, 0);
}

#[tokio::test]
async fn writers_stalled_mid_part_do_not_block_other_writes() {
    let env = S3Env::get();
    let mut config = env.config("stalled-writers");
    config.max_parts_in_flight = 2;
    let s = S3Storage::new(config).await.unwrap();
    // Four writes send 3 MiB of a 5 MiB part, then go silent.
    let mut stalled = Vec::new();
    for i in 0..4u8 {
        let s = s.clone();
        let first = futures::stream::iter(vec![Ok(data(3 * MIB, i))]);
        let stream: WriteStream<'static> = first.chain(futures::stream::pending()).boxed();
        stalled.push(tokio::spawn(async move {
            s.put_stream(&p(&format!("stalled/{i}")), stream, PutOptions::default())
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = data(12 * MIB + 3, 99);
    tokio::time::timeout(
        Duration::from_secs(60),
        s.put_stream(&p("beside"), stream_of(&body, MIB), PutOptions::default()),
    )
    .await
    .expect("a write beside stalled ones is not starved of the part budget")
    .unwrap();
    assert_eq!(s.get_bytes(&p("beside")).await.unwrap(), body);
    for task in stalled {
        task.abort();
    }
    s.delete(&p("beside")).await.unwrap();
    assert_no_multipart_uploads(&env, &s).await;
    let left: Vec<_> = s.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn listings_with_a_repeated_or_missing_token_fail_instead_of_looping_or_ending_short() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &["--list-token", "repeat"]);
    let (through, direct) = through_and_direct(&env, &proxy, "tokens", |_| {}).await;
    // More keys than one ListObjectsV2 page holds (1,000).
    futures::stream::iter(0..1005)
        .map(|i| {
            let direct = &direct;
            async move {
                direct
                    .put(
                        &p(&format!("k/{i:05}")),
                        Bytes::from_static(b"x"),
                        PutOptions::default(),
                    )
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let all: Vec<_> = direct.list(None).try_collect().await.unwrap();
    assert_eq!(all.len(), 1005, "the listing straight from the server");

    let repeated: Result<Vec<_>, _> = tokio::time::timeout(
        Duration::from_secs(60),
        through.list(None).try_collect::<Vec<_>>(),
    )
    .await
    .expect("a repeated token does not loop forever");
    let err = repeated.expect_err("a repeated token is an error");
    assert!(err.to_string().contains("a second time"), "{err}");

    proxy.configure("list_token=drop").await;
    let dropped: Result<Vec<_>, _> = through.list(None).try_collect().await;
    let err = dropped.expect_err("a missing token is an error, not a short listing");
    assert!(err.to_string().contains("IsTruncated"), "{err}");
    assert!(proxy.stat("list_tampered").await >= 2);

    assert_eq!(direct.delete_prefix(&p("k")).await.unwrap(), 1005);
}

// Integrity: never a false success, never wrong bytes. Each test below
// fails on a driver that decided "completed after all" by size, served a
// whole-object answer as a range, copied without pinning the source, or
// deleted an assembled destination it had not written.

/// A driver configuration with 5 MiB parts, so that a dozen MiB is a
/// multipart upload of three parts.
fn small_parts(c: &mut S3Config) {
    c.part_size = 5 * MIB as u64;
    c.max_attempts = 2;
}

#[tokio::test]
async fn an_overwrite_whose_completion_is_unknown_never_reports_the_old_object_as_success() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &[]);
    let (through, direct) =
        through_and_direct(&env, &proxy, "overwrite-unknown", small_parts).await;
    // An earlier object of the same size and part count at the key.
    let old = data(12 * MIB + 5, 50);
    direct
        .put_stream(&p("blob"), stream_of(&old, MIB), PutOptions::default())
        .await
        .unwrap();
    // Every completion fails; the abort that settles the outcome reaches
    // the server but its answer is lost, so the retried abort finds none.
    proxy
        .configure("fail_complete=100&drop_abort_answers=1")
        .await;
    let new = data(12 * MIB + 5, 51);
    let outcome = through
        .put_stream(&p("blob"), stream_of(&new, MIB), PutOptions::default())
        .await;
    proxy
        .configure("fail_complete=0&drop_abort_answers=0")
        .await;
    assert_eq!(
        proxy.stat("abort_dropped").await,
        1,
        "the abort's answer was lost"
    );
    let err = outcome.expect_err("the new bytes were never stored: no success");
    assert!(!err.to_string().is_empty());
    assert_eq!(
        direct.get_bytes(&p("blob")).await.unwrap(),
        old,
        "the earlier object is untouched"
    );
    assert_eq!(
        metric(&through, "stowage_s3_completions_reconciled_total"),
        0
    );
    assert_no_multipart_uploads(&env, &direct).await;

    // The same with nothing at the key before: an error, nothing stored.
    proxy
        .configure("fail_complete=100&drop_abort_answers=1")
        .await;
    let outcome = through
        .put_stream(&p("fresh"), stream_of(&new, MIB), PutOptions::default())
        .await;
    proxy
        .configure("fail_complete=0&drop_abort_answers=0")
        .await;
    outcome.expect_err("nothing was stored");
    assert!(!direct.exists(&p("fresh")).await.unwrap());
    assert_no_multipart_uploads(&env, &direct).await;
}

#[tokio::test]
async fn a_ranged_read_answered_with_the_whole_object_serves_exactly_the_range() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of_signing(&env, &["--ignore-range"]);
    let (through, direct) = through_and_direct(&env, &proxy, "range-ignored", |_| {}).await;
    let body = data(3 * MIB + 7, 52);
    direct
        .put(&p("blob"), body.clone(), PutOptions::default())
        .await
        .unwrap();
    let n = body.len() as u64;
    let cases = [
        (
            stowage_core::ByteRange::Bounded {
                start: 100,
                end: 5000,
            },
            100..5000,
        ),
        (
            stowage_core::ByteRange::From(MIB as u64 + 3),
            MIB as u64 + 3..n,
        ),
        (stowage_core::ByteRange::Suffix(777), n - 777..n),
        (
            stowage_core::ByteRange::Bounded {
                start: n - 1,
                end: n + 50,
            },
            n - 1..n,
        ),
    ];
    for (range, want) in cases {
        let got = through
            .get(&p("blob"), GetOptions::default().with_range(range))
            .await
            .unwrap();
        assert_eq!(
            got.range,
            want.clone(),
            "{range}: the range the answer is labelled with"
        );
        let bytes: Vec<Bytes> = got.stream.try_collect().await.unwrap();
        let bytes: Vec<u8> = bytes.concat();
        assert_eq!(
            bytes,
            body[want.start as usize..want.end as usize],
            "{range}: exactly the bytes asked for"
        );
    }
    assert!(
        proxy.stat("ranges_ignored").await >= 4,
        "the proxy ignored the ranges"
    );
    assert!(metric(&through, "stowage_s3_ranges_ignored_total") >= 4);
    // A range past the end is still refused as such.
    let past = through
        .get(
            &p("blob"),
            GetOptions::default().with_range(stowage_core::ByteRange::From(n + 10)),
        )
        .await;
    assert!(
        matches!(past, Err(stowage_core::Error::InvalidRange { .. })),
        "{past:?}"
    );
}

#[tokio::test]
async fn a_copy_whose_source_is_replaced_mid_copy_fails_and_writes_nothing() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &[]);
    let (through, direct) = through_and_direct(&env, &proxy, "copy-pinned", |c| {
        c.multipart_copy_threshold = 5 * MIB as u64;
        c.multipart_copy_part_size = 5 * MIB as u64;
    })
    .await;
    let old = data(12 * MIB, 53);
    direct
        .put(&p("src"), old.clone(), PutOptions::default())
        .await
        .unwrap();
    // Parts after the first are held while the source is replaced.
    proxy.configure("delay_copies_seconds=3").await;
    let copy = {
        let through = through.clone();
        tokio::spawn(async move { through.copy(&p("src"), &p("dst")).await })
    };
    for _ in 0..100 {
        if proxy.stat("copies_delayed").await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = data(12 * MIB, 54);
    direct
        .put(&p("src"), new.clone(), PutOptions::default())
        .await
        .unwrap();
    let outcome = copy.await.unwrap();
    proxy.configure("delay_copies_seconds=0").await;
    let err = outcome.expect_err("a copy of a source replaced mid-copy fails");
    assert!(err.to_string().contains("replaced"), "{err}");
    assert!(
        !direct.exists(&p("dst")).await.unwrap(),
        "nothing is written at the destination"
    );
    assert!(metric(&through, "stowage_s3_copies_source_changed_total") >= 1);
    assert_no_multipart_uploads(&env, &direct).await;
    // Without interference the copy is whole.
    through.copy(&p("src"), &p("dst")).await.unwrap();
    assert_eq!(direct.get_bytes(&p("dst")).await.unwrap(), new);
}

#[tokio::test]
async fn assembly_never_deletes_an_object_another_writer_put_at_the_destination() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &[]);
    let (through, direct) = through_and_direct(&env, &proxy, "assembly-foreign", |_| {}).await;
    let first = data(6 * MIB, 55);
    let tail = data(MIB, 56);
    let mut state = through.start_upload().await.unwrap();
    state = through
        .write_chunk(&state, 0, stream_of(&first, MIB))
        .await
        .unwrap();
    state = through
        .write_chunk(&state, first.len() as u64, stream_of(&tail, MIB))
        .await
        .unwrap();
    // The HEADs after the completion are held while another writer puts
    // an object of another size at the destination.
    proxy.configure("delay_heads_seconds=3").await;
    let complete = {
        let (through, state) = (through.clone(), state.clone());
        tokio::spawn(async move {
            through
                .complete_upload(&state, &p("blob"), CompleteOptions::default())
                .await
        })
    };
    for _ in 0..500 {
        if proxy.stat("heads_delayed").await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let foreign = data(MIB + 3, 57);
    direct
        .put(&p("blob"), foreign.clone(), PutOptions::default())
        .await
        .unwrap();
    let outcome = complete.await.unwrap();
    proxy.configure("delay_heads_seconds=0").await;
    let err = outcome.expect_err("the assembled size does not match");
    assert!(err.to_string().contains("not this upload's"), "{err}");
    assert_eq!(
        direct.get_bytes(&p("blob")).await.unwrap(),
        foreign,
        "the other writer's object stays"
    );
}

#[tokio::test]
async fn a_hung_request_without_a_body_is_retried_and_ends_inside_the_budget() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &[]);
    let (through, direct) = through_and_direct(&env, &proxy, "hung-head", |c| {
        c.first_byte_timeout = Duration::from_secs(1);
        c.retry_timeout = Duration::from_secs(4);
    })
    .await;
    direct
        .put(&p("blob"), Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap();
    // Every request is held far longer than an attempt may wait.
    proxy.configure("stall_fraction=1&stall_seconds=20").await;
    let started = std::time::Instant::now();
    let outcome = through.stat(&p("blob")).await;
    let took = started.elapsed();
    proxy.configure("stall_fraction=0").await;
    let err = outcome.expect_err("no answer inside the budget");
    assert!(err.is_retryable(), "{err}");
    assert!(
        took < Duration::from_secs(4 + 1 + 3),
        "the budget (4 s) plus one attempt (1 s) and slack, took {took:?}"
    );
    assert!(
        proxy.stat("stalls").await >= 2,
        "the hung request was sent again"
    );
}

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn parallel_downloads_survive_resets_and_leave_nothing_on_failure() {
    use stowage_core::download::DownloadOptions;
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &["--reset-down-every", "7M"]);
    // The download's own ranges are what is cut and resumed here, so the
    // reads have no read-ahead of their own (the tests' config turns it on).
    let (through, direct) = through_and_direct(&env, &proxy, "parallel-get", |c| {
        c.read_ahead_ranges = 0;
    })
    .await;
    let body = data(41 * MIB + 17, 58);
    direct
        .put(&p("blob"), body.clone(), PutOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob.bin");
    let options = DownloadOptions::default()
        .with_range_size(4 * MIB as u64)
        .with_concurrency(4);
    let meta = through
        .download_to_file(&p("blob"), &dest, options)
        .await
        .unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), body, "every byte right");
    assert!(proxy.stat("resets_down").await >= 4, "the ranges were cut");
    assert!(metric(&through, "stowage_s3_read_resumes_total") >= 4);
    assert_eq!(names_in(dir.path()), vec!["blob.bin".to_string()]);

    // An empty object and one smaller than a range.
    direct
        .put(&p("empty"), Bytes::new(), PutOptions::default())
        .await
        .unwrap();
    let empty = dir.path().join("empty");
    through
        .download_to_file(&p("empty"), &empty, options)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&empty).unwrap(), b"");

    // The object replaced mid-download: an error, the destination keeps
    // its old content, and no temporary file is left.
    proxy
        .configure("reset_down_every=0&stall_down_every=2M&stall_seconds=0.5")
        .await;
    let slow = {
        let (through, dest) = (through.clone(), dest.clone());
        let options = options.with_concurrency(1);
        tokio::spawn(async move { through.download_to_file(&p("blob"), &dest, options).await })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    direct
        .put(&p("blob"), data(41 * MIB + 17, 59), PutOptions::default())
        .await
        .unwrap();
    let err = slow
        .await
        .unwrap()
        .expect_err("the object changed mid-download");
    proxy.configure("stall_down_every=0").await;
    assert!(
        err.to_string().contains("replaced") || err.to_string().contains("changed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        body,
        "the old file is untouched"
    );
    assert_eq!(
        names_in(dir.path()),
        vec!["blob.bin".to_string(), "empty".to_string()]
    );

    // A missing object: an error and nothing created.
    let missing = dir.path().join("missing");
    through
        .download_to_file(&p("nope"), &missing, options)
        .await
        .expect_err("no such object");
    assert!(!missing.exists());
    assert_eq!(names_in(dir.path()).len(), 2);
}
