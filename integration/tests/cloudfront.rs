//! CloudFrontedS3Storage end to end: signed URLs fetched through the edge
//! verifier (which checks them as CloudFront does and forwards to the S3
//! server), with a real HTTP client; fallbacks and bypasses to S3 presigned
//! URLs; `validate` catching a key id the distribution does not trust.

use std::time::Duration;

use bytes::Bytes;
use stowage_cloudfront::signer::HashAlgorithm;
use stowage_cloudfront::{CloudFrontedS3Storage, PolicyKind, Route};
use stowage_core::{
    CheckStatus, DirectUrl, DownloadUrlOptions, PutOptions, Storage, StoragePath, UploadUrlOptions,
    UrlSource,
};
use stowage_integration::cloudfront::{config, key_file, Edge, Trust};
use stowage_integration::S3Env;

const RSA_ID: &str = "K2JCJMDEHXQW5F";
const EC_ID: &str = "K3ECDSAP256KEY";
const LEGACY_ID: &str = "APKAEIBAERJR2EXAMPLE";
const CLIENT: &str = "198.51.100.7";

fn key_group_edge(env: &S3Env) -> Edge {
    Edge::start(
        env,
        Trust::KeyGroups,
        &[
            (RSA_ID, "rsa2048-public.pem"),
            (EC_ID, "ec-p256-public.pem"),
        ],
    )
}

async fn fetch(url: &str, client_ip: &str) -> (u16, Bytes, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .get(url)
        .header("x-forwarded-for", client_ip)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.bytes().await.expect("body"), headers)
}

fn options() -> DownloadUrlOptions {
    DownloadUrlOptions::default().with_client_ip(CLIENT.parse().unwrap())
}

/// The driver signing for `edge` with `key_id` and the key file `private_key`.
async fn open(
    env: &S3Env,
    label: &str,
    edge: &Edge,
    key_id: &str,
    private_key: &str,
) -> CloudFrontedS3Storage {
    CloudFrontedS3Storage::new(config(env, label, &edge.url, key_id, private_key))
        .await
        .unwrap()
}

async fn put(storage: &CloudFrontedS3Storage, path: &str, body: &'static [u8]) -> StoragePath {
    let path = StoragePath::parse(path).unwrap();
    storage
        .put(&path, Bytes::from_static(body), PutOptions::default())
        .await
        .unwrap();
    path
}

async fn url(storage: &CloudFrontedS3Storage, path: &StoragePath) -> DirectUrl {
    storage
        .download_url(path, &options())
        .await
        .unwrap()
        .expect("a URL")
}

#[tokio::test]
async fn signed_url_through_the_edge_gives_the_bytes_for_special_keys() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let storage = open(&env, "cf-special", &edge, RSA_ID, "rsa2048-pkcs1.pem").await;
    for key in [
        "blobs/a b+c=d@e,f",
        "blobs/caf\u{e9}/\u{30ec}\u{30a4}\u{30e4}",
        "blobs/100%/x~y",
        "blobs/q?a&b=c",
    ] {
        let path = put(&storage, key, b"layer bytes").await;
        let options = options().with_query(
            "response-content-disposition",
            "attachment; filename=\"a b&c.tar\"",
        );
        let signed = storage
            .download_url(&path, &options)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(signed.source, UrlSource::CdnSigned, "{key}");
        assert!(signed.fallback.is_none());
        assert!(signed.url.starts_with(&edge.url), "{}", signed.url);
        let (status, body, headers) = fetch(&signed.url, CLIENT).await;
        assert_eq!(status, 200, "{key}: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, "layer bytes", "{key}");
        assert_eq!(
            headers["content-disposition"], "attachment; filename=\"a b&c.tar\"",
            "{key}"
        );
    }
    assert_eq!(storage.route_count(Route::Signed), 4);
    // The same blob in the same expiry window is not signed again.
    let path = StoragePath::parse("blobs/a b+c=d@e,f").unwrap();
    let first = url(&storage, &path).await;
    let again = url(&storage, &path).await;
    assert_eq!(first.url, again.url);
    assert_eq!(storage.route_count(Route::Cached), 1);
    assert!(
        first.expires_at.timestamp() % 60 == 0,
        "rounded to the window"
    );
    storage
        .delete_prefix(&StoragePath::parse("blobs").unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn ecdsa_key_with_sha256_through_the_edge() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let mut c = config(&env, "cf-ecdsa", &edge.url, EC_ID, "ec-p256-sec1.pem");
    c.hash = HashAlgorithm::Sha256;
    let storage = CloudFrontedS3Storage::new(c).await.unwrap();
    let path = put(&storage, "blobs/ecdsa", b"ecdsa bytes").await;
    let signed = url(&storage, &path).await;
    assert!(
        signed.url.ends_with("&Hash-Algorithm=SHA256"),
        "{}",
        signed.url
    );
    let (status, body, _) = fetch(&signed.url, CLIENT).await;
    assert_eq!((status, &body[..]), (200, &b"ecdsa bytes"[..]));
    storage.delete(&path).await.unwrap();
}

#[tokio::test]
async fn expired_tampered_and_unknown_ids_are_refused() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let storage = open(&env, "cf-refused", &edge, RSA_ID, "rsa2048-pkcs8.pem").await;
    let path = put(&storage, "blobs/x", b"x").await;
    let unsigned = storage.unsigned_url(&path, &options());
    let signer = storage.signer().unwrap();
    let now = chrono::Utc::now().timestamp();

    let expired = signer.signed_url_canned(&unsigned, now - 5).unwrap();
    let (status, body, _) = fetch(&expired, CLIENT).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    let valid = signer.signed_url_canned(&unsigned, now + 60).unwrap();
    let tampered = valid.replace("/blobs/x?", "/blobs/y?");
    assert_eq!(fetch(&tampered, CLIENT).await.0, 403);
    assert_eq!(fetch(&valid, CLIENT).await.0, 200);

    let unknown = open(
        &env,
        "cf-unknown",
        &edge,
        "K9NOTINTHEGROUP",
        "rsa2048-pkcs8.pem",
    )
    .await;
    let path2 = put(&unknown, "blobs/x", b"x").await;
    assert_eq!(fetch(&url(&unknown, &path2).await.url, CLIENT).await.0, 403);
    storage.delete(&path).await.unwrap();
    unknown.delete(&path2).await.unwrap();
}

#[tokio::test]
async fn key_group_distribution_refuses_a_legacy_id_and_validate_catches_it() {
    let env = S3Env::get();
    let key_groups = key_group_edge(&env);
    let mut c = config(
        &env,
        "cf-legacy",
        &key_groups.url,
        LEGACY_ID,
        "rsa2048-pkcs1.pem",
    );
    c.validate_fetch = true;
    let storage = CloudFrontedS3Storage::new(c.clone()).await.unwrap();
    let path = put(&storage, "blobs/legacy", b"legacy").await;
    let signed = url(&storage, &path).await;
    assert!(signed.url.contains("Key-Pair-Id=APKAEIBAERJR2EXAMPLE"));
    assert_eq!(fetch(&signed.url, CLIENT).await.0, 403);

    let report = storage.validate().await;
    assert!(!report.is_ok(), "{report:?}");
    let fetch_check = report
        .checks
        .iter()
        .find(|c| c.name == "fetch through CloudFront")
        .expect("a fetch check");
    assert_eq!(fetch_check.status, CheckStatus::Failed);
    assert!(
        fetch_check.detail.contains("does not trust this key id")
            && fetch_check.detail.contains("K..."),
        "{}",
        fetch_check.detail
    );
    assert!(report
        .facts
        .iter()
        .any(|(k, v)| k == "signing mode" && v.starts_with("legacy_key_pair")));

    // The same key as a trusted signer of a legacy distribution works.
    let signers = Edge::start(&env, Trust::Signers, &[(LEGACY_ID, "rsa2048-public.pem")]);
    c.distribution_url = signers.url.clone();
    let legacy = CloudFrontedS3Storage::new(c).await.unwrap();
    let (status, body, _) = fetch(&url(&legacy, &path).await.url, CLIENT).await;
    assert_eq!((status, &body[..]), (200, &b"legacy"[..]));
    let report = legacy.validate().await;
    assert!(report.is_ok(), "{report:?}");
    storage.delete(&path).await.unwrap();
}

#[tokio::test]
async fn missing_key_falls_back_to_s3_and_says_why() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let mut c = config(&env, "cf-nokey", &edge.url, RSA_ID, "rsa2048-pkcs1.pem");
    c.keys[0].private_key_file = key_file("missing.pem");
    let storage = CloudFrontedS3Storage::new(c)
        .await
        .expect("starts without its key");
    let path = put(&storage, "blobs/fallback", b"via s3").await;
    for _ in 0..3 {
        let signed = url(&storage, &path).await;
        assert_eq!(signed.source, UrlSource::S3Presigned);
        let fallback = signed.fallback.expect("says why");
        assert_eq!(fallback.cause, "key_unavailable");
        assert!(
            fallback.detail.contains("missing.pem"),
            "{}",
            fallback.detail
        );
        let (status, body, _) = fetch(&signed.url, CLIENT).await;
        assert_eq!((status, &body[..]), (200, &b"via s3"[..]));
    }
    assert_eq!(storage.route_count(Route::KeyUnavailable), 3);
    let metrics = storage.metrics();
    assert!(metrics
        .iter()
        .any(|m| m.name == "stowage_cloudfront_urls_total"
            && m.labels.iter().any(|(_, v)| v == "key_unavailable")
            && m.value == 3));
    let report = storage.validate().await;
    assert!(report.is_ok(), "degraded is not failed: {report:?}");
    assert!(report
        .checks
        .iter()
        .any(|c| c.name == "signing key" && c.status == CheckStatus::Degraded));
    storage.delete(&path).await.unwrap();
}

#[tokio::test]
async fn custom_policy_restricts_to_the_client_address() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let mut c = config(&env, "cf-ip", &edge.url, RSA_ID, "rsa2048-pkcs1.pem");
    c.policy = PolicyKind::Custom;
    c.restrict_to_client_ip = true;
    let storage = CloudFrontedS3Storage::new(c).await.unwrap();
    let path = put(&storage, "blobs/ip", b"mine").await;
    let signed = url(&storage, &path).await;
    assert!(signed.url.contains("Policy="), "{}", signed.url);
    assert_eq!(fetch(&signed.url, CLIENT).await.0, 200);
    assert_eq!(fetch(&signed.url, "203.0.113.50").await.0, 403);
    storage.delete(&path).await.unwrap();
}

#[tokio::test]
async fn signed_cookies_with_a_wildcard_policy() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let storage = open(&env, "cf-cookie", &edge, RSA_ID, "rsa2048-pkcs1.pem").await;
    let a = put(&storage, "blobs/a", b"A").await;
    let b = put(&storage, "blobs/b", b"B").await;
    let base = storage.unsigned_url(&a, &options());
    let wildcard = format!("{}*", base.trim_end_matches('a'));
    let policy =
        stowage_cloudfront::signer::Policy::canned(wildcard, chrono::Utc::now().timestamp() + 60);
    let cookies = storage
        .signer()
        .unwrap()
        .signed_cookies(&policy, false)
        .unwrap();
    let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    for (path, want) in [(&a, "A"), (&b, "B")] {
        let response = reqwest::Client::new()
            .get(storage.unsigned_url(path, &options()))
            .header("cookie", header.join("; "))
            .header("x-forwarded-for", CLIENT)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.bytes().await.unwrap(), want);
    }
    let outside = storage.unsigned_url(&StoragePath::parse("other/a").unwrap(), &options());
    let response = reqwest::Client::new()
        .get(outside)
        .header("cookie", header.join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    storage
        .delete_prefix(&StoragePath::parse("blobs").unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn clients_without_address_or_inside_aws_go_straight_to_s3() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let dir = tempfile::tempdir().unwrap();
    let ranges = dir.path().join("ip-ranges.json");
    std::fs::write(
        &ranges,
        r#"{"syncToken":"1","prefixes":[{"ip_prefix":"192.0.2.0/24","region":"eu-west-1","service":"AMAZON"}],"ipv6_prefixes":[]}"#,
    )
    .unwrap();
    let mut c = config(&env, "cf-bypass", &edge.url, RSA_ID, "rsa2048-pkcs1.pem");
    c.aws_ip_ranges_file = Some(ranges);
    let storage = CloudFrontedS3Storage::new(c).await.unwrap();
    let path = put(&storage, "blobs/bypass", b"direct").await;

    let no_ip = storage
        .download_url(&path, &DownloadUrlOptions::default())
        .await
        .unwrap()
        .unwrap();
    let in_aws = storage
        .download_url(
            &path,
            &DownloadUrlOptions::default().with_client_ip("192.0.2.10".parse().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
    for direct in [&no_ip, &in_aws] {
        assert_eq!(direct.source, UrlSource::S3Presigned);
        assert!(direct.fallback.is_none(), "a bypass is not a fallback");
        let (status, body, _) = fetch(&direct.url, CLIENT).await;
        assert_eq!((status, &body[..]), (200, &b"direct"[..]));
    }
    assert_eq!(storage.route_count(Route::NoClientIp), 1);
    assert_eq!(storage.route_count(Route::ClientInAws), 1);
    assert_eq!(url(&storage, &path).await.source, UrlSource::CdnSigned);

    // Uploads always get S3 presigned PUT URLs.
    let upload = storage
        .upload_url(
            &StoragePath::parse("blobs/uploaded").unwrap(),
            &UploadUrlOptions::default().with_content_type("application/octet-stream"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(upload.source, UrlSource::S3Presigned);
    let mut put = reqwest::Client::new().put(&upload.url).body("up");
    for (n, v) in &upload.headers {
        put = put.header(n, v);
    }
    assert_eq!(put.send().await.unwrap().status().as_u16(), 200);
    storage
        .delete_prefix(&StoragePath::parse("blobs").unwrap())
        .await
        .unwrap();
}

#[test]
fn stowage_validate_reports_mode_key_type_and_fallback() {
    let env = S3Env::get();
    let edge = key_group_edge(&env);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &env.secret_key).unwrap();
    let root = format!("stowage-it/cf-cli-{}", uuid::Uuid::new_v4().simple());
    let location = |name: &str, key: &std::path::Path| {
        format!(
            "  {name}:\n    - CloudFrontedS3Storage\n    - endpoint_url: {}\n      s3_bucket: {}\n      \
             s3_region: {}\n      storage_path: /{root}\n      s3_access_key: {}\n      \
             s3_secret_key_file: {}\n      cloudfront_distribution_domain: {}\n      \
             cloudfront_key_id: {RSA_ID}\n      cloudfront_privatekey_filename: {}\n",
            env.endpoint.clone().unwrap_or_default(),
            env.bucket,
            env.region,
            env.access_key,
            secret.display(),
            edge.url,
            key.display()
        )
    };
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n{}{}",
            location("good", &key_file("rsa2048-pkcs1.pem")),
            location("nokey", &dir.path().join("missing.pem"))
        ),
    )
    .unwrap();
    let run = |name: &str| {
        std::process::Command::new(stowage_integration::stowage_binary())
            .arg("--config")
            .arg(&config)
            .args(["--location", name, "validate"])
            .output()
            .unwrap()
    };
    let good = run("good");
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&good.stderr)
    );
    for want in [
        "signing mode: key_group (auto, from the key id)",
        "key id: K2JCJMDEHXQW5F",
        "key type: RSA 2048",
        "fallback in force: none",
        "fetch through CloudFront",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let nokey = run("nokey");
    let text = String::from_utf8_lossy(&nokey.stdout);
    assert!(nokey.status.success(), "degraded, not failed:\n{text}");
    assert!(
        text.contains("degraded") && text.contains("missing.pem"),
        "{text}"
    );
    assert!(
        text.contains("fallback in force: S3 presigned URLs"),
        "{text}"
    );
}
