//! The Azure driver against a real Blob service (Azurite in CI): streamed
//! writes in blocks with bounded memory, `validate` naming a wrong key and
//! a missing container, SAS download and upload URLs fetched with a real
//! HTTP client, a SAS token instead of the key, faults through
//! `servers/fault_proxy.py` (resets in both directions, 503s, damaged
//! blocks), dropped and concurrent writes, chunked-upload assembly and its
//! fallback, and a Quay config location used through the `stowage` binary.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::Digest as _;
use stowage_azure::AzureStorage;
use stowage_core::{
    ByteRange, CheckStatus, CompleteOptions, DownloadUrlOptions, Error, PutOptions, Sha256Digest,
    Storage, StorageExt, StoragePath, UploadUrlOptions, WriteStream,
};
use stowage_integration::azure::AzureEnv;
use stowage_integration::faults::{metric, FaultProxy};

fn p(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift).
fn random(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// `data` as a stream of `piece`-byte pieces.
fn pieces(data: &Bytes, piece: usize) -> WriteStream<'static> {
    let parts: Vec<stowage_core::Result<Bytes>> = (0..data.len())
        .step_by(piece)
        .map(|i| Ok(data.slice(i..(i + piece).min(data.len()))))
        .collect();
    futures::stream::iter(parts).boxed()
}

/// The process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn on_azurite() -> bool {
    std::env::var("STOWAGE_AZURE_TEST_SERVER").is_ok_and(|s| s == "azurite")
}

/// A check of a validation report by name.
fn check<'a>(
    report: &'a stowage_core::ValidationReport,
    name: &str,
) -> &'a stowage_core::validate::Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_64_mib_streamed_write_in_blocks_reads_back_exactly() {
    let env = AzureEnv::get();
    let storage = env.storage("big");
    let size = 64 << 20;
    let body = random(1, size);
    let digest = Sha256Digest::of(&body);
    let before = peak_rss_kib();
    let path = p("big/blob");
    let meta = storage
        .put_stream(
            &path,
            pieces(&body, 256 << 10),
            PutOptions::default().with_expected_digest(digest),
        )
        .await
        .expect("64 MiB write");
    assert_eq!(meta.size, size as u64);
    let after = peak_rss_kib();
    eprintln!(
        "peak RSS before the write {before:?} KiB, after {after:?} KiB (blocks of 1 MiB, 4 in \
         flight: the writer holds about 5 MiB; the test holds the 64 MiB body itself)"
    );
    // Read back streaming, hashed as it comes.
    let mut stream = storage.get(&path, Default::default()).await.unwrap().stream;
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await.unwrap() {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, size as u64);
    assert_eq!(Sha256Digest::from_bytes(h.finalize().into()), digest);
    // Ranges across block boundaries, and a suffix (resolved from the size:
    // Azure has no suffix ranges).
    let mib = 1u64 << 20;
    for range in [
        ByteRange::Bounded {
            start: mib - 3,
            end: 3 * mib + 5,
        },
        ByteRange::From(63 * mib + 17),
        ByteRange::Suffix(mib + 1),
    ] {
        let got = storage.get_range_bytes(&path, range).await.unwrap();
        let expected = range.resolve(&path, size as u64).unwrap();
        assert_eq!(
            got,
            body.slice(expected.start as usize..expected.end as usize),
            "{range}"
        );
    }
    let err = storage
        .get_range_bytes(&path, ByteRange::From(size as u64))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRange { .. }), "{err}");
    // A wrong digest stores nothing and leaves the blob as it was.
    let err = storage
        .put_stream(
            &path,
            pieces(&random(2, 5 << 20), 300_000),
            PutOptions::default().with_expected_digest(Sha256Digest::of(b"other")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(storage.stat(&path).await.unwrap().size, size as u64);
    storage.delete(&path).await.unwrap();
    assert!(!storage.exists(&path).await.unwrap());
}

#[tokio::test]
async fn validate_names_a_wrong_key_a_missing_container_and_an_unreachable_endpoint() {
    let env = AzureEnv::get();
    let good = env.storage("validate").validate().await;
    assert!(good.is_ok(), "{good:?}");

    let mut wrong = env.config("validate-wrong-key");
    wrong.account_key = Some(stowage_core::config::Secret::new(
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==",
    ));
    let storage = AzureStorage::new(wrong).unwrap();
    let report = storage.validate().await;
    assert!(!report.is_ok());
    let c = check(&report, "container reachable");
    assert_eq!(c.status, CheckStatus::Failed);
    assert!(
        c.detail.contains("the account key is wrong"),
        "{}",
        c.detail
    );
    let err = storage
        .put(&p("x"), "x".into(), PutOptions::default())
        .await;
    assert!(
        matches!(err, Err(Error::Credentials { .. })),
        "a refused key is a credentials error: {err:?}"
    );

    let mut missing = env.config("validate-missing");
    missing.container = format!(
        "stowage-missing-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let report = AzureStorage::new(missing).unwrap().validate().await;
    let c = check(&report, "container reachable");
    assert_eq!(c.status, CheckStatus::Failed);
    assert!(
        c.detail.contains("does not exist") && c.detail.contains("stowage-missing-"),
        "{}",
        c.detail
    );

    let foreign = stowage_azure::container_sas(
        &env.account,
        &stowage_core::config::Secret::new("b3RoZXIta2V5"),
        &env.container,
        "racwdl",
        chrono::Utc::now() + chrono::Duration::days(1),
    )
    .unwrap();
    let mut bad_sas = env.config("validate-bad-sas");
    bad_sas.account_key = None;
    let bad_sas = bad_sas.with_sas_token(stowage_core::config::Secret::new(foreign));
    let report = AzureStorage::new(bad_sas).unwrap().validate().await;
    let c = check(&report, "container reachable");
    assert!(c.detail.contains("SAS token was refused"), "{}", c.detail);

    let unreachable = env.through("http://127.0.0.1:9", &env.config("validate-unreachable"));
    let started = std::time::Instant::now();
    let report = AzureStorage::new(unreachable).unwrap().validate().await;
    let c = check(&report, "container reachable");
    assert!(c.detail.contains("cannot reach"), "{}", c.detail);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "validate reports an unreachable endpoint at once"
    );
    let text = format!("{report:?}");
    assert!(!text.contains(&env.key), "no key in the report");
}

#[tokio::test]
async fn sas_download_and_upload_urls_serve_the_right_bytes() {
    let env = AzureEnv::get();
    let storage = env.storage("urls");
    let path = p("blobs/sha256/ab/a b+c");
    let body = random(3, 300_000);
    storage
        .put(&path, body.clone(), PutOptions::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = storage
        .download_url(&path, &DownloadUrlOptions::default())
        .await
        .unwrap()
        .expect("a URL signed with the key");
    assert!(url.fallback.is_none());
    assert!(!url.url.contains(&env.key));
    let got = http.get(&url.url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), body);
    // A range through the URL.
    let got = http
        .get(&url.url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 206);
    assert_eq!(got.bytes().await.unwrap(), body.slice(10..20));
    // HEAD, and response headers signed into the URL.
    let head = storage
        .download_url(&path, &DownloadUrlOptions::default().head())
        .await
        .unwrap()
        .unwrap();
    let got = http.head(&head.url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let named = storage
        .download_url(
            &path,
            &DownloadUrlOptions::default().with_query(
                "response-content-disposition",
                "attachment; filename=\"layer.tar\"",
            ),
        )
        .await
        .unwrap()
        .unwrap();
    let got = http.get(&named.url).send().await.unwrap();
    assert_eq!(
        got.headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok()),
        Some("attachment; filename=\"layer.tar\"")
    );
    // Tampered: another blob's path with this signature, or a changed
    // signature.
    let other = url.url.replace("a%20b%2Bc", "other");
    assert_eq!(http.get(other.as_str()).send().await.unwrap().status(), 403);
    let tampered = url.url.replace("&sig=", "&sig=AAAA");
    assert_eq!(
        http.get(tampered.as_str()).send().await.unwrap().status(),
        403
    );
    // Expired.
    let short = storage
        .download_url(
            &path,
            &DownloadUrlOptions::default().with_expires_in(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(http.get(&short.url).send().await.unwrap().status(), 403);

    // An upload URL with the headers it says to send.
    let up_path = p("uploads/direct");
    let up = storage
        .upload_url(
            &up_path,
            &UploadUrlOptions::default().with_content_type("application/x-test"),
        )
        .await
        .unwrap()
        .expect("upload URLs with the key");
    let mut request = http.put(&up.url).body(body.clone());
    for (name, value) in &up.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), 201, "{:?}", answer.text().await);
    let meta = storage.stat(&up_path).await.unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(meta.content_type.as_deref(), Some("application/x-test"));
    assert_eq!(storage.get_bytes(&up_path).await.unwrap(), body);
    storage.delete(&path).await.unwrap();
    storage.delete(&up_path).await.unwrap();
}

#[tokio::test]
async fn a_sas_token_instead_of_the_key() {
    let env = AzureEnv::get();
    let storage = AzureStorage::new(env.sas_config("sas", "racwdl")).unwrap();
    let path = p("sas/blob");
    let body = random(4, 3 << 20);
    storage
        .put_stream(&path, pieces(&body, 100_000), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(storage.get_bytes(&path).await.unwrap(), body);
    let copy = p("sas/copy");
    storage.copy(&path, &copy).await.unwrap();
    assert_eq!(storage.get_bytes(&copy).await.unwrap(), body);
    // A token that lets clients write is never handed to them.
    assert!(storage
        .download_url(&path, &Default::default())
        .await
        .unwrap()
        .is_none());
    assert!(!storage.capabilities().direct_download);
    assert_eq!(
        metric(&storage, "stowage_azure_direct_url_fallbacks_total"),
        1
    );
    let report = storage.validate().await;
    assert!(report.is_ok(), "{report:?}");
    let urls = check(&report, "direct download URLs");
    assert_eq!(urls.status, CheckStatus::Degraded);
    assert!(
        urls.detail.contains("grants more than reading"),
        "{}",
        urls.detail
    );

    // A read-only token is handed out, saying so; writes are refused.
    let mut reader = env.sas_config("sas-read", "rl");
    reader.root = storage.config().root.clone();
    let reader = AzureStorage::new(reader).unwrap();
    let url = reader
        .download_url(&path, &Default::default())
        .await
        .unwrap()
        .expect("a read-only token is handed out");
    assert_eq!(
        url.fallback.as_ref().map(|f| f.cause),
        Some("configured_sas")
    );
    let got = reqwest::get(&url.url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), body);
    let err = reader
        .put(&p("sas/nope"), "x".into(), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    let report = reader.validate().await;
    assert_eq!(
        check(&report, "SAS token permissions").status,
        CheckStatus::Failed
    );
    storage.delete_prefix(&p("sas")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resets_in_both_directions_are_survived() {
    let env = AzureEnv::get();
    let proxy = FaultProxy::start(
        &env.origin(),
        &["--reset-up-every", "3M", "--reset-down-every", "5M"],
    );
    let config = env.config("faults-resets");
    let through = AzureStorage::new(env.through(&proxy.url, &config)).unwrap();
    let direct = AzureStorage::new(config).unwrap();
    let path = p("faults/reset");
    let body = random(5, 24 << 20);
    through
        .put_stream(
            &path,
            pieces(&body, 512 << 10),
            PutOptions::default().with_expected_digest(Sha256Digest::of(&body)),
        )
        .await
        .expect("a write through resets");
    assert_eq!(direct.get_bytes(&path).await.unwrap(), body);
    assert_eq!(
        through.get_bytes(&path).await.unwrap(),
        body,
        "a read through resets"
    );
    assert!(proxy.stat("resets_up").await > 0 && proxy.stat("resets_down").await > 0);
    assert!(metric(&through, "stowage_azure_retries_total") > 0);
    assert!(metric(&through, "stowage_azure_read_resumes_total") > 0);
    direct.delete(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_503s_are_retried() {
    let env = AzureEnv::get();
    let proxy = FaultProxy::start(&env.origin(), &["--slowdown-fraction", "0.3"]);
    let config = env.config("faults-503");
    let through = AzureStorage::new(env.through(&proxy.url, &config)).unwrap();
    for i in 0..20u64 {
        let path = p(&format!("slow/{i}"));
        through
            .put(&path, random(10 + i, 10_000), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(
            through.get_bytes(&path).await.unwrap(),
            random(10 + i, 10_000)
        );
    }
    let listed: Vec<_> = through.list(Some(&p("slow"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 20);
    assert_eq!(through.delete_prefix(&p("slow")).await.unwrap(), 20);
    assert!(proxy.stat("slowdowns").await > 0);
    assert!(metric(&through, "stowage_azure_retries_total") > 0);
}

/// Azure's own throttling answers, in turn: 503 ServerBusy, 429
/// TooManyRequests and 500 OperationTimedOut, each with its
/// `x-ms-error-code`, on a third of the requests (block writes, block
/// lists, reads, listings, deletes, chunked uploads): every operation
/// succeeds, every byte is right, and each kind was met and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_throttling_server_busy_and_429_are_retried() {
    let env = AzureEnv::get();
    let proxy = FaultProxy::start(
        &env.origin(),
        &["--slowdown-fraction", "0.33", "--slowdown-style", "azure"],
    );
    let config = env.config("faults-429");
    let through = AzureStorage::new(env.through(&proxy.url, &config)).unwrap();
    for i in 0..12u64 {
        let path = p(&format!("busy/{i}"));
        // Small blobs in one request, larger ones in 1 MiB blocks.
        let len = if i % 3 == 0 { 2_500_000 } else { 20_000 };
        through
            .put_stream(
                &path,
                pieces(&random(40 + i, len), 300_000),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(through.get_bytes(&path).await.unwrap(), random(40 + i, len));
    }
    let body = random(99, 2_200_000);
    let upload = through.start_upload().await.unwrap();
    let upload = through
        .write_chunk(&upload, 0, pieces(&body.slice(..1_100_000), 200_000))
        .await
        .unwrap();
    let upload = through
        .write_chunk(
            &upload,
            1_100_000,
            pieces(&body.slice(1_100_000..), 200_000),
        )
        .await
        .unwrap();
    through
        .complete_upload(&upload, &p("busy/chunked"), CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!(through.get_bytes(&p("busy/chunked")).await.unwrap(), body);
    let listed: Vec<_> = through.list(Some(&p("busy"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 13);
    assert_eq!(through.delete_prefix(&p("busy")).await.unwrap(), 13);
    for kind in [
        "azure_server_busy",
        "azure_too_many_requests",
        "azure_operation_timed_out",
    ] {
        assert!(proxy.stat(kind).await > 0, "no {kind} answer was injected");
    }
    assert!(
        metric(&through, "stowage_azure_retries_total") >= proxy.stat("slowdowns").await,
        "every throttled request was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_blocks_are_refused_and_sent_again() {
    let env = AzureEnv::get();
    let proxy = FaultProxy::start(&env.origin(), &["--corrupt-up-every", "1536K"]);
    let config = env.config("faults-damage");
    assert!(
        config.uses_content_md5() || !on_azurite(),
        "plain HTTP: Content-MD5 on"
    );
    let through = AzureStorage::new(env.through(&proxy.url, &config)).unwrap();
    let direct = AzureStorage::new(config.clone()).unwrap();
    let path = p("damage/checked");
    let body = random(6, 4 << 20);
    through
        .put_stream(&path, pieces(&body, 256 << 10), PutOptions::default())
        .await
        .unwrap();
    assert!(proxy.stat("corrupted").await > 0);
    assert_eq!(
        direct.get_bytes(&path).await.unwrap(),
        body,
        "every damaged block was sent again"
    );
    assert!(metric(&through, "stowage_azure_retries_total") > 0);

    // Without the check, the same damage is stored: the check is what
    // catches it.
    let mut unchecked = env.through(&proxy.url, &config);
    unchecked.content_md5 = Some(false);
    let unchecked = AzureStorage::new(unchecked).unwrap();
    let damaged = p("damage/unchecked");
    unchecked
        .put_stream(&damaged, pieces(&body, 256 << 10), PutOptions::default())
        .await
        .unwrap();
    assert_ne!(direct.get_bytes(&damaged).await.unwrap(), body);
    direct.delete_prefix(&p("damage")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_block_write_leaves_nothing_visible() {
    let env = AzureEnv::get();
    let storage = env.storage("dropped");
    let path = p("dropped/blob");
    let first = random(7, 5 << 20);
    let stalled = pieces(&first, 256 << 10)
        .chain(futures::stream::pending())
        .boxed();
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        storage.put_stream(&path, stalled, PutOptions::default()),
    )
    .await;
    assert!(r.is_err(), "the stalled write was still running");
    assert!(!storage.exists(&path).await.unwrap());
    let listed: Vec<_> = storage.list(None).try_collect().await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    // Its blocks were staged: a listing that asks for uncommitted blobs
    // shows the name, which no read or ordinary listing does.
    let url = format!(
        "{}/{}?restype=container&comp=list&include=uncommittedblobs&prefix={}/&{}",
        env.account_url,
        env.container,
        storage.config().root,
        env.sas_token("rl")
    );
    let listing = reqwest::get(url.as_str())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(&storage.blob_name(&path)),
        "the dropped write's blocks are staged but invisible: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_block_writes_of_one_blob_leave_one_whole_write() {
    let env = AzureEnv::get();
    let storage = env.storage("race");
    let path = p("race/blob");
    let (a, b) = (random(8, 6 << 20), random(9, 6 << 20));
    let (ra, rb) = tokio::join!(
        storage.put_stream(&path, pieces(&a, 128 << 10), PutOptions::default()),
        storage.put_stream(&path, pieces(&b, 128 << 10), PutOptions::default()),
    );
    let got = storage.get_bytes(&path).await.unwrap();
    assert!(got == a || got == b, "the blob is one whole write");
    for r in [&ra, &rb] {
        if let Err(e) = r {
            assert!(e.is_retryable(), "{e}");
            assert!(e.to_string().contains("another write"), "{e}");
        }
    }
    assert!(ra.is_ok() || rb.is_ok());
    // The same bytes with their digest (two pushes of one layer): both
    // succeed, whichever commits first.
    let digest = Sha256Digest::of(&a);
    let (ra, rb) = tokio::join!(
        storage.put_stream(
            &path,
            pieces(&a, 128 << 10),
            PutOptions::default().with_expected_digest(digest)
        ),
        storage.put_stream(
            &path,
            pieces(&a, 128 << 10),
            PutOptions::default().with_expected_digest(digest)
        ),
    );
    ra.expect("first push of the layer");
    rb.expect("second push of the layer");
    assert_eq!(storage.get_bytes(&path).await.unwrap(), a);
    storage.delete(&path).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_uploads_assemble_in_azure_or_fall_back_to_streaming() {
    let env = AzureEnv::get();
    let storage = env.storage("assembly");
    let body = random(11, 4_500_000);
    let mut state = storage.start_upload().await.unwrap();
    for chunk in [
        &body[..1_500_000],
        &body[1_500_000..3_000_000],
        &body[3_000_000..],
    ] {
        state = storage
            .write_chunk(
                &state,
                state.size,
                pieces(&Bytes::copy_from_slice(chunk), 100_000),
            )
            .await
            .unwrap();
    }
    let dest = p("assembled/blob");
    let digest = Sha256Digest::of(&body);
    storage
        .complete_upload(
            &state,
            &dest,
            CompleteOptions::default().with_expected_digest(digest),
        )
        .await
        .unwrap();
    assert_eq!(storage.get_bytes(&dest).await.unwrap(), body);
    let refused = metric(&storage, "stowage_azure_server_copies_refused_total");
    if on_azurite() {
        assert_eq!(refused, 1, "Azurite answers 501 to Put Block From URL");
        let report = storage.validate().await;
        assert_eq!(
            check(&report, "server-side copies").status,
            CheckStatus::Degraded
        );
    }
    // Completing the same state again answers the same blob.
    let again = storage
        .complete_upload(&state, &dest, CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!(again.size, body.len() as u64);
    assert_eq!(
        metric(&storage, "stowage_azure_server_copies_refused_total"),
        refused,
        "a refusal is remembered, not asked again"
    );
    // A single-chunk upload is completed by a copy.
    let one = storage.start_upload().await.unwrap();
    let one = storage
        .write_chunk(&one, 0, pieces(&body, 1 << 20))
        .await
        .unwrap();
    storage
        .complete_upload(&one, &p("assembled/one"), CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!(storage.get_bytes(&p("assembled/one")).await.unwrap(), body);
    storage.delete_prefix(&p("assembled")).await.unwrap();
    let left: Vec<_> = storage.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "chunks removed: {left:?}");
}

#[test]
fn a_quay_azure_location_through_the_stowage_binary() {
    let env = AzureEnv::get();
    let dir = std::env::temp_dir().join(format!(
        "stowage-cli-azure-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let root = format!("stowage-it/cli-azure-{}", uuid::Uuid::new_v4().simple());
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  azure:\n    - AzureStorage\n    - azure_container: {}\n      azure_account_name: {}\n      azure_account_key_env: CLI_AZURE_TEST_KEY\n      endpoint_url: {}\n      storage_path: /{root}\nDISTRIBUTED_STORAGE_PREFERENCE: [azure]\n",
            env.container, env.account, env.account_url,
        ),
    )
    .unwrap();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("in.bin"), &body).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(stowage_integration::stowage_binary())
            .arg("--config")
            .arg(config.as_os_str())
            .args(args)
            .env("CLI_AZURE_TEST_KEY", &env.key)
            .current_dir(dir.as_path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !stdout.contains(&env.key) && !stderr.contains(&env.key),
            "the key in the output"
        );
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        stdout
    };
    let validate = run(&["validate"]);
    assert!(validate.contains("container reachable"), "{validate}");
    run(&["put", "in.bin", "layers/a b.bin"]);
    run(&["get", "layers/a b.bin", "out.bin"]);
    assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), body);
    assert_eq!(run(&["ls"]), "layers/a b.bin\n");
    run(&["rm", "layers/a b.bin"]);
    assert_eq!(run(&["ls"]), "");
    std::fs::remove_dir_all(&dir).unwrap();
}
