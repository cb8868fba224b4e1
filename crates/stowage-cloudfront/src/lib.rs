//! CloudFront for stowage: a signer for CloudFront signed URLs and cookies
//! usable on its own ([`signer`], no S3 code), and
//! [`CloudFrontedS3Storage`], Quay's `CloudFrontedS3Storage`: the S3 driver
//! with a signing layer for download URLs.
//!
//! - Legacy key pairs (`APKA…`, root account, trusted signers) or public
//!   keys of trusted key groups (`K…`, several for rotation), chosen by
//!   `cloudfront_signing_mode` or inferred from the id.
//! - RSA PKCS#1 v1.5 over SHA-1 (or SHA-256 with `Hash-Algorithm=SHA256`),
//!   blinded, and ECDSA P-256 for key groups, signed by aws-lc in constant
//!   time (default) or, with the `pure-rust` feature, by the pure-Rust `rsa`
//!   and `p256` crates ([`signer::SIGNING_BACKEND`]).
//! - Canned and custom policies (not-before, source IP, wildcards), URLs and
//!   cookies; the URL signed is exactly the URL returned.
//! - When signing cannot happen, an S3 presigned URL that says why;
//!   clients without an address or inside AWS go straight to S3.
//! - Key rotation without a restart: key files (and key id files) are read
//!   again when they change, the old keys signing until the new ones load;
//!   [`reload_signing_keys`] reloads at once (SIGHUP).
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use stowage_cloudfront::{CloudFrontConfig, CloudFrontedS3Storage};
//! use stowage_core::{DownloadUrlOptions, Storage, StoragePath};
//! let s3 = stowage_s3::S3Config::new("registry-bucket").with_root("registry");
//! let config = CloudFrontConfig::new(s3, "d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", "/keys/cf.pem");
//! let storage = CloudFrontedS3Storage::new(config).await?;
//! let options = DownloadUrlOptions::default().with_client_ip("203.0.113.9".parse().unwrap());
//! let url = storage.download_url(&StoragePath::parse("sha256/ab/abcd")?, &options).await?;
//! # Ok(()) }
//! ```

mod config;
mod driver;
pub mod keys;
pub mod signer;

pub use config::{CloudFrontConfig, KeyEntry, PolicyKind};
pub use driver::{
    reload_signing_keys, AwsIpRanges, CloudFrontedS3Storage, KeyReload, Route, DRIVER,
};
