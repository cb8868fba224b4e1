//! Running the registry: listen, at most so many connections at once, TLS
//! handshakes when configured (the certificate and key reloaded when their
//! files change), serve with client addresses, timeouts and an access log
//! line per request, answer `/readyz` from a cached storage probe, clean up
//! stale uploads in the background, and stop gracefully: no new
//! connections, requests in flight given a bounded time to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use stowage::Storage;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::auth::Authenticator;
use crate::net::{client_address, Cidr};
use crate::registry::{Registry, DEFAULT_IDLE_TIMEOUT};
use crate::routes::router;
use crate::timeouts::WriteStallTimeout;
use crate::tls::TlsConfig;
use crate::upload_store::UploadStore;
use crate::validation::ManifestUrls;

/// The default of [`ServeOptions::max_connections`].
const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default of [`ServeOptions::max_upload_size`]: 10 GiB.
const DEFAULT_MAX_UPLOAD_SIZE: u64 = 10 << 30;

/// How often the TLS certificate and key files are checked for changes.
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(5);

/// At most one warning this often while connections wait for a place.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How long `/readyz` waits for the storage.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `/readyz` answers from the storage's last answer.
const READY_CACHE: Duration = Duration::from_secs(5);

/// The longest request path an access log line shows.
const LOGGED_PATH_BYTES: usize = 1024;

/// How `stowage serve` runs the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// A local directory for upload records, for a single server; `None`
    /// (the default) keeps them in the storage location itself, shared by
    /// every replica and kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// Uploads untouched for longer are removed (default 24 h), checked at
    /// start and then every hour.
    pub upload_ttl: Duration,
    /// Redirect blob downloads to the driver's direct URLs (default true).
    pub redirect: bool,
    /// Peers (load balancers) whose `X-Forwarded-For` is believed (default
    /// none: the client is the TCP peer).
    pub trusted_proxies: Vec<Cidr>,
    /// A client silent this long loses its connection (default 60 s; zero:
    /// never): a request body that sends nothing, or a response the client
    /// reads nothing of. The chunk in flight is dropped; the upload stays
    /// resumable.
    pub idle_timeout: Duration,
    /// The time a client has to send a request's headers, and to start the
    /// next request on a kept-alive connection (default 30 s; zero: never).
    pub header_read_timeout: Duration,
    /// The largest blob an upload may reach (default 10 GiB; `None` or
    /// `Some(0)`: no limit); larger ones are refused with 413
    /// `SIZE_INVALID`.
    pub max_upload_size: Option<u64>,
    /// The most connections served at once (default 1024; zero: no limit).
    /// Past it, new connections are not accepted until one closes: they
    /// wait in the listen backlog (the kernel refuses them once that is
    /// full), so a flood of connections cannot exhaust file descriptors or
    /// memory, and clients already served keep their answers.
    pub max_connections: usize,
    /// Which URLs manifests may carry in their descriptors (default: none;
    /// a manifest with URLs is refused with 400 `MANIFEST_INVALID`).
    pub manifest_urls: ManifestUrls,
    /// Who may do what (default none: everyone may do everything).
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Serve HTTPS with this certificate (default none: plain HTTP). The
    /// handshake must finish within the header-read timeout. Its files are
    /// checked every 5 s and read again when they change; a pair that
    /// cannot be used is logged and the previous one kept.
    pub tls: Option<TlsConfig>,
    /// How long [`serve_with_shutdown`] lets requests in flight finish once
    /// it stops accepting connections (default 30 s; zero: not at all).
    /// Connections still open then are closed; an upload whose chunk was
    /// cut short stays resumable from its last recorded offset.
    pub shutdown_grace: Duration,
    /// Serve DELETE of manifests, tags and blob links (default false: 405
    /// UNSUPPORTED).
    pub allow_delete: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            state_dir: None,
            upload_ttl: Duration::from_secs(24 * 3600),
            redirect: true,
            trusted_proxies: Vec::new(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            header_read_timeout: Duration::from_secs(30),
            max_upload_size: Some(DEFAULT_MAX_UPLOAD_SIZE),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            manifest_urls: ManifestUrls::default(),
            authenticator: None,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            allow_delete: false,
        }
    }
}

/// Builds the registry over `storage`.
///
/// # Errors
/// When the state directory cannot be created.
pub fn build(storage: Arc<dyn Storage>, options: &ServeOptions) -> std::io::Result<Arc<Registry>> {
    use stowage::layers::{LayerExt as _, MetricsLayer, TracingLayer};
    // Every storage call gets a span (inside the request's, so it carries
    // the request id) and its latency and bytes in /metrics.
    let storage = storage
        .layer(MetricsLayer::new())
        .layer(TracingLayer::new());
    let store = match &options.state_dir {
        Some(dir) => UploadStore::open(dir)?,
        None => UploadStore::in_storage(storage.clone()),
    };
    let mut registry = Registry::new(storage, store)
        .with_trusted_proxies(options.trusted_proxies.clone())
        .with_idle_timeout(options.idle_timeout)
        .with_max_upload_size(options.max_upload_size.filter(|limit| *limit > 0))
        .with_manifest_urls(options.manifest_urls.clone())
        .with_deletes(options.allow_delete);
    if !options.redirect {
        registry = registry.without_redirects();
    }
    if let Some(auth) = &options.authenticator {
        registry = registry.with_authenticator(auth.clone());
    }
    Ok(Arc::new(registry))
}

/// Serves the registry on `listener` until the process ends.
///
/// # Errors
/// When the state directory cannot be created or the server fails.
pub async fn serve(
    storage: Arc<dyn Storage>,
    listener: TcpListener,
    options: ServeOptions,
) -> std::io::Result<()> {
    serve_with_shutdown(storage, listener, options, std::future::pending()).await
}

/// Serves the registry on `listener` until `shutdown` completes (a signal,
/// say), then stops gracefully: the listener is closed, so new connections
/// are refused; idle kept-alive connections are closed; requests in flight
/// get up to [`ServeOptions::shutdown_grace`] to finish, each connection
/// closing after its answer. Connections still open after that are closed
/// and the function returns. Upload records are left as they are, so an
/// upload cut short is resumed from its last recorded offset by this
/// server's successor or another replica.
///
/// At most [`ServeOptions::max_connections`] connections are served at
/// once; the next ones wait in the listen backlog until one closes. Each
/// request is logged once its answer is sent (or abandoned): target
/// `stowage_registry::access`, at info level (`/healthz` and `/readyz` at
/// debug), with the client address (after trusted proxies), method, path
/// (without its query), status, bytes sent and received, duration and
/// request id; never a header, so never a password or token.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::sync::Arc;
/// let storage = Arc::new(stowage::local::LocalStorage::open(std::path::Path::new("./data")).unwrap());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(stowage_registry::serve_with_shutdown(
///     storage,
///     listener,
///     Default::default(),
///     async move {
///         let _ = stopped.await;
///     },
/// ));
/// // ... later:
/// let _ = stop.send(());
/// server.await.expect("the server task")?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// When the state directory cannot be created or the server fails.
pub async fn serve_with_shutdown(
    storage: Arc<dyn Storage>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = build(storage, &options)?;
    let addr = listener.local_addr()?;
    let cleaner = registry.clone();
    let ttl = options.upload_ttl;
    let cleanup = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            cleaner.cleanup(ttl).await;
        }
    });
    let tls_watch = options.tls.clone().map(|tls| tokio::spawn(watch_tls(tls)));
    tracing::info!(
        %addr,
        max_connections = options.max_connections,
        "registry listening"
    );
    let app = router(registry);
    let http = http1(&options);
    let trusted: Arc<[Cidr]> = options.trusted_proxies.clone().into();
    let handshake_timeout = Some(options.header_read_timeout).filter(|t| !t.is_zero());
    let places = (options.max_connections > 0).then(|| {
        Arc::new(Semaphore::new(
            options.max_connections.min(Semaphore::MAX_PERMITS),
        ))
    });
    let mut warned_full: Option<Instant> = None;
    // Every connection task holds a receiver; `true` asks them to finish
    // their request in flight and close.
    let (stopping, _) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A place for the next connection. At the limit, nothing is
        // accepted until a connection closes: new ones wait in the listen
        // backlog.
        let place = match &places {
            None => None,
            Some(places) => match places.clone().try_acquire_owned() {
                Ok(place) => Some(place),
                Err(_) => {
                    if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                        tracing::warn!(
                            max_connections = options.max_connections,
                            "connection limit reached: new connections wait until one closes"
                        );
                        warned_full = Some(Instant::now());
                    }
                    tokio::select! {
                        () = shutdown.as_mut() => break,
                        Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                        place = places.clone().acquire_owned() => place.ok(),
                    }
                }
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.as_mut() => break,
            // Finished connections are reaped as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stop = stopping.subscribe();
        let (http, app, trusted, idle) = (
            http.clone(),
            app.clone(),
            trusted.clone(),
            options.idle_timeout,
        );
        let Some(tls) = &options.tls else {
            connections.spawn(async move {
                let _place = place;
                serve_connection(http, app, stream, peer, idle, trusted, stop).await;
            });
            continue;
        };
        // The handshake runs in the connection's own task, so a client
        // that never finishes it holds nothing but its socket (and its
        // place), and only until the header-read timeout. Each handshake
        // uses the certificate served at the time.
        let acceptor = tls.acceptor();
        connections.spawn(async move {
            let _place = place;
            let handshake = acceptor.accept(stream);
            let accepted = match handshake_timeout {
                Some(limit) => match tokio::time::timeout(limit, handshake).await {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                None => handshake.await,
            };
            match accepted {
                Ok(tls_stream) => {
                    serve_connection(http, app, tls_stream, peer, idle, trusted, stop).await;
                }
                Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            }
        });
    }
    drop(listener);
    cleanup.abort();
    if let Some(watcher) = tls_watch {
        watcher.abort();
    }
    stopping.send_replace(true);
    let grace = options.shutdown_grace;
    tracing::info!(
        connections = connections.len(),
        grace_seconds = grace.as_secs_f64(),
        "registry stopping: no new connections, requests in flight finishing"
    );
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("registry stopped: every request in flight finished"),
        Err(_) => tracing::warn!(
            connections = connections.len(),
            grace_seconds = grace.as_secs_f64(),
            "registry stopped: connections still open after the shutdown grace were closed"
        ),
    }
    // Closes what is left (none when every request finished).
    connections.shutdown().await;
    Ok(())
}

/// Checks the TLS files every [`TLS_RELOAD_CHECK`] and serves a new
/// certificate and key when they changed and can be used.
async fn watch_tls(tls: TlsConfig) {
    let mut tick = tokio::time::interval(TLS_RELOAD_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the files were just read.
    tick.tick().await;
    loop {
        tick.tick().await;
        let tls = tls.clone();
        // Reading files blocks: off the async threads.
        let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
    }
}

/// The HTTP/1 server settings: hyper's header-read timeout (which also
/// closes a kept-alive connection idle for that long).
fn http1(options: &ServeOptions) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    let header_timeout = Some(options.header_read_timeout).filter(|t| !t.is_zero());
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    http
}

/// Serves one accepted connection (plain TCP or a TLS stream): the peer's
/// address goes to each request as axum's `ConnectInfo`, writes the client
/// does not read for `idle` fail, and each request gets an access log line
/// (its client found behind `trusted` proxies). Once `stop` turns `true`
/// the connection finishes the request in flight (closing at once when
/// idle) and closes.
pub(crate) async fn serve_connection<I>(
    http: hyper::server::conn::http1::Builder,
    app: Router,
    io: I,
    peer: SocketAddr,
    idle: Duration,
    trusted: Arc<[Cidr]>,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let record = AccessRecord::start(&request, peer, &trusted);
            let received = record.received.clone();
            let request = request.map(|body| {
                Body::new(CountedBody {
                    inner: Body::new(body),
                    received,
                })
            });
            let app = app.clone();
            async move {
                let response = match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(record.finish(response))
            }
        });
    let io = TokioIo::new(WriteStallTimeout::new(io, idle));
    let mut connection = std::pin::pin!(http.serve_connection(io, service));
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopped(stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection closed with an error");
    }
}

/// Completes once `stop` is `true`; never when its sender is gone without
/// having said so.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn clipped(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What the access log line of one request says, gathered as it is
/// served; written when its answer is sent or abandoned.
#[derive(Debug)]
struct AccessRecord {
    client: Option<IpAddr>,
    method: Method,
    path: String,
    started: Instant,
    received: Arc<AtomicU64>,
    status: u16,
    request_id: Option<String>,
}

impl AccessRecord {
    /// Starts the record of `request` from `peer`.
    fn start<B>(request: &hyper::Request<B>, peer: SocketAddr, trusted: &[Cidr]) -> Self {
        Self {
            client: client_address(Some(peer.ip()), request.headers(), trusted),
            method: request.method().clone(),
            path: clipped(request.uri().path(), LOGGED_PATH_BYTES).to_string(),
            started: Instant::now(),
            received: Arc::default(),
            status: 0,
            request_id: None,
        }
    }

    /// The response, its body counted and logged when it ends.
    fn finish(mut self, response: Response) -> Response {
        self.status = response.status().as_u16();
        self.request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        response.map(|body| {
            Body::new(LoggedBody {
                inner: body,
                record: self,
                sent: 0,
                complete: false,
            })
        })
    }

    /// Writes the line: `sent` bytes of the body went out, all of it when
    /// `complete`.
    fn log(&self, sent: u64, complete: bool) {
        let client = self.client.map(|c| c.to_string()).unwrap_or_default();
        let request_id = self.request_id.as_deref().unwrap_or("-");
        let received = self.received.load(Ordering::Relaxed);
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (method, path, status) = (&self.method, &self.path, self.status);
        macro_rules! access_line {
            ($level:ident) => {
                tracing::$level!(
                    target: "stowage_registry::access",
                    client = %client,
                    method = %method,
                    path = ?path,
                    status,
                    bytes_sent = sent,
                    bytes_received = received,
                    duration_ms,
                    request_id,
                    complete,
                    "request"
                )
            };
        }
        if path == "/healthz" || path == "/readyz" {
            access_line!(debug);
        } else {
            access_line!(info);
        }
    }
}

/// A request body whose bytes are counted as they arrive.
struct CountedBody {
    inner: Body,
    received: Arc<AtomicU64>,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body whose bytes are counted as they go out; the request's
/// access log line is written when it is dropped (sent, or abandoned by a
/// client that went away).
struct LoggedBody {
    inner: Body,
    record: AccessRecord,
    sent: u64,
    complete: bool,
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let complete = self.complete || self.inner.is_end_stream();
        self.record.log(self.sent, complete);
    }
}

/// What tells one version of a watched file from another (the htpasswd
/// file, the TLS certificate and key): modification time, size and, on
/// Unix, the inode and change time, so a file replaced by a rename (as
/// editors and Kubernetes secret updates do) is a new version even with
/// an old modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileVersion {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    changed: (i64, i64),
}

impl FileVersion {
    /// The version of `path` (symbolic links followed); `None` when it
    /// cannot be looked at (missing, or no permission).
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (inode, changed) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), (meta.ctime(), meta.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (inode, changed) = (0, (0, 0));
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
            changed,
        })
    }
}

/// `/readyz`'s memory of the storage probe: its last answer, reused for
/// [`READY_CACHE`], so probes cost at most one storage round trip every
/// few seconds however often they come (concurrent ones wait for the probe
/// in flight).
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// Whether `storage` answers, from the last probe when it is recent.
    pub(crate) async fn storage_ready(&self, storage: &dyn Storage) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last {
            if at.elapsed() < READY_CACHE {
                return ready;
            }
        }
        let ready = storage_answers(storage).await;
        *last = Some((Instant::now(), ready));
        ready
    }
}

/// Whether the storage answers a listing of a prefix that holds nothing
/// (a `ListObjectsV2` on S3: cheap, and it fails on a missing bucket, bad
/// credentials or an unreachable endpoint) within [`READY_TIMEOUT`]. Why
/// not goes to the log.
async fn storage_answers(storage: &dyn Storage) -> bool {
    use futures::TryStreamExt;
    let path = stowage::StoragePath::parse("repositories/_readyz").expect("a valid path");
    let probe = async { storage.list(Some(&path)).try_next().await.map(|_| ()) };
    let failure = match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.chain(),
        Err(_) => format!("no answer within {} s", READY_TIMEOUT.as_secs()),
    };
    tracing::warn!(error = %failure, "readiness probe: storage not ready");
    false
}

/// `GET /readyz`: 200 `ready` when the authenticator can decide and the
/// storage answers (from a probe at most [`READY_CACHE`] old); otherwise
/// 503 with a reason that names no bucket, endpoint, path or user (the
/// details are in the log).
pub(crate) async fn readyz(registry: &Registry) -> Response {
    let not_ready = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CONTENT_TYPE, "text/plain")],
            format!("not ready: {why}\n"),
        )
            .into_response()
    };
    if let Some(auth) = &registry.authenticator {
        if let Err(why) = auth.readiness() {
            return not_ready(&why);
        }
    }
    if !registry
        .readiness
        .storage_ready(registry.storage.as_ref())
        .await
    {
        return not_ready("the storage does not answer");
    }
    ([(CONTENT_TYPE, "text/plain")], "ready\n").into_response()
}

#[cfg(test)]
pub(crate) mod test_log {
    //! Log events captured in tests: every event on the current thread
    //! while the guard lives (a `#[tokio::test]` runs its tasks there), as
    //! `LEVEL target message field=value ...` lines.

    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// The lines captured so far.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct Lines(Arc<Mutex<Vec<String>>>);

    impl Lines {
        /// Every line captured so far.
        pub(crate) fn all(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    struct Capture(Lines);

    #[derive(Default)]
    struct Text {
        message: String,
        fields: String,
    }

    impl Visit for Text {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.message, "{value:?}");
            } else {
                let _ = write!(self.fields, " {}={value:?}", field.name());
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }

        fn record(&self, _: &Id, _: &Record<'_>) {}

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut text = Text::default();
            event.record(&mut text);
            let meta = event.metadata();
            let line = format!(
                "{} {} {}{}",
                meta.level(),
                meta.target(),
                text.message,
                text.fields
            );
            self.0 .0.lock().unwrap().push(line);
        }

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }

    /// One capture at a time in the process: tracing's per-callsite
    /// interest is global, and captures coming and going on other test
    /// threads can leave it cached as "never" for this one.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// Holds the capture until dropped.
    pub(crate) struct CaptureGuard {
        _default: tracing::dispatcher::DefaultGuard,
        _exclusive: std::sync::MutexGuard<'static, ()>,
    }

    /// Captures the events of this thread until the guard is dropped.
    pub(crate) fn capture() -> (Lines, CaptureGuard) {
        let exclusive = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let lines = Lines::default();
        let dispatch = tracing::Dispatch::new(Capture(lines.clone()));
        let default = tracing::dispatcher::set_default(&dispatch);
        tracing::callsite::rebuild_interest_cache();
        (
            lines,
            CaptureGuard {
                _default: default,
                _exclusive: exclusive,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Sends `request` on a new connection and reads until the server
    /// closes it.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        read_to_close(&mut c).await
    }

    /// What arrives until the server closes the connection (a reset
    /// included).
    async fn read_to_close(c: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
            .await
            .expect("the server closed the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Starts an upload of repository `app`; its location.
    async fn start_upload(addr: SocketAddr) -> String {
        let started = exchange(
            addr,
            "POST /v2/app/blobs/uploads/ HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n",
        )
        .await;
        assert!(started.starts_with("HTTP/1.1 202"), "{started}");
        started
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no location: {started}"))
    }

    #[allow(clippy::field_reassign_with_default)] // ServeOptions is non-exhaustive
    fn serve_options(state: &std::path::Path) -> ServeOptions {
        let mut options = ServeOptions::default();
        options.state_dir = Some(state.to_path_buf());
        options.shutdown_grace = Duration::from_secs(20);
        options
    }

    #[tokio::test]
    async fn a_shutdown_refuses_new_connections_and_lets_the_request_in_flight_finish() {
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_requested) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_shutdown(
            storage.clone(),
            listener,
            serve_options(state.path()),
            async move {
                let _ = stop_requested.await;
            },
        ));

        let location = start_upload(addr).await;

        // A kept-alive connection, answered and idle, and a chunk half sent.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut patch = TcpStream::connect(addr).await.unwrap();
        let head = format!("PATCH {location} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n");
        patch.write_all(head.as_bytes()).await.unwrap();
        patch.write_all(&[7u8; 40]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        stop.send(()).unwrap();
        let refused_by = tokio::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < refused_by,
                "new connections are still accepted after the shutdown"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The idle connection is closed at once, not after the header-read
        // timeout.
        let answered = read_to_close(&mut idle).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");

        // The chunk in flight finishes, and its connection closes after.
        patch.write_all(&[7u8; 60]).await.unwrap();
        let chunk = read_to_close(&mut patch).await;
        assert!(chunk.starts_with("HTTP/1.1 202"), "{chunk}");
        assert!(
            chunk.to_ascii_lowercase().contains("connection: close"),
            "{chunk}"
        );
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stopped once its last request finished")
            .unwrap()
            .unwrap();

        // The upload stays resumable on the next server.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let next = tokio::spawn(serve(storage, listener, serve_options(state.path())));
        let status = exchange(
            addr,
            &format!("GET {location} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 204"), "{status}");
        assert!(
            status.to_ascii_lowercase().contains("range: 0-99"),
            "{status}"
        );
        next.abort();
    }

    #[tokio::test]
    async fn a_request_still_running_after_the_shutdown_grace_is_cut() {
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = serve_options(state.path());
        options.shutdown_grace = Duration::from_millis(300);
        let (stop, stop_requested) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_shutdown(
            storage,
            listener,
            options,
            async move {
                let _ = stop_requested.await;
            },
        ));
        let location = start_upload(addr).await;
        // A body that stops: the request cannot finish by itself.
        let mut patch = TcpStream::connect(addr).await.unwrap();
        let head = format!("PATCH {location} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n");
        patch.write_all(head.as_bytes()).await.unwrap();
        patch.write_all(b"ten bytes!").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = tokio::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stopped after its grace")
            .unwrap()
            .unwrap();
        assert!(asked.elapsed() >= Duration::from_millis(250));
        let cut = read_to_close(&mut patch).await;
        assert!(!cut.starts_with("HTTP/1.1 202"), "{cut}");
    }

    /// The value of header `name` in a raw HTTP answer.
    fn header_value(answer: &str, name: &str) -> String {
        answer
            .lines()
            .find_map(|l| {
                let (n, value) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name}: {answer}"))
    }

    /// Past `max_connections`, a new connection is not served until one
    /// closes; then it is.
    #[tokio::test]
    async fn connections_past_the_limit_wait_until_one_closes() {
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = serve_options(state.path());
        options.max_connections = 2;
        let server = tokio::spawn(serve(storage, listener, options));
        // Two kept-alive connections take both places.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut status = [0u8; 12];
            c.read_exact(&mut status).await.unwrap();
            assert_eq!(&status, b"HTTP/1.1 200");
            held.push(c);
        }
        // A third one connects (the kernel's backlog) but is not served.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut status = [0u8; 12];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read_exact(&mut status));
        assert!(early.await.is_err(), "served past the connection limit");
        // One closes: the third is served.
        drop(held.pop());
        let answer = read_to_close(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }

    #[test]
    fn serve_defaults_limit_uploads_and_connections() {
        let options = ServeOptions::default();
        assert_eq!(options.max_upload_size, Some(10 << 30));
        assert_eq!(options.max_connections, 1024);
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let registry = build(storage.clone(), &options).unwrap();
        assert_eq!(registry.max_upload_size, Some(10 << 30));
        let unlimited = ServeOptions {
            max_upload_size: Some(0),
            ..ServeOptions::default()
        };
        assert_eq!(build(storage, &unlimited).unwrap().max_upload_size, None);
    }

    /// Each request is logged once answered: the client (behind a trusted
    /// proxy), method, path without its query, status, bytes each way,
    /// duration and request id; never a header's value.
    #[tokio::test]
    async fn access_log_lines_name_the_client_status_bytes_and_request_id() {
        let (lines, guard) = test_log::capture();
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let state = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut options = serve_options(state.path());
        options.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        let server = tokio::spawn(serve(storage, listener, options));
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"hello")));
        let token = "YWxpY2U6Y29ycmVjdC1ob3JzZQ==";
        let pushed = exchange(
            addr,
            &format!(
                "POST /v2/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: x\r\n\
                 authorization: Basic {token}\r\nx-forwarded-for: 198.51.100.9\r\n\
                 content-length: 5\r\nconnection: close\r\n\r\nhello"
            ),
        )
        .await;
        assert!(pushed.starts_with("HTTP/1.1 201"), "{pushed}");
        let id = header_value(&pushed, "x-request-id");
        let pulled = exchange(
            addr,
            &format!("GET /v2/app/blobs/{digest} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(
            pulled.starts_with("HTTP/1.1 200") && pulled.ends_with("hello"),
            "{pulled}"
        );
        let probe = exchange(
            addr,
            "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
        server.abort();
        drop(guard);

        let all = lines.all();
        let access: Vec<&String> = all
            .iter()
            .filter(|l| l.contains("stowage_registry::access"))
            .collect();
        let push = access
            .iter()
            .find(|l| l.contains("method=POST"))
            .unwrap_or_else(|| panic!("no line for the push: {all:#?}"));
        let request_id = format!("request_id=\"{id}\"");
        for part in [
            "INFO ",
            "client=198.51.100.9",
            "path=\"/v2/app/blobs/uploads/\"",
            "status=201",
            "bytes_received=5",
            "duration_ms=",
            "complete=true",
            request_id.as_str(),
        ] {
            assert!(push.contains(part), "{part} not in {push}");
        }
        assert!(!push.contains("?digest"), "{push}");
        let pull = access
            .iter()
            .find(|l| l.contains("method=GET") && l.contains("/blobs/sha256:"))
            .unwrap_or_else(|| panic!("no line for the pull: {all:#?}"));
        for part in ["client=127.0.0.1", "status=200", "bytes_sent=5"] {
            assert!(pull.contains(part), "{part} not in {pull}");
        }
        assert!(
            access
                .iter()
                .any(|l| l.starts_with("DEBUG") && l.contains("/healthz")),
            "probes are logged at debug level: {access:#?}"
        );
        assert!(all.iter().all(|l| !l.contains(token)), "{all:#?}");
    }

    /// A storage that counts its listings (what `/readyz` asks).
    #[derive(Debug)]
    struct CountingLists {
        inner: stowage::local::LocalStorage,
        lists: AtomicU64,
    }

    impl stowage::forward::Wraps for CountingLists {
        type Inner = stowage::local::LocalStorage;
        fn wrapped(&self) -> &stowage::local::LocalStorage {
            &self.inner
        }
    }

    stowage::forward_storage! {
        impl Storage for CountingLists;
        forward [driver capabilities get put_stream put stat delete delete_prefix list_page
                 copy download_url upload_url start_upload write_chunk complete_upload
                 abort_upload cleanup_uploads validate metrics];

        fn list(&self, prefix: Option<&stowage::StoragePath>) -> stowage::ListStream<'_> {
            self.lists.fetch_add(1, Ordering::Relaxed);
            self.inner.list(prefix)
        }
    }

    /// However many probes come, one after the other or at once, the
    /// storage is asked once per few seconds.
    #[tokio::test]
    async fn readiness_asks_the_storage_at_most_once_per_few_seconds() {
        let storage = CountingLists {
            inner: stowage::local::LocalStorage::in_memory(),
            lists: AtomicU64::new(0),
        };
        let readiness = Readiness::default();
        for _ in 0..20 {
            assert!(readiness.storage_ready(&storage).await);
        }
        let at_once =
            futures::future::join_all((0..20).map(|_| readiness.storage_ready(&storage))).await;
        assert!(at_once.iter().all(|ready| *ready));
        assert_eq!(storage.lists.load(Ordering::Relaxed), 1);
    }
}
