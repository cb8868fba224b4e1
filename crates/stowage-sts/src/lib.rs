//! The STS driver of stowage (Quay's `STSS3Storage`): the S3 driver with
//! credentials of an assumed role, for registries that must not hold
//! long-lived keys.
//!
//! - `AssumeRole` signed with an IAM user's keys (`sts_user_access_key`,
//!   `sts_user_secret_key`) or the default credential chain, through
//!   aws-config's `AssumeRoleProvider`.
//! - `AssumeRoleWithWebIdentity` with a token file read again at every
//!   refresh (EKS IRSA, OpenShift's Cloud Credential Operator), configured
//!   explicitly or by `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`; or a
//!   shared config profile with `role_arn` + `web_identity_token_file`.
//! - Credentials are cached by the S3 client and refreshed a configurable
//!   margin before they expire; concurrent requests at refresh time wait for
//!   one STS call.
//! - `validate` assumes the role and reports the role, the mode and the
//!   credential expiry, or precisely why STS refused.
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use stowage_s3::S3Config;
//! use stowage_sts::{StsConfig, STSS3Storage};
//! let s3 = S3Config::new("registry-bucket").with_region("eu-west-1");
//! let storage = STSS3Storage::new(StsConfig::assume_role(s3, "arn:aws:iam::123456789012:role/quay")).await?;
//! # Ok(()) }
//! ```

mod config;
mod credentials;
mod policy;
mod storage;
mod web_identity;

pub use config::{StsConfig, StsSource};
pub use credentials::CredentialStats;
pub use policy::trust_policy;
pub use storage::{STSS3Storage, DRIVER};
