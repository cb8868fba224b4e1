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
    // The driver's own part size and concurrency (16 MiB x 4), not the
    // tests' small parts: the retry budget is chosen for these.
    let (through, direct) = through_and_direct(&env, &proxy, "resets", |c| {
        let defaults = S3Config::new("x");
        c.part_size = defaults.part_size;
        c.upload_concurrency = defaults.upload_concurrency;
    })
    .await;
    assert_eq!(through.config().part_size, 16 * MIB as u64);
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
    config.request_timeout = Duration::from_secs(2);
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
    // The default through the proxy's plain-HTTP address: Content-MD5.
    let (whole, retries, used) = write_through_damage("damaged-default", None).await;
    assert_eq!(used, PartChecksum::Md5, "auto on an http:// endpoint");
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
