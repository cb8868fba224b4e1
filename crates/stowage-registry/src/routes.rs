//! Routes: the URL forms of the OCI Distribution API (repository names
//! contain `/`, so paths are parsed here rather than by a path pattern),
//! authentication (what each request needs), request ids and logging,
//! `/metrics`, and the probes `/healthz` and `/readyz`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::FutureExt;
use tracing::Instrument;

use crate::auth::{Access, Action, Challenge};
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::names::{check_repository, parse_digest};
use crate::net::client_address;
use crate::registry::Registry;
use crate::timeouts::{BodyTimedOut, IdleTimeoutBody};

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
    /// `/v2/<name>/referrers/<digest>`
    Referrers(&'a str, &'a str),
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
    // A digest has no `/`, so `/referrers/` followed by one is the
    // referrers API, even in a repository with a `blobs` component.
    if let Some(i) = rest.rfind("/referrers/") {
        let digest = &rest[i + "/referrers/".len()..];
        if !digest.is_empty() && !digest.contains('/') {
            return Some(Route::Referrers(&rest[..i], digest));
        }
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

/// The router: the distribution API under `/v2`, `/metrics`, and the
/// probes `/healthz` (the process is up) and `/readyz` (the storage
/// answers). The probes and `/metrics` are not counted as API requests.
/// With an authenticator, every API request and `/metrics` need
/// credentials (the probes never do).
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(handle)
        .with_state(registry)
}

/// Liveness: the process answers.
async fn healthz() -> Response {
    ([(CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

/// How long `/readyz` waits for the storage.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Readiness: the storage answers a listing of a prefix that holds
/// nothing (a `ListObjectsV2` on S3: cheap, and it fails on a missing
/// bucket, bad credentials or an unreachable endpoint). The body never
/// says why; the log does.
async fn readyz(State(registry): State<Arc<Registry>>) -> Response {
    let probe = async {
        use futures::TryStreamExt;
        let path = stowage::StoragePath::parse("repositories/_readyz").expect("a valid path");
        registry
            .storage
            .list(Some(&path))
            .try_next()
            .await
            .map(|_| ())
    };
    let failure = match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => return ([(CONTENT_TYPE, "text/plain")], "ready\n").into_response(),
        Ok(Err(e)) => e.chain(),
        Err(_) => format!("no answer within {} s", READY_TIMEOUT.as_secs()),
    };
    tracing::warn!(error = %failure, "readiness probe: storage not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(CONTENT_TYPE, "text/plain")],
        "not ready: the storage does not answer\n",
    )
        .into_response()
}

async fn metrics(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    if let Some(auth) = &registry.authenticator {
        if let Err(challenge) = auth.authenticate(&headers, &Access::registry()).await {
            return unauthorized(challenge).into_response();
        }
    }
    let text = stowage::metrics::render_prometheus(&registry.metrics());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

async fn handle(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        %method,
        %path,
        user = tracing::field::Empty
    );
    let started = Instant::now();
    // A body silent for the idle timeout fails; the flag tells this
    // request's failure apart from a storage failure.
    let timed_out = BodyTimedOut::default();
    let idle = registry.idle_timeout;
    let request = request.map(|body| IdleTimeoutBody::wrap(body, idle, timed_out.clone()));
    let mut response = async {
        // A panic in a handler (a bug) answers like any other server
        // error, instead of dropping the connection with no answer.
        let routed = std::panic::AssertUnwindSafe(route(&registry, request))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(panicked(&*panic)));
        match routed {
            Ok(r) => r,
            Err(_) if timed_out.is_set() => idle_error(idle).into_response(),
            // Server errors carry a generic message and the request id; the
            // details go to the log under that id.
            Err(e) => e.for_client(&id).into_response(),
        }
    }
    .instrument(span.clone())
    .await;
    if timed_out.is_set() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    registry.count(&method, status);
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

/// The server error a panicked handler answers with; its message (for
/// the log only) is the panic's.
fn panicked(panic: &(dyn std::any::Any + Send)) -> RegistryError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_string());
    crate::service::internal(format!("the handler panicked: {message}"))
}

/// 401 with the challenge's `WWW-Authenticate` and an `UNAUTHORIZED` body.
fn unauthorized(challenge: Challenge) -> RegistryError {
    RegistryError::new(ErrorCode::Unauthorized, challenge.message)
        .with_header(WWW_AUTHENTICATE, challenge.www_authenticate)
}

/// What a request needs from the authenticator: reads (`GET`, `HEAD`) of a
/// repository pull it, everything else pushes; a mount also pulls from its
/// source; `/v2/` itself is the registry (clients probe it to learn how to
/// authenticate, so it asks for credentials even when anonymous pulls are
/// allowed).
fn access(route: &Route<'_>, method: &Method, query: &[(String, String)]) -> Access {
    let reads = *method == Method::GET || *method == Method::HEAD;
    let action = if reads { Action::Pull } else { Action::Push };
    match *route {
        Route::Base => Access::registry(),
        Route::Uploads(name) => {
            let mut needed = Access::repository(name, Action::Push);
            let from = query
                .iter()
                .find(|(k, _)| k == "from")
                .map(|(_, v)| v.as_str());
            if let Some(from) = from.filter(|f| check_repository(f).is_ok()) {
                needed = needed.and(from, Action::Pull);
            }
            needed
        }
        // Upload status is part of pushing.
        Route::Upload(name, _) => Access::repository(name, Action::Push),
        Route::Blob(name, _)
        | Route::Manifest(name, _)
        | Route::Tags(name)
        | Route::Referrers(name, _) => Access::repository(name, action),
    }
}

/// The answer to a request whose body went silent.
fn idle_error(idle: Duration) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadInvalid,
        format!(
            "the client sent nothing for {} s: the request was dropped; \
             an upload stays where it stood and can be resumed",
            idle.as_secs_f64()
        ),
    )
    .with_status(StatusCode::REQUEST_TIMEOUT)
}

async fn route(registry: &Registry, request: Request) -> RegistryResult {
    // The TCP peer, canonical (`::ffff:a.b.c.d` is `a.b.c.d`), or the client
    // a trusted proxy names in X-Forwarded-For.
    let peer: Option<IpAddr> = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client_ip = client_address(peer, request.headers(), &registry.trusted_proxies);
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
    if let Some(auth) = &registry.authenticator {
        let needed = access(&route, &parts.method, &query);
        let identity = auth
            .authenticate(&parts.headers, &needed)
            .await
            .map_err(unauthorized)?;
        if let Some(user) = &identity.user {
            tracing::Span::current().record("user", user.as_str());
        }
    }
    let name = match &route {
        Route::Base => None,
        Route::Blob(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _)
        | Route::Manifest(n, _)
        | Route::Tags(n)
        | Route::Referrers(n, _) => Some(*n),
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
            Method::PUT => {
                registry
                    .finish_upload(repo, id, &query, &parts.headers, body)
                    .await
            }
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
        Route::Referrers(repo, digest) if m == Method::GET => {
            let digest = parse_digest(digest)?;
            let artifact_type = param("artifactType").filter(|t| !t.is_empty());
            registry.list_referrers(repo, &digest, artifact_type).await
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

    /// What each request asks of the authenticator: reads pull, the rest
    /// push; upload status is pushing; a mount also pulls from a valid
    /// `from`; `/v2/` is the registry itself.
    #[test]
    fn access_needed_by_each_request() {
        let d = "sha256:0123";
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let needed = |method: Method, path: &str, query: &[(&str, &str)]| {
            access(&parse(path).expect(path), &method, &q(query))
        };
        let pull = |r: &str| Access::repository(r, Action::Pull);
        let push = |r: &str| Access::repository(r, Action::Push);
        assert_eq!(needed(Method::GET, "/v2/", &[]), Access::registry());
        for (method, path, access) in [
            (Method::GET, format!("/v2/a/b/blobs/{d}"), pull("a/b")),
            (Method::HEAD, format!("/v2/a/b/blobs/{d}"), pull("a/b")),
            (Method::DELETE, format!("/v2/a/b/blobs/{d}"), push("a/b")),
            (Method::GET, "/v2/a/manifests/v1".to_string(), pull("a")),
            (Method::HEAD, "/v2/a/manifests/v1".to_string(), pull("a")),
            (Method::PUT, "/v2/a/manifests/v1".to_string(), push("a")),
            (Method::DELETE, format!("/v2/a/manifests/{d}"), push("a")),
            (Method::GET, "/v2/a/tags/list".to_string(), pull("a")),
            (Method::GET, format!("/v2/a/referrers/{d}"), pull("a")),
            (Method::POST, "/v2/a/blobs/uploads/".to_string(), push("a")),
            (Method::GET, "/v2/a/blobs/uploads/u1".to_string(), push("a")),
            (
                Method::PATCH,
                "/v2/a/blobs/uploads/u1".to_string(),
                push("a"),
            ),
            (Method::PUT, "/v2/a/blobs/uploads/u1".to_string(), push("a")),
            (
                Method::DELETE,
                "/v2/a/blobs/uploads/u1".to_string(),
                push("a"),
            ),
        ] {
            assert_eq!(
                needed(method.clone(), &path, &[]),
                access,
                "{method} {path}"
            );
        }
        assert_eq!(
            needed(
                Method::POST,
                "/v2/a/blobs/uploads/",
                &[("mount", d), ("from", "other/repo")]
            ),
            push("a").and("other/repo", Action::Pull)
        );
        assert!(!push("a").and("b", Action::Pull).is_pull_only());
        assert!(pull("a").is_pull_only() && !Access::registry().is_pull_only());
    }

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
        assert_eq!(
            parse("/v2/x/y/referrers/sha256:abc"),
            Some(Route::Referrers("x/y", "sha256:abc"))
        );
        // A repository with a `referrers` component is not the API.
        assert_eq!(
            parse("/v2/x/referrers/blobs/sha256:abc"),
            Some(Route::Blob("x/referrers", "sha256:abc"))
        );
        assert_eq!(
            parse("/v2/x/referrers/manifests/v1"),
            Some(Route::Manifest("x/referrers", "v1"))
        );
        assert_eq!(parse("/other"), None);
    }
}
