//! [`StsCredentials`]: the STS credential source the S3 driver takes.
//! Quay's `STSS3Storage` is an `S3Storage` built with this source; a
//! `CloudFrontedS3Storage` location with STS keys gets one too.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use stowage_core::config::Secret;
use stowage_core::{CheckStatus, Error, Metric, Result, ValidationReport};
use stowage_s3::{CredentialSource, Credentials, S3Storage};

use crate::credentials::{provider, CredentialStats};
use crate::refresh::{effective_margin, RefreshingProvider};
use crate::StsConfig;

/// The name of this source in reports and logs.
pub const SOURCE: &str = "sts";

/// Credentials of an assumed role (AssumeRole with user keys or the default
/// chain, web identity with the token file read again at every refresh).
///
/// The source caches them itself: every request gets the held credentials
/// at once while they are valid; inside the refresh margin (the configured
/// `sts_refresh_margin_seconds`, capped at a third of the session) one
/// background refresh renews them, retried with backoff while it fails and
/// the held credentials stay valid. Requests wait for STS only when no
/// valid credentials are held (the first request, or after an expiry), and
/// then share one call.
#[derive(Debug, Clone)]
pub struct StsCredentials {
    config: Arc<StsConfig>,
    provider: RefreshingProvider,
    stats: Arc<CredentialStats>,
}

impl StsCredentials {
    /// The source for `config`. No STS call is made until the first request
    /// (or `validate`), so a registry starts even while STS is down.
    ///
    /// `config` is checked first, however it was built
    /// ([`StsConfig::problems`], its S3 configuration's included).
    ///
    /// # Errors
    /// [`stowage_core::Error::Config`] listing every problem of `config`,
    /// each with the key it is about (e.g. `sts_role_arn`).
    pub async fn new(config: StsConfig) -> Result<Self> {
        config.problems().into_result(())?;
        let (tracked, stats) = provider(&config).await;
        Ok(Self {
            provider: RefreshingProvider::new(tracked, config.refresh_margin),
            config: Arc::new(config),
            stats,
        })
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
/// As [`StsCredentials::new`] and [`S3Storage::new`].
pub async fn open_s3(config: StsConfig) -> Result<(S3Storage, Arc<StsCredentials>)> {
    let s3 = config.s3.clone();
    let credentials = Arc::new(StsCredentials::new(config).await?);
    let storage = S3Storage::with_credential_source(s3, credentials.clone()).await?;
    Ok((storage, credentials))
}

#[async_trait]
impl CredentialSource for StsCredentials {
    fn name(&self) -> &'static str {
        SOURCE
    }

    /// The held credentials while they are valid (a background refresh
    /// renews them inside the margin), else those of the one STS call all
    /// waiting requests share. The SDK's credentials STS gives are turned
    /// into stowage's here.
    ///
    /// # Errors
    /// [`Error::Credentials`] when no valid credentials are held and STS
    /// gave none: its problem, message and retryability are STS's failure,
    /// explained (its source).
    async fn credentials(&self) -> Result<Credentials> {
        match self.provider.credentials().await {
            Ok(sdk) => Ok(Credentials::new(
                sdk.access_key_id(),
                Secret::new(sdk.secret_access_key()),
                sdk.session_token().map(Secret::new),
                sdk.expiry(),
            )),
            Err(failure) => Err(Error::Credentials {
                // The source serves the S3 driver, which reports it so too.
                driver: "s3",
                problem: failure.problem,
                retryable: failure.retryable,
                message: failure.message.clone(),
                operation: None,
                source: Some(Box::new(failure)),
            }),
        }
    }

    /// The configured margin; each session is refreshed
    /// `min(max(margin, 10 s), session / 3)` before it ends.
    fn refresh_margin(&self) -> Duration {
        self.config.refresh_margin
    }

    /// The source keeps and refreshes its credentials (in the background):
    /// the client asks it on every request.
    fn caches_itself(&self) -> bool {
        true
    }

    /// Assumes the role (one STS call, outside the source's cache) and
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
        match self.provider.source().fetch().await {
            Ok(creds) => {
                let expiry = creds
                    .expiry()
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                    .unwrap_or_else(|| "none (credentials do not expire)".into());
                let margin = creds
                    .expiry()
                    .map(|t| {
                        let session = t.duration_since(SystemTime::now()).unwrap_or_default();
                        effective_margin(c.refresh_margin, session)
                    })
                    .unwrap_or(c.refresh_margin);
                report.fact("credential expiry", expiry.clone());
                report.check(
                    "assume role",
                    CheckStatus::Ok,
                    format!(
                        "assumed {} ({}); credentials expire at {expiry}, refreshed in the \
                         background from {}s before",
                        c.role_arn.as_deref().unwrap_or("the profile's role"),
                        c.source.mode(),
                        margin.as_secs()
                    ),
                );
                true
            }
            Err(failure) => {
                report.check("assume role", CheckStatus::Failed, failure.message);
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
                "Failed background refreshes after which the still-valid credentials stayed in use.",
                self.stats.kept_after_failure(),
            ),
            Metric::counter(
                "stowage_sts_blocking_loads_total",
                "STS calls requests waited for because no valid credentials were held (first load, or after an expiry).",
                self.stats.blocking_loads(),
            ),
        ]
    }

    /// Expiry of the credentials requests are signed with now.
    fn expiry(&self) -> Option<SystemTime> {
        self.provider.expiry().or_else(|| self.stats.last_expiry())
    }
}
