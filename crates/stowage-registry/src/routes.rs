//! Routes: the URL forms of the OCI Distribution API (repository names
//! contain `/`, so paths are parsed here rather than by a path pattern),
//! authentication (what each request needs), whether deletes are served,
//! page sizes, request ids and logging, `/metrics`, and the probes
//! `/healthz` and `/readyz`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{CONNECTION, CONTENT_TYPE};
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
use crate::service::page_size;
use crate::service::referrers::DEFAULT_REFERRERS_PAGE;
use crate::timeouts::{BodyTimedOut, IdleTimeoutBody};

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
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
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
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

/// The request's `Authorization` header for the authenticator; a value
/// that is not text becomes one that no scheme accepts (refused as
/// malformed).
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// Readiness: the authenticator's state and the storage's answer to a
/// cheap listing, cached for a few seconds (`server::readyz`).
async fn readyz(State(registry): State<Arc<Registry>>) -> Response {
    crate::server::readyz(&registry).await
}

async fn metrics(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    if let Some(auth) = &registry.authenticator {
        if let Err(challenge) = auth
            .authenticate(authorization(&headers), &Access::registry())
            .await
        {
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
    RegistryError::from(challenge)
}

/// What a request needs from the authenticator: reads (`GET`, `HEAD`) of a
/// repository pull it, everything else pushes (deletes too: distribution's
/// htpasswd grants `delete` with `push`); a mount also pulls from its
/// source; `/v2/` itself and the catalog are the registry (clients probe
/// `/v2/` to learn how to authenticate, and the catalog names every
/// repository, so both ask for credentials even when anonymous pulls are
/// allowed).
fn access(route: &Route<'_>, method: &Method, query: &[(String, String)]) -> Access {
    let reads = *method == Method::GET || *method == Method::HEAD;
    let action = if reads { Action::Pull } else { Action::Push };
    match *route {
        Route::Base | Route::Catalog => Access::registry(),
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
    .with_status(StatusCode::REQUEST_TIMEOUT.as_u16())
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
    // Without an authenticator nobody is known.
    let mut anonymous = true;
    if let Some(auth) = &registry.authenticator {
        let needed = access(&route, &parts.method, &query);
        let identity = auth
            .authenticate_from(authorization(&parts.headers), &needed, client_ip)
            .await
            .map_err(unauthorized)?;
        if let Some(user) = &identity.user {
            tracing::Span::current().record("user", user.as_str());
            anonymous = false;
        }
    }
    let name = match &route {
        Route::Base | Route::Catalog => None,
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
    if *m == Method::DELETE && !registry.allow_delete && !matches!(route, Route::Upload(..)) {
        return Err(deletes_disabled());
    }
    match route {
        Route::Base if m == Method::GET || m == Method::HEAD => Ok((
            [(CONTENT_TYPE, "application/json")],
            if m == Method::GET { "{}" } else { "" },
        )
            .into_response()),
        Route::Catalog if m == Method::GET => {
            registry
                .catalog(page_size(param("n"))?, param("last"))
                .await
        }
        Route::Blob(repo, digest) => {
            let digest = parse_digest(digest)?;
            match *m {
                Method::HEAD => registry.head_blob(repo, &digest).await,
                Method::GET => {
                    registry
                        .get_blob(repo, &digest, &parts.headers, client_ip)
                        .await
                }
                Method::DELETE => registry.delete_blob(repo, &digest).await,
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
            let n = page_size(param("n"))?;
            registry.list_tags(repo, n, param("last")).await
        }
        Route::Referrers(repo, digest) if m == Method::GET => {
            let digest = parse_digest(digest)?;
            let artifact_type = param("artifactType").filter(|t| !t.is_empty());
            // Requests without credentials get pages; with, everything
            // unless they ask for pages.
            let page = page_size(param("n"))?.or(anonymous.then_some(DEFAULT_REFERRERS_PAGE));
            let last = param("last").map(parse_digest).transpose()?;
            registry
                .list_referrers(repo, &digest, artifact_type, page, last.as_ref())
                .await
        }
        _ => Err(method_not_allowed(m)),
    }
}

/// 405 `UNSUPPORTED`: deletes are off (`stowage serve --allow-delete`).
fn deletes_disabled() -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        "deleting is disabled on this registry (stowage serve --allow-delete enables it)",
    )
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
        assert_eq!(needed(Method::GET, "/v2/_catalog", &[]), Access::registry());
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
        assert_eq!(parse("/v2/_catalog"), Some(Route::Catalog));
        // Not a repository name: refused as one later.
        assert_eq!(
            parse("/v2/_catalog/tags/list"),
            Some(Route::Tags("_catalog"))
        );
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

    mod lifecycle {
        use std::sync::Arc;

        use axum::http::StatusCode;
        use stowage::{Storage, StorageExt};

        use crate::digest::Digest;
        use crate::layout;
        use crate::registry::Registry;
        use crate::service::testing::{
            call, manifest, push_blob, put_manifest, registry, send, Answer,
        };
        use crate::upload_store::UploadStore;

        fn memory() -> Arc<dyn Storage> {
            Arc::new(stowage::local::LocalStorage::in_memory())
        }

        async fn get(r: &Arc<Registry>, uri: &str) -> Answer {
            call(r, "GET", uri, Vec::new()).await
        }

        /// Without `with_deletes(true)`, every delete of content is 405
        /// `UNSUPPORTED` and nothing is removed; cancelling an upload still
        /// works.
        #[tokio::test]
        async fn deletes_are_off_by_default() {
            let storage = memory();
            let r = Arc::new(Registry::new(
                storage.clone(),
                UploadStore::in_storage(storage.clone()),
            ));
            let layer = push_blob(&r, "app", b"layer").await;
            let config = push_blob(&r, "app", b"{}").await;
            let body = manifest(&config, &[&layer]);
            let digest = Digest::sha256_of(&body);
            assert_eq!(
                put_manifest(&r, "app", "v1", body).await.status,
                StatusCode::CREATED
            );
            for uri in [
                format!("/v2/app/manifests/{digest}"),
                "/v2/app/manifests/v1".to_string(),
                format!("/v2/app/blobs/{layer}"),
            ] {
                let answer = call(&r, "DELETE", &uri, Vec::new()).await;
                assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{uri}");
                assert_eq!(answer.code(), "UNSUPPORTED", "{uri}");
            }
            assert_eq!(get(&r, "/v2/app/manifests/v1").await.status, StatusCode::OK);
            assert!(storage
                .exists(&layout::layer_link("app", layer))
                .await
                .unwrap());
            let started = call(&r, "POST", "/v2/app/blobs/uploads/", Vec::new()).await;
            let cancel = call(&r, "DELETE", &started.header("location"), Vec::new()).await;
            assert_eq!(cancel.status, StatusCode::NO_CONTENT);
        }

        /// With deletes on: a tag delete removes the tag only; a blob
        /// delete removes the repository's link only (202, then 404); a
        /// manifest delete by digest removes it and its tags.
        #[tokio::test]
        async fn deletes_remove_tags_links_and_manifests() {
            let storage = memory();
            let r = registry(storage.clone());
            let layer = push_blob(&r, "app", b"layer").await;
            let config = push_blob(&r, "app", b"{}").await;
            let body = manifest(&config, &[&layer]);
            let digest = Digest::sha256_of(&body);
            for tag in ["v1", "v2"] {
                let put = put_manifest(&r, "app", tag, body.clone()).await;
                assert_eq!(put.status, StatusCode::CREATED);
            }
            let deleted = call(&r, "DELETE", "/v2/app/manifests/v1", Vec::new()).await;
            assert_eq!(deleted.status, StatusCode::ACCEPTED);
            assert_eq!(
                get(&r, "/v2/app/manifests/v1").await.status,
                StatusCode::NOT_FOUND
            );
            let by_digest = format!("/v2/app/manifests/{digest}");
            assert_eq!(get(&r, &by_digest).await.status, StatusCode::OK);
            assert_eq!(get(&r, "/v2/app/manifests/v2").await.status, StatusCode::OK);

            let blob = format!("/v2/app/blobs/{layer}");
            let deleted = call(&r, "DELETE", &blob, Vec::new()).await;
            assert_eq!(deleted.status, StatusCode::ACCEPTED);
            assert_eq!(
                call(&r, "HEAD", &blob, Vec::new()).await.status,
                StatusCode::NOT_FOUND
            );
            let again = call(&r, "DELETE", &blob, Vec::new()).await;
            assert_eq!(again.status, StatusCode::NOT_FOUND);
            assert_eq!(again.code(), "BLOB_UNKNOWN");
            assert!(
                storage.exists(&layout::blob(layer)).await.unwrap(),
                "the bytes are shared: only a garbage collection removes them"
            );

            let deleted = call(&r, "DELETE", &by_digest, Vec::new()).await;
            assert_eq!(deleted.status, StatusCode::ACCEPTED);
            for uri in [by_digest.as_str(), "/v2/app/manifests/v2"] {
                let answer = get(&r, uri).await;
                assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
                assert_eq!(answer.code(), "MANIFEST_UNKNOWN");
            }
        }

        /// The catalog a page at a time (`n=1`, following `Link`), nested
        /// names included, `n=0`, bad `n`, and `last` past the end.
        #[tokio::test]
        async fn the_catalog_pages_with_links() {
            let r = registry(memory());
            let config = push_blob(&r, "b", b"{}").await;
            let repos = ["a-b", "a", "a/nested", "b", "team/app"];
            for repo in repos {
                push_blob(&r, repo, b"{}").await;
                let put = put_manifest(&r, repo, "v1", manifest(&config, &[])).await;
                assert_eq!(put.status, StatusCode::CREATED, "{repo}: {put:?}");
            }
            // Blob links only: not a repository.
            push_blob(&r, "lonely", b"{}").await;

            let all = get(&r, "/v2/_catalog").await;
            assert_eq!(all.status, StatusCode::OK);
            assert_eq!(all.json()["repositories"], serde_json::json!(repos));
            assert_eq!(all.header("link"), "");

            let mut uri = "/v2/_catalog?n=1".to_string();
            let mut seen = Vec::new();
            loop {
                let page = get(&r, &uri).await;
                assert_eq!(page.status, StatusCode::OK, "{uri}");
                let names = page.json()["repositories"].clone();
                assert_eq!(names.as_array().unwrap().len(), 1, "{uri}: {names}");
                let name = names[0].as_str().unwrap().to_string();
                let link = page.header("link");
                seen.push(name.clone());
                if link.is_empty() {
                    break;
                }
                assert_eq!(
                    link,
                    format!("</v2/_catalog?last={name}&n=1>; rel=\"next\"")
                );
                uri = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            assert_eq!(seen, repos);

            let none = get(&r, "/v2/_catalog?n=0").await;
            assert_eq!(none.json()["repositories"], serde_json::json!([]));
            assert_eq!(none.header("link"), "");
            let past = get(&r, "/v2/_catalog?last=zzz").await;
            assert_eq!(past.json()["repositories"], serde_json::json!([]));
            for bad in ["-1", "x", "1001"] {
                let answer = get(&r, &format!("/v2/_catalog?n={bad}")).await;
                assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
                assert_eq!(answer.code(), "PAGINATION_NUMBER_INVALID");
            }
        }

        /// 250 tags read 100 at a time through `Link`; `n=0`; bad `n`.
        #[tokio::test]
        async fn tags_page_through_storage() {
            let r = registry(memory());
            let config = push_blob(&r, "app", b"{}").await;
            let body = manifest(&config, &[]);
            let mut tags: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
            for tag in &tags {
                let put = put_manifest(&r, "app", tag, body.clone()).await;
                assert_eq!(put.status, StatusCode::CREATED);
            }
            tags.sort();
            let mut uri = "/v2/app/tags/list?n=100".to_string();
            let mut seen: Vec<String> = Vec::new();
            let mut pages = 0;
            loop {
                let page = get(&r, &uri).await;
                assert_eq!(page.status, StatusCode::OK, "{uri}");
                pages += 1;
                let v = page.json();
                for t in v["tags"].as_array().unwrap() {
                    seen.push(t.as_str().unwrap().to_string());
                }
                let link = page.header("link");
                if link.is_empty() {
                    break;
                }
                let last = seen.last().unwrap();
                assert_eq!(
                    link,
                    format!("</v2/app/tags/list?n=100&last={last}>; rel=\"next\"")
                );
                uri = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            assert_eq!(pages, 3);
            assert_eq!(seen, tags);
            let all = get(&r, "/v2/app/tags/list").await;
            assert_eq!(all.json()["tags"].as_array().unwrap().len(), 250);

            let none = get(&r, "/v2/app/tags/list?n=0").await;
            assert_eq!(none.status, StatusCode::OK);
            assert_eq!(none.json()["tags"], serde_json::json!([]));
            assert_eq!(none.header("link"), "");
            for bad in ["-1", "abc", "1001", ""] {
                let answer = get(&r, &format!("/v2/app/tags/list?n={bad}")).await;
                assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad:?}");
                assert_eq!(answer.code(), "PAGINATION_NUMBER_INVALID");
            }
            let unknown = get(&r, "/v2/nothing/tags/list?n=0").await;
            assert_eq!(unknown.code(), "NAME_UNKNOWN");
        }

        /// Referrers for a request without credentials come in pages of
        /// `n`, following `Link` with the filter kept.
        #[tokio::test]
        async fn referrers_page_with_links() {
            let r = registry(memory());
            let config = push_blob(&r, "app", b"{}").await;
            let subject_body = manifest(&config, &[]);
            let subject = Digest::sha256_of(&subject_body);
            assert_eq!(
                put_manifest(&r, "app", "v1", subject_body).await.status,
                StatusCode::CREATED
            );
            let mut referrers = Vec::new();
            for i in 0..5 {
                let doc = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": crate::OCI_MANIFEST,
                    "artifactType": "application/vnd.example+json",
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                               "digest": config.to_string(), "size": 2},
                    "layers": [],
                    "subject": {"mediaType": crate::OCI_MANIFEST,
                                "digest": subject.to_string(), "size": 1},
                    "annotations": {"i": i.to_string()},
                });
                let body = serde_json::to_vec(&doc).unwrap();
                referrers.push(Digest::sha256_of(&body).to_string());
                let uri = format!("/v2/app/manifests/{}", referrers.last().unwrap());
                let put = send(&r, "PUT", &uri, Some(crate::OCI_MANIFEST), body).await;
                assert_eq!(put.status, StatusCode::CREATED, "{put:?}");
            }
            referrers.sort();
            let filter = "artifactType=application/vnd.example%2Bjson";
            let mut uri = format!("/v2/app/referrers/{subject}?n=2&{filter}");
            let mut seen = Vec::new();
            loop {
                let page = get(&r, &uri).await;
                assert_eq!(page.status, StatusCode::OK, "{uri}");
                for m in page.json()["manifests"].as_array().unwrap() {
                    seen.push(m["digest"].as_str().unwrap().to_string());
                }
                let link = page.header("link");
                if link.is_empty() {
                    break;
                }
                assert!(link.contains(filter), "{link}");
                uri = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            assert_eq!(seen, referrers);
            let all = get(&r, &format!("/v2/app/referrers/{subject}")).await;
            assert_eq!(all.json()["manifests"].as_array().unwrap().len(), 5);
            assert_eq!(all.header("link"), "");
        }
    }
}
