//! Where the S3 driver's credentials come from, when not from the
//! configuration's static keys or the SDK's default chain: a
//! [`CredentialSource`] hands the client an SDK credentials provider and
//! tells `validate()`, `metrics()` and presigning what it knows.
//!
//! stowage-sts provides the STS source (AssumeRole, web identity); any
//! S3-based composition (plain S3, S3 behind CloudFront) takes one through
//! [`crate::S3Storage::with_credential_source`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use stowage_core::{Metric, ValidationReport};

pub use aws_sdk_s3::config::SharedCredentialsProvider;

/// A source of credentials for the S3 client, with what it can report.
///
/// Unless the source [caches itself](CredentialSource::caches_itself), the
/// client caches what [`CredentialSource::provider`] returns in the SDK's
/// lazy identity cache and loads new credentials
/// [`CredentialSource::refresh_margin`] before they expire, one load for all
/// concurrent requests (which wait for it).
#[async_trait]
pub trait CredentialSource: Debug + Send + Sync + 'static {
    /// A short name for reports and logs, e.g. `sts`.
    fn name(&self) -> &'static str;

    /// The SDK provider the S3 client loads credentials from.
    fn provider(&self) -> SharedCredentialsProvider;

    /// How long before expiry new credentials are loaded: by the client's
    /// cache, or by the source itself when it caches itself.
    fn refresh_margin(&self) -> Duration;

    /// Whether the provider keeps and renews its credentials itself (the
    /// STS source does, refreshing in the background). The client then
    /// asks the provider on every request, without an identity cache of
    /// its own: a second cache would reload synchronously inside its
    /// buffer time and make requests wait for the provider. Default:
    /// `false`.
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
