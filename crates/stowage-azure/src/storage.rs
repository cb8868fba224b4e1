//! `AzureStorage`: the `Storage` trait over one container and blob name
//! prefix.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use stowage_core::upload::{CompleteOptions, UploadState};
use stowage_core::{
    Capabilities, DirectUrl, DownloadUrlOptions, Error, GetOptions, GetResult, ListStream, Metric,
    ObjectMeta, PutOptions, Result, Storage, StoragePath, UploadUrlOptions, ValidationReport,
    WriteStream,
};

use crate::auth::Auth;
use crate::client::{Call, Client};
use crate::error::{Failure, Op, DRIVER};
use crate::retry::{retry, Retries};
use crate::AzureConfig;

/// How long after the server refused a server-side copy (Put Block From
/// URL, Copy Blob) copies and assemblies stream the bytes instead before
/// trying again.
pub(crate) const SERVER_COPY_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The two kinds of server-side copy, refused apart (Azurite does Copy Blob
/// but not Put Block From URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerCopy {
    /// Put Block From URL: chunked-upload assembly.
    PutBlockFromUrl,
    /// Copy Blob: `copy`.
    CopyBlob,
}

impl ServerCopy {
    /// The REST operation's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PutBlockFromUrl => "PutBlockFromURL",
            Self::CopyBlob => "CopyBlob",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::PutBlockFromUrl => 0,
            Self::CopyBlob => 1,
        }
    }
}

/// Blobs in an Azure container under a name prefix (Quay's
/// `AzureStorage`).
///
/// Clones share the HTTP client, the block budget, the retry counters and
/// what the server refused.
#[derive(Clone)]
pub struct AzureStorage {
    pub(crate) client: Arc<Client>,
    pub(crate) config: Arc<AzureConfig>,
    /// Blocks in flight across every write of this driver.
    pub(crate) block_budget: Arc<tokio::sync::Semaphore>,
    /// The retry policy and what the driver counted.
    pub(crate) retries: Arc<Retries>,
    /// When the server last refused each kind of server-side copy
    /// ([`ServerCopy`]; Azurite does not implement Put Block From URL):
    /// copies or assemblies stream for a while, then try again.
    pub(crate) server_copy_refused: Arc<Mutex<[Option<Instant>; 2]>>,
}

impl std::fmt::Debug for AzureStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStorage")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureStorage {
    /// A driver for `config`. No request is sent; [`Storage::validate`]
    /// checks the credentials and the container.
    ///
    /// # Errors
    /// [`Error::Config`] listing every problem of `config` (a missing
    /// credential, names Azure refuses, a key that is not base64).
    pub fn new(config: AzureConfig) -> Result<Self> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        let client = Client::new(&config)?;
        Ok(Self {
            client: Arc::new(client),
            block_budget: Arc::new(tokio::sync::Semaphore::new(config.max_blocks_in_flight)),
            retries: Retries::new(&config),
            config: Arc::new(config),
            server_copy_refused: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AzureConfig {
        &self.config
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.config.container
    }

    /// The blob name of `path`: the root prefix, then the path.
    pub fn blob_name(&self, path: &StoragePath) -> String {
        self.name_of(path.as_str())
    }

    /// The URL of `path`'s blob, without any signature.
    pub fn blob_url(&self, path: &StoragePath) -> String {
        self.client.blob_url(&self.blob_name(path))
    }

    pub(crate) fn name_of(&self, relative: &str) -> String {
        if self.config.root.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.config.root)
        }
    }

    /// The name prefix listing `prefix` (or the whole root) needs.
    pub(crate) fn list_prefix(&self, prefix: Option<&StoragePath>) -> String {
        match prefix {
            Some(p) => format!("{}/", self.blob_name(p)),
            None if self.config.root.is_empty() => String::new(),
            None => format!("{}/", self.config.root),
        }
    }

    /// The path of a listed blob name; `None` outside the root or for
    /// names that are not valid paths.
    pub(crate) fn path_of(&self, name: &str) -> Option<StoragePath> {
        let relative = if self.config.root.is_empty() {
            name
        } else {
            name.strip_prefix(&self.config.root)?.strip_prefix('/')?
        };
        StoragePath::parse(relative).ok()
    }

    pub(crate) fn op<'a>(&'a self, name: &'static str, blob: &'a str) -> Op<'a> {
        Op {
            name,
            container: &self.config.container,
            blob,
        }
    }

    /// Sends `call` with the retry policy: each attempt signed afresh and
    /// bounded by the call's deadline (the first-byte timeout, plus the
    /// body at the slowest upload rate for requests with one).
    pub(crate) async fn send(
        &self,
        operation: &'static str,
        call: &Call,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let timeout = call.timeout.unwrap_or_else(|| match &call.body {
            Some(body) => self.config.body_attempt_timeout(body.len() as u64),
            None => self.config.first_byte_timeout,
        });
        let blob = call.blob.as_deref().unwrap_or("");
        retry(
            &self.retries.policy,
            &self.retries.counters,
            operation,
            blob,
            || self.client.send(call, timeout),
        )
        .await
    }

    /// Sends `call` and reads its whole (small) answer body, both within
    /// each attempt's deadline, with the retry policy: for listings and
    /// block lists, whose bodies are read at once.
    pub(crate) async fn send_and_read(
        &self,
        operation: &'static str,
        call: &Call,
    ) -> std::result::Result<Bytes, Failure> {
        let timeout = call.timeout.unwrap_or(self.config.first_byte_timeout);
        let blob = call.blob.as_deref().unwrap_or("");
        retry(
            &self.retries.policy,
            &self.retries.counters,
            operation,
            blob,
            || async move {
                let attempt = async {
                    let response = self.client.send(call, timeout).await?;
                    response
                        .bytes()
                        .await
                        .map_err(|e| Failure::Transport(e.without_url()))
                };
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(Failure::Timeout(timeout)))
            },
        )
        .await
    }

    /// Whether the server refused `kind` of server-side copy lately (those
    /// copies then stream).
    pub(crate) fn server_copy_refused(&self, kind: ServerCopy) -> bool {
        let refused = self.server_copy_refused.lock().expect("refusal lock");
        refused[kind.index()].is_some_and(|at| at.elapsed() < SERVER_COPY_RETRY_AFTER)
    }

    /// Records that the server refused `kind` now; `true` when it had not
    /// within the window (the first refusal of a window is logged).
    pub(crate) fn record_refusal(&self, kind: ServerCopy) -> bool {
        let mut refused = self.server_copy_refused.lock().expect("refusal lock");
        let slot = &mut refused[kind.index()];
        let first = slot.is_none_or(|at| at.elapsed() >= SERVER_COPY_RETRY_AFTER);
        *slot = Some(Instant::now());
        first
    }

    /// Whether the account key is configured (Shared Key), which signs
    /// direct URLs and copy sources.
    pub(crate) fn has_account_key(&self) -> bool {
        matches!(self.client.auth(), Auth::SharedKey { .. })
    }
}

#[async_trait]
impl Storage for AzureStorage {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default()
            .with_server_side_copy(true)
            .with_server_side_assembly(
                self.config.server_side_assembly && self.copy_source_authorized(),
            );
        // Downloads need a read-only SAS (signed with the key, or the
        // configured one when it grants nothing more); uploads the key.
        c.direct_download = self.direct_download();
        c.direct_upload = self.has_account_key();
        c
    }

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        self.get_blob(path, options).await
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.write_stream(path, data, options).await
    }

    async fn put(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.put_bytes(path, data, options).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
        self.blob_properties(path).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        self.delete_blob(path).await
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        self.list_blobs(prefix)
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath) -> Result<ObjectMeta> {
        self.copy_blob(from, to).await
    }

    async fn download_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.signed_download(path, options)
    }

    async fn upload_url(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.signed_upload(path, options)
    }

    async fn complete_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        self.assemble_upload(state, dest, options).await
    }

    async fn validate(&self) -> ValidationReport {
        self.validate_container().await
    }

    fn metrics(&self) -> Vec<Metric> {
        self.retries.metrics()
    }
}
