//! Running the registry: listen, TLS handshakes when configured, serve
//! with client addresses and timeouts, clean up stale uploads in the
//! background.

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
    let registry = build(storage, &options)?;
    let cleaner = registry.clone();
    let ttl = options.upload_ttl;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            cleaner.cleanup(ttl).await;
        }
    });
    tracing::info!(addr = %listener.local_addr()?, "registry listening");
    let app = router(registry);
    let http = http1(&options);
    let tls = options.tls.as_ref().map(TlsConfig::acceptor);
    let handshake_timeout = Some(options.header_read_timeout).filter(|t| !t.is_zero());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = &tls else {
            tokio::spawn(serve_connection(
                http.clone(),
                app.clone(),
                stream,
                peer,
                options.idle_timeout,
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
        tokio::spawn(async move {
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
                Ok(tls_stream) => serve_connection(http, app, tls_stream, peer, idle).await,
                Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            }
        });
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

/// Serves one accepted connection (plain TCP here; a TLS stream works the
/// same): the peer's address goes to each request as axum's
/// `ConnectInfo`, and writes the client does not read for `idle` fail.
pub(crate) async fn serve_connection<I>(
    http: hyper::server::conn::http1::Builder,
    app: Router,
    io: I,
    peer: SocketAddr,
    idle: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
    let io = TokioIo::new(WriteStallTimeout::new(io, idle));
    if let Err(e) = http.serve_connection(io, service).await {
        tracing::debug!(%peer, error = %e, "connection closed with an error");
    }
}
