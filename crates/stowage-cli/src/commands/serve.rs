//! `stowage serve`: the example registry on the selected location.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stowage_registry::{HtpasswdAuth, ServeOptions, TlsConfig};

use crate::cli::{ServeLimits, ServeSecurity};
use crate::context::Context;
use crate::failure::Failure;

/// Opens the location and serves until the process is stopped. An
/// htpasswd file, certificate or key that cannot be used is a usage error
/// (exit 2) naming the file, found before anything is served.
pub(crate) async fn run(
    ctx: &Context,
    listen: SocketAddr,
    state_dir: Option<PathBuf>,
    redirect: bool,
    limits: ServeLimits,
    security: ServeSecurity,
) -> Result<(), Failure> {
    let location = ctx.selected()?;
    let auth = match &security.htpasswd {
        Some(file) => Some(
            HtpasswdAuth::open(file)
                .map_err(|e| Failure::usage(e.to_string()))?
                .with_anonymous_pull(security.anonymous_pull),
        ),
        None => None,
    };
    let tls = match (&security.tls_cert, &security.tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsConfig::from_pem_files(cert, key)
                .map_err(|e| Failure::usage(format!("--tls-cert/--tls-key: {e}")))?,
        ),
        (None, None) => None,
        _ => return Err(Failure::usage("--tls-cert and --tls-key go together")),
    };
    let storage = ctx.storage().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::failed(format!("cannot listen on {listen}: {e}")))?;
    let mut options = ServeOptions::default();
    options.state_dir = state_dir.clone();
    options.redirect = redirect;
    options.trusted_proxies = limits.trusted_proxies;
    options.idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    options.header_read_timeout = Duration::from_secs(limits.header_read_timeout_seconds);
    options.max_upload_size = limits.max_upload_size;
    let who = match &auth {
        Some(a) if security.anonymous_pull => format!(
            "htpasswd authentication ({} users), anonymous pulls",
            a.users()
        ),
        Some(a) => format!("htpasswd authentication ({} users)", a.users()),
        None => "no authentication".to_string(),
    };
    let records = match &state_dir {
        Some(dir) => format!("upload records in {}", dir.display()),
        None => "upload records in the storage".to_string(),
    };
    options.authenticator = auth.map(|a| Arc::new(a) as Arc<dyn stowage_registry::Authenticator>);
    let scheme = if tls.is_some() { "https" } else { "http" };
    options.tls = tls;
    eprintln!(
        "stowage: serving an example OCI registry ({who}; {records}) on {scheme}://{} from location {} ({})",
        listener.local_addr().map_err(|e| Failure::failed(e.to_string()))?,
        location.name,
        location.driver.driver_name()
    );
    stowage_registry::serve(storage, listener, options)
        .await
        .map_err(|e| Failure::failed(format!("registry stopped: {e}")))
}
