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
        let registry = Arc::new(Registry::new(
            storage.clone(),
            UploadStore::open(state.path()).unwrap(),
        ));
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
            .exists(&stowage_registry::layout::blob(&digest))
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
        .get_bytes(&stowage_registry::layout::blob(&layer))
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
