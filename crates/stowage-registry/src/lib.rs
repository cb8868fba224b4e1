//! An example OCI Distribution registry on stowage, the way a real registry
//! embeds the [`stowage::Storage`] trait: it sees only the trait and the
//! driver factory, so it runs unchanged on the local store, S3, STS or
//! CloudFront. `stowage serve` runs it. No authentication: an example, not
//! a production registry.
//!
//! - Blobs: `HEAD`/`GET` by digest; `GET` redirects (307) to the driver's
//!   direct download URL when it has one, else streams with `Range`.
//! - Uploads: `POST` (monolithic with `?digest=`, mount with
//!   `?mount=&from=`), `PATCH` chunks, `PUT ?digest=`, `GET` status,
//!   `DELETE`; the trait's `UploadState` is kept in an embedded store, so
//!   an upload survives a restart.
//! - Manifests by tag and digest (OCI and Docker v2), referenced blobs
//!   checked; tag listing with `n`/`last`.
//! - Errors in the spec's JSON format; request ids in logs; `/metrics`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! let storage = Arc::new(stowage::local::LocalStorage::open(std::path::Path::new("./data")).unwrap());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! stowage_registry::serve(storage, listener, Default::default()).await
//! # }
//! ```

mod errors;
pub mod layout;
mod names;
mod registry;
mod routes;
mod server;
mod service;
mod upload_store;

pub use errors::{ErrorCode, RegistryError};
pub use registry::Registry;
pub use routes::router;
pub use server::{build, serve, ServeOptions};
pub use service::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
pub use upload_store::{UploadRecord, UploadStore};
