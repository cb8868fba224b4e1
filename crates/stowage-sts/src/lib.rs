//! STS credentials for the S3 driver of stowage: a credential source, not a
//! storage type. Quay's `STSS3Storage` is an `S3Storage` with this source;
//! a `CloudFrontedS3Storage` location with STS keys gets one too. For
//! registries that must not hold long-lived keys.
//!
//! - `AssumeRole` signed with an IAM user's keys (`sts_user_access_key`,
//!   `sts_user_secret_key`) or the default credential chain, through
//!   aws-config's `AssumeRoleProvider`.
//! - `AssumeRoleWithWebIdentity` with a token file read again at every
//!   refresh (EKS IRSA, OpenShift's Cloud Credential Operator), configured
//!   explicitly or by `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`; or a
//!   shared config profile with `role_arn` + `web_identity_token_file`.
//! - Credentials are cached by the source itself: requests get them at
//!   once while they are valid, a background refresh renews them from the
//!   refresh margin before their expiry on (the configured margin, capped at
//!   a third of the session), retried with backoff while it fails; requests
//!   wait only when no valid credentials are held, and then share one STS
//!   call.
//! - `validate` assumes the role and reports the role, the mode and the
//!   credential expiry, or precisely why STS refused.
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use std::sync::Arc;
//! use stowage_s3::{S3Config, S3Storage};
//! use stowage_sts::{StsConfig, StsCredentials};
//! let s3 = S3Config::new("registry-bucket").with_region("eu-west-1");
//! let sts = StsConfig::assume_role(s3.clone(), "arn:aws:iam::123456789012:role/quay");
//! let storage = S3Storage::with_credential_source(s3, Arc::new(StsCredentials::new(sts).await?)).await?;
//! # Ok(()) }
//! ```

mod config;
mod credentials;
mod diagnosis;
pub mod keys;
mod policy;
mod refresh;
mod source;
mod web_identity;

pub use config::{StsConfig, StsSource};
pub use credentials::CredentialStats;
pub use policy::trust_policy;
pub use source::{open_s3, StsCredentials, SOURCE};
