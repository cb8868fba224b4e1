//! The credential provider behind `STSS3Storage`: aws-config's
//! `AssumeRoleProvider` (or the web-identity provider of this crate, or the
//! SDK's default chain), wrapped in [`TrackedProvider`], which counts STS
//! calls, remembers the last expiry and turns STS failures into messages
//! that name the cause.
//!
//! Caching is not done here: the S3 client's identity cache (the SDK's lazy
//! cache, with `buffer_time` = the refresh margin) keeps one set of
//! credentials, refreshes it before it expires and lets concurrent requests
//! wait on one load, so a burst of requests at refresh time makes one STS
//! call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::sts::AssumeRoleProvider;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;
use aws_sdk_sts::error::{DisplayErrorContext, SdkError};
use stowage_core::{CredentialsFailure, CredentialsProblem};

use crate::config::{StsConfig, StsSource};
use crate::web_identity::WebIdentityProvider;

/// What the provider has done so far, shared with the driver (for
/// `validate`, metrics and tests).
#[derive(Debug, Default)]
pub struct CredentialStats {
    loads: AtomicU64,
    failures: AtomicU64,
    last: Mutex<LastLoad>,
}

#[derive(Debug, Default, Clone)]
struct LastLoad {
    expiry: Option<SystemTime>,
    access_key_prefix: Option<String>,
    error: Option<(CredentialsProblem, String)>,
}

impl CredentialStats {
    /// How many times credentials were requested from STS (successful or not).
    pub fn sts_calls(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// How many of those calls failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Expiry of the credentials obtained last.
    pub fn last_expiry(&self) -> Option<SystemTime> {
        self.last.lock().expect("stats lock").expiry
    }

    /// The first characters of the last access key id (never the secret),
    /// so a report can show that credentials changed.
    pub fn last_access_key_prefix(&self) -> Option<String> {
        self.last
            .lock()
            .expect("stats lock")
            .access_key_prefix
            .clone()
    }

    /// The last failure: its kind and a message without secrets.
    pub fn last_error(&self) -> Option<(CredentialsProblem, String)> {
        self.last.lock().expect("stats lock").error.clone()
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
struct Describe {
    role: String,
    mode: &'static str,
    endpoint: String,
    token_file: Option<String>,
    /// With user keys: an STS client and an S3 client signing with them.
    user_key_probe: Option<(aws_sdk_sts::Client, aws_sdk_s3::Client)>,
}

impl TrackedProvider {
    async fn load(&self) -> Result<Credentials, CredentialsError> {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.provide_credentials().await;
        let mut last = self.stats.last.lock().expect("stats lock");
        match result {
            Ok(credentials) => {
                tracing::info!(
                    role = %self.describe.role,
                    mode = self.describe.mode,
                    expires = ?credentials.expiry().map(chrono::DateTime::<chrono::Utc>::from),
                    "obtained role credentials from STS"
                );
                last.expiry = credentials.expiry();
                last.access_key_prefix =
                    Some(credentials.access_key_id().chars().take(8).collect());
                last.error = None;
                Ok(credentials)
            }
            Err(err) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                drop(last);
                let (problem, mut message) = explain(&err, &self.describe);
                if sdk_status(&err) == Some(403) {
                    if let Some(probe) = &self.describe.user_key_probe {
                        message = format!("{message}; {}", diagnose_user_keys(probe).await);
                    }
                }
                let mut last = self.stats.last.lock().expect("stats lock");
                tracing::warn!(role = %self.describe.role, "{message}");
                last.error = Some((problem, message.clone()));
                Err(CredentialsError::provider_error(CredentialsFailure {
                    problem,
                    message,
                }))
            }
        }
    }
}

impl ProvideCredentials for TrackedProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
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
        StsSource::SdkDefaultChain => SharedCredentialsProvider::new(
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .region(Region::new(config.sts_region.clone()))
                .build()
                .await,
        ),
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

/// After STS refused AssumeRole with HTTP 403: are the user keys wrong, or
/// does the role not trust the user? AWS answers GetCallerIdentity for any
/// valid keys; servers without it (Ceph RGW) are asked ListBuckets.
async fn diagnose_user_keys(probe: &(aws_sdk_sts::Client, aws_sdk_s3::Client)) -> String {
    let (sts, s3) = probe;
    let keys_ok = match sts.get_caller_identity().send().await {
        Ok(who) => Some(format!(
            "the user keys are valid (they belong to {}), so the role's trust policy does not allow this user",
            who.arn().unwrap_or("an IAM user")
        )),
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(400) | Some(403) => None,
            _ => match s3.list_buckets().send().await {
                Ok(_) => Some(
                    "the user keys are valid (S3 accepts them), so the role's trust policy does not allow this user"
                        .to_string(),
                ),
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(403) => None,
                Err(_) => {
                    return "could not tell whether the user keys or the role's trust policy is at fault".into()
                }
            },
        },
    };
    keys_ok.unwrap_or_else(|| {
        "the user keys themselves are rejected: check sts_user_access_key and sts_user_secret_key".into()
    })
}

/// The SDK configuration the STS client uses: region, endpoint, retries.
/// Its credentials (for AssumeRole without user keys) are the default chain.
async fn sts_sdk_config(config: &StsConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.sts_region.clone()))
        .retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(config.s3.max_attempts),
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
    loader.load().await
}

/// The cause of a credential failure, in words an operator can act on.
fn explain(err: &CredentialsError, d: &Describe) -> (CredentialsProblem, String) {
    let role = &d.role;
    if let CredentialsError::CredentialsNotLoaded(_) = err {
        return (
            CredentialsProblem::Missing,
            format!(
                "no credentials to call STS with ({}): give sts_user_access_key and \
                 sts_user_secret_key, or run where the default credential chain finds some",
                DisplayErrorContext(err)
            ),
        );
    }
    // Our own web-identity provider already says precisely what is wrong
    // with the token file.
    if let Some(own) = find_source::<crate::web_identity::TokenFileError>(err) {
        return (own.problem, own.to_string());
    }
    let status = sdk_status(err);
    let text = DisplayErrorContext(err).to_string();
    let code = [
        "InvalidIdentityToken",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "NoSuchEntity",
        "MalformedPolicyDocument",
    ]
    .into_iter()
    .find(|c| text.contains(c));
    let dispatch = find_dispatch(err);
    if let Some(kind) = dispatch {
        return (
            CredentialsProblem::Invalid,
            format!(
                "STS at {} is unreachable ({kind}); check sts_endpoint_url and the network",
                d.endpoint
            ),
        );
    }
    let via = match d.mode {
        "web-identity" => format!(
            "the web identity token in {}",
            d.token_file.as_deref().unwrap_or("the token file")
        ),
        "assume-role" => "the IAM user's keys".to_string(),
        _ => "the profile's credentials".to_string(),
    };
    let (problem, message) = match (status, code) {
        (_, Some("InvalidIdentityToken")) => (
            CredentialsProblem::Invalid,
            format!("STS rejected {via} for role {role} (InvalidIdentityToken): the issuer is not a trusted OIDC provider, or the signature or audience is wrong"),
        ),
        (_, Some("ExpiredTokenException" | "ExpiredToken")) => (
            CredentialsProblem::Expired,
            format!("STS says {via} has expired (role {role})"),
        ),
        (_, Some("InvalidClientTokenId" | "InvalidAccessKeyId")) => (
            CredentialsProblem::Invalid,
            format!("STS does not know the access key of {via} (InvalidClientTokenId): check sts_user_access_key"),
        ),
        (_, Some("SignatureDoesNotMatch")) => (
            CredentialsProblem::Invalid,
            format!("STS rejected the signature made with {via} (SignatureDoesNotMatch): check sts_user_secret_key"),
        ),
        (Some(404), _) | (_, Some("NoSuchEntity")) => (
            CredentialsProblem::Invalid,
            format!("role {role} does not exist (STS answered {}); check sts_role_arn", status.unwrap_or(404)),
        ),
        (Some(403), _) | (_, Some("AccessDenied")) => (
            CredentialsProblem::Invalid,
            format!("STS refused to let {via} assume role {role} (HTTP 403): the role does not exist, or its trust policy does not name this principal{}",
                if d.mode == "assume-role" { " (or the external id is wrong)" } else { "" }),
        ),
        (Some(s), _) if s >= 500 => (
            CredentialsProblem::Invalid,
            format!("STS at {} failed with HTTP {s} while assuming role {role}", d.endpoint),
        ),
        (Some(s), _) => (
            CredentialsProblem::Invalid,
            format!("STS answered HTTP {s} while assuming role {role} with {via}: {}", first_line(&text)),
        ),
        (None, _) => (
            CredentialsProblem::Invalid,
            format!("could not assume role {role} with {via}: {}", first_line(&text)),
        ),
    };
    (problem, message)
}

fn first_line(s: &str) -> String {
    s.chars().take(300).collect()
}

/// The HTTP status of an STS answer inside `err`, if there was one.
fn sdk_status(err: &CredentialsError) -> Option<u16> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    type Resp = aws_sdk_sts::config::http::HttpResponse;
    if let Some(e) = find_source::<SdkError<AssumeRoleError, Resp>>(err) {
        return e.raw_response().map(|r| r.status().as_u16());
    }
    if let Some(e) = find_source::<SdkError<AssumeRoleWithWebIdentityError, Resp>>(err) {
        return e.raw_response().map(|r| r.status().as_u16());
    }
    None
}

/// `Some(reason)` when STS could not be reached at all.
fn find_dispatch(err: &CredentialsError) -> Option<&'static str> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    type Resp = aws_sdk_sts::config::http::HttpResponse;
    fn kind<E>(e: &SdkError<E, Resp>) -> Option<&'static str> {
        match e {
            SdkError::DispatchFailure(d) if d.is_timeout() => Some("timed out"),
            SdkError::DispatchFailure(d) if d.is_io() => Some("connection failed"),
            SdkError::DispatchFailure(_) => Some("request could not be sent"),
            SdkError::TimeoutError(_) => Some("timed out"),
            _ => None,
        }
    }
    if let Some(e) = find_source::<SdkError<AssumeRoleError, Resp>>(err) {
        return kind(e);
    }
    if let Some(e) = find_source::<SdkError<AssumeRoleWithWebIdentityError, Resp>>(err) {
        return kind(e);
    }
    None
}

/// The first error of type `T` in `err`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        current = e.source();
    }
    None
}
