//! The registry's state: the storage (seen only through the `Storage`
//! trait), the upload store, per-upload locks and request counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stowage::metrics::Metric;
use stowage::Storage;

use crate::auth::Authenticator;
use crate::net::Cidr;
use crate::upload_store::UploadStore;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Registry {
    /// Where blobs and manifests live.
    pub(crate) storage: Arc<dyn Storage>,
    /// Uploads in progress.
    pub(crate) uploads: UploadStore,
    /// Redirect blob downloads to the driver's direct URLs when it has them.
    pub(crate) redirect: bool,
    /// How long a direct download URL lives.
    pub(crate) url_lifetime: Duration,
    /// Peers whose `X-Forwarded-For` is believed (load balancers).
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// A request body silent this long fails (zero: never).
    pub(crate) idle_timeout: Duration,
    /// The largest blob an upload may reach, when limited.
    pub(crate) max_upload_size: Option<u64>,
    /// Who may do what; `None`: everyone may do everything.
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    /// Whether `DELETE` of manifests, tags and blob links is served (off:
    /// 405 `UNSUPPORTED`).
    pub(crate) allow_delete: bool,
    /// Which URLs manifests may carry (default none).
    pub(crate) manifest_urls: crate::validation::ManifestUrls,
    /// `/readyz`'s cached storage probe.
    pub(crate) readiness: crate::server::Readiness,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Registry {
    /// A registry over `storage`, keeping upload records in `uploads`.
    pub fn new(storage: Arc<dyn Storage>, uploads: UploadStore) -> Self {
        Self {
            storage,
            uploads,
            redirect: true,
            url_lifetime: Duration::from_secs(20 * 60),
            trusted_proxies: Vec::new(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_upload_size: None,
            authenticator: None,
            allow_delete: false,
            manifest_urls: Default::default(),
            readiness: Default::default(),
            locks: Mutex::default(),
            requests: Mutex::default(),
        }
    }

    /// Lets manifests carry the URLs `rules` allow (default none: 400
    /// MANIFEST_INVALID).
    pub fn with_manifest_urls(mut self, rules: crate::validation::ManifestUrls) -> Self {
        self.manifest_urls = rules;
        self
    }

    /// Serves blob bytes itself even when the driver has direct URLs.
    pub fn without_redirects(mut self) -> Self {
        self.redirect = false;
        self
    }

    /// Believes `X-Forwarded-For` from peers inside `proxies`: the client is
    /// the right-most address there that is not itself a trusted proxy.
    /// From any other peer the header is ignored.
    pub fn with_trusted_proxies(mut self, proxies: Vec<Cidr>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Fails a request whose body sends nothing for `idle` (default 60 s;
    /// zero never does): the chunk in flight is dropped, the upload stays
    /// where it was, and the client gets 408 and a closed connection.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Refuses (413, `SIZE_INVALID`) a blob upload that would grow past
    /// `bytes`; `None` (the default) sets no limit.
    pub fn with_max_upload_size(mut self, bytes: Option<u64>) -> Self {
        self.max_upload_size = bytes;
        self
    }

    /// Asks `authenticator` before every API request and `/metrics`
    /// (never before `/healthz` and `/readyz`); refused requests get 401
    /// with its challenge and an `UNAUTHORIZED` body.
    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Serves `DELETE` of manifests (by digest: the manifest, its tags and
    /// its referrer record), of tags (the tag only) and of blobs (the
    /// repository's link, not the shared bytes), each answered 202, when
    /// `allowed`. Off by default: every such `DELETE` is 405 `UNSUPPORTED`
    /// (cancelling an upload stays allowed). What is no longer referenced
    /// is removed by [`crate::gc::run`].
    pub fn with_deletes(mut self, allowed: bool) -> Self {
        self.allow_delete = allowed;
        self
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// A lock serialising requests on one upload (chunks must be appended
    /// one at a time).
    pub(crate) fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }

    /// Counts a finished request. Methods outside HTTP's standard ones
    /// count as `OTHER`, so made-up methods cannot add series.
    pub(crate) fn count(&self, method: &axum::http::Method, status: u16) {
        let label = method_label(method);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((label.to_string(), status)).or_default() += 1;
    }

    /// The request counters and the storage's own metrics.
    pub fn metrics(&self) -> Vec<Metric> {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Metric> = requests
            .iter()
            .map(|((method, status), n)| {
                Metric::counter(
                    "stowage_registry_requests_total",
                    "HTTP requests by method and status.",
                    *n,
                )
                .with_label("method", method.clone())
                .with_label("status", status.to_string())
            })
            .collect();
        out.extend(self.storage.metrics());
        out
    }
}

/// The default of [`Registry::with_idle_timeout`].
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The metric label of a request method: one of HTTP's standard methods,
/// else `OTHER`.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "PROPFIND", "get", "BREW"] {
            let m = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "OTHER", "{made_up}");
        }
    }
}
