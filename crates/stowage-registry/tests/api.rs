//! The distribution API in process (tower's `oneshot`), on the in-memory
//! local store: uploads (monolithic, chunked, out of order, wrong digest,
//! cancel, resume after a restart), mounts, manifests, tags, errors.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use stowage::{Sha256Digest, Storage, StorageExt, StoragePath};
use stowage_registry::{Registry, UploadStore, OCI_MANIFEST};
use tower::ServiceExt;

struct Api {
    storage: Arc<dyn Storage>,
    state: tempfile::TempDir,
    registry: Arc<Registry>,
}

impl Api {
    fn new() -> Self {
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let registry = Arc::new(
            Registry::new(storage.clone(), UploadStore::open(state.path()).unwrap())
                .with_deletes(true),
        );
        Self {
            storage,
            state,
            registry,
        }
    }

    /// A new registry process over the same storage and upload records.
    fn restarted(&self) -> Arc<Registry> {
        Arc::new(Registry::new(
            self.storage.clone(),
            UploadStore::open(self.state.path()).unwrap(),
        ))
    }

    async fn send(&self, request: Request<Body>) -> (Response<Body>, Vec<u8>) {
        send_to(&self.registry, request).await
    }

    /// A request without a body.
    async fn call(&self, method: &str, uri: impl AsRef<str>) -> (Response<Body>, Vec<u8>) {
        self.send(req(method, uri.as_ref(), Body::empty())).await
    }
}

async fn send_to(registry: &Arc<Registry>, request: Request<Body>) -> (Response<Body>, Vec<u8>) {
    let response = stowage_registry::router(registry.clone())
        .oneshot(request)
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, Body::empty()), bytes)
}

fn req(method: &str, uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap()
}

fn header(r: &Response<Body>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

async fn push_blob(api: &Api, repo: &str, data: &[u8]) -> Sha256Digest {
    let digest = Sha256Digest::of(data);
    let (r, _) = api
        .send(req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            data.to_vec(),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), digest.to_string());
    digest
}

/// `PUT` of an OCI manifest.
fn manifest_put(uri: impl AsRef<str>, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method("PUT")
        .uri(uri.as_ref())
        .header("content-type", OCI_MANIFEST)
        .body(body.into())
        .unwrap()
}

fn manifest(config: &Sha256Digest, layers: &[(&Sha256Digest, usize)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.to_string(), "size": 2},
        "layers": layers.iter().map(|(d, s)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[tokio::test]
async fn base_endpoint_answers() {
    let api = Api::new();
    let (r, body) = api.call("GET", "/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, b"{}");
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(header(&r, "x-request-id").len(), 32);
}

#[tokio::test]
async fn chunked_upload_with_an_out_of_order_chunk_then_pull_with_range() {
    let api = Api::new();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Sha256Digest::of(&data);
    let (r, _) = api.call("POST", "/v2/lib/app/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-0");
    let location = header(&r, "location");
    assert!(location.starts_with("/v2/lib/app/blobs/uploads/"));

    let patch = |range: String, chunk: Vec<u8>| {
        Request::builder()
            .method("PATCH")
            .uri(&location)
            .header("content-range", range)
            .body(Body::from(chunk))
            .unwrap()
    };
    let (r, _) = api
        .send(patch("0-99999".into(), data[..100_000].to_vec()))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-99999");
    // Out of order: 416 with the range received so far.
    let (r, body) = api
        .send(patch(
            "150000-199999".into(),
            data[150_000..200_000].to_vec(),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range"), "0-99999");
    assert_eq!(error_code(&body), "RANGE_INVALID");
    let (r, _) = api
        .send(patch(
            "100000-199999".into(),
            data[100_000..200_000].to_vec(),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (r, _) = api.call("GET", &location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-199999");
    // The last chunk comes with the PUT.
    let (r, _) = api
        .send(req(
            "PUT",
            &format!("{location}?digest={digest}"),
            data[200_000..].to_vec(),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/lib/app/blobs/{digest}")
    );

    let (r, body) = api
        .call("GET", &format!("/v2/lib/app/blobs/{digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, data);
    let ranged = Request::builder()
        .uri(format!("/v2/lib/app/blobs/{digest}"))
        .header("range", "bytes=10-19")
        .body(Body::empty())
        .unwrap();
    let (r, body) = api.send(ranged).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 10-19/300000");
    assert_eq!(body, &data[10..20]);
    // A range past the end: 416 naming the size.
    let past_end = |repo: &str| {
        Request::builder()
            .uri(format!("/v2/{repo}/blobs/{digest}"))
            .header("range", "bytes=400000-")
            .body(Body::empty())
            .unwrap()
    };
    let (r, body) = api.send(past_end("lib/app")).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), "bytes */300000");
    assert_eq!(error_code(&body), "RANGE_INVALID");
    // Another repository cannot read the blob, nor learn its size through
    // a bad range (the link check and the read run together).
    for request in [
        req(
            "GET",
            &format!("/v2/other/app/blobs/{digest}"),
            Body::empty(),
        ),
        req(
            "HEAD",
            &format!("/v2/other/app/blobs/{digest}"),
            Body::empty(),
        ),
        past_end("other/app"),
    ] {
        let method = request.method().clone();
        let (r, body) = api.send(request).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method}");
        assert!(r.headers().get("content-range").is_none(), "{method}");
        if method == "GET" {
            assert_eq!(error_code(&body), "BLOB_UNKNOWN");
        }
    }
    // No temporary data left.
    assert!(api
        .storage
        .list(Some(&StoragePath::parse("_uploads").unwrap()))
        .next_item()
        .await
        .is_none());
}

trait NextItem {
    async fn next_item(self) -> Option<stowage::ObjectMeta>;
}

impl NextItem for stowage::ListStream<'_> {
    async fn next_item(mut self) -> Option<stowage::ObjectMeta> {
        use futures::StreamExt;
        self.next().await.map(|r| r.unwrap())
    }
}

#[tokio::test]
async fn wrong_digest_stores_nothing() {
    let api = Api::new();
    let wrong = Sha256Digest::of(b"something else");
    let (r, body) = api
        .send(req(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
            b"actual".to_vec(),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");

    let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
    let location = header(&r, "location");
    api.send(req("PATCH", &location, b"actual".to_vec())).await;
    let (r, body) = api.call("PUT", &format!("{location}?digest={wrong}")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");
    for digest in [wrong, Sha256Digest::of(b"actual")] {
        let (r, _) = api.call("HEAD", &format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(!api
            .storage
            .exists(&stowage_registry::layout::blob(digest))
            .await
            .unwrap());
    }
    let (r, body) = api.call("GET", &location).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the upload was cancelled"
    );
    assert_eq!(error_code(&body), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_survives_a_restart_and_cancel_removes_it() {
    let api = Api::new();
    let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
    let location = header(&r, "location");
    api.send(req("PATCH", &location, b"first half, ".to_vec()))
        .await;
    let restarted = api.restarted();
    let (r, _) = send_to(&restarted, req("PATCH", &location, b"second half".to_vec())).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let digest = Sha256Digest::of(b"first half, second half");
    let (r, _) = send_to(
        &restarted,
        req("PUT", &format!("{location}?digest={digest}"), Body::empty()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
    let location = header(&r, "location");
    api.send(req("PATCH", &location, b"doomed".to_vec())).await;
    let (r, _) = api.call("DELETE", &location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (r, _) = api.call("GET", &location).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An upload of one repository is unknown to another.
    let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
    let other = header(&r, "location").replace("/v2/app/", "/v2/other/");
    let (r, _) = api.call("GET", &other).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn manifests_tags_mount_and_delete() {
    let api = Api::new();
    let config = push_blob(&api, "src/app", b"{}").await;
    let layer = push_blob(&api, "src/app", b"layer").await;
    let body = manifest(&config, &[(&layer, 5)]);
    let digest = Sha256Digest::of(&body);

    // A manifest whose blobs the repository lacks is refused.
    let (r, resp) = api
        .send(manifest_put("/v2/dst/app/manifests/v1", body.clone()))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&resp), "MANIFEST_BLOB_UNKNOWN");

    // Mount them from the source repository.
    for blob in [&config, &layer] {
        let (r, _) = api
            .call(
                "POST",
                &format!("/v2/dst/app/blobs/uploads/?mount={blob}&from=src/app"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Mounting from a repository that lacks the blob starts an upload.
    let (r, _) = api
        .call(
            "POST",
            &format!("/v2/dst/app/blobs/uploads/?mount={layer}&from=nowhere"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    for tag in ["v1", "v2", "latest"] {
        let (r, _) = api
            .send(manifest_put(
                format!("/v2/dst/app/manifests/{tag}"),
                body.clone(),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "docker-content-digest"), digest.to_string());
    }
    for reference in ["v1".to_string(), digest.to_string()] {
        let (r, got) = api
            .call("GET", &format!("/v2/dst/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(got, body);
    }
    let (r, got) = api.call("HEAD", "/v2/dst/app/manifests/v2").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(got.is_empty());
    assert_eq!(header(&r, "content-length"), body.len().to_string());

    // Tag listing with paging.
    let (r, got) = api.call("GET", "/v2/dst/app/tags/list?n=2").await;
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["tags"], json!(["latest", "v1"]));
    assert_eq!(
        header(&r, "link"),
        "</v2/dst/app/tags/list?n=2&last=v1>; rel=\"next\""
    );
    let (_, got) = api.call("GET", "/v2/dst/app/tags/list?n=2&last=v1").await;
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["tags"], json!(["v2"]));
    let (r, got) = api.call("GET", "/v2/nothing/tags/list").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&got), "NAME_UNKNOWN");

    // Delete a tag, then the manifest with its remaining tags.
    let (r, _) = api.call("DELETE", "/v2/dst/app/manifests/v2").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (r, _) = api
        .call("DELETE", &format!("/v2/dst/app/manifests/{digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for reference in ["v1", "latest"] {
        let (r, got) = api
            .call("GET", &format!("/v2/dst/app/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(&got), "MANIFEST_UNKNOWN");
    }
    // The blob stays (another manifest may use it).
    assert!(api
        .storage
        .get_bytes(&stowage_registry::layout::blob(layer))
        .await
        .is_ok());
}

#[tokio::test]
async fn bad_input_gets_spec_errors() {
    let api = Api::new();
    let cases = [
        (
            "GET",
            "/v2/UPPER/manifests/latest",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/app/blobs/sha256:short",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/app/manifests/latest",
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            "/v2/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        ),
        (
            "PATCH",
            "/v2/app/blobs/uploads/00000000000000000000000000000000",
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
    ];
    for (method, uri, status, code) in cases {
        let (r, body) = api.call(method, uri).await;
        assert_eq!(r.status(), status, "{method} {uri}");
        assert_eq!(error_code(&body), code, "{method} {uri}");
    }
    let (r, body) = api
        .send(manifest_put("/v2/app/manifests/latest", "not json"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "MANIFEST_INVALID");
    let (r, _) = api.call("GET", "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests() {
    let api = Api::new();
    api.call("GET", "/v2/").await;
    api.call("GET", "/v2/app/manifests/x").await;
    let (_, body) = api.call("GET", "/metrics").await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("stowage_registry_requests_total{method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("stowage_registry_requests_total{method=\"GET\",status=\"404\"} 1"));
}

/// A storage that fails (an S3 endpoint nobody listens on) is a server
/// error, never "unknown": a client must not conclude a blob is missing,
/// nor a manifest's blobs, when storage could not be asked.
#[tokio::test]
async fn storage_failures_are_not_reported_as_unknown() {
    let text = "DISTRIBUTED_STORAGE_CONFIG:\n  down:\n    - S3Storage\n    - endpoint_url: http://127.0.0.1:9\n      s3_bucket: registry-test\n      s3_region: us-east-1\n      s3_access_key: AKIDEXAMPLE\n      s3_secret_key: example-secret\n      s3_max_attempts: 1\n";
    let config = stowage::StowageConfig::parse(text).unwrap();
    let storage = stowage::open(config.location(None).unwrap()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let registry = Arc::new(
        Registry::new(storage, UploadStore::open(state.path()).unwrap()).without_redirects(),
    );
    let digest = Sha256Digest::of(b"layer");
    let config_digest = Sha256Digest::of(b"{}");
    for request in [
        req("GET", &format!("/v2/lib/app/blobs/{digest}"), Body::empty()),
        manifest_put(
            "/v2/lib/app/manifests/v1",
            manifest(&config_digest, &[(&digest, 5)]),
        ),
    ] {
        let what = format!("{} {}", request.method(), request.uri());
        let (r, body) = send_to(&registry, request).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{what}");
        assert_eq!(error_code(&body), "UNKNOWN", "{what}");
    }
    let (r, _) = send_to(
        &registry,
        req(
            "HEAD",
            &format!("/v2/lib/app/blobs/{digest}"),
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// Hostile or careless clients: made-up methods, server errors, huge
/// ranges, spoofed client addresses, silent clients, oversized uploads;
/// and the probes.
mod hostile_clients {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use axum::extract::ConnectInfo;
    use futures::StreamExt;
    use stowage::local::LocalStorage;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A registry on an S3 endpoint nobody listens on, and its state dir.
    async fn unreachable_s3() -> (Arc<Registry>, tempfile::TempDir) {
        let text = "DISTRIBUTED_STORAGE_CONFIG:\n  down:\n    - S3Storage\n    - endpoint_url: http://127.0.0.1:9\n      s3_bucket: registry-test\n      s3_region: us-east-1\n      s3_access_key: AKIDEXAMPLE\n      s3_secret_key: example-secret\n      s3_max_attempts: 1\n      storage_path: /secret-prefix\n";
        let config = stowage::StowageConfig::parse(text).unwrap();
        let storage = stowage::open(config.location(None).unwrap()).await.unwrap();
        let state = tempfile::tempdir().unwrap();
        let registry = Arc::new(
            Registry::new(storage, UploadStore::open(state.path()).unwrap()).without_redirects(),
        );
        (registry, state)
    }

    fn registry_on(storage: Arc<dyn Storage>, state: &tempfile::TempDir) -> Registry {
        Registry::new(storage, UploadStore::open(state.path()).unwrap())
    }

    #[tokio::test]
    async fn made_up_methods_count_as_one_other_series() {
        let api = Api::new();
        for method in ["FOO", "BAR", "PROPFIND", "BREW", "get"] {
            let (r, _) = api.call(method, "/v2/").await;
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        }
        api.call("GET", "/v2/").await;
        let (_, body) = api.call("GET", "/metrics").await;
        let text = String::from_utf8(body).unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("stowage_registry_requests_total{"))
            .collect();
        assert_eq!(
            series,
            [
                "stowage_registry_requests_total{method=\"GET\",status=\"200\"} 1",
                "stowage_registry_requests_total{method=\"OTHER\",status=\"405\"} 5",
            ],
            "{text}"
        );
    }

    /// A 500 tells the client nothing of the storage (bucket, endpoint,
    /// prefix, keys, credentials), only a generic message with the request
    /// id, which is also the `X-Request-Id` header.
    #[tokio::test]
    async fn server_errors_hide_storage_details_and_name_the_request_id() {
        let (registry, _state) = unreachable_s3().await;
        let digest = Sha256Digest::of(b"layer");
        let config_digest = Sha256Digest::of(b"{}");
        for request in [
            req("GET", &format!("/v2/lib/app/blobs/{digest}"), Body::empty()),
            req("GET", "/v2/lib/app/manifests/v1", Body::empty()),
            req("GET", "/v2/lib/app/tags/list", Body::empty()),
            manifest_put(
                "/v2/lib/app/manifests/v1",
                manifest(&config_digest, &[(&digest, 5)]),
            ),
        ] {
            let what = format!("{} {}", request.method(), request.uri());
            let (r, body) = send_to(&registry, request).await;
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{what}");
            assert_eq!(error_code(&body), "UNKNOWN", "{what}");
            let id = header(&r, "x-request-id");
            assert_eq!(id.len(), 32, "{what}");
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains(&id), "{what}: {text}");
            for secret in [
                "registry-test",
                "127.0.0.1",
                "secret-prefix",
                "AKIDEXAMPLE",
                "example-secret",
                "blobs/",
                "repositories/",
                "_manifests",
                "sha256",
            ] {
                assert!(!text.contains(secret), "{what}: {secret} in {text}");
            }
        }
        // Each request has its own id.
        let (a, _) = send_to(
            &registry,
            req("GET", "/v2/lib/app/tags/list", Body::empty()),
        )
        .await;
        let (b, _) = send_to(
            &registry,
            req("GET", "/v2/lib/app/tags/list", Body::empty()),
        )
        .await;
        assert_ne!(header(&a, "x-request-id"), header(&b, "x-request-id"));
        // Client errors keep their useful messages.
        let (r, body) = send_to(&registry, req("GET", "/v2/UPPER/tags/list", Body::empty())).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("UPPER"));
    }

    /// `Range: bytes=0-18446744073709551615` and friends: a clamped 206 or
    /// a 416, never a panic.
    #[tokio::test]
    async fn huge_ranges_are_clamped_or_refused_never_a_panic() {
        let api = Api::new();
        let data = b"0123456789";
        let digest = push_blob(&api, "app", data).await;
        let ranged = |range: &str| {
            Request::builder()
                .uri(format!("/v2/app/blobs/{digest}"))
                .header("range", range)
                .body(Body::empty())
                .unwrap()
        };
        for (range, content_range, bytes) in [
            ("bytes=0-18446744073709551615", "bytes 0-9/10", &data[..]),
            ("bytes=3-18446744073709551615", "bytes 3-9/10", &data[3..]),
            ("bytes=0-18446744073709551614", "bytes 0-9/10", &data[..]),
            (
                "bytes=3-99999999999999999999999999",
                "bytes 3-9/10",
                &data[3..],
            ),
            ("bytes=-18446744073709551615", "bytes 0-9/10", &data[..]),
            (
                "bytes=-99999999999999999999999999",
                "bytes 0-9/10",
                &data[..],
            ),
            ("bytes=8-100", "bytes 8-9/10", &data[8..]),
        ] {
            let (r, body) = api.send(ranged(range)).await;
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(header(&r, "content-range"), content_range, "{range}");
            assert_eq!(body, bytes, "{range}");
        }
        for range in [
            "bytes=18446744073709551615-",
            "bytes=18446744073709551615-18446744073709551615",
            "bytes=99999999999999999999999999-",
            "bytes=18446744073709551615-0",
            "bytes=+1-2",
            "bytes=x-y",
            "bytes=-",
        ] {
            let (r, body) = api.send(ranged(range)).await;
            assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(error_code(&body), "RANGE_INVALID", "{range}");
        }
        // A unit other than bytes is ignored (the whole blob, 200); the
        // unit's case does not matter.
        let (r, body) = api.send(ranged("items=0-1")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, data);
        let (r, body) = api.send(ranged("BYTES=0-1")).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, &data[..2]);
        // An empty blob: `bytes=0-` is all of it (a 200: no 206 can name
        // an empty range); any other range is unsatisfiable.
        let empty = push_blob(&api, "app", b"").await;
        let ranged_empty = |range: &str| {
            Request::builder()
                .uri(format!("/v2/app/blobs/{empty}"))
                .header("range", range)
                .body(Body::empty())
                .unwrap()
        };
        let (r, body) = api.send(ranged_empty("bytes=0-")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-length"), "0");
        assert!(r.headers().get("content-range").is_none());
        assert!(body.is_empty());
        for range in ["bytes=0-0", "bytes=-1", "bytes=1-"] {
            let (r, _) = api.send(ranged_empty(range)).await;
            assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(header(&r, "content-range"), "bytes */0", "{range}");
        }
        // Content-Range on a chunk: huge and garbage positions.
        let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
        let location = header(&r, "location");
        let patch = |range: &str, chunk: &'static [u8]| {
            Request::builder()
                .method("PATCH")
                .uri(&location)
                .header("content-range", range)
                .body(Body::from(chunk))
                .unwrap()
        };
        for range in [
            "18446744073709551616-18446744073709551617",
            "0-18446744073709551616",
            "5-1",
            "a-b",
        ] {
            let (r, body) = api.send(patch(range, b"abc")).await;
            assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert!(
                String::from_utf8_lossy(&body).contains("Content-Range"),
                "{range}"
            );
        }
        let (r, _) = api
            .send(patch("18446744073709551615-18446744073709551615", b"abc"))
            .await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&r, "range"), "0-0");
        let (r, _) = api.send(patch("0-18446744073709551615", b"abc")).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), "0-2");
    }

    /// Local storage whose direct download URLs name the client address
    /// they were asked for, so a test sees which address the registry used.
    #[derive(Debug)]
    struct UrlsNamingClients(LocalStorage);

    impl stowage::forward::Wraps for UrlsNamingClients {
        type Inner = LocalStorage;
        fn wrapped(&self) -> &LocalStorage {
            &self.0
        }
    }

    stowage::forward_storage! {
        impl Storage for UrlsNamingClients;
        forward [get put_stream put stat delete delete_prefix list list_page copy upload_url
                 start_upload write_chunk complete_upload abort_upload cleanup_uploads
                 validate metrics];

        fn driver(&self) -> &'static str {
            "urls-naming-clients"
        }

        fn capabilities(&self) -> stowage::Capabilities {
            self.0.capabilities().with_direct_urls(true)
        }

        async fn download_url(
            &self,
            path: &StoragePath,
            options: &stowage::DownloadUrlOptions,
        ) -> stowage::Result<Option<stowage::DirectUrl>> {
            let client = options
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "none".to_string());
            Ok(Some(stowage::DirectUrl::new(
                format!("https://cdn.example/{path}?client={client}"),
                stowage::UrlMethod::Get,
                chrono::Utc::now() + chrono::Duration::minutes(10),
                stowage::UrlSource::S3Presigned,
            )))
        }
    }

    /// Local storage whose reads panic (a bug in a driver, as far as the
    /// registry can tell), with a message naming a bucket and a key.
    #[derive(Debug)]
    struct PanickingReads(LocalStorage);

    impl stowage::forward::Wraps for PanickingReads {
        type Inner = LocalStorage;
        fn wrapped(&self) -> &LocalStorage {
            &self.0
        }
    }

    stowage::forward_storage! {
        impl Storage for PanickingReads;
        forward [capabilities put_stream put stat delete delete_prefix list list_page copy
                 upload_url download_url start_upload write_chunk complete_upload abort_upload
                 cleanup_uploads validate metrics];

        fn driver(&self) -> &'static str {
            "panicking-reads"
        }

        async fn get(
            &self,
            path: &StoragePath,
            _options: stowage::GetOptions,
        ) -> stowage::Result<stowage::GetResult> {
            panic!("s3://secret-bucket/{path} exploded");
        }
    }

    /// A manifest past the 4 MiB limit is a 413 `SIZE_INVALID`, as the
    /// distribution spec asks, one whose body breaks off a 400, and
    /// nothing is stored under the tag either way.
    #[tokio::test]
    async fn an_oversized_manifest_is_a_413() {
        let api = Api::new();
        let mut big = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
        big.extend_from_slice(br#""}}"#);
        let (r, body) = api.send(manifest_put("/v2/app/manifests/big", big)).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(&body), "SIZE_INVALID");
        let (r, _) = api.call("GET", "/v2/app/manifests/big").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // A manifest body that breaks off: 400, nothing stored.
        let broken = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"{\"schemaVersion\":2,")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            )),
        ]);
        let (r, body) = api
            .send(manifest_put(
                "/v2/app/manifests/cut",
                Body::from_stream(broken),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "MANIFEST_INVALID");
        let (r, _) = api.call("GET", "/v2/app/manifests/cut").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    /// A PATCH whose body breaks off is the client's failure: 400
    /// `BLOB_UPLOAD_INVALID`, nothing of the chunk kept, and the upload
    /// resumes from where it was.
    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_400_and_the_upload_resumes() {
        let api = Api::new();
        let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = header(&r, "location");
        let broken = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"first half")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            )),
        ]);
        let (r, body) = api
            .send(req("PATCH", &location, Body::from_stream(broken)))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "BLOB_UPLOAD_INVALID");
        let (r, _) = api.call("GET", &location).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&r, "range"), "0-0");
        let data = b"the whole layer";
        let digest = Sha256Digest::of(data);
        let (r, _) = api.send(req("PATCH", &location, data.to_vec())).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = header(&r, "location");
        let sep = if location.contains('?') { '&' } else { '?' };
        let (r, _) = api
            .call("PUT", format!("{location}{sep}digest={digest}"))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    /// A handler that panics answers a generic 500 naming the request id
    /// (counted like any other answer), and the registry goes on serving.
    #[tokio::test]
    async fn a_panicking_handler_answers_a_generic_500() {
        let storage: Arc<dyn Storage> = Arc::new(PanickingReads(LocalStorage::in_memory()));
        let state = tempfile::tempdir().unwrap();
        let registry = Arc::new(registry_on(storage, &state).without_redirects());
        let data = b"layer bytes";
        let digest = Sha256Digest::of(data);
        let (r, _) = send_to(
            &registry,
            req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
                data.to_vec(),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        for _ in 0..2 {
            let (r, body) = send_to(
                &registry,
                req("GET", &format!("/v2/app/blobs/{digest}"), Body::empty()),
            )
            .await;
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(error_code(&body), "UNKNOWN");
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains(&header(&r, "x-request-id")), "{text}");
            assert!(!text.contains("secret-bucket"), "{text}");
            assert!(!text.contains("exploded"), "{text}");
        }
        let (r, _) = send_to(
            &registry,
            req("HEAD", &format!("/v2/app/blobs/{digest}"), Body::empty()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let (_, body) = send_to(&registry, req("GET", "/metrics", Body::empty())).await;
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("stowage_registry_requests_total{method=\"GET\",status=\"500\"} 2"),
            "{text}"
        );
    }

    /// `X-Forwarded-For` counts only from a trusted proxy (a spoofed header
    /// from anyone else is ignored), and IPv4-mapped addresses reach the
    /// storage's URL policy in their IPv4 form.
    #[tokio::test]
    async fn client_addresses_from_trusted_proxies_only_and_canonical() {
        let storage: Arc<dyn Storage> = Arc::new(UrlsNamingClients(LocalStorage::in_memory()));
        let state = tempfile::tempdir().unwrap();
        let registry = Arc::new(registry_on(storage, &state).with_trusted_proxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]));
        let data = b"layer bytes";
        let digest = Sha256Digest::of(data);
        let (r, _) = send_to(
            &registry,
            req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
                data.to_vec(),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let get = |peer: &str, xff: Option<&str>| {
            let peer: std::net::IpAddr = peer.parse().unwrap();
            let mut builder = Request::builder()
                .uri(format!("/v2/app/blobs/{digest}"))
                .extension(ConnectInfo(SocketAddr::new(peer, 40000)));
            if let Some(xff) = xff {
                builder = builder.header("x-forwarded-for", xff);
            }
            builder.body(Body::empty()).unwrap()
        };
        for (peer, xff, client) in [
            // Spoofed by a client that is not a proxy: ignored.
            ("203.0.113.5", Some("198.51.100.7"), "203.0.113.5"),
            ("::ffff:203.0.113.5", Some("198.51.100.7"), "203.0.113.5"),
            // IPv4 clients on a dual-stack listener.
            ("::ffff:203.0.113.5", None, "203.0.113.5"),
            // Through trusted proxies: the right-most untrusted address.
            (
                "10.1.2.3",
                Some("1.1.1.1, 198.51.100.7, 10.9.9.9"),
                "198.51.100.7",
            ),
            (
                "::ffff:10.1.2.3",
                Some("::ffff:198.51.100.9"),
                "198.51.100.9",
            ),
            ("2001:db8::1", Some("2001:db9::7"), "2001:db9::7"),
            ("10.1.2.3", None, "10.1.2.3"),
        ] {
            let (r, _) = send_to(&registry, get(peer, xff)).await;
            assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{peer} {xff:?}");
            let location = header(&r, "location");
            assert!(
                location.ends_with(&format!("?client={client}")),
                "{peer} {xff:?}: {location}"
            );
        }
        // Without trusted proxies, the header is never believed.
        let storage: Arc<dyn Storage> = Arc::new(UrlsNamingClients(LocalStorage::in_memory()));
        let state = tempfile::tempdir().unwrap();
        let plain = Arc::new(registry_on(storage, &state));
        send_to(
            &plain,
            req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
                data.to_vec(),
            ),
        )
        .await;
        let (r, _) = send_to(&plain, get("10.1.2.3", Some("198.51.100.7"))).await;
        assert!(header(&r, "location").ends_with("?client=10.1.2.3"));
    }

    #[tokio::test]
    async fn health_and_readiness_probes() {
        let api = Api::new();
        let (r, body) = api.call("GET", "/healthz").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, b"ok\n");
        let (r, _) = api.call("GET", "/readyz").await;
        assert_eq!(r.status(), StatusCode::OK);
        // Probes are not API requests.
        let (_, metrics) = api.call("GET", "/metrics").await;
        assert!(!String::from_utf8_lossy(&metrics).contains("stowage_registry_requests_total"));

        let (down, _state) = unreachable_s3().await;
        let (r, _) = send_to(&down, req("GET", "/healthz", Body::empty())).await;
        assert_eq!(r.status(), StatusCode::OK, "the process is up");
        let (r, body) = send_to(&down, req("GET", "/readyz", Body::empty())).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = String::from_utf8_lossy(&body);
        for secret in ["registry-test", "127.0.0.1", "secret-prefix"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    /// A client that stops sending a chunk gets 408 and a closed
    /// connection; nothing of the chunk counts and the upload resumes.
    #[tokio::test]
    async fn a_silent_client_loses_its_chunk_and_the_upload_stays_resumable() {
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let registry =
            Arc::new(registry_on(storage, &state).with_idle_timeout(Duration::from_millis(300)));
        let (r, _) = send_to(
            &registry,
            req("POST", "/v2/app/blobs/uploads/", Body::empty()),
        )
        .await;
        let location = header(&r, "location");
        let silent = futures::stream::once(async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"lost chunk"))
        })
        .chain(futures::stream::pending());
        let started = Instant::now();
        let (r, body) = tokio::time::timeout(
            Duration::from_secs(20),
            send_to(
                &registry,
                req("PATCH", &location, Body::from_stream(silent)),
            ),
        )
        .await
        .expect("the silent client was dropped");
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(header(&r, "connection"), "close");
        assert!(String::from_utf8_lossy(&body).contains("sent nothing"));
        let (r, _) = send_to(&registry, req("GET", &location, Body::empty())).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&r, "range"), "0-0", "nothing of the chunk counts");
        // Resume: the whole blob in one chunk, then finish.
        let (r, _) = send_to(&registry, req("PATCH", &location, b"whole blob".to_vec())).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let digest = Sha256Digest::of(b"whole blob");
        let (r, _) = send_to(
            &registry,
            req("PUT", &format!("{location}?digest={digest}"), Body::empty()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    #[tokio::test]
    async fn uploads_past_the_size_limit_get_413_and_stay_resumable() {
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let registry =
            Arc::new(registry_on(storage.clone(), &state).with_max_upload_size(Some(10)));
        // Monolithic.
        let eleven = b"01234567890";
        let big = Sha256Digest::of(eleven);
        let (r, body) = send_to(
            &registry,
            req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={big}"),
                eleven.to_vec(),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(&body), "SIZE_INVALID");
        assert!(!storage
            .exists(&stowage_registry::layout::blob(big))
            .await
            .unwrap());
        let ten = &eleven[..10];
        let fits = Sha256Digest::of(ten);
        let (r, _) = send_to(
            &registry,
            req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={fits}"),
                ten.to_vec(),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        // Chunked.
        let (r, _) = send_to(
            &registry,
            req("POST", "/v2/app/blobs/uploads/", Body::empty()),
        )
        .await;
        let location = header(&r, "location");
        let patch = |range: Option<&str>, chunk: &[u8]| {
            let mut b = Request::builder().method("PATCH").uri(&location);
            if let Some(range) = range {
                b = b.header("content-range", range);
            }
            b.body(Body::from(chunk.to_vec())).unwrap()
        };
        let (r, _) = send_to(&registry, patch(Some("0-5"), &ten[..6])).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        // Said in Content-Range: refused before a byte is read.
        let (r, body) = send_to(&registry, patch(Some("6-10"), b"abcde")).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(&body), "SIZE_INVALID");
        // Not said: cut when the stream gets there.
        let (r, body) = send_to(&registry, patch(None, b"abcde")).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(&body), "SIZE_INVALID");
        let (r, _) = send_to(&registry, req("GET", &location, Body::empty())).await;
        assert_eq!(header(&r, "range"), "0-5", "the upload stays where it was");
        let (r, _) = send_to(&registry, patch(Some("6-9"), &ten[6..])).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        // A last chunk on the PUT past the limit, then the PUT alone.
        let (r, _) = send_to(
            &registry,
            req("PUT", &format!("{location}?digest={fits}"), b"x".to_vec()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let (r, _) = send_to(
            &registry,
            req("PUT", &format!("{location}?digest={fits}"), Body::empty()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    /// Reads one HTTP/1.1 response until the server closes the connection
    /// (or `limit` passes), returning what arrived.
    async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out))
            .await
            .expect("the server closed the connection");
        out
    }

    /// The real server over TCP: a request is answered with the peer's
    /// address known; a connection that sends nothing, a kept-alive one
    /// gone quiet, headers that never finish, a body that stops, and a
    /// response nobody reads each end the connection.
    #[tokio::test]
    async fn the_server_drops_silent_connections() {
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let mut options = stowage_registry::ServeOptions::default();
        options.state_dir = Some(state.path().to_path_buf());
        options.header_read_timeout = Duration::from_millis(300);
        options.idle_timeout = Duration::from_millis(300);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(stowage_registry::serve(storage.clone(), listener, options));

        // A whole request is answered.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let out = read_until_closed(&mut c, Duration::from_secs(10)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );

        // Headers that never finish.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let out = read_until_closed(&mut c, Duration::from_secs(10)).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(!out.starts_with(b"HTTP/1.1 200"));

        // A connection that never sends a byte.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let out = read_until_closed(&mut c, Duration::from_secs(10)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));

        // A kept-alive connection that goes quiet after its answer.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let out = read_until_closed(&mut c, Duration::from_secs(10)).await;
        let waited = started.elapsed();
        assert!(out.starts_with(b"HTTP/1.1 200"));
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );

        // A body that stops: 408, closed, the upload still there.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            b"POST /v2/app/blobs/uploads/ HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let out =
            String::from_utf8(read_until_closed(&mut c, Duration::from_secs(10)).await).unwrap();
        assert!(out.starts_with("HTTP/1.1 202"), "{out}");
        let location = out
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!(
                "PATCH {location} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let out =
            String::from_utf8_lossy(&read_until_closed(&mut c, Duration::from_secs(10)).await)
                .to_string();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let out =
            String::from_utf8_lossy(&read_until_closed(&mut c, Duration::from_secs(10)).await)
                .to_string();
        assert!(out.starts_with("HTTP/1.1 204"), "{out}");
        assert!(out.to_ascii_lowercase().contains("range: 0-0"), "{out}");

        // A response nobody reads: the server gives up instead of holding
        // the connection (and the storage read) forever.
        let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
        let digest = Sha256Digest::of(&big);
        storage
            .put(
                &stowage_registry::layout::blob(digest),
                big.clone().into(),
                Default::default(),
            )
            .await
            .unwrap();
        storage
            .put(
                &stowage_registry::layout::layer_link("app", digest),
                digest.to_string().into(),
                Default::default(),
            )
            .await
            .unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET /v2/app/blobs/{digest} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let out = read_until_closed(&mut c, Duration::from_secs(30)).await;
        assert!(out.starts_with(b"HTTP/1.1 200"));
        assert!(
            out.len() < big.len(),
            "the whole blob arrived although the client stopped reading"
        );
        server.abort();
    }
}

/// OCI distribution 1.1 (referrers, `OCI-Subject`, sha512, foreign layers,
/// out-of-order final chunks, mounts), authentication, and replicas
/// sharing uploads through the storage.
mod production {
    use std::time::Duration;

    use base64::Engine as _;
    use stowage::local::LocalStorage;
    use stowage_registry::{Digest, HtpasswdAuth, OCI_INDEX};

    use super::*;

    const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

    /// An artifact manifest: config `{}` of `config_type`, no layers, a
    /// subject, an optional artifactType and one annotation.
    fn artifact(
        config: &Sha256Digest,
        config_type: &str,
        artifact_type: Option<&str>,
        subject: &Digest,
        subject_size: usize,
        note: &str,
    ) -> Vec<u8> {
        let mut doc = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": config.to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": subject_size},
            "annotations": {"note": note},
        });
        if let Some(t) = artifact_type {
            doc["artifactType"] = json!(t);
        }
        serde_json::to_vec(&doc).unwrap()
    }

    fn referrers(body: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        v["manifests"].as_array().unwrap().clone()
    }

    #[tokio::test]
    async fn referrers_api_and_oci_subject() {
        let api = Api::new();
        let config = push_blob(&api, "app", b"{}").await;
        let layer = push_blob(&api, "app", b"layer").await;
        let image = manifest(&config, &[(&layer, 5)]);
        let subject = Digest::sha256_of(&image);
        let (r, _) = api
            .send(manifest_put("/v2/app/manifests/v1", image.clone()))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert!(r.headers().get("oci-subject").is_none());

        // None yet: an empty index, not a 404.
        let url = format!("/v2/app/referrers/{subject}");
        let (r, body) = api.call("GET", &url).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_INDEX);
        assert!(referrers(&body).is_empty());
        assert!(r.headers().get("oci-filters-applied").is_none());

        let signature = artifact(
            &config,
            EMPTY_CONFIG,
            Some("application/vnd.example.signature"),
            &subject,
            image.len(),
            "signed",
        );
        let sbom = artifact(
            &config,
            "application/vnd.example.sbom+json",
            None,
            &subject,
            image.len(),
            "sbom",
        );
        let mut digests = Vec::new();
        for body in [&signature, &sbom] {
            let digest = Digest::sha256_of(body);
            let (r, resp) = api
                .send(manifest_put(
                    format!("/v2/app/manifests/{digest}"),
                    body.clone(),
                ))
                .await;
            assert_eq!(
                r.status(),
                StatusCode::CREATED,
                "{}",
                String::from_utf8_lossy(&resp)
            );
            assert_eq!(header(&r, "oci-subject"), subject.to_string());
            digests.push(digest);
        }
        let (r, body) = api.call("GET", &url).await;
        assert_eq!(r.status(), StatusCode::OK);
        let all = referrers(&body);
        assert_eq!(all.len(), 2, "{all:?}");
        let by_digest = |d: &Digest| {
            all.iter()
                .find(|m| m["digest"] == d.to_string())
                .unwrap_or_else(|| panic!("{d} in {all:?}"))
                .clone()
        };
        let sig = by_digest(&digests[0]);
        assert_eq!(sig["artifactType"], "application/vnd.example.signature");
        assert_eq!(sig["mediaType"], OCI_MANIFEST);
        assert_eq!(sig["size"], signature.len());
        assert_eq!(sig["annotations"]["note"], "signed");
        // No artifactType: the config's media type stands in.
        let bom = by_digest(&digests[1]);
        assert_eq!(bom["artifactType"], "application/vnd.example.sbom+json");

        // Filtered: only the signature, and the header says so.
        let (r, body) = api
            .call(
                "GET",
                format!("{url}?artifactType=application/vnd.example.signature"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
        let only = referrers(&body);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0]["digest"], digests[0].to_string());
        let (r, body) = api
            .call("GET", format!("{url}?artifactType=text/none"))
            .await;
        assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
        assert!(referrers(&body).is_empty());

        // Deleting a referrer removes it from the index.
        let (r, _) = api
            .call("DELETE", format!("/v2/app/manifests/{}", digests[0]))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let (_, body) = api.call("GET", &url).await;
        let left = referrers(&body);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["digest"], digests[1].to_string());

        // Another repository, an unknown subject: empty; a bad digest: 400.
        let (r, body) = api
            .call("GET", format!("/v2/other/referrers/{subject}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(referrers(&body).is_empty());
        let unknown = Digest::sha256_of(b"nothing");
        let (_, body) = api
            .call("GET", format!("/v2/app/referrers/{unknown}"))
            .await;
        assert!(referrers(&body).is_empty());
        let (r, body) = api.call("GET", "/v2/app/referrers/sha256:short").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "DIGEST_INVALID");
    }

    #[tokio::test]
    async fn sha512_blobs_and_manifests_round_trip() {
        let api = Api::new();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
        let digest = Digest::sha512_of(&data);
        assert!(digest.to_string().starts_with("sha512:"));
        // Monolithic.
        let (r, _) = api
            .send(req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
                data.clone(),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "docker-content-digest"), digest.to_string());
        assert_eq!(header(&r, "location"), format!("/v2/app/blobs/{digest}"));
        let (r, body) = api.call("GET", format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, data);
        let (r, _) = api.call("HEAD", format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(header(&r, "content-length"), data.len().to_string());
        // A wrong sha512 stores nothing.
        let wrong = Digest::sha512_of(b"other bytes");
        let (r, body) = api
            .send(req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={wrong}"),
                b"these bytes".to_vec(),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "DIGEST_INVALID");
        for d in [wrong, Digest::sha512_of(b"these bytes")] {
            assert!(!api
                .storage
                .exists(&stowage_registry::layout::blob(d))
                .await
                .unwrap());
        }

        // Chunked.
        let chunked: Vec<u8> = data.iter().rev().copied().collect();
        let chunked_digest = Digest::sha512_of(&chunked);
        let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
        let location = header(&r, "location");
        for (range, part) in [
            ("0-99999", &chunked[..100_000]),
            ("100000-199999", &chunked[100_000..]),
        ] {
            let patch = Request::builder()
                .method("PATCH")
                .uri(&location)
                .header("content-range", range)
                .body(Body::from(part.to_vec()))
                .unwrap();
            let (r, _) = api.send(patch).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        let (r, body) = api
            .call("PUT", format!("{location}?digest={chunked_digest}"))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (_, body) = api
            .call("GET", format!("/v2/app/blobs/{chunked_digest}"))
            .await;
        assert_eq!(body, chunked);
        // A chunked upload with a wrong sha512: refused, nothing stored,
        // the upload gone.
        let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
        let location = header(&r, "location");
        api.send(req("PATCH", &location, b"abc".to_vec())).await;
        let (r, body) = api.call("PUT", format!("{location}?digest={wrong}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "DIGEST_INVALID");
        assert!(!api
            .storage
            .exists(&stowage_registry::layout::blob(wrong))
            .await
            .unwrap());
        let (r, _) = api.call("GET", &location).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // Nothing left of the checks.
        assert!(api
            .storage
            .list(Some(&StoragePath::parse("_registry/verify").unwrap()))
            .next_item()
            .await
            .is_none());

        // A manifest named by its sha512, referring to a sha512 layer.
        let config = push_blob(&api, "app", b"{}").await;
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest.to_string(), "size": data.len()}],
        }))
        .unwrap();
        let manifest_digest = Digest::sha512_of(&body);
        let (r, resp) = api
            .send(manifest_put(
                format!("/v2/app/manifests/{manifest_digest}"),
                body.clone(),
            ))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&resp)
        );
        assert_eq!(
            header(&r, "docker-content-digest"),
            manifest_digest.to_string()
        );
        let (r, got) = api
            .call("GET", format!("/v2/app/manifests/{manifest_digest}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(got, body);
        assert_eq!(
            header(&r, "docker-content-digest"),
            manifest_digest.to_string()
        );
        // The wrong sha512 for these bytes.
        let (r, resp) = api
            .send(manifest_put(
                format!("/v2/app/manifests/{wrong}"),
                body.clone(),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&resp), "DIGEST_INVALID");
        // Deleted by its sha512.
        let (r, _) = api
            .call("DELETE", format!("/v2/app/manifests/{manifest_digest}"))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn foreign_layers_are_accepted_without_their_blobs() {
        // Layers with URLs only where the operator allows them
        // (`--manifest-urls-allow`; refused by default, see
        // `security_review`).
        let mut api = Api::new();
        let allowed = stowage_registry::ManifestUrls::new(
            vec![r"^https://example\.invalid/".parse().unwrap()],
            Vec::new(),
        );
        api.registry = Arc::new(
            Registry::new(
                api.storage.clone(),
                UploadStore::open(api.state.path()).unwrap(),
            )
            .with_manifest_urls(allowed),
        );
        let config = push_blob(&api, "app", b"{}").await;
        let layer = push_blob(&api, "app", b"layer").await;
        let absent = Sha256Digest::of(b"never pushed");
        let body = |extra: Value| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config.to_string(), "size": 2},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": layer.to_string(), "size": 5},
                    extra,
                ],
            }))
            .unwrap()
        };
        for (what, extra) in [
            (
                "OCI non-distributable",
                json!({
                "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "digest": absent.to_string(), "size": 100}),
            ),
            (
                "Docker foreign",
                json!({
                "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                "digest": absent.to_string(), "size": 100,
                "urls": ["https://example.invalid/layer.tar.gz"]}),
            ),
            (
                "a layer with urls",
                json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": absent.to_string(), "size": 100,
                "urls": ["https://example.invalid/layer.tar.gz"]}),
            ),
        ] {
            let (r, resp) = api
                .send(manifest_put("/v2/app/manifests/foreign", body(extra)))
                .await;
            assert_eq!(
                r.status(),
                StatusCode::CREATED,
                "{what}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
        // An ordinary layer that is missing is still refused.
        let (r, resp) = api
            .send(manifest_put(
                "/v2/app/manifests/broken",
                body(
                    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": absent.to_string(), "size": 100}),
                ),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&resp), "MANIFEST_BLOB_UNKNOWN");
    }

    #[tokio::test]
    async fn an_out_of_order_final_put_gets_416_and_the_upload_stays() {
        let api = Api::new();
        let data = b"hello, wide world";
        let digest = Sha256Digest::of(data);
        let (r, _) = api.call("POST", "/v2/app/blobs/uploads/").await;
        let location = header(&r, "location");
        let with_range = |method: &str, uri: String, range: &str, chunk: &[u8]| {
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-range", range)
                .body(Body::from(chunk.to_vec()))
                .unwrap()
        };
        let (r, _) = api
            .send(with_range("PATCH", location.clone(), "0-4", &data[..5]))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let put = format!("{location}?digest={digest}");
        let (r, body) = api
            .send(with_range("PUT", put.clone(), "10-16", &data[10..]))
            .await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(error_code(&body), "RANGE_INVALID");
        assert_eq!(header(&r, "range"), "0-4");
        assert_eq!(header(&r, "location"), location);
        let (r, _) = api.call("GET", &location).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&r, "range"), "0-4", "the upload stays where it was");
        let (r, _) = api.send(with_range("PUT", put, "5-16", &data[5..])).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let (_, body) = api.call("GET", format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(body, data);
    }

    #[tokio::test]
    async fn cross_repository_mount() {
        let api = Api::new();
        let blob = push_blob(&api, "src/app", b"shared layer").await;
        let (r, _) = api
            .call(
                "POST",
                format!("/v2/dst/app/blobs/uploads/?mount={blob}&from=src/app"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "location"), format!("/v2/dst/app/blobs/{blob}"));
        assert_eq!(header(&r, "docker-content-digest"), blob.to_string());
        let (r, body) = api.call("GET", format!("/v2/dst/app/blobs/{blob}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, b"shared layer");
        // Not in `from` (or `from` not a name): an upload starts instead.
        for from in ["elsewhere", "NOT_A_NAME"] {
            let (r, _) = api
                .call(
                    "POST",
                    format!("/v2/dst/app/blobs/uploads/?mount={blob}&from={from}"),
                )
                .await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{from}");
            assert!(header(&r, "location").starts_with("/v2/dst/app/blobs/uploads/"));
        }
        // A sha512 blob mounts too.
        let data = b"sha512 layer";
        let big = Digest::sha512_of(data);
        api.send(req(
            "POST",
            &format!("/v2/src/app/blobs/uploads/?digest={big}"),
            data.to_vec(),
        ))
        .await;
        let (r, _) = api
            .call(
                "POST",
                format!("/v2/dst/app/blobs/uploads/?mount={big}&from=src/app"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    fn basic(request: Request<Body>, user: &str, password: &str) -> Request<Body> {
        let (mut parts, body) = request.into_parts();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        parts
            .headers
            .insert("authorization", format!("Basic {token}").parse().unwrap());
        Request::from_parts(parts, body)
    }

    /// A registry on the in-memory store with an htpasswd file of one user
    /// (`alice`, `s3cret`).
    fn with_htpasswd(anonymous_pull: bool) -> (Arc<Registry>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&file, format!("# htpasswd -B\nalice:{hash}\n")).unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::in_memory());
        let auth = HtpasswdAuth::open(&file)
            .unwrap()
            .with_anonymous_pull(anonymous_pull);
        let registry = Registry::new(storage.clone(), UploadStore::in_storage(storage))
            .with_authenticator(Arc::new(auth));
        (Arc::new(registry), dir)
    }

    fn assert_challenged(r: &Response<Body>, body: &[u8], what: &str) {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            header(r, "www-authenticate"),
            "Basic realm=\"stowage\"",
            "{what}"
        );
        assert_eq!(error_code(body), "UNAUTHORIZED", "{what}");
        let text = String::from_utf8_lossy(body);
        assert!(
            !text.contains("s3cret") && !text.contains("wrong-pw"),
            "{what}: {text}"
        );
    }

    #[tokio::test]
    async fn htpasswd_refuses_anonymous_and_wrong_credentials() {
        let (registry, _dir) = with_htpasswd(false);
        let data = b"layer".to_vec();
        let digest = Sha256Digest::of(&data);
        let push = || {
            req(
                "POST",
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
                data.clone(),
            )
        };
        let get = || req("GET", &format!("/v2/app/blobs/{digest}"), Body::empty());
        let base = || req("GET", "/v2/", Body::empty());
        for (what, request) in [
            ("anonymous /v2/", base()),
            ("anonymous push", push()),
            ("anonymous pull", get()),
            ("wrong password", basic(push(), "alice", "wrong-pw")),
            ("unknown user", basic(base(), "mallory", "s3cret")),
            ("empty credentials", basic(push(), "", "")),
            ("anonymous /metrics", req("GET", "/metrics", Body::empty())),
        ] {
            let (r, body) = send_to(&registry, request).await;
            assert_challenged(&r, &body, what);
        }
        let mut bearer = base();
        bearer
            .headers_mut()
            .insert("authorization", "Bearer abc".parse().unwrap());
        let (r, body) = send_to(&registry, bearer).await;
        assert_challenged(&r, &body, "a bearer token");

        // The right credentials, many times (bcrypt once, then the cache).
        let (r, _) = send_to(&registry, basic(base(), "alice", "s3cret")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (r, _) = send_to(&registry, basic(push(), "alice", "s3cret")).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        for _ in 0..20 {
            let (r, body) = send_to(&registry, basic(get(), "alice", "s3cret")).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(body, data);
        }
        let (r, _) = send_to(
            &registry,
            basic(req("GET", "/metrics", Body::empty()), "alice", "s3cret"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        // The probes need nothing.
        for probe in ["/healthz", "/readyz"] {
            let (r, _) = send_to(&registry, req("GET", probe, Body::empty())).await;
            assert_eq!(r.status(), StatusCode::OK, "{probe}");
        }
    }

    #[tokio::test]
    async fn anonymous_pulls_when_allowed() {
        let (registry, _dir) = with_htpasswd(true);
        let data = b"public layer".to_vec();
        let digest = Sha256Digest::of(&data);
        let (r, _) = send_to(
            &registry,
            basic(
                req(
                    "POST",
                    &format!("/v2/app/blobs/uploads/?digest={digest}"),
                    data.clone(),
                ),
                "alice",
                "s3cret",
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        for method in ["GET", "HEAD"] {
            let (r, _) = send_to(
                &registry,
                req(method, &format!("/v2/app/blobs/{digest}"), Body::empty()),
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK, "{method}");
        }
        let (r, body) = send_to(&registry, req("GET", "/v2/app/tags/list", Body::empty())).await;
        assert_ne!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        // Still refused: pushes, deletes, /v2/ (where clients learn to
        // authenticate), and wrong credentials even on a pull.
        for (what, request) in [
            (
                "anonymous push",
                req("POST", "/v2/app/blobs/uploads/", Body::empty()),
            ),
            (
                "anonymous delete",
                req("DELETE", "/v2/app/manifests/v1", Body::empty()),
            ),
            ("anonymous /v2/", req("GET", "/v2/", Body::empty())),
            (
                "wrong password on a pull",
                basic(
                    req("GET", &format!("/v2/app/blobs/{digest}"), Body::empty()),
                    "alice",
                    "wrong-pw",
                ),
            ),
        ] {
            let (r, body) = send_to(&registry, request).await;
            assert_challenged(&r, &body, what);
        }
    }

    /// Two registries on one storage, each with its records in the storage:
    /// two replicas behind a balancer.
    fn replicas(dir: &tempfile::TempDir) -> (Arc<dyn Storage>, Arc<Registry>, Arc<Registry>) {
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::open(dir.path()).unwrap());
        let replica = || {
            Arc::new(Registry::new(
                storage.clone(),
                UploadStore::in_storage(storage.clone()),
            ))
        };
        let (a, b) = (replica(), replica());
        (storage, a, b)
    }

    #[tokio::test]
    async fn an_upload_started_on_one_replica_continues_on_another() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, a, b) = replicas(&dir);
        let data: Vec<u8> = (0..90_000u32).map(|i| (i % 253) as u8).collect();
        let digest = Sha256Digest::of(&data);
        let (r, _) = send_to(
            &a,
            req("POST", "/v2/team/app/blobs/uploads/", Body::empty()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = header(&r, "location");
        // Every request on the other replica than the one before.
        for (i, (replica, range)) in [(&b, 0..30_000), (&a, 30_000..60_000)]
            .into_iter()
            .enumerate()
        {
            let patch = Request::builder()
                .method("PATCH")
                .uri(&location)
                .header(
                    "content-range",
                    format!("{}-{}", range.start, range.end - 1),
                )
                .body(Body::from(data[range].to_vec()))
                .unwrap();
            let (r, _) = send_to(replica, patch).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk {i}");
        }
        let (r, _) = send_to(&b, req("GET", &location, Body::empty())).await;
        assert_eq!(header(&r, "range"), "0-59999");
        // A third replica started just now (a restart) knows it too.
        let restarted = Arc::new(Registry::new(
            storage.clone(),
            UploadStore::in_storage(storage.clone()),
        ));
        let (r, _) = send_to(
            &restarted,
            req(
                "PUT",
                &format!("{location}?digest={digest}"),
                data[60_000..].to_vec(),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let (r, body) = send_to(
            &a,
            req(
                "GET",
                &format!("/v2/team/app/blobs/{digest}"),
                Body::empty(),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, data);
        // Finished: no replica knows the upload any more, no record left.
        let (r, _) = send_to(&b, req("GET", &location, Body::empty())).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(storage
            .list(Some(&StoragePath::parse("_registry/uploads").unwrap()))
            .next_item()
            .await
            .is_none());

        // Stale uploads cleaned up by both replicas at once.
        let (r, _) = send_to(
            &a,
            req("POST", "/v2/team/app/blobs/uploads/", Body::empty()),
        )
        .await;
        let stale = header(&r, "location");
        send_to(&b, req("PATCH", &stale, b"abandoned".to_vec())).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (x, y) = tokio::join!(a.cleanup(Duration::ZERO), b.cleanup(Duration::ZERO));
        assert!(x + y >= 1, "{x} + {y}");
        let (r, _) = send_to(&a, req("GET", &stale, Body::empty())).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    /// Whatever two writers racing on one upload do, a blob stored under a
    /// digest has exactly the bytes of that digest: completion either
    /// stores the right bytes or fails.
    #[tokio::test]
    async fn racing_writers_never_store_a_blob_whose_bytes_differ_from_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, a, b) = replicas(&dir);
        let check = |digest: Sha256Digest| {
            let storage = storage.clone();
            async move {
                let path = stowage_registry::layout::blob(digest);
                if let Ok(bytes) = storage.get_bytes(&path).await {
                    assert_eq!(
                        Sha256Digest::of(&bytes),
                        digest,
                        "a blob with other bytes than its digest"
                    );
                }
            }
        };
        // Through the API: two replicas take the same chunk at once.
        for round in 0..8u8 {
            let (r, _) = send_to(&a, req("POST", "/v2/app/blobs/uploads/", Body::empty())).await;
            let location = header(&r, "location");
            let len = if round.is_multiple_of(2) {
                4096
            } else {
                4096 + usize::from(round)
            };
            let x: Vec<u8> = (0..4096usize).map(|i| (i as u8) ^ round).collect();
            let y: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_add(round).wrapping_mul(3))
                .collect();
            let patch = |chunk: &Vec<u8>| {
                Request::builder()
                    .method("PATCH")
                    .uri(&location)
                    .header("content-range", format!("0-{}", chunk.len() - 1))
                    .body(Body::from(chunk.clone()))
                    .unwrap()
            };
            let (rx, ry) = tokio::join!(send_to(&a, patch(&x)), send_to(&b, patch(&y)));
            assert!(rx.0.status().is_success() || ry.0.status().is_success());
            for (replica, bytes) in [(&a, &x), (&b, &y)] {
                let digest = Sha256Digest::of(bytes);
                let (r, body) = send_to(
                    replica,
                    req("PUT", &format!("{location}?digest={digest}"), Body::empty()),
                )
                .await;
                assert!(
                    r.status() == StatusCode::CREATED || r.status().is_client_error(),
                    "round {round}: {} {}",
                    r.status(),
                    String::from_utf8_lossy(&body)
                );
                check(digest).await;
            }
        }
        // Deterministically: two states written from the same start with
        // different bytes of the same length, both recorded.
        let (r, _) = send_to(&a, req("POST", "/v2/app/blobs/uploads/", Body::empty())).await;
        let location = header(&r, "location");
        let id = location.rsplit('/').next().unwrap().to_string();
        let store = UploadStore::in_storage(storage.clone());
        let start = store.get("app", &id).await.unwrap();
        let chunk = |data: Vec<u8>| -> stowage::WriteStream<'static> {
            use futures::StreamExt;
            futures::stream::once(async move { Ok::<_, stowage::Error>(bytes::Bytes::from(data)) })
                .boxed()
        };
        let x = vec![b'x'; 5000];
        let y = vec![b'y'; 5000];
        let sx = storage
            .write_chunk(&start.state, 0, chunk(x.clone()))
            .await
            .unwrap();
        let sy = storage
            .write_chunk(&start.state, 0, chunk(y.clone()))
            .await
            .unwrap();
        for state in [sx, sy] {
            store
                .put(&stowage_registry::UploadRecord::new("app", state))
                .await
                .unwrap();
        }
        for bytes in [&x, &y] {
            let digest = Sha256Digest::of(bytes);
            let (r, body) = send_to(
                &b,
                req("PUT", &format!("{location}?digest={digest}"), Body::empty()),
            )
            .await;
            assert!(
                r.status() == StatusCode::CREATED || r.status().is_client_error(),
                "{} {}",
                r.status(),
                String::from_utf8_lossy(&body)
            );
            check(digest).await;
        }
    }
}

/// The security review's findings, each pinned: the work of bcrypt
/// bounded (429 with `Retry-After`), htpasswd failing closed, URLs in
/// manifests only where allowed, ambiguous manifests refused, ranged blob
/// reads redirected like the others, `/readyz` asking the storage at most
/// once per few seconds.
mod security_review {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use base64::Engine as _;
    use stowage::local::LocalStorage;
    use stowage_registry::{HtpasswdAuth, ManifestUrls, OCI_INDEX};

    use super::*;

    fn with_basic(request: Request<Body>, user: &str, password: &str) -> Request<Body> {
        let (mut parts, body) = request.into_parts();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        parts
            .headers
            .insert("authorization", format!("Basic {token}").parse().unwrap());
        Request::from_parts(parts, body)
    }

    /// An htpasswd line for `user` with `password` (bcrypt cost 4).
    fn htpasswd_entry(user: &str, password: &str) -> String {
        let hash = bcrypt::hash(password, 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        format!("{user}:{hash}\n")
    }

    /// Replaces `file` with `text` as a new file, as editors and secret
    /// updates do.
    fn replace(file: &std::path::Path, text: &str) {
        let next = file.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, file).unwrap();
    }

    fn text(body: &[u8]) -> String {
        String::from_utf8_lossy(body).into_owned()
    }

    /// An image manifest of `config` and `layer`, plus a layer that is
    /// not in the repository, with `urls`.
    fn with_foreign_layer(config: &Sha256Digest, layer: &Sha256Digest, urls: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                 "digest": layer.to_string(), "size": 5},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "digest": Sha256Digest::of(b"elsewhere").to_string(), "size": 100,
                 "urls": urls},
            ],
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn manifests_with_urls_are_refused_unless_allowed() {
        let api = Api::new();
        let config = push_blob(&api, "app", b"{}").await;
        let layer = push_blob(&api, "app", b"layer").await;
        let cdn = json!(["https://cdn.example.com/layers/x.tar.gz"]);

        // By default: refused, naming the descriptor, and nothing stored.
        let (r, body) = api
            .send(manifest_put(
                "/v2/app/manifests/v1",
                with_foreign_layer(&config, &layer, cdn.clone()),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{}", text(&body));
        assert_eq!(error_code(&body), "MANIFEST_INVALID");
        assert!(text(&body).contains("layers[1].urls[0]"), "{}", text(&body));
        let (r, _) = api.call("GET", "/v2/app/manifests/v1").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        // Allowed by pattern: accepted (the layer's bytes live at the URL).
        let allow = vec![r"^https://cdn\.example\.com/".parse().unwrap()];
        let deny = vec![r"/private/".parse().unwrap()];
        let registry = Arc::new(
            Registry::new(
                api.storage.clone(),
                UploadStore::open(api.state.path()).unwrap(),
            )
            .with_manifest_urls(ManifestUrls::new(allow, deny)),
        );
        let put = |urls: Value| {
            manifest_put(
                "/v2/app/manifests/v1",
                with_foreign_layer(&config, &layer, urls),
            )
        };
        let (r, body) = send_to(&registry, put(cdn)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", text(&body));
        for (urls, why) in [
            (json!(["https://cdn.example.com/private/x"]), "is denied"),
            (json!(["https://tracker.example.net/x"]), "matches no"),
            (
                json!(["http://cdn.example.com@tracker.example.net/x"]),
                "credentials",
            ),
            (json!(["file:///etc/passwd"]), "http or https"),
        ] {
            let (r, body) = send_to(&registry, put(urls.clone())).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{urls}");
            assert_eq!(error_code(&body), "MANIFEST_INVALID");
            assert!(text(&body).contains(why), "{urls}: {}", text(&body));
        }
    }

    #[tokio::test]
    async fn ambiguous_manifests_and_other_schema_versions_are_refused() {
        let api = Api::new();
        let config = push_blob(&api, "app", b"{}").await;
        let layer = push_blob(&api, "app", b"layer").await;
        let image: Value = serde_json::from_slice(&manifest(&config, &[(&layer, 5)])).unwrap();
        let (r, _) = api
            .send(manifest_put(
                "/v2/app/manifests/child",
                serde_json::to_vec(&image).unwrap(),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let child = Sha256Digest::of(&serde_json::to_vec(&image).unwrap());

        // Both an image manifest and an index (CVE-2021-41190), whatever
        // it claims to be.
        let mut both = image.clone();
        both["manifests"] = json!([{"mediaType": OCI_MANIFEST,
                                    "digest": child.to_string(), "size": 10}]);
        for media_type in [OCI_MANIFEST, OCI_INDEX] {
            let mut doc = both.clone();
            doc["mediaType"] = json!(media_type);
            let request = Request::builder()
                .method("PUT")
                .uri("/v2/app/manifests/ambiguous")
                .header("content-type", media_type)
                .body(Body::from(serde_json::to_vec(&doc).unwrap()))
                .unwrap();
            let (r, body) = api.send(request).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{media_type}");
            assert_eq!(error_code(&body), "MANIFEST_INVALID");
            assert!(text(&body).contains("both"), "{}", text(&body));
        }
        let (r, _) = api.call("GET", "/v2/app/manifests/ambiguous").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was stored");

        for version in [json!(1), json!(3), json!("2"), Value::Null] {
            let mut doc = image.clone();
            doc["schemaVersion"] = version.clone();
            let (r, body) = api
                .send(manifest_put(
                    "/v2/app/manifests/old",
                    serde_json::to_vec(&doc).unwrap(),
                ))
                .await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{version}");
            assert_eq!(error_code(&body), "MANIFEST_INVALID");
            assert!(text(&body).contains("schemaVersion"), "{}", text(&body));
        }
    }

    /// Local storage with direct download URLs (as S3 and CloudFront).
    #[derive(Debug)]
    struct DirectUrls(LocalStorage);

    impl stowage::forward::Wraps for DirectUrls {
        type Inner = LocalStorage;
        fn wrapped(&self) -> &LocalStorage {
            &self.0
        }
    }

    stowage::forward_storage! {
        impl Storage for DirectUrls;
        forward [get put_stream put stat delete delete_prefix list list_page copy upload_url
                 start_upload write_chunk complete_upload abort_upload cleanup_uploads
                 validate metrics];

        fn driver(&self) -> &'static str {
            "direct-urls"
        }

        fn capabilities(&self) -> stowage::Capabilities {
            self.0.capabilities().with_direct_urls(true)
        }

        async fn download_url(
            &self,
            path: &StoragePath,
            _options: &stowage::DownloadUrlOptions,
        ) -> stowage::Result<Option<stowage::DirectUrl>> {
            Ok(Some(stowage::DirectUrl::new(
                format!("https://cdn.example/{path}"),
                stowage::UrlMethod::Get,
                chrono::Utc::now() + chrono::Duration::minutes(10),
                stowage::UrlSource::S3Presigned,
            )))
        }
    }

    /// A ranged blob read goes to the CDN like any other (the client sends
    /// its `Range` there); with `--no-redirect` the registry serves it.
    #[tokio::test]
    async fn ranged_blob_gets_are_redirected_too() {
        let storage: Arc<dyn Storage> = Arc::new(DirectUrls(LocalStorage::in_memory()));
        let state = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::new(
            storage.clone(),
            UploadStore::open(state.path()).unwrap(),
        ));
        let api = Api {
            storage,
            state,
            registry,
        };
        let digest = push_blob(&api, "app", b"0123456789").await;
        let ranged = |digest: &Sha256Digest| {
            Request::builder()
                .uri(format!("/v2/app/blobs/{digest}"))
                .header("range", "bytes=2-5")
                .body(Body::empty())
                .unwrap()
        };
        let (r, _) = api.send(ranged(&digest)).await;
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert!(
            header(&r, "location").starts_with("https://cdn.example/blobs/"),
            "{}",
            header(&r, "location")
        );
        // A blob the repository does not have is not redirected.
        let (r, body) = api.send(ranged(&Sha256Digest::of(b"absent"))).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(&body), "BLOB_UNKNOWN");

        let served = Arc::new(
            Registry::new(
                api.storage.clone(),
                UploadStore::open(api.state.path()).unwrap(),
            )
            .without_redirects(),
        );
        let (r, body) = send_to(&served, ranged(&digest)).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, b"2345");
    }

    /// Local storage counting its listings (what `/readyz` asks).
    #[derive(Debug)]
    struct CountingLists(LocalStorage, AtomicU64);

    impl stowage::forward::Wraps for CountingLists {
        type Inner = LocalStorage;
        fn wrapped(&self) -> &LocalStorage {
            &self.0
        }
    }

    stowage::forward_storage! {
        impl Storage for CountingLists;
        forward [driver capabilities get put_stream put stat delete delete_prefix list_page
                 copy download_url upload_url start_upload write_chunk complete_upload
                 abort_upload cleanup_uploads validate metrics];

        fn list(&self, prefix: Option<&StoragePath>) -> stowage::ListStream<'_> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.list(prefix)
        }
    }

    #[tokio::test]
    async fn readyz_asks_the_storage_at_most_once_per_few_seconds() {
        let storage = Arc::new(CountingLists(LocalStorage::in_memory(), AtomicU64::new(0)));
        let state = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::new(
            storage.clone(),
            UploadStore::open(state.path()).unwrap(),
        ));
        for _ in 0..30 {
            let (r, _) = send_to(&registry, req("GET", "/readyz", Body::empty())).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
        let at_once = futures::future::join_all(
            (0..20).map(|_| send_to(&registry, req("GET", "/readyz", Body::empty()))),
        )
        .await;
        assert!(at_once.iter().all(|(r, _)| r.status() == StatusCode::OK));
        assert_eq!(storage.1.load(Ordering::Relaxed), 1);
    }

    /// When the htpasswd file goes away or turns invalid, every credential
    /// is refused (the ones verified before too) and `/readyz` says why
    /// (naming neither the file nor a user) until a valid file is back.
    #[tokio::test]
    async fn htpasswd_fails_closed_and_readyz_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, htpasswd_entry("alice", "s3cret")).unwrap();
        let auth = HtpasswdAuth::open(&file)
            .unwrap()
            .with_reload_interval(Duration::ZERO);
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::in_memory());
        let registry = Arc::new(
            Registry::new(storage.clone(), UploadStore::in_storage(storage))
                .with_authenticator(Arc::new(auth)),
        );
        let base = || with_basic(req("GET", "/v2/", Body::empty()), "alice", "s3cret");
        let readyz = || req("GET", "/readyz", Body::empty());
        let (r, _) = send_to(&registry, base()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (r, _) = send_to(&registry, readyz()).await;
        assert_eq!(r.status(), StatusCode::OK);

        std::fs::remove_file(&file).unwrap();
        let (r, body) = send_to(&registry, base()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", text(&body));
        assert_eq!(error_code(&body), "UNAUTHORIZED");
        let (r, body) = send_to(&registry, readyz()).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let why = text(&body);
        assert!(why.contains("htpasswd") && why.contains("missing"), "{why}");

        replace(&file, "alice:$apr1$x$y\n");
        let (r, _) = send_to(&registry, base()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let (r, body) = send_to(&registry, readyz()).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let why = text(&body);
        assert!(why.contains("not valid"), "{why}");
        for secret in ["alice", "$apr1$", dir.path().to_str().unwrap()] {
            assert!(!why.contains(secret), "{secret} in {why}");
        }

        replace(&file, &htpasswd_entry("alice", "s3cret"));
        let (r, _) = send_to(&registry, base()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (r, _) = send_to(&registry, readyz()).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// A user with too many failed attempts within 30 s gets 429
    /// `TOOMANYREQUESTS` with `Retry-After` for new credentials, without
    /// any bcrypt; credentials verified before keep working.
    #[tokio::test]
    async fn too_many_failures_for_a_user_get_429_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, htpasswd_entry("alice", "s3cret")).unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::in_memory());
        let registry = Arc::new(
            Registry::new(storage.clone(), UploadStore::in_storage(storage))
                .with_authenticator(Arc::new(HtpasswdAuth::open(&file).unwrap())),
        );
        let base =
            |password: &str| with_basic(req("GET", "/v2/", Body::empty()), "alice", password);
        let (r, _) = send_to(&registry, base("s3cret")).await;
        assert_eq!(r.status(), StatusCode::OK);
        for i in 0..50 {
            let (r, _) = send_to(&registry, base(&format!("guess-{i}"))).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
        }
        let (r, body) = send_to(&registry, base("guess-next")).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{}", text(&body));
        assert_eq!(error_code(&body), "TOOMANYREQUESTS");
        let wait: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(header(&r, "www-authenticate").is_empty());
        // Verified before the attack: still fine.
        let (r, _) = send_to(&registry, base("s3cret")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}
