//! The registry's state: the storage (seen only through the `Storage`
//! trait), the upload store, per-upload locks and request counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stowage::metrics::Metric;
use stowage::Storage;

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
            locks: Mutex::default(),
            requests: Mutex::default(),
        }
    }

    /// Serves blob bytes itself even when the driver has direct URLs.
    pub fn without_redirects(mut self) -> Self {
        self.redirect = false;
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

    /// Counts a finished request.
    pub(crate) fn count(&self, method: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((method.to_string(), status)).or_default() += 1;
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
