//! `S3Storage`: the `Storage` trait over one bucket and key prefix.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use stowage_core::upload::{CleanupReport, CompleteOptions, UploadState};
use stowage_core::{
    Capabilities, DirectUrl, DownloadUrlOptions, GetOptions, GetResult, ListStream, Metric,
    ObjectMeta, PutOptions, Result, Storage, StoragePath, UploadUrlOptions, ValidationReport,
    WriteStream,
};

use crate::builder;
use crate::credentials::{CredentialSource, SharedSource};
use crate::error::{Op, DRIVER};
use crate::S3Config;

/// Objects in an S3 bucket under a key prefix.
#[derive(Clone)]
pub struct S3Storage {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) config: Arc<S3Config>,
    /// When the server last refused an UploadPartCopy that the
    /// credentials should allow (Ceph RGW does for assumed-role sessions):
    /// copies and assemblies of this bucket stream the bytes instead for a
    /// while (copies.rs), then try again.
    pub(crate) part_copy_refused: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Parts in flight across every write of this driver.
    pub(crate) part_budget: Arc<tokio::sync::Semaphore>,
    /// Ranges read ahead across every read of this driver (read_ahead.rs).
    pub(crate) range_budget: Arc<tokio::sync::Semaphore>,
    /// Where credentials come from when not from the configuration (STS).
    pub(crate) credentials: Option<SharedSource>,
    /// Set once the server echoed a single PUT's CRC32C (it verifies
    /// flexible checksums): later PUTs carry no Content-MD5 (writes.rs).
    pub(crate) crc32c_verified: Arc<std::sync::atomic::AtomicBool>,
    /// The retry policy and its counters (retry.rs), shared by clones.
    pub(crate) retries: Arc<crate::retry::Retries>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("config", &self.config)
            .field("credentials", &self.credentials.as_ref().map(|c| c.name()))
            .finish()
    }
}

impl S3Storage {
    /// A driver with the configured credentials (static keys or the SDK's
    /// default chain), through [`S3Config::https_client`] (the configured
    /// CAs, the proxy variables). No request is sent; [`Storage::validate`]
    /// checks.
    ///
    /// `config` is checked first, however it was built: every constructor
    /// refuses a configuration with problems ([`S3Config::problems`]),
    /// listing all of them.
    ///
    /// # Errors
    /// [`stowage_core::Error::Config`] listing every problem of `config`
    /// (each with the key it is about, e.g. `s3_bucket: empty`) and of the
    /// configured CA certificates (`s3_ca_bundle`, `STOWAGE_CA_BUNDLE`,
    /// `AWS_CA_BUNDLE`).
    pub async fn new(config: S3Config) -> Result<Self> {
        Self::build(config, None).await
    }

    /// A driver whose credentials come from `source` (e.g. STS, or the
    /// embedder's own [`CredentialSource`]). The client caches them and
    /// loads new ones the source's refresh margin before they expire, one
    /// load for all concurrent requests (a source that caches itself is
    /// asked on every request instead); `validate` checks the source first
    /// and `metrics` include its counters.
    ///
    /// # Errors
    /// As [`S3Storage::new`].
    pub async fn with_credential_source(
        config: S3Config,
        source: Arc<dyn CredentialSource>,
    ) -> Result<Self> {
        Self::build(config, Some(source)).await
    }

    /// A driver whose requests go through `http` instead of the driver's
    /// own HTTPS client: a client with the embedder's own TLS or proxy
    /// settings (the configured CAs do not apply to it), or a layer that
    /// observes or disturbs requests (the seeded fault simulation in
    /// `integration/` is one). Credentials as in [`S3Storage::new`].
    ///
    /// # Errors
    /// As [`S3Storage::new`].
    pub async fn with_http_client(
        config: S3Config,
        http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    ) -> Result<Self> {
        Self::build_with(config, None, Some(http)).await
    }

    async fn build(config: S3Config, credentials: Option<SharedSource>) -> Result<Self> {
        Self::build_with(config, credentials, None).await
    }

    /// A driver on the embedder's AWS configuration (`aws_config::load_from_env()`
    /// or its own loader): its credentials (unless `config` has static
    /// keys), identity cache, HTTP client, sleep and time sources. `config`
    /// says where the bucket is (region, endpoint, addressing) and keeps
    /// the driver's own settings on top: attempt deadlines, its retry
    /// policy (the SDK's retries are turned off, so attempts do not
    /// multiply) and checksums only when an operation requires them. With
    /// no HTTP client in `sdk`, requests go through
    /// [`S3Config::https_client`] (the configured CAs, the proxy
    /// variables); with one, that client is used as it is.
    ///
    /// # Errors
    /// [`stowage_core::Error::Config`] listing every problem of `config`
    /// and of the configured CA certificates (those only when `sdk` has no
    /// HTTP client).
    pub fn from_sdk_config(config: S3Config, sdk: &aws_config::SdkConfig) -> Result<Self> {
        let client = builder::client_from_sdk_config(&config, sdk)?;
        Ok(Self::assemble(config, client, None))
    }

    /// A driver on a ready client: its region, endpoint, addressing,
    /// credentials and HTTP client are used as they are, with the driver's
    /// attempt deadlines (`config`'s timeouts), retries off (the driver
    /// retries: an SDK retry inside would multiply attempts) and checksums
    /// only when required (Ceph RGW refuses the SDK's default trailing
    /// checksums) applied on top of a copy of its configuration; `client`
    /// itself is not changed. `config` gives the bucket, the root and the
    /// transfer settings; its region and endpoint should match the
    /// client's (validation reports them). A client without an HTTP client
    /// gets [`S3Config::https_client`].
    ///
    /// # Errors
    /// [`stowage_core::Error::Config`] listing every problem of `config`
    /// and of the configured CA certificates (those only when `client` has
    /// no HTTP client).
    pub fn from_client(config: S3Config, client: aws_sdk_s3::Client) -> Result<Self> {
        let client = builder::client_over(&config, &client)?;
        Ok(Self::assemble(config, client, None))
    }

    async fn build_with(
        config: S3Config,
        credentials: Option<SharedSource>,
        http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
    ) -> Result<Self> {
        let client = builder::client(&config, credentials.as_ref(), http).await?;
        Ok(Self::assemble(config, client, credentials))
    }

    /// The driver around a built client.
    fn assemble(
        config: S3Config,
        mut client: aws_sdk_s3::Client,
        credentials: Option<SharedSource>,
    ) -> Self {
        if !config.profile.accepts_x_id() {
            // GCS refuses the `x-id` query parameter the SDK adds to some
            // operations (docs/gcs.md): dropped before signing, presigned
            // URLs included.
            let with_interceptor = client
                .config()
                .to_builder()
                .interceptor(crate::profile::WithoutXId)
                .build();
            client = aws_sdk_s3::Client::from_conf(with_interceptor);
        }
        Self {
            client,
            part_budget: Arc::new(tokio::sync::Semaphore::new(config.max_parts_in_flight)),
            range_budget: Arc::new(tokio::sync::Semaphore::new(config.max_ranges_in_flight)),
            retries: crate::retry::Retries::new(&config),
            config: Arc::new(config),
            part_copy_refused: Arc::default(),
            crc32c_verified: Arc::default(),
            credentials,
        }
    }

    /// The credential source, when one was given.
    pub fn credential_source(&self) -> Option<&dyn CredentialSource> {
        self.credentials.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Whether copies and chunked-upload assembly happen inside the server:
    /// configured so, and the server has not refused an UploadPartCopy
    /// (after a refusal the driver streams the bytes instead).
    pub fn copies_server_side(&self) -> bool {
        self.config.server_side_assembly && !self.part_copy_refused()
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// The object key of `path`: the root prefix, then the path.
    pub fn object_key(&self, path: &StoragePath) -> String {
        self.key_of(path.as_str())
    }

    pub(crate) fn key_of(&self, relative: &str) -> String {
        if self.config.root.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.config.root)
        }
    }

    /// The key prefix listing `prefix` (or the whole root) needs.
    pub(crate) fn list_prefix(&self, prefix: Option<&StoragePath>) -> String {
        match prefix {
            Some(p) => format!("{}/", self.object_key(p)),
            None if self.config.root.is_empty() => String::new(),
            None => format!("{}/", self.config.root),
        }
    }

    /// The path of a listed key, `None` for keys outside the root or not
    /// valid paths.
    pub(crate) fn path_of(&self, key: &str) -> Option<StoragePath> {
        let relative = if self.config.root.is_empty() {
            key
        } else {
            key.strip_prefix(&self.config.root)?.strip_prefix('/')?
        };
        StoragePath::parse(relative).ok()
    }

    pub(crate) fn op<'a>(&'a self, name: &'static str, key: &'a str) -> Op<'a> {
        Op {
            name,
            bucket: &self.config.bucket,
            key,
        }
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_direct_urls(true)
            .with_server_side_copy(true)
            // A server without UploadPartCopy (the GCS profile) assembles
            // nothing itself: chunked uploads stream through the process.
            .with_server_side_assembly(
                self.config.server_side_assembly && self.config.profile.copies_parts(),
            )
    }

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        self.get_object(path, options).await
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
        self.put_small(path, data, options).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
        self.head_object(path).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        self.delete_object(path).await
    }

    async fn delete_prefix(&self, prefix: &StoragePath) -> Result<u64> {
        self.delete_objects_below(prefix).await
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        self.list_objects(prefix)
    }

    async fn list_page(
        &self,
        options: stowage_core::ListOptions,
    ) -> Result<stowage_core::ListPage> {
        self.list_keys_page(options).await
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath) -> Result<ObjectMeta> {
        self.copy_object(from, to).await
    }

    async fn download_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.presigned_download(path, options).await.map(Some)
    }

    async fn upload_url(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.presigned_upload(path, options).await.map(Some)
    }

    async fn complete_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        self.assemble_upload(state, dest, options).await
    }

    async fn cleanup_uploads(&self, older_than: Duration) -> Result<CleanupReport> {
        self.cleanup(older_than).await
    }

    /// The credential source's checks (when there is one), then the
    /// bucket's.
    async fn validate(&self) -> ValidationReport {
        let mut report = ValidationReport::new(DRIVER);
        if let Some(source) = &self.credentials {
            if !source.validate(&mut report).await {
                return report;
            }
        }
        let bucket = self.validate_bucket().await;
        report.facts.extend(bucket.facts);
        report.checks.extend(bucket.checks);
        report
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut metrics = self.retries.metrics();
        if let Some(c) = &self.credentials {
            metrics.extend(c.metrics());
        }
        metrics
    }
}
