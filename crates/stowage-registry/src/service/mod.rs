//! What each route does, on the `Storage` trait: blobs, uploads, manifests,
//! referrers, tags. Handlers return responses or [`RegistryError`]s.

pub(crate) mod blobs;
pub(crate) mod manifests;
pub(crate) mod referrers;
pub(crate) mod tags;
pub(crate) mod uploads;

use axum::body::Body;
use axum::http::header::{HeaderName, CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};
use stowage::WriteStream;

use crate::errors::RegistryError;

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
