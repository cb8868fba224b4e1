//! An example OCI Distribution registry on stowage, the way a real registry
//! embeds the [`stowage::Storage`] trait: it sees only the trait and the
//! driver factory, so it runs unchanged on the local store, S3, STS or
//! CloudFront. `stowage serve` runs it.
//!
//! - Blobs: `HEAD`/`GET` by digest; `GET` redirects (307) to the driver's
//!   direct download URL when it has one, else streams with `Range`.
//! - Uploads: `POST` (monolithic with `?digest=`, mount with
//!   `?mount=&from=`), `PATCH` chunks, `PUT ?digest=`, `GET` status,
//!   `DELETE`; the trait's `UploadState` is kept in the storage itself (or
//!   a local directory), so any replica continues any upload and a restart
//!   loses nothing; racing writers cannot replace a newer record.
//! - Manifests by tag and digest (OCI and Docker v2), referenced blobs
//!   checked (non-distributable layers excepted); sha256 and sha512
//!   digests; the referrers API and `OCI-Subject` (OCI distribution 1.1).
//! - Listings read from storage a page at a time (`list_page`): tags and
//!   the catalog (`/v2/_catalog`) with `n`/`last` and `Link`, referrers in
//!   pages for requests without credentials.
//! - Deletes of manifests, tags and blob links when enabled
//!   ([`Registry::with_deletes`]; off by default), and garbage collection
//!   of what nothing refers to while registries serve ([`gc::run`],
//!   `stowage gc`).
//! - Authentication through the [`auth::Authenticator`] trait; HTTP Basic
//!   against an htpasswd file of bcrypt entries ([`auth::HtpasswdAuth`]),
//!   with optional anonymous pulls. HTTPS with rustls ([`TlsConfig`]).
//! - Errors in the spec's JSON format; request ids in logs; `/metrics`;
//!   `/healthz` and `/readyz` for probes.
//! - Hostile clients: 5xx bodies carry a generic message and the request
//!   id (details go to the log); header-read and idle timeouts; an optional
//!   upload size limit; method labels bounded; the client address taken
//!   from `X-Forwarded-For` only behind trusted proxies, and canonical.
//! - Graceful stops ([`serve_with_shutdown`]): no new connections, requests
//!   in flight given a bounded time to finish, uploads left resumable.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! let storage = Arc::new(stowage::local::LocalStorage::open(std::path::Path::new("./data")).unwrap());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! stowage_registry::serve(storage, listener, Default::default()).await
//! # }
//! ```

pub mod auth;
mod digest;
mod errors;
pub mod gc;
pub mod layout;
mod names;
mod net;
mod registry;
mod routes;
mod server;
mod service;
mod timeouts;
mod tls;
mod upload_store;
mod validation;

pub use auth::{Access, Action, Authenticator, Challenge, HtpasswdAuth, HtpasswdError, Identity};
pub use digest::Digest;
pub use errors::{ErrorCode, RegistryError};
pub use net::{Cidr, CidrParseError};
pub use registry::Registry;
pub use routes::router;
pub use server::{build, serve, serve_with_shutdown, ServeOptions};
pub use service::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
pub use tls::{TlsConfig, TlsError};
pub use upload_store::{UploadRecord, UploadStore};
pub use validation::{ManifestUrls, UrlPattern, UrlPatternError};
