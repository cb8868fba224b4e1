//! `STSS3Storage`: an [`S3Storage`] whose credentials come from STS.
//! Every operation is the S3 driver's; this type adds the credential
//! provider and a `validate` that checks the role first.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use stowage_core::upload::{CleanupReport, CompleteOptions, UploadState};
use stowage_core::{
    Capabilities, CheckStatus, DirectUrl, DownloadUrlOptions, GetOptions, GetResult, ListStream,
    Metric, ObjectMeta, PutOptions, Result, Storage, StoragePath, UploadUrlOptions,
    ValidationReport, WriteStream,
};
use stowage_s3::S3Storage;

use crate::credentials::{provider, CredentialStats, TrackedProvider};
use crate::StsConfig;

/// The driver name in reports and errors.
pub const DRIVER: &str = "sts";

/// S3 with assumed-role credentials that refresh themselves (Quay's
/// `STSS3Storage`).
#[derive(Debug, Clone)]
#[allow(clippy::upper_case_acronyms)]
pub struct STSS3Storage {
    s3: S3Storage,
    config: Arc<StsConfig>,
    provider: Arc<TrackedProvider>,
    stats: Arc<CredentialStats>,
}

impl STSS3Storage {
    /// Builds the driver. No STS call is made until the first request (or
    /// [`Storage::validate`]), so a registry starts even while STS is down.
    ///
    /// # Errors
    /// None today; kept fallible for configuration checks.
    pub async fn new(config: StsConfig) -> Result<Self> {
        let (tracked, stats) = provider(&config).await;
        let tracked = Arc::new(tracked);
        let s3 = S3Storage::with_credentials(
            config.s3.clone(),
            SharedCredentialsProvider::new(SharedTracked(tracked.clone())),
            config.refresh_margin,
        )
        .await?;
        Ok(Self {
            s3,
            config: Arc::new(config),
            provider: tracked,
            stats,
        })
    }

    /// The S3 driver underneath (same bucket, same credentials).
    pub fn s3(&self) -> &S3Storage {
        &self.s3
    }

    /// The configuration.
    pub fn config(&self) -> &StsConfig {
        &self.config
    }

    /// What the credential provider has done: STS calls, last expiry.
    pub fn credential_stats(&self) -> &CredentialStats {
        &self.stats
    }
}

/// Lets the S3 client and the driver share one tracked provider.
#[derive(Debug)]
struct SharedTracked(Arc<TrackedProvider>);

impl ProvideCredentials for SharedTracked {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.provide_credentials()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for STSS3Storage {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        self.s3.capabilities()
    }

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        self.s3.get(path, options).await
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.s3.put_stream(path, data, options).await
    }

    async fn put(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.s3.put(path, data, options).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
        self.s3.stat(path).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        self.s3.delete(path).await
    }

    async fn delete_prefix(&self, prefix: &StoragePath) -> Result<u64> {
        self.s3.delete_prefix(prefix).await
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        self.s3.list(prefix)
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath) -> Result<ObjectMeta> {
        self.s3.copy(from, to).await
    }

    async fn download_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.s3.download_url(path, options).await
    }

    async fn upload_url(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.s3.upload_url(path, options).await
    }

    async fn start_upload(&self) -> Result<UploadState> {
        self.s3.start_upload().await
    }

    async fn write_chunk(
        &self,
        state: &UploadState,
        offset: u64,
        data: WriteStream<'_>,
    ) -> Result<UploadState> {
        self.s3.write_chunk(state, offset, data).await
    }

    async fn complete_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        self.s3.complete_upload(state, dest, options).await
    }

    async fn abort_upload(&self, state: &UploadState) -> Result<()> {
        self.s3.abort_upload(state).await
    }

    async fn cleanup_uploads(&self, older_than: Duration) -> Result<CleanupReport> {
        self.s3.cleanup_uploads(older_than).await
    }

    /// Assumes the role (one STS call, outside the cache), reports the role,
    /// the mode and the credential expiry, then runs the S3 checks with the
    /// role's credentials.
    async fn validate(&self) -> ValidationReport {
        let mut report = ValidationReport::new(DRIVER);
        let c = &self.config;
        report.fact(
            "role",
            c.role_arn
                .clone()
                .unwrap_or_else(|| "<from the shared config profile>".into()),
        );
        report.fact("sts mode", c.source.mode());
        report.fact(
            "sts endpoint",
            c.sts_endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS ({})", c.sts_region)),
        );
        match self.provider.provide_credentials().await {
            Ok(creds) => {
                let expiry = creds
                    .expiry()
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                    .unwrap_or_else(|| "none (credentials do not expire)".into());
                report.fact("credential expiry", expiry.clone());
                report.check(
                    "assume role",
                    CheckStatus::Ok,
                    format!(
                        "assumed {} ({}); credentials expire at {expiry}, refreshed {}s before",
                        c.role_arn.as_deref().unwrap_or("the profile's role"),
                        c.source.mode(),
                        c.refresh_margin.as_secs()
                    ),
                );
            }
            Err(_) => {
                let detail = self
                    .stats
                    .last_error()
                    .map(|(_, m)| m)
                    .unwrap_or_else(|| "STS gave no credentials".into());
                report.check("assume role", CheckStatus::Failed, detail);
                return report;
            }
        }
        let s3 = self.s3.validate().await;
        report.facts.extend(s3.facts);
        report.checks.extend(s3.checks);
        report
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut metrics = self.s3.metrics();
        metrics.push(Metric::counter(
            "stowage_sts_calls_total",
            "Calls to STS for credentials (AssumeRole or AssumeRoleWithWebIdentity).",
            self.stats.sts_calls(),
        ));
        metrics.push(Metric::counter(
            "stowage_sts_failures_total",
            "STS calls that gave no credentials.",
            self.stats.failures(),
        ));
        metrics
    }
}
