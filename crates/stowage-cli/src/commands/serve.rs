//! `stowage serve`: the example registry on the selected location.

use std::net::SocketAddr;
use std::path::PathBuf;

use stowage_registry::ServeOptions;

use crate::context::Context;
use crate::failure::Failure;

/// Opens the location and serves until the process is stopped.
pub(crate) async fn run(
    ctx: &Context,
    listen: SocketAddr,
    state_dir: PathBuf,
    redirect: bool,
) -> Result<(), Failure> {
    let location = ctx.selected()?;
    let storage = ctx.storage().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::failed(format!("cannot listen on {listen}: {e}")))?;
    let mut options = ServeOptions::default();
    options.state_dir = state_dir;
    options.redirect = redirect;
    eprintln!(
        "stowage: serving an example OCI registry (no authentication) on http://{} from location {} ({})",
        listener.local_addr().map_err(|e| Failure::failed(e.to_string()))?,
        location.name,
        location.driver.driver_name()
    );
    stowage_registry::serve(storage, listener, options)
        .await
        .map_err(|e| Failure::failed(format!("registry stopped: {e}")))
}
