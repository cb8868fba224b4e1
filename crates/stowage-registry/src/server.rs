//! Running the registry: listen, TLS handshakes when configured, serve
//! with client addresses and timeouts, clean up stale uploads in the
//! background, and stop gracefully: no new connections, requests in flight
//! given a bounded time to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use stowage::Storage;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::auth::Authenticator;
use crate::net::Cidr;
use crate::registry::{Registry, DEFAULT_IDLE_TIMEOUT};
use crate::routes::router;
use crate::timeouts::WriteStallTimeout;
use crate::tls::TlsConfig;
use crate::upload_store::UploadStore;

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
    /// The largest blob an upload may reach (default: no limit); larger
    /// ones are refused with 413 `SIZE_INVALID`.
    pub max_upload_size: Option<u64>,
    /// Who may do what (default none: everyone may do everything).
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Serve HTTPS with this certificate (default none: plain HTTP). The
    /// handshake must finish within the header-read timeout.
    pub tls: Option<TlsConfig>,
    /// How long [`serve_with_shutdown`] lets requests in flight finish once
    /// it stops accepting connections (default 30 s; zero: not at all).
    /// Connections still open then are closed; an upload whose chunk was
    /// cut short stays resumable from its last recorded offset.
    pub shutdown_grace: Duration,
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
            max_upload_size: None,
            authenticator: None,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Builds the registry over `storage`.
///
/// # Errors
/// When the state directory cannot be created.
pub fn build(storage: Arc<dyn Storage>, options: &ServeOptions) -> std::io::Result<Arc<Registry>> {
    let store = match &options.state_dir {
        Some(dir) => UploadStore::open(dir)?,
        None => UploadStore::in_storage(storage.clone()),
    };
    let mut registry = Registry::new(storage, store)
        .with_trusted_proxies(options.trusted_proxies.clone())
        .with_idle_timeout(options.idle_timeout)
        .with_max_upload_size(options.max_upload_size);
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
    tracing::info!(%addr, "registry listening");
    let app = router(registry);
    let http = http1(&options);
    let tls = options.tls.as_ref().map(TlsConfig::acceptor);
    let handshake_timeout = Some(options.header_read_timeout).filter(|t| !t.is_zero());
    // Every connection task holds a receiver; `true` asks them to finish
    // their request in flight and close.
    let (stopping, _) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let Some(acceptor) = &tls else {
            connections.spawn(serve_connection(
                http.clone(),
                app.clone(),
                stream,
                peer,
                options.idle_timeout,
                stop,
            ));
            continue;
        };
        // The handshake runs in the connection's own task, so a client
        // that never finishes it holds nothing but its socket, and only
        // until the header-read timeout.
        let (acceptor, http, app, idle) = (
            acceptor.clone(),
            http.clone(),
            app.clone(),
            options.idle_timeout,
        );
        connections.spawn(async move {
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
                Ok(tls_stream) => serve_connection(http, app, tls_stream, peer, idle, stop).await,
                Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            }
        });
    }
    drop(listener);
    cleanup.abort();
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

/// The HTTP/1 server settings: hyper's header-read timeout (which also
/// closes a kept-alive connection idle for that long).
fn http1(options: &ServeOptions) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    let header_timeout = Some(options.header_read_timeout).filter(|t| !t.is_zero());
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    http
}

/// Serves one accepted connection (plain TCP here; a TLS stream works the
/// same): the peer's address goes to each request as axum's
/// `ConnectInfo`, and writes the client does not read for `idle` fail.
/// Once `stop` turns `true` the connection finishes the request in flight
/// (closing at once when idle) and closes.
pub(crate) async fn serve_connection<I>(
    http: hyper::server::conn::http1::Builder,
    app: Router,
    io: I,
    peer: SocketAddr,
    idle: Duration,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
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

#[cfg(test)]
mod tests {
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
}
