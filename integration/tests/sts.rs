//! `STSS3Storage` against the real STS of Ceph RGW: the conformance suite
//! with AssumeRole and with web identity, proof that the role's credentials
//! do the work, presigned URLs with session tokens, one STS call for many
//! concurrent requests, and every failure mode with its message. The tests
//! that wait for a real expiry are in `sts_expiry.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use stowage_core::{
    CheckStatus, DownloadUrlOptions, Error, PutOptions, Storage, StorageExt, StoragePath,
    UploadUrlOptions, ValidationReport,
};
use stowage_integration::sts::{shortest_session, StsEnv, StsS3};
use stowage_sts::StsConfig;

async fn open(config: StsConfig) -> StsS3 {
    StsS3::open(config).await
}

mod assume_role {
    use super::*;
    stowage_core::conformance_tests!(|| async {
        Arc::new(
            open(StsEnv::get().assume_role_config("sts-assume-role"))
                .await
                .storage,
        ) as Arc<dyn Storage>
    });
}

mod web_identity {
    use super::*;
    stowage_core::conformance_tests!(|| async {
        let env = StsEnv::get();
        let token = env.shared_token_file();
        Arc::new(
            open(env.web_identity_config("sts-web-identity", &token))
                .await
                .storage,
        ) as Arc<dyn Storage>
    });
}

fn path(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap()
}

fn failed_check(report: &ValidationReport, name: &str) -> String {
    let check = report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:?}"));
    assert_eq!(check.status, CheckStatus::Failed, "{report:?}");
    assert!(!report.is_ok());
    check.detail.clone()
}

/// No message may carry a secret: the user's secret key or a token.
fn assert_no_secret(env: &StsEnv, text: &str, token: Option<&str>) {
    assert!(!text.contains(&env.s3.secret_key), "secret key in: {text}");
    if let Some(t) = token {
        assert!(!text.contains(t), "token in: {text}");
        // Not even a signature-sized piece of it.
        let sig = t.rsplit('.').next().unwrap();
        assert!(!text.contains(&sig[..20]), "token piece in: {text}");
    }
}

#[tokio::test]
async fn the_assumed_role_does_the_work_not_the_user_keys() {
    let env = StsEnv::get();
    // A bucket of another user: the test user's own keys cannot write there,
    // the role it assumes (s3:* on every bucket) can.
    let bucket = format!(
        "stowage-sts-proof-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = env.admin_s3();
    admin.create_bucket().bucket(&bucket).send().await.unwrap();

    let user = env.s3.sdk().await;
    let denied = user
        .put_object()
        .bucket(&bucket)
        .key("direct")
        .body(Bytes::from_static(b"x").into())
        .send()
        .await
        .expect_err("the user's own keys must not reach the bucket");
    assert_eq!(
        denied.raw_response().map(|r| r.status().as_u16()),
        Some(403)
    );

    let mut config = env.assume_role_config("sts-proof");
    config.s3.bucket = bucket.clone();
    let storage = open(config).await;
    let p = path("proof/blob");
    storage
        .put(
            &p,
            Bytes::from_static(b"written by the role"),
            PutOptions::default(),
        )
        .await
        .expect("the role can write");
    assert_eq!(storage.get_bytes(&p).await.unwrap(), "written by the role");
    assert_eq!(storage.credential_stats().sts_calls(), 1);
    assert_eq!(storage.stat(&p).await.unwrap().size, 19);
    // (Ceph RGW records the role's owner, the test user, as the object's
    // owner, so the object itself is readable by the user afterwards; the
    // write above is what the user's keys alone could not do.)

    storage.delete(&p).await.unwrap();
    admin.delete_bucket().bucket(&bucket).send().await.unwrap();
}

#[tokio::test]
async fn presigned_urls_carry_the_session_token_and_work() {
    let env = StsEnv::get();
    for (label, storage) in [
        (
            "assume-role",
            open(env.assume_role_config("sts-presign")).await,
        ),
        (
            "web-identity",
            open(env.web_identity_config("sts-presign-web", &env.shared_token_file())).await,
        ),
    ] {
        let p = path("blobs/a b+c=d@e,f.bin");
        let body = Bytes::from(format!("presigned through {label}"));
        storage
            .put(&p, body.clone(), PutOptions::default())
            .await
            .unwrap();
        let url = storage
            .download_url(&p, &DownloadUrlOptions::default())
            .await
            .unwrap()
            .expect("S3 gives download URLs");
        assert!(
            url.url.as_str().contains("X-Amz-Security-Token="),
            "{label}: {}",
            url.url
        );
        let http = reqwest::Client::new();
        let got = http.get(url.url.as_str()).send().await.unwrap();
        assert_eq!(got.status(), 200, "{label}");
        assert_eq!(got.bytes().await.unwrap(), body);

        let q = path("uploads/through url");
        let up = storage
            .upload_url(&q, &UploadUrlOptions::default())
            .await
            .unwrap()
            .expect("S3 gives upload URLs");
        assert!(up.url.as_str().contains("X-Amz-Security-Token="));
        let put = http
            .put(up.url.as_str())
            .body("via presigned PUT")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200, "{label}");
        assert_eq!(storage.get_bytes(&q).await.unwrap(), "via presigned PUT");
        storage.delete_prefix(&path("blobs")).await.unwrap();
        storage.delete_prefix(&path("uploads")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_make_one_sts_call() {
    let env = StsEnv::get();
    let storage = Arc::new(open(env.assume_role_config("sts-stampede")).await);
    assert_eq!(
        storage.credential_stats().sts_calls(),
        0,
        "no STS call before the first request"
    );
    let results = join_all((0..64).map(|i| {
        let s = storage.clone();
        tokio::spawn(async move {
            s.put(
                &path(&format!("many/{i}")),
                Bytes::from(vec![i as u8; 100]),
                PutOptions::default(),
            )
            .await
        })
    }))
    .await;
    for r in results {
        r.unwrap().unwrap();
    }
    assert_eq!(storage.credential_stats().sts_calls(), 1);
    assert_eq!(storage.delete_prefix(&path("many")).await.unwrap(), 64);
    assert_eq!(storage.credential_stats().sts_calls(), 1);
}

#[tokio::test]
async fn validate_reports_role_mode_and_expiry() {
    let env = StsEnv::get();
    let storage = open(env.assume_role_config("sts-validate")).await;
    let report = storage.validate().await;
    assert!(report.is_ok(), "{report:?}");
    let fact = |k: &str| {
        report
            .facts
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no fact {k} in {report:?}"))
    };
    assert_eq!(fact("role"), env.role_arn);
    assert_eq!(fact("sts mode"), "assume-role");
    let expiry = chrono::DateTime::parse_from_rfc3339(&fact("credential expiry")).unwrap();
    let left = expiry
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!(
        (3000..=3700).contains(&left),
        "expiry {expiry} is {left}s away, asked for 3600"
    );
    assert!(report
        .checks
        .iter()
        .any(|c| c.name == "bucket reachable" && c.status == CheckStatus::Ok));
}

#[tokio::test]
async fn unknown_role_is_named() {
    let env = StsEnv::get();
    let mut c = env.assume_role_config("sts-unknown-role");
    c.role_arn = Some("arn:aws:iam:::role/NoSuchRole".into());
    let storage = open(c).await;
    let detail = failed_check(&storage.validate().await, "assume role");
    assert!(
        detail.contains("arn:aws:iam:::role/NoSuchRole") && detail.contains("does not exist"),
        "{detail}"
    );
    assert_no_secret(&env, &detail, None);
    // A data operation fails with a credentials error saying the same.
    let err = storage
        .put(&path("x"), Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_no_secret(&env, &format!("{err:?} {}", err.chain()), None);
}

#[tokio::test]
async fn untrusted_role_is_told_apart_from_wrong_keys() {
    let env = StsEnv::get();
    // WebRole trusts only the OIDC provider, not the test user.
    let mut c = env.assume_role_config("sts-untrusted");
    c.role_arn = Some(env.web_role_arn.clone());
    let detail = failed_check(&open(c).await.validate().await, "assume role");
    assert!(
        detail.contains("trust policy does not allow this user"),
        "{detail}"
    );
    assert!(detail.contains("user keys are valid"), "{detail}");
    assert_no_secret(&env, &detail, None);

    let mut c = env.assume_role_config("sts-wrong-secret");
    let wrong = "wrong-secret-key-0000000000000000000000";
    c.source = stowage_sts::StsSource::AssumeRole {
        user_access_key: Some(env.s3.access_key.clone()),
        user_secret_key: Some(stowage_core::config::Secret::new(wrong)),
    };
    let detail = failed_check(&open(c).await.validate().await, "assume role");
    assert!(
        detail.contains("user keys themselves are rejected"),
        "{detail}"
    );
    assert!(!detail.contains(wrong), "{detail}");
    assert_no_secret(&env, &detail, None);
}

#[tokio::test]
async fn unreachable_sts_is_named() {
    let env = StsEnv::get();
    let mut c = env.assume_role_config("sts-unreachable");
    c.sts_endpoint = Some("http://127.0.0.1:9".into());
    c.s3.max_attempts = 1;
    let detail = failed_check(&open(c).await.validate().await, "assume role");
    assert!(
        detail.contains("http://127.0.0.1:9") && detail.contains("unreachable"),
        "{detail}"
    );
}

#[tokio::test]
async fn token_file_problems_are_named() {
    let env = StsEnv::get();
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.jwt");
    let detail = failed_check(
        &open(env.web_identity_config("sts-token-missing", &missing))
            .await
            .validate()
            .await,
        "assume role",
    );
    assert!(
        detail.contains("does not exist") && detail.contains("missing.jwt"),
        "{detail}"
    );

    // A directory where the file should be: unreadable.
    let detail = failed_check(
        &open(env.web_identity_config("sts-token-dir", dir.path()))
            .await
            .validate()
            .await,
        "assume role",
    );
    assert!(detail.contains("could not be read"), "{detail}");

    let expired = dir.path().join("expired.jwt");
    let token = env.mint_token("expired", -120);
    std::fs::write(&expired, &token).unwrap();
    let detail = failed_check(
        &open(env.web_identity_config("sts-token-expired", &expired))
            .await
            .validate()
            .await,
        "assume role",
    );
    assert!(detail.contains("expired at"), "{detail}");
    assert_no_secret(&env, &detail, Some(&token));

    // Signed by someone else: STS itself rejects it.
    let forged = dir.path().join("forged.jwt");
    let good = env.mint_token("forged", 600);
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[2] = parts[2].chars().rev().collect();
    let token = parts.join(".");
    std::fs::write(&forged, &token).unwrap();
    let detail = failed_check(
        &open(env.web_identity_config("sts-token-forged", &forged))
            .await
            .validate()
            .await,
        "assume role",
    );
    assert!(
        detail.contains("STS refused") && detail.contains("forged.jwt"),
        "{detail}"
    );
    assert_no_secret(&env, &detail, Some(&token));
}

#[tokio::test]
async fn token_file_is_read_again_at_every_load() {
    let env = StsEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, env.mint_token("first", 600)).unwrap();
    let storage = open(env.web_identity_config("sts-token-reread", &file)).await;
    assert!(storage.validate().await.is_ok());
    // Rotated in place to something unusable: the next load sees it.
    std::fs::write(&file, "").unwrap();
    let detail = failed_check(&storage.validate().await, "assume role");
    assert!(detail.contains("is empty"), "{detail}");
    // And to a fresh token: loads work again, no restart needed.
    std::fs::write(&file, env.mint_token("second", 600)).unwrap();
    assert!(storage.validate().await.is_ok());
}

#[tokio::test]
async fn large_assembly_and_copy_work_with_session_credentials() {
    // Ceph RGW refuses UploadPartCopy to assumed-role sessions (CopyObject
    // works): the driver streams instead, and says so once.
    let env = StsEnv::get();
    let storage = open(env.assume_role_config("sts-part-copy")).await;
    let chunk = Bytes::from(vec![5u8; 5 * 1024 * 1024]);
    let mut state = storage.start_upload().await.unwrap();
    for i in 0..2u64 {
        state = storage
            .write_chunk(
                &state,
                i * chunk.len() as u64,
                futures::stream::iter([Ok(chunk.clone())]).boxed(),
            )
            .await
            .unwrap();
    }
    let p = path("assembled/blob");
    let meta = storage
        .complete_upload(&state, &p, Default::default())
        .await
        .expect("assembly of 5 MiB chunks");
    assert_eq!(meta.size, 10 * 1024 * 1024);
    // Above the test configuration's 6 MiB multipart-copy threshold.
    let copied = storage
        .copy(&p, &path("assembled/copy"))
        .await
        .expect("large copy");
    assert_eq!(copied.size, 10 * 1024 * 1024);
    assert_eq!(
        storage.get_bytes(&path("assembled/copy")).await.unwrap(),
        storage.get_bytes(&p).await.unwrap()
    );
    storage.delete_prefix(&path("assembled")).await.unwrap();
    stowage_core::testkit::assert_left_nothing(&storage.storage).await;
}

/// A background refresh that fails inside the refresh margin (the token
/// file emptied, as a botched rotation would) keeps the still-valid session
/// in use: requests succeed and none waits for STS, STS is asked again with
/// backoff (not on every request), the failure is counted and shown in the
/// metrics.
#[tokio::test]
async fn a_failed_refresh_keeps_the_valid_session_in_use() {
    let env = StsEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, env.mint_token("blip", 600)).unwrap();
    let mut config = env.web_identity_config("sts-blip", &file);
    // The shortest session with a margin as long as the session: the margin
    // applied is a third of the session, so the background refresh starts
    // two thirds into it (40 s into Ceph RGW's 60 s sessions).
    let session = shortest_session();
    config.duration = session;
    config.refresh_margin = session;
    let storage = open(config).await;
    let p = path("blip/a");
    storage
        .put(&p, Bytes::from_static(b"one"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(storage.credential_stats().sts_calls(), 1);
    let expiry = storage
        .credential_stats()
        .last_expiry()
        .expect("session credentials expire");
    std::fs::write(&file, "").unwrap();
    // Write until a background refresh has been tried (and failed).
    let started = std::time::Instant::now();
    let limit = session - session / 3 + Duration::from_secs(10);
    while storage.credential_stats().kept_after_failure() == 0 {
        assert!(
            started.elapsed() < limit,
            "no refresh was tried within {limit:?} of a {session:?} session"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        storage
            .put(&p, Bytes::from_static(b"again"), PutOptions::default())
            .await
            .expect("the still-valid session keeps working");
    }
    let calls = storage.credential_stats().sts_calls();
    for i in 0..20 {
        storage
            .put(&p, Bytes::from(format!("write {i}")), PutOptions::default())
            .await
            .expect("the still-valid session keeps working");
    }
    assert!(
        std::time::SystemTime::now() < expiry,
        "the writes ran inside the first session"
    );
    assert!(
        storage.credential_stats().sts_calls() <= calls + 3,
        "STS is asked again with backoff, not on every request"
    );
    assert_eq!(
        storage.credential_stats().blocking_loads(),
        1,
        "no request waited for the failing refresh"
    );
    let metrics = storage.metrics();
    assert!(metrics
        .iter()
        .any(|m| m.name == "stowage_sts_kept_after_failure_total" && m.value >= 1));
    assert!(metrics
        .iter()
        .any(|m| m.name == "stowage_sts_blocking_loads_total" && m.value == 1));
    storage.delete(&p).await.unwrap();
}
