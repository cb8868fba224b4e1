//! Running the registry: listen, serve with client addresses, clean up
//! stale uploads in the background.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stowage::Storage;
use tokio::net::TcpListener;

use crate::registry::Registry;
use crate::routes::router;
use crate::upload_store::UploadStore;

/// How `stowage serve` runs the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where upload records are kept (default `./stowage-registry-state`).
    pub state_dir: PathBuf,
    /// Uploads untouched for longer are removed (default 24 h), checked at
    /// start and then every hour.
    pub upload_ttl: Duration,
    /// Redirect blob downloads to the driver's direct URLs (default true).
    pub redirect: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("./stowage-registry-state"),
            upload_ttl: Duration::from_secs(24 * 3600),
            redirect: true,
        }
    }
}

/// Builds the registry over `storage`.
///
/// # Errors
/// When the state directory cannot be created.
pub fn build(storage: Arc<dyn Storage>, options: &ServeOptions) -> std::io::Result<Arc<Registry>> {
    let store = UploadStore::open(&options.state_dir)?;
    let mut registry = Registry::new(storage, store);
    if !options.redirect {
        registry = registry.without_redirects();
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
    axum::serve(
        listener,
        router(registry).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
