//! Where the S3 driver's credentials come from, when not from the
//! configuration's static keys or the SDK's default chain: a
//! [`CredentialSource`] gives [`Credentials`] (stowage's own type) and tells
//! `validate()`, `metrics()` and presigning what it knows.
//!
//! stowage-sts provides the STS source (AssumeRole, web identity); any
//! S3-based composition (plain S3, S3 behind CloudFront) takes one through
//! [`crate::S3Storage::with_credential_source`]. The AWS SDK's credential
//! types stay inside this crate: [`SdkProvider`] adapts a source to the
//! SDK's `ProvideCredentials`, so an SDK major version does not change what
//! an embedder implements.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use stowage_core::config::Secret;
use stowage_core::{Metric, Result, ValidationReport};

/// A set of AWS credentials: an access key id, its secret access key, a
/// session token for temporary credentials, and when they expire.
///
/// `Debug` shows none of the three values (the access key id included, as
/// in [`crate::S3Config`]), only whether there is a session token and the
/// expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    expiry: Option<SystemTime>,
}

impl Credentials {
    /// Credentials of `access_key_id` and `secret_access_key`, with the
    /// `session_token` of temporary credentials (STS) and their `expiry`
    /// (`None`: they do not expire).
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
        session_token: Option<Secret>,
        expiry: Option<SystemTime>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token,
            expiry,
        }
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key. Never log it.
    pub fn secret_access_key(&self) -> &Secret {
        &self.secret_access_key
    }

    /// The session token of temporary credentials. Never log it.
    pub fn session_token(&self) -> Option<&Secret> {
        self.session_token.as_ref()
    }

    /// When they expire; `None` when they do not.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
    }

    /// The SDK's credentials with the same values, named `provider_name`
    /// (the source's name) in the SDK's logs.
    pub(crate) fn to_sdk(&self, provider_name: &'static str) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_string(),
            self.session_token.as_ref().map(|t| t.expose().to_string()),
            self.expiry,
            provider_name,
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"***")
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// A source of credentials for the S3 client, with what it can report.
///
/// Unless the source [caches itself](CredentialSource::caches_itself), the
/// client caches what [`CredentialSource::credentials`] returns and loads
/// new credentials [`CredentialSource::refresh_margin`] before they expire,
/// one load for all concurrent requests (which wait for it).
///
/// ```no_run
/// use std::time::Duration;
/// use stowage_core::config::Secret;
/// use stowage_core::{Result, ValidationReport};
/// use stowage_s3::{CredentialSource, Credentials};
///
/// /// Keys kept by a vault of the embedder's.
/// #[derive(Debug)]
/// struct Vault;
///
/// #[async_trait::async_trait]
/// impl CredentialSource for Vault {
///     fn name(&self) -> &'static str {
///         "vault"
///     }
///     async fn credentials(&self) -> Result<Credentials> {
///         Ok(Credentials::new("AKIDEXAMPLE", Secret::new("from-the-vault"), None, None))
///     }
///     fn refresh_margin(&self) -> Duration {
///         Duration::from_secs(300)
///     }
///     async fn validate(&self, report: &mut ValidationReport) -> bool {
///         report.fact("credentials", "vault");
///         true
///     }
/// }
/// ```
#[async_trait]
pub trait CredentialSource: fmt::Debug + Send + Sync + 'static {
    /// A short name for reports and logs, e.g. `sts`.
    fn name(&self) -> &'static str;

    /// Credentials for requests: what the S3 client signs with. Called when
    /// the client's cache needs credentials (or on every request when the
    /// source caches itself).
    ///
    /// # Errors
    /// [`stowage_core::Error::Credentials`] saying what is wrong (missing,
    /// expired, invalid) and whether asking again may help; the request
    /// then fails with an [`stowage_core::Error::Credentials`] of driver
    /// `s3` with that problem, its message and the request. Any other
    /// error fails the request as missing credentials, retryable when the
    /// error is.
    async fn credentials(&self) -> Result<Credentials>;

    /// How long before expiry new credentials are loaded: by the client's
    /// cache, or by the source itself when it caches itself.
    fn refresh_margin(&self) -> Duration;

    /// Whether the source keeps and renews its credentials itself (the
    /// STS source does, refreshing in the background). The client then
    /// asks it on every request, without an identity cache of its own: a
    /// second cache would reload synchronously inside its buffer time and
    /// make requests wait for the source. Default: `false`.
    fn caches_itself(&self) -> bool {
        false
    }

    /// Checks the source (e.g. assumes the role once) and adds facts and
    /// checks to `report`. `false` when the credentials cannot be had, so
    /// the S3 checks that would only repeat the failure are skipped.
    async fn validate(&self, report: &mut ValidationReport) -> bool;

    /// Counters of the source (calls, failures), appended to the driver's.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }

    /// When the credentials in use expire, if they do: presigned URLs are
    /// never given a longer life than this.
    fn expiry(&self) -> Option<SystemTime> {
        None
    }
}

/// The source shared by the client and the driver.
pub(crate) type SharedSource = Arc<dyn CredentialSource>;

/// A [`CredentialSource`] as the SDK's credentials provider, what the S3
/// client loads credentials from. A source's error reaches the request's
/// error through the SDK's `CredentialsError::provider_error`, whose source
/// it is (`error.rs` finds it there).
#[derive(Debug, Clone)]
pub(crate) struct SdkProvider(pub(crate) SharedSource);

impl ProvideCredentials for SdkProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            match self.0.credentials().await {
                Ok(credentials) => Ok(credentials.to_sdk(self.0.name())),
                Err(e) => Err(CredentialsError::provider_error(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::{CredentialsProblem, Error};

    #[derive(Debug)]
    struct Fixed(Option<Credentials>);

    #[async_trait]
    impl CredentialSource for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn credentials(&self) -> Result<Credentials> {
            self.0.clone().ok_or_else(|| Error::Credentials {
                driver: "s3",
                problem: CredentialsProblem::Expired,
                retryable: true,
                message: "the vault is sealed".into(),
                operation: None,
                source: None,
            })
        }
        fn refresh_margin(&self) -> Duration {
            Duration::from_secs(60)
        }
        async fn validate(&self, _report: &mut ValidationReport) -> bool {
            true
        }
    }

    #[test]
    fn credentials_never_show_their_values() {
        let c = Credentials::new(
            "AKIDSHOWN",
            Secret::new("hunter2"),
            Some(Secret::new("session-token-value")),
            None,
        );
        let debug = format!("{c:?}");
        for value in ["AKIDSHOWN", "hunter2", "session-token-value"] {
            assert!(!debug.contains(value), "{debug}");
        }
        assert_eq!(c.access_key_id(), "AKIDSHOWN");
        assert_eq!(c.secret_access_key().expose(), "hunter2");
    }

    #[tokio::test]
    async fn the_sdk_gets_the_sources_credentials_and_its_errors() {
        let expiry = SystemTime::now() + Duration::from_secs(900);
        let c = Credentials::new(
            "AKIDSOURCE",
            Secret::new("s"),
            Some(Secret::new("t")),
            Some(expiry),
        );
        let sdk = SdkProvider(Arc::new(Fixed(Some(c))))
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(sdk.access_key_id(), "AKIDSOURCE");
        assert_eq!(sdk.secret_access_key(), "s");
        assert_eq!(sdk.session_token(), Some("t"));
        assert_eq!(sdk.expiry(), Some(expiry));

        let err = SdkProvider(Arc::new(Fixed(None)))
            .provide_credentials()
            .await
            .unwrap_err();
        let ours = stowage_core::find_in_chain::<Error>(&err).expect("the source's error");
        assert!(ours.to_string().contains("the vault is sealed"), "{ours}");
    }
}
