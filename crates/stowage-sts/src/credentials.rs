//! The provider that calls STS behind [`crate::StsCredentials`]:
//! aws-config's `AssumeRoleProvider` (or the web-identity provider of this
//! crate, or the SDK's default chain), wrapped in [`TrackedProvider`], which
//! counts STS calls, remembers the last expiry and turns STS failures into
//! messages that name the cause.
//!
//! Caching is not done here but in [`crate::refresh`]: it holds one set of
//! credentials, serves it to every request while it is valid and renews it
//! in the background.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::sts::AssumeRoleProvider;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;
use stowage_core::{CredentialsFailure, CredentialsProblem};

use crate::config::{StsConfig, StsSource};
use crate::diagnosis::{diagnose_user_keys, explain, sdk_status};
use crate::web_identity::WebIdentityProvider;

/// What the provider has done so far, shared with the driver (for
/// `validate`, metrics and tests).
#[derive(Debug, Default)]
pub struct CredentialStats {
    loads: AtomicU64,
    failures: AtomicU64,
    kept: AtomicU64,
    blocking: AtomicU64,
    last: Mutex<LastLoad>,
}

#[derive(Debug, Default, Clone)]
struct LastLoad {
    expiry: Option<SystemTime>,
    access_key_prefix: Option<String>,
    error: Option<(CredentialsProblem, String)>,
}

impl CredentialStats {
    /// How many times credentials were requested from STS (successful or
    /// not; `validate` included).
    pub fn sts_calls(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// How many of those calls failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How many failed background refreshes kept the still-valid
    /// credentials in use.
    pub fn kept_after_failure(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// How many STS calls requests had to wait for because no valid
    /// credentials were held (the first load, or a load after an expiry).
    /// Refreshes of valid credentials run in the background and are not
    /// counted here.
    pub fn blocking_loads(&self) -> u64 {
        self.blocking.load(Ordering::Relaxed)
    }

    /// Expiry of the credentials obtained last.
    pub fn last_expiry(&self) -> Option<SystemTime> {
        self.last().expiry
    }

    /// The first characters of the last access key id (never the secret),
    /// so a report can show that credentials changed.
    pub fn last_access_key_prefix(&self) -> Option<String> {
        self.last().access_key_prefix.clone()
    }

    /// The last failure: its kind and a message without secrets.
    pub fn last_error(&self) -> Option<(CredentialsProblem, String)> {
        self.last().error.clone()
    }

    pub(crate) fn count_kept(&self) {
        self.kept.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_blocking_load(&self) {
        self.blocking.fetch_add(1, Ordering::Relaxed);
    }

    fn last(&self) -> MutexGuard<'_, LastLoad> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wraps the provider that calls STS: counts calls, records expiry, and
/// replaces STS errors with messages that name the cause.
#[derive(Debug)]
pub(crate) struct TrackedProvider {
    inner: SharedCredentialsProvider,
    stats: Arc<CredentialStats>,
    describe: Describe,
}

/// What to say in messages about the credential source, and what is
/// needed to tell wrong user keys from an untrusting role.
#[derive(Debug, Clone)]
pub(crate) struct Describe {
    pub(crate) role: String,
    pub(crate) mode: &'static str,
    pub(crate) endpoint: String,
    pub(crate) token_file: Option<String>,
    /// With user keys: an STS client and an S3 client signing with them.
    pub(crate) user_key_probe: Option<(aws_sdk_sts::Client, aws_sdk_s3::Client)>,
}

impl TrackedProvider {
    /// Asks STS now (one call; for web identity the token file is read
    /// again): what the cache calls to load or refresh, and what `validate`
    /// calls outside it. Counts the call and records the expiry, or the
    /// failure explained in words without secrets.
    pub(crate) async fn fetch(&self) -> Result<Credentials, CredentialsFailure> {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.provide_credentials().await;
        match result {
            Ok(credentials) => {
                tracing::info!(
                    role = %self.describe.role,
                    mode = self.describe.mode,
                    expires = ?credentials.expiry().map(chrono::DateTime::<chrono::Utc>::from),
                    "obtained role credentials from STS"
                );
                let mut last = self.stats.last();
                last.expiry = credentials.expiry();
                last.access_key_prefix =
                    Some(credentials.access_key_id().chars().take(8).collect());
                last.error = None;
                Ok(credentials)
            }
            Err(err) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let mut diagnosis = explain(&err, &self.describe);
                if sdk_status(&err) == Some(403) {
                    if let Some(probe) = &self.describe.user_key_probe {
                        diagnosis.message =
                            format!("{}; {}", diagnosis.message, diagnose_user_keys(probe).await);
                    }
                }
                self.stats.last().error = Some((diagnosis.problem, diagnosis.message.clone()));
                Err(CredentialsFailure::new(
                    diagnosis.problem,
                    diagnosis.message,
                    diagnosis.transient,
                ))
            }
        }
    }

    /// The counters this provider keeps.
    pub(crate) fn stats(&self) -> &CredentialStats {
        &self.stats
    }

    /// The role, for log lines.
    pub(crate) fn role(&self) -> &str {
        &self.describe.role
    }

    /// A tracked provider around `inner` (a fake STS in tests).
    #[cfg(test)]
    pub(crate) fn for_tests(
        inner: impl ProvideCredentials + 'static,
    ) -> (Self, Arc<CredentialStats>) {
        let stats = Arc::new(CredentialStats::default());
        let tracked = Self {
            inner: SharedCredentialsProvider::new(inner),
            stats: stats.clone(),
            describe: Describe {
                role: "arn:aws:iam::123456789012:role/test".into(),
                mode: "assume-role",
                endpoint: "the fake STS".into(),
                token_file: None,
                user_key_probe: None,
            },
        };
        (tracked, stats)
    }
}

/// Builds the tracked provider for `config`.
pub(crate) async fn provider(config: &StsConfig) -> (TrackedProvider, Arc<CredentialStats>) {
    let sdk = sts_sdk_config(config).await;
    let role = config
        .role_arn
        .clone()
        .unwrap_or_else(|| "<role of the shared config profile>".into());
    let inner: SharedCredentialsProvider = match &config.source {
        StsSource::AssumeRole {
            user_access_key,
            user_secret_key,
        } => {
            let mut builder = AssumeRoleProvider::builder(role.clone())
                .session_name(config.session_name.clone())
                .session_length(config.duration)
                .configure(&sdk);
            if let Some(id) = &config.external_id {
                builder = builder.external_id(id.clone());
            }
            let provider = match (user_access_key, user_secret_key) {
                (Some(ak), Some(sk)) => {
                    builder
                        .build_from_provider(Credentials::new(
                            ak.clone(),
                            sk.expose().to_string(),
                            None,
                            None,
                            "stowage-sts-user",
                        ))
                        .await
                }
                _ => builder.build().await,
            };
            SharedCredentialsProvider::new(provider)
        }
        StsSource::WebIdentity { token_file } => {
            SharedCredentialsProvider::new(WebIdentityProvider::new(
                aws_sdk_sts::Client::new(&sdk),
                token_file.clone(),
                role.clone(),
                config.session_name.clone(),
                config.duration,
            ))
        }
        StsSource::SdkDefaultChain => {
            let mut chain =
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(Region::new(config.sts_region.clone()));
            if let Some(http) = sdk.http_client() {
                // The profile's role is assumed through the same client:
                // the configured CAs, the proxy variables.
                chain = chain.configure(
                    aws_config::provider_config::ProviderConfig::without_region()
                        .with_http_client(http),
                );
            }
            SharedCredentialsProvider::new(chain.build().await)
        }
    };
    let stats = Arc::new(CredentialStats::default());
    let tracked = TrackedProvider {
        inner,
        stats: stats.clone(),
        describe: Describe {
            role,
            mode: config.source.mode(),
            endpoint: config
                .sts_endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS STS in {}", config.sts_region)),
            token_file: match &config.source {
                StsSource::WebIdentity { token_file } => Some(token_file.display().to_string()),
                _ => None,
            },
            user_key_probe: user_key_probe(config, &sdk),
        },
    };
    (tracked, stats)
}

/// Clients signing with the IAM user's keys, to find out after a refusal
/// whether the keys or the role's trust policy are at fault.
fn user_key_probe(
    config: &StsConfig,
    sdk: &aws_config::SdkConfig,
) -> Option<(aws_sdk_sts::Client, aws_sdk_s3::Client)> {
    let StsSource::AssumeRole {
        user_access_key: Some(ak),
        user_secret_key: Some(sk),
    } = &config.source
    else {
        return None;
    };
    let keys = Credentials::new(
        ak.clone(),
        sk.expose().to_string(),
        None,
        None,
        "stowage-sts-user",
    );
    let sts = aws_sdk_sts::config::Builder::from(sdk)
        .credentials_provider(keys.clone())
        .build();
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk)
        .credentials_provider(keys)
        .region(aws_sdk_s3::config::Region::new(config.s3.region.clone()))
        .force_path_style(config.s3.path_style);
    s3.set_endpoint_url(config.s3.endpoint.clone());
    Some((
        aws_sdk_sts::Client::from_conf(sts),
        aws_sdk_s3::Client::from_conf(s3.build()),
    ))
}

/// The SDK configuration the STS client uses: region, endpoint, retries,
/// and the S3 driver's HTTPS client (the CAs of `s3_ca_bundle` and the
/// config bundle, the proxy variables, TLS failures named). Its
/// credentials (for AssumeRole without user keys) are the default chain.
async fn sts_sdk_config(config: &StsConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.sts_region.clone()))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(config.s3.max_attempts.min(3)),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(config.s3.connect_timeout)
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(endpoint) = &config.sts_endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    match config.s3.https_client() {
        Ok(http) => loader = loader.http_client(http),
        // The S3 driver built on the same configuration refuses to start
        // with this error; STS alone falls back to the system's roots.
        Err(e) => tracing::warn!(
            error = %e,
            "STS is called with the system's trusted CAs only: the configured ones cannot be used"
        ),
    }
    loader.load().await
}
