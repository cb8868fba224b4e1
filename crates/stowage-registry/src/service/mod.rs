//! What each route does, on the `Storage` trait: blobs, uploads, manifests,
//! referrers, tags, the catalog, and the registry's side of the garbage
//! collection protocol (`usage`). Handlers return responses or
//! [`RegistryError`]s.

pub(crate) mod blobs;
pub(crate) mod catalog;
pub(crate) mod manifests;
pub(crate) mod referrers;
pub(crate) mod tags;
pub(crate) mod uploads;
pub(crate) mod usage;

use axum::body::Body;
use axum::http::header::{HeaderName, CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};
use stowage::{ListOptions, StoragePath, WriteStream};

use crate::errors::{ErrorCode, RegistryError};

/// A request body as a stream for the storage.
pub(crate) fn body_stream(body: Body) -> WriteStream<'static> {
    body.into_data_stream()
        .map_err(|e| stowage::Error::input_stream("reading the request body", e))
        .boxed()
}

/// The `Docker-Content-Digest` header.
pub(crate) const DIGEST_HEADER: HeaderName = HeaderName::from_static("docker-content-digest");
/// The `Docker-Upload-UUID` header.
pub(crate) const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// An empty response with `status` and headers.
pub(crate) fn empty(status: StatusCode, headers: &[(HeaderName, String)]) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name.clone(), v);
        }
    }
    response
}

/// `Location` header pair.
pub(crate) fn location(url: String) -> (HeaderName, String) {
    (LOCATION, url)
}

/// The `Range` value an upload reports: `0-{last byte}` (`0-0` when empty,
/// as distribution answers).
pub(crate) fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// Internal errors in handlers.
pub(crate) fn internal(message: impl Into<String>) -> RegistryError {
    RegistryError::new(crate::errors::ErrorCode::Unknown, message)
}

/// The largest page (`n`) of the tag list, the catalog and the referrers.
pub(crate) const MAX_PAGE: usize = 1000;

/// A page size `n` from the query: `None` when absent; a number from 0 to
/// [`MAX_PAGE`]. Anything else (not digits, negative, too large) is 400
/// `PAGINATION_NUMBER_INVALID`, as distribution answers.
pub(crate) fn page_size(n: Option<&str>) -> Result<Option<usize>, RegistryError> {
    let Some(text) = n else {
        return Ok(None);
    };
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<usize>() {
        Ok(n) if digits && n <= MAX_PAGE => Ok(Some(n)),
        _ => Err(RegistryError::new(
            ErrorCode::PaginationNumberInvalid,
            format!("n={text:?}: the page size must be a number from 0 to {MAX_PAGE}"),
        )),
    }
}

/// The options of one `list_page` call.
pub(crate) fn list_options(
    prefix: StoragePath,
    delimiter: bool,
    start_after: Option<String>,
    max_entries: Option<usize>,
) -> ListOptions {
    let mut options = ListOptions::default()
        .with_prefix(prefix)
        .with_delimiter(delimiter);
    if let Some(start_after) = start_after {
        options = options.with_start_after(start_after);
    }
    if let Some(max) = max_entries {
        options = options.with_max_entries(max);
    }
    options
}

/// The name of `entry` directly below `prefix` (its last segment), when it
/// is directly below it.
pub(crate) fn child_name<'a>(prefix: &StoragePath, entry: &'a StoragePath) -> Option<&'a str> {
    entry
        .as_str()
        .strip_prefix(prefix.as_str())?
        .strip_prefix('/')
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_digits_up_to_the_maximum() {
        assert_eq!(page_size(None).unwrap(), None);
        assert_eq!(page_size(Some("0")).unwrap(), Some(0));
        assert_eq!(page_size(Some("1000")).unwrap(), Some(1000));
        for bad in [
            "",
            "-1",
            "+5",
            "1001",
            "x",
            "1.5",
            " 5",
            "99999999999999999999999",
        ] {
            let e = page_size(Some(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::PaginationNumberInvalid, "{bad:?}");
            assert_eq!(e.http_status(), 400);
        }
    }

    #[test]
    fn child_names_are_one_segment_below() {
        let p = |s: &str| StoragePath::parse(s).unwrap();
        assert_eq!(child_name(&p("a/b"), &p("a/b/c")), Some("c"));
        assert_eq!(child_name(&p("a/b"), &p("a/b/c/d")), None);
        assert_eq!(child_name(&p("a/b"), &p("a/bc")), None);
    }
}

/// In-process requests for the tests of this crate (tower's `oneshot` on
/// the router, the in-memory local store).
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{HeaderMap, Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use stowage::Storage;
    use tower::ServiceExt;

    use crate::digest::Digest;
    use crate::registry::Registry;
    use crate::service::manifests::OCI_MANIFEST;
    use crate::upload_store::UploadStore;

    /// A response, read whole.
    #[derive(Debug)]
    pub(crate) struct Answer {
        pub(crate) status: StatusCode,
        pub(crate) headers: HeaderMap,
        pub(crate) body: Vec<u8>,
    }

    impl Answer {
        /// A header's value, empty when absent.
        pub(crate) fn header(&self, name: &str) -> String {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }

        /// The body as JSON.
        pub(crate) fn json(&self) -> Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
        }

        /// The error code of an error body.
        pub(crate) fn code(&self) -> String {
            self.json()["errors"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    }

    /// A registry over `storage` with its upload records in it, deletes
    /// allowed.
    pub(crate) fn registry(storage: Arc<dyn Storage>) -> Arc<Registry> {
        Arc::new(
            Registry::new(storage.clone(), UploadStore::in_storage(storage)).with_deletes(true),
        )
    }

    /// Sends a request with an optional content type.
    pub(crate) async fn send(
        registry: &Arc<Registry>,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let response = crate::routes::router(registry.clone())
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Sends a request.
    pub(crate) async fn call(
        registry: &Arc<Registry>,
        method: &str,
        uri: &str,
        body: Vec<u8>,
    ) -> Answer {
        send(registry, method, uri, None, body).await
    }

    /// Pushes `data` as a blob of `repo` (monolithic); its digest.
    pub(crate) async fn push_blob(registry: &Arc<Registry>, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let uri = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let answer = call(registry, "POST", &uri, data.to_vec()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        digest
    }

    /// An OCI image manifest of `config` and `layers`.
    pub(crate) fn manifest(config: &Digest, layers: &[&Digest]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 2},
            "layers": layers.iter().map(|d| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d.to_string(), "size": 1})).collect::<Vec<_>>(),
        }))
        .expect("JSON serializes")
    }

    /// `PUT` of an OCI manifest as `reference` of `repo`.
    pub(crate) async fn put_manifest(
        registry: &Arc<Registry>,
        repo: &str,
        reference: &str,
        body: Vec<u8>,
    ) -> Answer {
        let uri = format!("/v2/{repo}/manifests/{reference}");
        send(registry, "PUT", &uri, Some(OCI_MANIFEST), body).await
    }
}
