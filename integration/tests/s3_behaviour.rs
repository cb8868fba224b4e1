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
