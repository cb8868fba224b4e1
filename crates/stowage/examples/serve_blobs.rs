//! Serves the objects of one storage location over HTTP, the way a registry
//! serves blobs: `GET /blobs/<path>` (and `HEAD`) answers
//!
//! - `307 Temporary Redirect` to the driver's direct download URL when it
//!   has one (S3 presigned, CloudFront signed), printing why when the URL is
//!   a fallback (e.g. an S3 URL because the CloudFront key is unusable);
//! - else the object's bytes, streamed, with one `Range` (`bytes=a-b`,
//!   `bytes=a-`, `bytes=-n`) honoured as `206 Partial Content`;
//! - `404` when there is no such object.
//!
//! Without arguments it serves a local store in a temporary directory
//! holding `hello.txt` (no network, no configuration):
//!
//! ```text
//! cargo run -p stowage --example serve_blobs
//! curl -i http://127.0.0.1:8080/blobs/hello.txt
//! curl -i -H 'Range: bytes=0-4' http://127.0.0.1:8080/blobs/hello.txt
//! ```
//!
//! With a Quay configuration file it serves its preferred location (or
//! the one named second), through whatever driver the file names; S3 and
//! CloudFront locations need their service to be reachable:
//!
//! ```text
//! cargo run -p stowage --example serve_blobs -- /conf/stack/config.yaml [location]
//! ```
//!
//! It listens on 127.0.0.1:8080; set `SERVE_BLOBS_LISTEN` (e.g.
//! `0.0.0.0:9000`) to change that. Ctrl-C stops it (and removes the
//! temporary directory).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use stowage::local::LocalConfig;
use stowage::{
    ByteRange, DownloadUrlOptions, DriverConfig, Error, ErrorKind, GetOptions, Location,
    PutOptions, Storage, StoragePath, StowageConfig,
};

/// Where the server listens unless `SERVE_BLOBS_LISTEN` says otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_blobs: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), Box<dyn StdError>> {
    // Kept until the server stops: the temporary store lives in it.
    let (storage, _temporary) = open_location(args).await?;
    let capabilities = storage.capabilities();
    println!(
        "driver {}: direct download URLs {}",
        storage.driver(),
        if capabilities.direct_download {
            "yes (GETs are redirected)"
        } else {
            "no (GETs are streamed)"
        }
    );

    let listen = std::env::var("SERVE_BLOBS_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into());
    let addr: SocketAddr = listen.parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "listening on http://{}/blobs/<path>",
        listener.local_addr()?
    );

    let app = Router::new()
        .route("/blobs/{*path}", get(blob))
        .with_state(storage);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        // An error here means no Ctrl-C handler: serve until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await?;
    Ok(())
}

/// The storage of the location the arguments name, or a local store in a
/// temporary directory (returned too, to be removed when dropped) with a
/// sample object.
async fn open_location(
    args: &[String],
) -> Result<(Arc<dyn Storage>, Option<tempfile::TempDir>), Box<dyn StdError>> {
    if let Some(file) = args.first() {
        // Every problem of the file is reported at once, with its key path.
        let config = StowageConfig::from_file(std::path::Path::new(file))?;
        let location = config.location(args.get(1).map(String::as_str))?;
        println!(
            "location {:?} ({}) from {file}",
            location.name,
            location.driver.driver_name()
        );
        return Ok((stowage::open(location).await?, None));
    }
    // The embedded default, LocalStorage, under a temporary directory.
    let dir = tempfile::tempdir()?;
    let location = Location::new("local", DriverConfig::Local(LocalConfig::new(dir.path())));
    let storage = stowage::open(&location).await?;
    let sample = StoragePath::parse("hello.txt")?;
    storage
        .put(
            &sample,
            "hello from stowage\n".into(),
            PutOptions::default().with_content_type("text/plain"),
        )
        .await?;
    println!(
        "local store in {} holding {sample} (no configuration file given)",
        dir.path().display()
    );
    Ok((storage, Some(dir)))
}

/// `GET /blobs/<path>`: a redirect to a direct URL, else the bytes.
async fn blob(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(storage): State<Arc<dyn Storage>>,
    UrlPath(raw): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let path = match StoragePath::parse(raw) {
        Ok(path) => path,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let range = match headers.get(RANGE) {
        None => None,
        Some(value) => match value
            .to_str()
            .map_err(|e| e.to_string())
            .and_then(ByteRange::from_http_header)
        {
            Ok(range) => range,
            Err(message) => {
                return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
        },
    };
    if storage.capabilities().direct_download {
        if let Some(response) = redirect(&*storage, &path, peer.ip()).await {
            return response;
        }
    }
    stream(&*storage, &path, range).await
}

/// A `307` to the driver's download URL for the object, a `404` when it is
/// missing, or `None` (stream it) when the driver gives no URL.
async fn redirect(storage: &dyn Storage, path: &StoragePath, client: IpAddr) -> Option<Response> {
    // A URL would be signed for a missing object too: ask first, so that a
    // missing object is a 404 here rather than an error from the backend.
    if let Err(e) = storage.stat(path).await {
        return Some(error_response(&e));
    }
    // The client's address lets a CDN layer sign for it (without one the
    // CloudFront layer hands out S3 URLs, as Quay does).
    let options = DownloadUrlOptions::default().with_client_ip(client);
    match storage.download_url(path, &options).await {
        Ok(Some(url)) => {
            match &url.fallback {
                Some(fallback) => println!(
                    "{path}: redirect to a {} URL, a fallback ({}): {}",
                    url.source.as_str(),
                    fallback.cause,
                    fallback.detail
                ),
                None => println!("{path}: redirect to a {} URL", url.source.as_str()),
            }
            Some(Redirect::temporary(&url.url).into_response())
        }
        Ok(None) => {
            println!(
                "{path}: the {} driver gave no download URL; streaming",
                storage.driver()
            );
            None
        }
        Err(e) => {
            println!("{path}: no download URL ({}); streaming", e.chain());
            None
        }
    }
}

/// The object's bytes (or the requested range of them) as a streamed body.
async fn stream(storage: &dyn Storage, path: &StoragePath, range: Option<ByteRange>) -> Response {
    let mut options = GetOptions::default();
    if let Some(range) = range {
        options = options.with_range(range);
    }
    let result = match storage.get(path, options).await {
        Ok(result) => result,
        Err(e) => return error_response(&e),
    };
    let size = result.meta.size;
    let served = result.range.clone();
    let content_type = result
        .meta
        .content_type
        .as_deref()
        .and_then(|value| HeaderValue::from_str(value).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(Body::from_stream(result.stream));
    let h = response.headers_mut();
    h.insert(
        CONTENT_LENGTH,
        HeaderValue::from(served.end.saturating_sub(served.start)),
    );
    h.insert(CONTENT_TYPE, content_type);
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // `bytes=0-` of an empty object is all of it: a 200 (a 206 cannot name
    // an empty range).
    if range.is_some() && served.start < served.end {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!(
            "bytes {}-{}/{size}",
            served.start,
            served.end.saturating_sub(1)
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(CONTENT_RANGE, value);
        }
    }
    response
}

/// The HTTP answer to a storage error. Backend details go to the log, not
/// to the client.
fn error_response(e: &Error) -> Response {
    if let Error::InvalidRange { size, .. } = e {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(CONTENT_RANGE, format!("bytes */{size}"))],
            "range not satisfiable\n",
        )
            .into_response();
    }
    match e.kind() {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        ErrorKind::InvalidPath => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        _ => {
            eprintln!("storage error: {}", e.chain());
            (StatusCode::BAD_GATEWAY, "storage error\n").into_response()
        }
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
