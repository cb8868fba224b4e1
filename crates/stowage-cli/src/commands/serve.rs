//! `stowage serve`: the example registry on the selected location.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stowage_registry::{HtpasswdAuth, ServeOptions, TlsConfig};

use crate::cli::{ServeLimits, ServeSecurity};
use crate::context::Context;
use crate::failure::Failure;
use crate::interrupt::Signals;

/// Opens the location and serves until SIGTERM or SIGINT, then stops
/// gracefully (`--shutdown-grace-seconds`) and returns; a second signal
/// exits at once. An htpasswd file, certificate or key that cannot be used
/// is a usage error (exit 2) naming the file, found before anything is
/// served. Deletes are served only with `allow_delete`.
pub(crate) async fn run(
    ctx: &Context,
    listen: SocketAddr,
    state_dir: Option<PathBuf>,
    redirect: bool,
    allow_delete: bool,
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
    // Caught from before the banner on: a signal after it stops gracefully.
    let signals = Signals::install();
    // SIGHUP reloads the CloudFront signing keys of every location now
    // (they are also re-read when their files change).
    #[cfg(unix)]
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Ok(done) =
                tokio::task::spawn_blocking(stowage::cloudfront::reload_signing_keys).await
            {
                for (distribution, outcome) in done {
                    eprintln!("stowage: SIGHUP: CloudFront keys of {distribution}: {outcome}");
                }
            }
        }
    });
    let mut options = ServeOptions::default();
    options.state_dir = state_dir.clone();
    options.redirect = redirect;
    options.allow_delete = allow_delete;
    options.trusted_proxies = limits.trusted_proxies;
    options.idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    options.header_read_timeout = Duration::from_secs(limits.header_read_timeout_seconds);
    options.max_upload_size = limits.max_upload_size;
    options.max_connections = limits.max_connections;
    options.manifest_urls = stowage_registry::ManifestUrls::new(
        security.manifest_urls_allow.clone(),
        security.manifest_urls_deny.clone(),
    );
    options.shutdown_grace = Duration::from_secs(limits.shutdown_grace_seconds);
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
    let deletes = if allow_delete {
        "deletes allowed"
    } else {
        "deletes off"
    };
    options.authenticator = auth.map(|a| Arc::new(a) as Arc<dyn stowage_registry::Authenticator>);
    let scheme = if tls.is_some() { "https" } else { "http" };
    options.tls = tls;
    eprintln!(
        "stowage: serving an example OCI registry ({who}; {records}; {deletes}) on {scheme}://{} from location {} ({})",
        listener.local_addr().map_err(|e| Failure::failed(e.to_string()))?,
        location.name,
        location.driver.driver_name()
    );
    for warning in exposure_warnings(listen, options.authenticator.is_some(), scheme == "https") {
        eprintln!("stowage: warning: {warning}");
    }
    let shutdown = stop_signal(signals, limits.shutdown_grace_seconds);
    stowage_registry::serve_with_shutdown(storage, listener, options, shutdown)
        .await
        .map_err(|e| Failure::failed(format!("registry stopped: {e}")))?;
    eprintln!("stowage: registry stopped");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT, saying so; from then on a
/// second one exits the process at once. Never completes when the signals
/// cannot be caught (they then end the process as usual).
async fn stop_signal(signals: std::io::Result<Signals>, grace_seconds: u64) {
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot catch SIGTERM/SIGINT: stopping the registry will cut requests in flight"
            );
            return std::future::pending().await;
        }
    };
    let signal = signals.recv().await;
    eprintln!(
        "stowage: {signal}: no new connections; requests in flight have up to {grace_seconds} s \
         to finish ({signal} again stops at once)"
    );
    tokio::spawn(async move {
        let again = signals.recv().await;
        eprintln!("stowage: {again} again: stopping at once (uploads cut short stay resumable)");
        std::process::exit(again.exit_code().into());
    });
}

/// What an operator should know before a registry listens beyond this
/// machine: without authentication anyone who reaches the port can push,
/// delete (with --allow-delete) and fill the storage; without TLS
/// passwords cross in clear.
fn exposure_warnings(listen: SocketAddr, authenticated: bool, tls: bool) -> Vec<String> {
    if listen.ip().to_canonical().is_loopback() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    if !authenticated {
        warnings.push(format!(
            "{listen} is reachable from other machines and there is no --htpasswd: \
             anyone who reaches it can push (and delete, with --allow-delete) and fill the storage"
        ));
    } else if !tls {
        warnings.push(format!(
            "{listen} is reachable from other machines without TLS: \
             passwords cross the network in clear (--tls-cert/--tls-key, or TLS at a balancer)"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::exposure_warnings;

    #[test]
    fn open_listeners_are_warned_about() {
        let local = "127.0.0.1:5000".parse().unwrap();
        let local6 = "[::1]:5000".parse().unwrap();
        let mapped = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let open = "0.0.0.0:5000".parse().unwrap();
        let open6 = "[::]:5000".parse().unwrap();
        for addr in [local, local6, mapped] {
            assert!(exposure_warnings(addr, false, false).is_empty(), "{addr}");
        }
        for addr in [open, open6] {
            let w = exposure_warnings(addr, false, false);
            assert!(w.len() == 1 && w[0].contains("no --htpasswd"), "{w:?}");
            let w = exposure_warnings(addr, true, false);
            assert!(w.len() == 1 && w[0].contains("without TLS"), "{w:?}");
            assert!(exposure_warnings(addr, true, true).is_empty());
        }
    }
}
