//! The long STS group: tests that wait for real credential expiry (Ceph
//! RGW grants sessions of 60 s, see `rgw sts min session duration` in
//! rgw-up.sh; against AWS set STOWAGE_STS_TEST_MIN_SESSION_SECONDS=900 and
//! expect a quarter of an hour). The expiry scenarios run at once in one
//! test so the suite waits for one expiry, not four; alongside it, one test
//! keeps steady traffic going for two sessions with the default margin.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use stowage_core::upload::CompleteOptions;
use stowage_core::{PutOptions, Sha256Digest, Storage, StorageExt, StoragePath};
use stowage_integration::sts::StsS3;
use stowage_integration::sts::{shortest_session, StsEnv};
use stowage_sts::StsConfig;

const MIB: usize = 1024 * 1024;

fn path(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap()
}

/// Short sessions refreshed 20 s before they end (in the background, by the
/// first request inside those 20 s).
fn short(mut c: StsConfig) -> StsConfig {
    c.duration = shortest_session();
    c.refresh_margin = Duration::from_secs(20);
    c
}

async fn open(c: StsConfig) -> StsS3 {
    StsS3::open(short(c)).await
}

/// Sleeps until `expiry` plus `extra`.
async fn sleep_past(expiry: SystemTime, extra: Duration) {
    let wait = expiry.duration_since(SystemTime::now()).unwrap_or_default() + extra;
    tokio::time::sleep(wait).await;
}

/// A multipart write whose parts arrive slowly, so the upload outlives the
/// credentials it started with.
async fn slow_multipart_write(storage: &StsS3, first_expiry: SystemTime) -> Duration {
    let started = Instant::now();
    let part = Bytes::from(vec![7u8; 5 * MIB]);
    let parts = vec![part.clone(), part.clone(), part];
    let mut hasher = Sha256::new();
    for p in &parts {
        hasher.update(p);
    }
    let expected = Sha256Digest::from_bytes(hasher.finalize().into());
    let stream = futures::stream::iter(parts.into_iter().enumerate())
        .then(move |(i, p)| async move {
            if i == 2 {
                sleep_past(first_expiry, Duration::from_secs(3)).await;
            }
            Ok(p)
        })
        .boxed();
    let p = path("slow/multipart");
    storage
        .put_stream(
            &p,
            stream,
            PutOptions::default().with_expected_digest(expected),
        )
        .await
        .expect("a multipart write spanning a credential expiry completes");
    assert_eq!(storage.stat(&p).await.unwrap().size, 15 * MIB as u64);
    started.elapsed()
}

/// A chunked upload with its last chunk and completion after the first
/// credentials expired.
async fn slow_chunked_upload(storage: &StsS3, first_expiry: SystemTime) {
    let chunk = Bytes::from(vec![3u8; 5 * MIB]);
    let state = storage.start_upload().await.unwrap();
    let state = storage
        .write_chunk(
            &state,
            0,
            futures::stream::iter([Ok(chunk.clone())]).boxed(),
        )
        .await
        .unwrap();
    // What a registry would store between two requests.
    let saved = serde_json::to_string(&state).unwrap();
    sleep_past(first_expiry, Duration::from_secs(3)).await;
    let state = serde_json::from_str(&saved).unwrap();
    let state = storage
        .write_chunk(
            &state,
            5 * MIB as u64,
            futures::stream::iter([Ok(chunk)]).boxed(),
        )
        .await
        .expect("a chunk written after the expiry");
    let p = path("slow/chunked");
    storage
        .complete_upload(&state, &p, CompleteOptions::default())
        .await
        .expect("completion after the expiry");
    assert_eq!(storage.stat(&p).await.unwrap().size, 10 * MIB as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_expire_and_are_refreshed_while_work_goes_on() {
    let env = StsEnv::get();

    // Assume-role storage: long uploads and a burst at refresh time.
    let storage = Arc::new(open(env.assume_role_config("sts-expiry")).await);
    storage
        .put(
            &path("warm"),
            Bytes::from_static(b"w"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(storage.credential_stats().sts_calls(), 1);
    let first_expiry = storage
        .credential_stats()
        .last_expiry()
        .expect("session credentials expire");
    let lifetime = first_expiry.duration_since(SystemTime::now()).unwrap();
    assert!(
        lifetime <= shortest_session(),
        "asked for {:?}, got {lifetime:?}",
        shortest_session()
    );
    let first_key = storage.credential_stats().last_access_key_prefix();

    // Web identity with a token that expires with the first session: only a
    // rotated token file lets the refresh succeed.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, env.mint_token("before-rotation", 70)).unwrap();
    let web = open(env.web_identity_config("sts-expiry-web", &token_file)).await;
    web.put(
        &path("warm"),
        Bytes::from_static(b"w"),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let web_first_expiry = web.credential_stats().last_expiry().unwrap();
    // The kubelet rotates the token in place.
    std::fs::write(&token_file, env.mint_token("after-rotation", 3600)).unwrap();

    let burst = async {
        // Just past the first expiry, 64 requests at once: one STS call.
        sleep_past(first_expiry, Duration::from_secs(1)).await;
        let calls_before = storage.credential_stats().sts_calls();
        let results = join_all((0..64).map(|i| {
            let s = storage.clone();
            async move { s.get_bytes(&path("warm")).await.map(|_| i) }
        }))
        .await;
        for r in results {
            r.expect("a read right after the expiry");
        }
        storage.credential_stats().sts_calls() - calls_before
    };
    let web_after = async {
        sleep_past(web_first_expiry, Duration::from_secs(12)).await;
        web.put(
            &path("after"),
            Bytes::from_static(b"a"),
            PutOptions::default(),
        )
        .await
    };
    let (elapsed, (), refresh_calls, web_result) = tokio::join!(
        slow_multipart_write(&storage, first_expiry),
        slow_chunked_upload(&storage, first_expiry),
        burst,
        web_after,
    );
    assert!(
        elapsed >= Duration::from_secs(10),
        "the write really was slow: {elapsed:?}"
    );
    assert_eq!(
        refresh_calls, 1,
        "STS calls for 64 concurrent requests right after the expiry"
    );
    let stats = storage.credential_stats();
    assert!(
        stats.sts_calls() >= 2,
        "credentials were refreshed: {} calls",
        stats.sts_calls()
    );
    assert!(stats.last_expiry().unwrap() > first_expiry);
    assert_ne!(
        stats.last_access_key_prefix(),
        first_key,
        "new credentials, not the old ones"
    );
    assert_eq!(stats.failures(), 0);

    web_result.expect("web identity refreshed with the rotated token");
    assert!(web.credential_stats().sts_calls() >= 2);
    assert!(web.credential_stats().last_expiry().unwrap() > web_first_expiry);

    storage.delete_prefix(&path("slow")).await.unwrap();
    storage.delete(&path("warm")).await.unwrap();
    web.delete(&path("warm")).await.unwrap();
    web.delete(&path("after")).await.unwrap();
}

/// Sessions of the server's shortest length with the default refresh margin
/// (300 s, longer than the session): the margin applied is a third of the
/// session, so under steady traffic a new session is assumed about every
/// two thirds of a session, in the background. Two sessions' worth of
/// requests make a bounded number of STS calls, and only the first request
/// waits for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_shorter_than_the_default_margin_refresh_in_the_background() {
    let env = StsEnv::get();
    let mut config = env.assume_role_config("sts-default-margin");
    config.duration = shortest_session();
    assert_eq!(config.refresh_margin, Duration::from_secs(300));
    let storage = StsS3::open(config).await;
    let p = path("steady/blob");
    let run = shortest_session() * 2;
    let started = Instant::now();
    let mut requests = 0u64;
    while started.elapsed() < run {
        storage
            .put(
                &p,
                Bytes::from(format!("write {requests}")),
                PutOptions::default(),
            )
            .await
            .expect("a write during the run");
        storage.get_bytes(&p).await.expect("a read during the run");
        requests += 2;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = storage.credential_stats();
    // New sessions at about 2/3 and 4/3 of a session (and perhaps right at
    // the end): 3 or 4 calls, not one per request.
    assert!(
        (3..=5).contains(&stats.sts_calls()),
        "{} STS calls for {requests} requests over {run:?}",
        stats.sts_calls()
    );
    assert_eq!(
        stats.blocking_loads(),
        1,
        "only the first request waited for STS"
    );
    assert_eq!(stats.failures(), 0);
    storage.delete(&p).await.unwrap();
}
