//! [`StsCredentials`]: the STS credential source the S3 driver takes.
//! Quay's `STSS3Storage` is an `S3Storage` built with this source; a
//! `CloudFrontedS3Storage` location with STS keys gets one too.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use stowage_core::{CheckStatus, Metric, Result, ValidationReport};
use stowage_s3::{CredentialSource, S3Storage};

use crate::credentials::{provider, CredentialStats, TrackedProvider};
use crate::StsConfig;

/// The name of this source in reports and logs.
pub const SOURCE: &str = "sts";

/// Credentials of an assumed role (AssumeRole with user keys or the default
/// chain, web identity with the token file read again at every refresh),
/// loaded by the S3 client's cache and refreshed before they expire.
#[derive(Debug, Clone)]
pub struct StsCredentials {
    config: Arc<StsConfig>,
    provider: Arc<TrackedProvider>,
    stats: Arc<CredentialStats>,
}

impl StsCredentials {
    /// The source for `config`. No STS call is made until the first request
    /// (or `validate`), so a registry starts even while STS is down.
    pub async fn new(config: StsConfig) -> Self {
        let (tracked, stats) = provider(&config).await;
        Self {
            config: Arc::new(config),
            provider: Arc::new(tracked),
            stats,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StsConfig {
        &self.config
    }

    /// What the provider has done: STS calls, last expiry, last failure.
    pub fn stats(&self) -> &CredentialStats {
        &self.stats
    }
}

/// Opens the S3 driver of `config.s3` with STS credentials: what the
/// factory builds for Quay's `STSS3Storage`. The source is returned too,
/// for its counters.
///
/// # Errors
/// As [`S3Storage::new`].
pub async fn open_s3(config: StsConfig) -> Result<(S3Storage, Arc<StsCredentials>)> {
    let s3 = config.s3.clone();
    let credentials = Arc::new(StsCredentials::new(config).await);
    let storage = S3Storage::with_credential_source(s3, credentials.clone()).await?;
    Ok((storage, credentials))
}

/// Lets the S3 client and the source share one tracked provider.
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
impl CredentialSource for StsCredentials {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn provider(&self) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(SharedTracked(self.provider.clone()))
    }

    fn refresh_margin(&self) -> Duration {
        self.config.refresh_margin
    }

    /// Assumes the role (one STS call, outside the client's cache) and
    /// reports the role, the mode and the credential expiry, or why STS
    /// refused.
    async fn validate(&self, report: &mut ValidationReport) -> bool {
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
        match self.provider.load_fresh().await {
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
                true
            }
            Err(_) => {
                let detail = self
                    .stats
                    .last_error()
                    .map(|(_, m)| m)
                    .unwrap_or_else(|| "STS gave no credentials".into());
                report.check("assume role", CheckStatus::Failed, detail);
                false
            }
        }
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::counter(
                "stowage_sts_calls_total",
                "Calls to STS for credentials (AssumeRole or AssumeRoleWithWebIdentity).",
                self.stats.sts_calls(),
            ),
            Metric::counter(
                "stowage_sts_failures_total",
                "STS calls that gave no credentials.",
                self.stats.failures(),
            ),
            Metric::counter(
                "stowage_sts_kept_after_failure_total",
                "Failed refreshes after which the still-valid credentials stayed in use.",
                self.stats.kept_after_failure(),
            ),
        ]
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.stats.last_expiry()
    }
}
