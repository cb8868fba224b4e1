//! Routes: the URL forms of the OCI Distribution API (repository names
//! contain `/`, so paths are parsed here rather than by a path pattern),
//! request ids and logging, and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::Instrument;

use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::names::{check_repository, parse_digest};
use crate::registry::Registry;

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/<name>/blobs/<digest>`
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/` (start)
    Uploads(&'a str),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(&'a str, &'a str),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(&'a str, &'a str),
    /// `/v2/<name>/tags/list`
    Tags(&'a str),
}

fn parse(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::Uploads(name));
    }
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        return Some(Route::Upload(
            &rest[..i],
            &rest[i + "/blobs/uploads/".len()..],
        ));
    }
    if let Some(i) = rest.rfind("/blobs/") {
        return Some(Route::Blob(&rest[..i], &rest[i + "/blobs/".len()..]));
    }
    if let Some(i) = rest.rfind("/manifests/") {
        return Some(Route::Manifest(
            &rest[..i],
            &rest[i + "/manifests/".len()..],
        ));
    }
    None
}

/// The router: the distribution API under `/v2`, and `/metrics`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(handle)
        .with_state(registry)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let text = stowage::metrics::render_prometheus(&registry.metrics());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

async fn handle(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = Instant::now();
    let mut response = async {
        match route(&registry, request).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }
    .instrument(span.clone())
    .await;
    let status = response.status().as_u16();
    registry.count(method.as_str(), status);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        );
    });
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(REQUEST_ID, v);
    }
    h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

async fn route(registry: &Registry, request: Request) -> RegistryResult {
    let client_ip: Option<IpAddr> = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = request.into_parts();
    let query: Vec<(String, String)> = Query::try_from_uri(&parts.uri)
        .map(|q: Query<Vec<(String, String)>>| q.0)
        .unwrap_or_default();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let path = parts.uri.path();
    let Some(route) = parse(path) else {
        return Err(RegistryError::new(
            ErrorCode::NameUnknown,
            format!("{path} is not a registry API path"),
        ));
    };
    let name = match &route {
        Route::Base => None,
        Route::Blob(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _)
        | Route::Manifest(n, _)
        | Route::Tags(n) => Some(*n),
    };
    if let Some(n) = name {
        check_repository(n)?;
    }
    let m = &parts.method;
    match route {
        Route::Base if m == Method::GET || m == Method::HEAD => Ok((
            [(CONTENT_TYPE, "application/json")],
            if m == Method::GET { "{}" } else { "" },
        )
            .into_response()),
        Route::Blob(repo, digest) => {
            let digest = parse_digest(digest)?;
            match *m {
                Method::HEAD => registry.head_blob(repo, &digest).await,
                Method::GET => {
                    registry
                        .get_blob(repo, &digest, &parts.headers, client_ip)
                        .await
                }
                Method::DELETE => Err(unsupported("deleting blobs")),
                _ => Err(method_not_allowed(m)),
            }
        }
        Route::Uploads(repo) if m == Method::POST => {
            registry.start_upload(repo, &query, body).await
        }
        Route::Upload(repo, id) => match *m {
            Method::PATCH => registry.patch_upload(repo, id, &parts.headers, body).await,
            Method::PUT => registry.finish_upload(repo, id, &query, body).await,
            Method::GET => registry.upload_status(repo, id).await,
            Method::DELETE => registry.cancel_upload(repo, id).await,
            _ => Err(method_not_allowed(m)),
        },
        Route::Manifest(repo, reference) => match *m {
            Method::PUT => {
                registry
                    .put_manifest(repo, reference, &parts.headers, body)
                    .await
            }
            Method::GET => registry.get_manifest(repo, reference, false).await,
            Method::HEAD => registry.get_manifest(repo, reference, true).await,
            Method::DELETE => registry.delete_manifest(repo, reference).await,
            _ => Err(method_not_allowed(m)),
        },
        Route::Tags(repo) if m == Method::GET => {
            let n = match param("n") {
                Some(v) => Some(v.parse::<usize>().map_err(|_| {
                    RegistryError::new(ErrorCode::Unsupported, format!("n={v:?} is not a count"))
                })?),
                None => None,
            };
            registry.list_tags(repo, n, param("last")).await
        }
        _ => Err(method_not_allowed(m)),
    }
}

fn unsupported(what: &str) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, format!("{what} is not supported"))
}

fn method_not_allowed(m: &Method) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("method {m} is not allowed here"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse("/v2/"), Some(Route::Base));
        assert_eq!(parse("/v2"), Some(Route::Base));
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:x"),
            Some(Route::Blob("a/b", "sha256:x"))
        );
        assert_eq!(parse("/v2/a/blobs/uploads/"), Some(Route::Uploads("a")));
        assert_eq!(
            parse("/v2/a/blobs/uploads/123"),
            Some(Route::Upload("a", "123"))
        );
        assert_eq!(
            parse("/v2/x/manifests/latest"),
            Some(Route::Manifest("x", "latest"))
        );
        assert_eq!(parse("/v2/x/y/tags/list"), Some(Route::Tags("x/y")));
        assert_eq!(parse("/other"), None);
    }
}
