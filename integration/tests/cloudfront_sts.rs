//! CloudFront over a bucket whose credentials come from STS (EKS with IRSA,
//! OpenShift with STS, behind CloudFront), against Ceph RGW's real STS and
//! the edge verifier: the conformance suite through the composition, signed
//! URLs the edge accepts, S3 fallback URLs signed by the session (they carry
//! its token, fetch the object, and never outlive it), and a session that
//! expires under a long-running driver. Also the factory's composition from
//! a Quay-format file, through the `stowage` binary.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use stowage_cloudfront::{CloudFrontConfig, CloudFrontedS3Storage};
use stowage_core::{DownloadUrlOptions, PutOptions, Storage, StoragePath, UrlSource};
use stowage_integration::cloudfront::{key_file, Edge, Trust};
use stowage_integration::sts::{shortest_session, StsEnv};
use stowage_s3::CredentialSource;
use stowage_sts::{StsConfig, StsCredentials};

const RSA_ID: &str = "K2JCJMDEHXQW5F";
const CLIENT: &str = "198.51.100.7";

fn cloudfront(sts: &StsConfig, distribution: &str, key: &str) -> CloudFrontConfig {
    let mut c = CloudFrontConfig::new(sts.s3.clone(), distribution, RSA_ID, key_file(key));
    c.validate_fetch = false;
    c
}

async fn open(
    sts: StsConfig,
    distribution: &str,
    key: &str,
) -> (CloudFrontedS3Storage, Arc<StsCredentials>) {
    let c = cloudfront(&sts, distribution, key);
    let source = Arc::new(StsCredentials::new(sts).await.expect("source"));
    let storage = CloudFrontedS3Storage::with_credential_source(c, source.clone())
        .await
        .expect("driver");
    (storage, source)
}

async fn fetch(url: &str) -> (u16, Bytes) {
    let response = reqwest::Client::new()
        .get(url)
        .header("x-forwarded-for", CLIENT)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body"))
}

fn options(lifetime: Duration) -> DownloadUrlOptions {
    DownloadUrlOptions::default()
        .with_client_ip(CLIENT.parse().unwrap())
        .with_expires_in(lifetime)
}

mod conformance {
    use super::*;
    stowage_core::conformance_tests!(|| async {
        let env = StsEnv::get();
        let sts = env.assume_role_config("cf-sts-conformance");
        Arc::new(open(sts, "http://127.0.0.1:9", "rsa2048-pkcs8.pem").await.0) as Arc<dyn Storage>
    });
}

#[tokio::test]
async fn signed_urls_pass_the_edge_and_fallback_urls_carry_the_session() {
    let env = StsEnv::get();
    let edge = Edge::start(&env.s3, Trust::KeyGroups, &[(RSA_ID, "rsa2048-public.pem")]);
    let sts = env.assume_role_config("cf-sts-edge");
    let (storage, source) = open(sts.clone(), &edge.url, "rsa2048-pkcs8.pem").await;
    let path = StoragePath::parse("blobs/over sts+cf").unwrap();
    let body = Bytes::from_static(b"written with role credentials, served by the edge");
    storage
        .put(&path, body.clone(), PutOptions::default())
        .await
        .expect("put with the session's credentials");
    assert_eq!(source.stats().sts_calls(), 1, "one AssumeRole for the put");

    let signed = storage
        .download_url(&path, &options(Duration::from_secs(600)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signed.source, UrlSource::CdnSigned);
    assert_eq!(fetch(&signed.url).await, (200, body.clone()));

    // A key the driver cannot load: S3 presigned URLs signed by the
    // session, which say why and carry its token.
    let (fallback_driver, _) = open(sts, &edge.url, "missing-key.pem").await;
    let url = fallback_driver
        .download_url(&path, &options(Duration::from_secs(600)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(url.source, UrlSource::S3Presigned);
    assert!(url.fallback.is_some(), "the fallback says why");
    assert!(
        url.url.contains("X-Amz-Security-Token="),
        "a URL signed by the session carries its token: {}",
        url.url
    );
    assert_eq!(fetch(&url.url).await, (200, body));
    storage.delete(&path).await.unwrap();
}

/// Sessions of the server's shortest length: S3 URLs asked for 20 minutes
/// say (and get) the session's end, and the driver keeps serving after the
/// first session ended.
#[tokio::test]
async fn urls_never_outlive_the_session_and_the_driver_outlives_it() {
    let env = StsEnv::get();
    let edge = Edge::start(&env.s3, Trust::KeyGroups, &[(RSA_ID, "rsa2048-public.pem")]);
    let mut sts = env.assume_role_config("cf-sts-expiry");
    sts.duration = shortest_session();
    sts.refresh_margin = Duration::from_secs(20);
    let (storage, source) = open(sts, &edge.url, "missing-key.pem").await;
    let path = StoragePath::parse("blobs/short-session").unwrap();
    let body = Bytes::from_static(b"short sessions");
    storage
        .put(&path, body.clone(), PutOptions::default())
        .await
        .unwrap();
    let session_end = source.expiry().expect("session credentials expire");
    let url = storage
        .download_url(&path, &options(Duration::from_secs(20 * 60)))
        .await
        .unwrap()
        .unwrap();
    let promised = SystemTime::from(url.expires_at);
    assert!(
        promised <= session_end + Duration::from_secs(1),
        "URL promised until {:?}, the session ends at {session_end:?}",
        url.expires_at
    );
    assert!(url.url.contains("X-Amz-Expires="), "{}", url.url);
    let expires: u64 = url
        .url
        .split("X-Amz-Expires=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .and_then(|s| s.parse().ok())
        .expect("X-Amz-Expires value");
    assert!(expires <= shortest_session().as_secs(), "{expires}");
    assert_eq!(fetch(&url.url).await, (200, body.clone()));

    // Past the first session's end the driver still reads, writes and
    // hands out working URLs, on a new session.
    let wait = session_end
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        + Duration::from_secs(3);
    tokio::time::sleep(wait).await;
    storage
        .put(&path, body.clone(), PutOptions::default())
        .await
        .expect("a put after the first session ended");
    assert!(
        source.stats().sts_calls() >= 2,
        "a second session was assumed"
    );
    assert!(source.expiry().unwrap() > session_end);
    let url = storage
        .download_url(&path, &options(Duration::from_secs(600)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetch(&url.url).await, (200, body));
    storage.delete(&path).await.unwrap();
}

/// The factory builds CloudFront over STS from a Quay-format location with
/// STS keys: `validate` assumes the role, then checks the bucket with it.
#[test]
fn a_cloudfront_location_with_sts_keys_validates_through_the_binary() {
    let env = StsEnv::get();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(key_file("rsa2048-pkcs8.pem"), dir.path().join("cf.pem")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  cf:\n    - CloudFrontedS3Storage\n    - cloudfront_distribution_domain: http://127.0.0.1:9\n      cloudfront_key_id: {RSA_ID}\n      cloudfront_privatekey_filename: {}\n      cloudfront_validate_fetch: false\n      endpoint_url: {}\n      s3_bucket: {}\n      s3_region: {}\n      storage_path: /stowage-it/cf-sts-cli\n      sts_role_arn: {}\n      sts_user_access_key: {}\n      sts_user_secret_key_env: CF_STS_SECRET\n",
            dir.path().join("cf.pem").display(),
            env.endpoint,
            env.s3.bucket,
            env.s3.region,
            env.role_arn,
            env.s3.access_key,
        ),
    )
    .unwrap();
    let out = std::process::Command::new(stowage_integration::stowage_binary())
        .arg("--config")
        .arg(&config)
        .arg("validate")
        .env("CF_STS_SECRET", &env.s3.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(CloudFrontedS3Storage, driver cloudfront): ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("role: {}", env.role_arn)),
        "{stdout}"
    );
    assert!(stdout.contains("assume role"), "{stdout}");
    assert!(stdout.contains("bucket reachable"), "{stdout}");
    assert!(!stdout.contains(&env.s3.secret_key) && !stderr.contains(&env.s3.secret_key));
}
