//! S3-specific behaviour against a real server: no orphaned multipart
//! uploads, server-side assembly and copy across the size limits, presigned
//! URLs fetched with a plain HTTP client, cleanup, validate's messages.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use stowage_core::{
    CompleteOptions, DownloadUrlOptions, Error, ErrorKind, PutOptions, Sha256Digest, Storage,
    StorageExt, StoragePath, UploadUrlOptions,
};
use stowage_integration::{multipart_uploads, S3Env};
use stowage_s3::S3Storage;

const MIB: usize = 1024 * 1024;

fn p(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap()
}

fn data(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<_>>(),
    )
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
async fn multipart_write_returns_etag_and_leaves_no_upload() {
    let env = S3Env::get();
    let s = env.storage("mp-etag").await;
    let body = data(12 * MIB + 7, 1);
    let chunks: Vec<_> = body
        .chunks(MIB)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let meta = s
        .put_stream(
            &p("big"),
            futures::stream::iter(chunks).boxed(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, body.len() as u64);
    let etag = meta.etag.clone().unwrap_or_default();
    assert!(
        etag.trim_matches('"').len() > 1,
        "a multipart ETag even where the server omits it on complete: {etag:?}"
    );
    assert_eq!(s.stat(&p("big")).await.unwrap().etag, meta.etag);
    assert_eq!(s.get_bytes(&p("big")).await.unwrap(), body);
    assert_no_multipart_uploads(&env, &s).await;
    s.delete_prefix(&p("big")).await.unwrap();
    s.delete(&p("big")).await.unwrap();
}

#[tokio::test]
async fn failed_multipart_write_aborts_its_upload() {
    let env = S3Env::get();
    let s = env.storage("mp-fail").await;
    let parts: Vec<stowage_core::Result<Bytes>> = vec![
        Ok(data(6 * MIB, 2)),
        Ok(data(6 * MIB, 3)),
        Err(Error::Backend {
            driver: "test",
            retryable: false,
            message: "client hung up".into(),
            operation: None,
            source: None,
        }),
    ];
    let err = s
        .put_stream(
            &p("x"),
            futures::stream::iter(parts).boxed(),
            PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client hung up"));
    assert!(!s.exists(&p("x")).await.unwrap());
    assert_no_multipart_uploads(&env, &s).await;
}

#[tokio::test]
async fn digest_mismatch_on_multipart_write_aborts_its_upload() {
    let env = S3Env::get();
    let s = env.storage("mp-digest").await;
    let body = data(11 * MIB, 4);
    let err = s
        .put_stream(
            &p("x"),
            futures::stream::iter(vec![Ok(body.clone())]).boxed(),
            PutOptions::default().with_expected_digest(Sha256Digest::of(b"other")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch);
    assert!(!s.exists(&p("x")).await.unwrap());
    assert_no_multipart_uploads(&env, &s).await;
}

#[tokio::test]
async fn dropped_multipart_write_aborts_its_upload() {
    let env = S3Env::get();
    let s = env.storage("mp-drop").await;
    let first = futures::stream::iter(vec![Ok(data(11 * MIB, 5))]);
    let stalled = first.chain(futures::stream::pending()).boxed();
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        s.put_stream(&p("x"), stalled, PutOptions::default()),
    )
    .await;
    assert!(r.is_err(), "still running when dropped");
    assert!(!s.exists(&p("x")).await.unwrap());
    assert_no_multipart_uploads(&env, &s).await;
}

/// A write dropped at any moment, CreateMultipartUpload in flight
/// included (the server made the upload, the id has not arrived), leaves
/// no multipart upload behind.
#[tokio::test]
async fn writes_dropped_at_any_moment_leave_no_upload() {
    let env = S3Env::get();
    let s = env.storage("mp-drop-any").await;
    let first = data(11 * MIB, 6);
    for delay_ms in 0..40u64 {
        let stalled = futures::stream::iter(vec![Ok(first.clone())])
            .chain(futures::stream::pending())
            .boxed();
        let key = p(&format!("x{delay_ms}"));
        let r = tokio::time::timeout(
            Duration::from_millis(delay_ms),
            s.put_stream(&key, stalled, PutOptions::default()),
        )
        .await;
        assert!(r.is_err(), "a stalled write never finishes");
    }
    assert_no_multipart_uploads(&env, &s).await;
    for delay_ms in 0..40u64 {
        let key = p(&format!("x{delay_ms}"));
        assert!(!s.exists(&key).await.unwrap(), "{key} visible");
    }
}

#[tokio::test]
async fn chunked_upload_assembles_server_side_and_splits_large_chunks() {
    let env = S3Env::get();
    let mut config = env.config("assembly");
    // Chunks above 10 MiB are copied in pieces, as chunks above S3's
    // 5 GiB part limit are.
    config.max_chunk_size = 10 * MIB as u64;
    let s = S3Storage::new(config).await.unwrap();
    assert!(s.capabilities().server_side_assembly);
    let sizes = [5 * MIB, 12 * MIB + 3, 5 * MIB, 1234];
    let mut state = s.start_upload().await.unwrap();
    let mut all = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let chunk = data(*size, 10 + i as u8);
        all.extend_from_slice(&chunk);
        state = s
            .write_chunk(
                &state,
                state.size,
                futures::stream::iter(vec![Ok(chunk)]).boxed(),
            )
            .await
            .unwrap();
    }
    let digest = Sha256Digest::of(&all);
    let meta = s
        .complete_upload(
            &state,
            &p("blobs/assembled"),
            CompleteOptions::default().with_expected_digest(digest),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, all.len() as u64);
    assert_eq!(
        s.get_bytes(&p("blobs/assembled")).await.unwrap(),
        Bytes::from(all)
    );
    let left: Vec<_> = s.list(Some(&state.area())).collect().await;
    assert!(left.is_empty(), "chunks removed");
    assert!(
        s.copies_server_side(),
        "assembled with UploadPartCopy, not by streaming the chunks back"
    );
    assert_no_multipart_uploads(&env, &s).await;
    s.delete(&p("blobs/assembled")).await.unwrap();
}

#[tokio::test]
async fn copy_above_the_threshold_is_a_multipart_copy() {
    let env = S3Env::get();
    let s = env.storage("mpcopy").await;
    assert_eq!(s.config().multipart_copy_threshold, 6 * MIB as u64);
    let body = data(13 * MIB + 11, 20);
    s.put(&p("src ü+%"), body.clone(), PutOptions::default())
        .await
        .unwrap();
    let meta = s.copy(&p("src ü+%"), &p("dst/copy")).await.unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert!(s.copies_server_side(), "copied with UploadPartCopy");
    assert_eq!(s.get_bytes(&p("dst/copy")).await.unwrap(), body);
    assert_no_multipart_uploads(&env, &s).await;
    s.delete_prefix(&p("dst")).await.unwrap();
    s.delete(&p("src ü+%")).await.unwrap();
}

#[tokio::test]
async fn presigned_urls_work_for_special_keys_with_a_plain_http_client() {
    let env = S3Env::get();
    let s = env.storage("presign").await;
    let http = reqwest::Client::new();
    for (i, key) in [
        "plain",
        "sp ace/ü ñ",
        "a+b=c,d@e~f",
        "pct%2F/x&y",
        "日本/😀.tar",
    ]
    .iter()
    .enumerate()
    {
        let path = p(key);
        let body = data(1000 + i, i as u8);
        s.put(&path, body.clone(), PutOptions::default())
            .await
            .unwrap();
        let url = s
            .download_url(&path, &DownloadUrlOptions::default())
            .await
            .unwrap()
            .expect("a URL");
        let got = http.get(&url.url).send().await.unwrap();
        assert_eq!(got.status(), 200, "GET {key:?}: {}", url.url);
        assert_eq!(got.bytes().await.unwrap(), body, "{key:?}");
        let head = s
            .download_url(&path, &DownloadUrlOptions::default().head())
            .await
            .unwrap()
            .unwrap();
        let got = http.head(&head.url).send().await.unwrap();
        assert_eq!(got.status(), 200, "HEAD {key:?}");
        assert_eq!(
            got.headers()["content-length"],
            (1000 + i).to_string().as_str()
        );
        // A tampered signature is refused.
        let tampered = url.url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
        assert_eq!(
            http.get(&tampered).send().await.unwrap().status(),
            403,
            "{key:?}"
        );
    }
    // response-content-disposition with a filename.
    let with_name = DownloadUrlOptions::default().with_query(
        "response-content-disposition",
        "attachment; filename=\"layer 1.tar\"",
    );
    let url = s
        .download_url(&p("plain"), &with_name)
        .await
        .unwrap()
        .unwrap();
    let got = http.get(&url.url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["content-disposition"],
        "attachment; filename=\"layer 1.tar\""
    );
    // Upload through a presigned PUT with its content type.
    let up = s
        .upload_url(
            &p("uploaded/ü x"),
            &UploadUrlOptions::default().with_content_type("application/octet-stream"),
        )
        .await
        .unwrap()
        .unwrap();
    let mut req = http.put(&up.url).body("via presigned PUT");
    for (n, v) in &up.headers {
        req = req.header(n, v);
    }
    let put = req.send().await.unwrap();
    assert!(put.status().is_success(), "PUT: {}", put.status());
    assert_eq!(
        s.get_bytes(&p("uploaded/ü x")).await.unwrap(),
        "via presigned PUT"
    );
    // An expired URL is refused (AWS: 403; Garage: 400).
    let short = s
        .download_url(
            &p("plain"),
            &DownloadUrlOptions::default().with_expires_in(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let status = http.get(&short.url).send().await.unwrap().status().as_u16();
    assert!(
        status == 403 || status == 400,
        "expired URL answered {status}"
    );
    assert_eq!(s.delete_prefix(&p("uploaded")).await.unwrap(), 1);
    for key in ["sp ace", "a+b=c,d@e~f", "pct%2F", "日本"] {
        s.delete_prefix(&p(key)).await.unwrap();
    }
    s.delete(&p("plain")).await.unwrap();
    s.delete(&p("a+b=c,d@e~f")).await.unwrap();
    let left: Vec<_> = s.list(None).collect().await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn cleanup_aborts_orphaned_multipart_uploads() {
    let env = S3Env::get();
    let s = env.storage("orphans").await;
    let sdk = env.sdk().await;
    let key = format!("{}orphan", prefix_of(&s));
    sdk.create_multipart_upload()
        .bucket(&env.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        multipart_uploads(&sdk, &env.bucket, &prefix_of(&s))
            .await
            .len(),
        1
    );
    let fresh = s.cleanup_uploads(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(fresh.multipart_aborted, 0, "a fresh upload is kept");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = s.cleanup_uploads(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.multipart_aborted, 1);
    assert!(multipart_uploads(&sdk, &env.bucket, &prefix_of(&s))
        .await
        .is_empty());
}

#[tokio::test]
async fn validate_tells_the_failures_apart() {
    let env = S3Env::get();
    let ok = env.storage("validate").await.validate().await;
    assert!(ok.is_ok(), "{ok:?}");

    let mut missing = env.config("validate");
    missing.bucket = "stowage-no-such-bucket-1".into();
    let r = S3Storage::new(missing).await.unwrap().validate().await;
    assert!(!r.is_ok());
    assert!(r.checks[0].detail.contains("does not exist"), "{r:?}");

    let mut wrong = env.config("validate");
    wrong.secret_key = Some(stowage_core::config::Secret::new(
        "wrong-secret-value-0000000000000000000000",
    ));
    let r = S3Storage::new(wrong).await.unwrap().validate().await;
    assert!(!r.is_ok());
    let detail = &r.checks[0].detail;
    assert!(
        detail.contains("denied") || detail.contains("credentials"),
        "{detail}"
    );
    assert!(
        !format!("{r:?}").contains("wrong-secret-value"),
        "no secret in the report"
    );
    assert!(
        !format!("{r:?}").contains(&env.secret_key),
        "no secret in the report"
    );

    // A wrong region: AWS and Garage refuse it, and the report must say
    // so; Ceph RGW accepts requests signed for any region.
    let mut elsewhere = env.config("validate");
    elsewhere.region = if env.region == "ap-southeast-2" {
        "eu-central-1".into()
    } else {
        "ap-southeast-2".into()
    };
    let r = S3Storage::new(elsewhere).await.unwrap().validate().await;
    if env.server == "rgw" {
        assert!(r.is_ok(), "RGW ignores the region: {r:?}");
    } else {
        assert!(!r.is_ok(), "{r:?}");
        assert!(r.checks[0].detail.contains("region"), "{r:?}");
    }

    let mut unreachable = env.config("validate");
    unreachable.endpoint = Some("http://127.0.0.1:9".into());
    unreachable.max_attempts = 1;
    let r = S3Storage::new(unreachable).await.unwrap().validate().await;
    assert!(!r.is_ok());
    assert!(
        r.checks[0].detail.contains("cannot reach the endpoint"),
        "{r:?}"
    );
}

#[tokio::test]
async fn errors_name_the_key_and_never_a_secret() {
    let env = S3Env::get();
    let mut wrong = env.config("secrets");
    wrong.secret_key = Some(stowage_core::config::Secret::new(
        "another-wrong-secret-000000000000000000000",
    ));
    let s = S3Storage::new(wrong).await.unwrap();
    let err = s
        .put(&p("k"), Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap_err();
    let text = format!("{} {:?} {}", err, err, err.chain());
    assert!(!text.contains("another-wrong-secret"), "{text}");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Credentials | ErrorKind::PermissionDenied
        ),
        "{text}"
    );
    assert!(err.to_string().contains("/k"), "{err}");
}

#[tokio::test]
async fn dropped_multipart_copy_aborts_its_upload() {
    let env = S3Env::get();
    let s = env.storage("copy-drop").await;
    // Above the tests' 6 MiB multipart-copy threshold: UploadPartCopy parts.
    let body = data(40 * MIB, 9);
    s.put(&p("src"), body, PutOptions::default()).await.unwrap();
    // Drop the copy as soon as it has started its multipart upload.
    let sdk = env.sdk().await;
    let (src, dst) = (p("src"), p("dst"));
    let mut copy = Box::pin(s.copy(&src, &dst));
    let started = tokio::select! {
        _ = &mut copy => false,
        _ = async {
            while multipart_uploads(&sdk, &env.bucket, &prefix_of(&s)).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } => true,
    };
    if started {
        drop(copy);
        assert!(!s.exists(&p("dst")).await.unwrap());
    }
    assert_no_multipart_uploads(&env, &s).await;
    s.delete_prefix(&p("src")).await.unwrap();
    let _ = s.delete(&p("dst")).await;
}

/// `servers/fault_proxy.py` in front of the server: answers the first
/// CompleteMultipartUpload with 200 + InternalError, as S3 sometimes does.
struct FaultProxy {
    child: std::process::Child,
    url: String,
}

impl FaultProxy {
    fn start(upstream: &str) -> Self {
        use std::io::BufRead;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/fault_proxy.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args(["--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(["--fail-complete", "1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the fault proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .expect("proxy ready line");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn complete_answered_200_with_internal_error_is_retried() {
    let env = S3Env::get();
    let proxy = FaultProxy::start(env.endpoint.as_deref().expect("an S3 endpoint"));
    let mut config = env.config("complete-retry");
    config.endpoint = Some(proxy.url.clone());
    let through_proxy = S3Storage::new(config.clone()).await.unwrap();
    let body = data(12 * MIB + 5, 30);
    let meta = through_proxy
        .put_stream(
            &p("retried"),
            futures::stream::iter(vec![Ok(body.clone())]).boxed(),
            PutOptions::default(),
        )
        .await
        .expect("the write succeeds after the retry");
    assert_eq!(meta.size, body.len() as u64);
    let stats: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("{}/__proxy/stats", proxy.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats["complete_failed"], 1, "{stats}");
    assert!(stats["complete_seen"].as_u64().unwrap() >= 2, "{stats}");
    let mut direct_config = config;
    direct_config.endpoint = env.endpoint.clone();
    let direct = S3Storage::new(direct_config).await.unwrap();
    assert_eq!(direct.get_bytes(&p("retried")).await.unwrap(), body);
    assert_no_multipart_uploads(&env, &direct).await;
    direct.delete(&p("retried")).await.unwrap();
}

// Cleanup: only the driver's own uploads, aged by their last part, one
// round at a time, going on past a failed item.

/// Starts a multipart upload of `key` with the raw client; its upload id.
async fn start_raw_upload(sdk: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    sdk.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("CreateMultipartUpload")
        .upload_id()
        .expect("an upload id")
        .to_string()
}

/// A new bucket of its own for a test; `None` (the reason printed) when
/// the credentials cannot create one.
async fn fresh_bucket(env: &S3Env, label: &str) -> Option<String> {
    let bucket = format!(
        "stowage-{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let sdk = env.sdk().await;
    let mut create = sdk.create_bucket().bucket(&bucket);
    if env.region != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    env.region.as_str(),
                ))
                .build(),
        );
    }
    match create.send().await {
        Ok(_) => Some(bucket),
        Err(e) => {
            eprintln!(
                "skipped: cannot create a bucket on {} ({})",
                env.server,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            );
            None
        }
    }
}

/// Empties and removes a bucket from [`fresh_bucket`]: its policy, its
/// multipart uploads, its objects.
async fn remove_bucket(env: &S3Env, bucket: &str) {
    let sdk = env.sdk().await;
    let _ = sdk.delete_bucket_policy().bucket(bucket).send().await;
    for (key, id) in multipart_uploads(&sdk, bucket, "").await {
        sdk.abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await
            .expect("AbortMultipartUpload");
    }
    let listed = sdk
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("ListObjectsV2");
    for object in listed.contents() {
        sdk.delete_object()
            .bucket(bucket)
            .key(object.key().unwrap_or_default())
            .send()
            .await
            .expect("DeleteObject");
    }
    if let Err(e) = sdk.delete_bucket().bucket(bucket).send().await {
        eprintln!(
            "note: bucket {bucket} left behind ({})",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        );
    }
}

/// The key of the cleanup lease of `s`.
fn lease_key(s: &S3Storage) -> String {
    format!("{}_uploads/.cleanup-lease", prefix_of(s))
}

#[tokio::test]
async fn cleanup_with_a_root_aborts_nothing_outside_it() {
    let env = S3Env::get();
    let s = env.storage("cleanup-scope").await;
    let sdk = env.sdk().await;
    let root = s.config().root.clone();
    let ours = format!("{root}/orphan");
    // Another prefix of the bucket, and one that only starts like the root.
    let foreign = [
        format!("stowage-it/other-app-{}/x", uuid::Uuid::new_v4().simple()),
        format!("{root}-sibling/x"),
    ];
    start_raw_upload(&sdk, &env.bucket, &ours).await;
    for key in &foreign {
        start_raw_upload(&sdk, &env.bucket, key).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = s.cleanup_uploads(Duration::ZERO).await.unwrap();
    assert!(!report.skipped_lease_held, "{report:?}");
    assert_eq!(report.multipart_aborted, 1, "only ours: {report:?}");
    assert!(multipart_uploads(&sdk, &env.bucket, &prefix_of(&s))
        .await
        .is_empty());
    for key in &foreign {
        let left = multipart_uploads(&sdk, &env.bucket, key).await;
        assert_eq!(left.len(), 1, "{key} survives: {left:?}");
        for (key, id) in left {
            sdk.abort_multipart_upload()
                .bucket(&env.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn cleanup_with_an_empty_root_aborts_only_uploads_under_the_uploads_area() {
    let env = S3Env::get();
    let Some(bucket) = fresh_bucket(&env, "bare-root").await else {
        return;
    };
    let mut config = env.config("bare-root");
    config.bucket = bucket.clone();
    config.root = String::new();
    let s = S3Storage::new(config).await.unwrap();
    let sdk = env.sdk().await;
    let ours = "_uploads/0123456789abcdef0123456789abcdef/000000-0123456789abcdef";
    let foreign = "other-app/x";
    start_raw_upload(&sdk, &bucket, ours).await;
    start_raw_upload(&sdk, &bucket, foreign).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = s.cleanup_uploads(Duration::ZERO).await.unwrap();
    assert_eq!(report.multipart_aborted, 1, "{report:?}");
    let left: Vec<String> = multipart_uploads(&sdk, &bucket, "")
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(left, [foreign], "another application's upload survives");
    let objects = sdk.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert!(
        objects.contents().is_empty(),
        "the lease was released: {:?}",
        objects.contents()
    );
    remove_bucket(&env, &bucket).await;
}

#[tokio::test]
async fn a_multipart_upload_started_long_ago_with_a_recent_part_is_kept() {
    let env = S3Env::get();
    let s = env.storage("active-upload").await;
    let sdk = env.sdk().await;
    let key = format!("{}active", prefix_of(&s));
    let id = start_raw_upload(&sdk, &env.bucket, &key).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    sdk.upload_part()
        .bucket(&env.bucket)
        .key(&key)
        .upload_id(&id)
        .part_number(1)
        .body(Bytes::from_static(b"a part written just now").into())
        .send()
        .await
        .unwrap();
    // Started 4 s ago, written to just now: not stale after 3 s.
    let report = s.cleanup_uploads(Duration::from_secs(3)).await.unwrap();
    assert_eq!(report.multipart_aborted, 0, "{report:?}");
    assert_eq!(report.multipart_kept_active, 1, "{report:?}");
    assert_eq!(multipart_uploads(&sdk, &env.bucket, &key).await.len(), 1);
    // Once the part is older than the threshold, the upload is stale.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let report = s.cleanup_uploads(Duration::from_secs(3)).await.unwrap();
    assert_eq!(report.multipart_aborted, 1, "{report:?}");
    assert!(multipart_uploads(&sdk, &env.bucket, &key).await.is_empty());
}

#[tokio::test]
async fn a_held_cleanup_lease_skips_the_round_and_an_expired_one_is_taken_over() {
    let env = S3Env::get();
    let s = env.storage("cleanup-lease").await;
    let sdk = env.sdk().await;
    let lease = lease_key(&s);
    let stale = format!("{}stale", prefix_of(&s));
    start_raw_upload(&sdk, &env.bucket, &stale).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let write_lease = |expires_at: &str| {
        sdk.put_object()
            .bucket(&env.bucket)
            .key(&lease)
            .body(
                Bytes::from(format!(
                    r#"{{"holder":"another-replica","expires_at":"{expires_at}"}}"#
                ))
                .into(),
            )
            .send()
    };

    // Held by another process: the round does nothing.
    write_lease("2999-01-01T00:00:00Z").await.unwrap();
    let report = s.cleanup_uploads(Duration::ZERO).await.unwrap();
    assert!(report.skipped_lease_held, "{report:?}");
    assert_eq!(report.multipart_aborted, 0, "{report:?}");
    assert_eq!(multipart_uploads(&sdk, &env.bucket, &stale).await.len(), 1);
    let held = sdk
        .get_object()
        .bucket(&env.bucket)
        .key(&lease)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(
        String::from_utf8_lossy(&held).contains("another-replica"),
        "the lease is left to its holder"
    );

    // Expired: taken over, the round runs, and the lease is released.
    write_lease("2000-01-01T00:00:00Z").await.unwrap();
    let report = s.cleanup_uploads(Duration::ZERO).await.unwrap();
    assert!(!report.skipped_lease_held, "{report:?}");
    assert_eq!(report.multipart_aborted, 1, "{report:?}");
    assert!(multipart_uploads(&sdk, &env.bucket, &stale)
        .await
        .is_empty());
    assert!(
        sdk.head_object()
            .bucket(&env.bucket)
            .key(&lease)
            .send()
            .await
            .is_err(),
        "the lease is released"
    );
}

#[tokio::test]
async fn of_two_cleanups_at_once_one_runs_and_the_other_finds_the_lease_held() {
    let env = S3Env::get();
    if env.endpoint.is_none() {
        eprintln!("skipped: the fault proxy needs an S3 endpoint (STOWAGE_S3_TEST_ENDPOINT)");
        return;
    }
    // Every request of the first process waits a second at the proxy, so
    // its round is still going when the second process starts one.
    let proxy = stowage_integration::faults::FaultProxy::in_front_of(
        &env,
        &["--stall-fraction", "1", "--stall-seconds", "1"],
    );
    let config = env.config("lease-race");
    let slow = S3Storage::new(proxy.config(&config)).await.unwrap();
    let fast = S3Storage::new(config).await.unwrap();
    let sdk = env.sdk().await;
    let lease = lease_key(&fast);
    let stale = format!("{}stale", prefix_of(&fast));
    start_raw_upload(&sdk, &env.bucket, &stale).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let first = tokio::spawn(async move { slow.cleanup_uploads(Duration::ZERO).await });
    let mut taken = false;
    for _ in 0..400 {
        if sdk
            .head_object()
            .bucket(&env.bucket)
            .key(&lease)
            .send()
            .await
            .is_ok()
        {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "the first round never wrote its lease");
    let second = fast.cleanup_uploads(Duration::ZERO).await.unwrap();
    assert!(second.skipped_lease_held, "{second:?}");
    assert_eq!(second.multipart_aborted, 0, "{second:?}");

    let first = first.await.unwrap().unwrap();
    assert!(!first.skipped_lease_held, "{first:?}");
    assert_eq!(first.multipart_aborted, 1, "{first:?}");
    assert!(proxy.stat("stalls").await > 0);
    assert!(
        sdk.head_object()
            .bucket(&env.bucket)
            .key(&lease)
            .send()
            .await
            .is_err(),
        "the lease is released"
    );
}

#[tokio::test]
async fn an_abort_the_server_refuses_is_counted_and_the_round_goes_on() {
    let env = S3Env::get();
    let Some(bucket) = fresh_bucket(&env, "refused-abort").await else {
        return;
    };
    let mut config = env.config("refused-abort");
    config.bucket = bucket.clone();
    let s = S3Storage::new(config).await.unwrap();
    let sdk = env.sdk().await;
    let root = prefix_of(&s);
    // Listed first (keys in order): the refusal comes before the success.
    let blocked = format!("{root}a-blocked");
    let free = format!("{root}b-free");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "KeepThisUpload",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:AbortMultipartUpload",
            "Resource": format!("arn:aws:s3:::{bucket}/{blocked}"),
        }],
    });
    if let Err(e) = sdk
        .put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
    {
        eprintln!(
            "skipped: {} does not take bucket policies ({})",
            env.server,
            aws_sdk_s3::error::DisplayErrorContext(&e)
        );
        remove_bucket(&env, &bucket).await;
        return;
    }
    let probe = start_raw_upload(&sdk, &bucket, &blocked).await;
    start_raw_upload(&sdk, &bucket, &blocked).await;
    start_raw_upload(&sdk, &bucket, &free).await;
    let refused = sdk
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(&blocked)
        .upload_id(&probe)
        .send()
        .await
        .is_err();
    if !refused {
        eprintln!(
            "skipped: {} does not apply a Deny policy to the bucket's owner",
            env.server
        );
        remove_bucket(&env, &bucket).await;
        return;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = s
        .cleanup_uploads(Duration::ZERO)
        .await
        .expect("a refused abort does not fail the round");
    assert_eq!(report.failures, 2, "{report:?}");
    assert_eq!(report.multipart_aborted, 1, "{report:?}");
    let left = multipart_uploads(&sdk, &bucket, &root).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|(key, _)| *key == blocked), "{left:?}");
    remove_bucket(&env, &bucket).await;
}
