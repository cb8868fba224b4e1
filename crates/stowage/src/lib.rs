//! Stowage: the storage layer container registries embed.
//!
//! This crate is what a registry depends on: it reads Quay's
//! `DISTRIBUTED_STORAGE_CONFIG` (YAML, JSON, or an already parsed
//! `serde_json::Value`), builds the configured driver behind
//! `Arc<dyn Storage>`, and re-exports the types a registry uses.
//!
//! ```no_run
//! # async fn demo() -> stowage::Result<()> {
//! use stowage::{StowageConfig, StorageExt, StoragePath};
//! let config = StowageConfig::from_file("config.yaml".as_ref())?;
//! let storage = stowage::open(config.location(None)?).await?;
//! let blob = storage.get_bytes(&StoragePath::parse("sha256/ab/abcd")?).await?;
//! # Ok(()) }
//! ```
//!
//! Drivers are found by Quay name in a [`Drivers`] set, which an embedder
//! extends with its own ([`DriverFactory`]); [`open`] uses the built-in
//! set. `docs/embedding.md` walks through it.
//!
//! | feature | driver (Quay name)                         |
//! |---------|--------------------------------------------|
//! | always  | `LocalStorage`: files under `storage_path` |
//! | `s3` (default) | `S3Storage`: an S3 bucket (AWS, Ceph RGW, Garage, MinIO) |
//! | `sts` (default) | `STSS3Storage`: S3 with credentials of an assumed role (and STS keys on CloudFront locations) |
//! | `cloudfront` (default) | `CloudFrontedS3Storage`: S3 with CloudFront signed download URLs |
//! | `s3` (default) | `RadosGWStorage`, `RHOCSStorage`, `IBMCloudStorage`: Quay's S3-compatible drivers, with Quay's keys, on the S3 driver |
//! | `azure` (default) | `AzureStorage`: an Azure Blob Storage container (Azure, Azurite) |
//!
//! Locations of Quay drivers stowage does not implement
//! (`SwiftStorage`, ...) and of unknown names are kept, with their
//! parameters, as [`DriverConfig::Unsupported`]: refused when used,
//! blocking no other, and opened by a driver set that has their driver.
//!
//! What a registry needs is re-exported here; what only a driver or layer
//! author needs (the multipart writer, listing and validation helpers,
//! upload internals) is in [`core`], the `stowage-core` crate.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod drivers;
mod factory;
mod quay_config;
#[cfg(feature = "s3")]
mod quay_gcs;
#[cfg(feature = "s3")]
mod quay_s3_compatible;

pub use drivers::{CustomConfig, DriverFactory, DriverParams, Drivers};
pub use factory::{open, BUILT_IN_DRIVERS};
#[cfg(feature = "cloudfront")]
pub use quay_config::CloudFrontLocation;
pub use quay_config::{DriverConfig, Location, StowageConfig, DEFAULT_LOCAL_PATH};
#[cfg(feature = "s3")]
pub use quay_gcs::read_gcs;
#[cfg(feature = "s3")]
pub use quay_s3_compatible::{read_s3_compatible, S3CompatibleDriver};

#[cfg(feature = "azure")]
pub use stowage_azure as azure;
#[cfg(feature = "cloudfront")]
pub use stowage_cloudfront as cloudfront;
pub use stowage_local as local;
#[cfg(feature = "s3")]
pub use stowage_s3 as s3;
#[cfg(feature = "sts")]
pub use stowage_sts as sts;

/// The `stowage-core` crate whole: the trait, and what driver and layer
/// authors use beyond what this crate re-exports.
pub use stowage_core as core;

pub use stowage_core::{
    async_trait, forward_storage, BoxError, ByteRange, ByteStream, Capabilities, CheckStatus,
    CleanupReport, CompleteOptions, CredentialsProblem, DigestParseError, DirectUrl,
    DownloadUrlOptions, Error, ErrorKind, Fallback, GetOptions, GetResult, ListOptions, ListPage,
    ListStream, Metric, ObjectMeta, Operation, PutOptions, Result, Sha256Digest, Storage,
    StorageExt, StoragePath, UploadState, UploadUrlOptions, UrlMethod, UrlSource, ValidationReport,
    WriteStream, MAX_PATH_BYTES,
};
pub use stowage_core::{config, download, forward, layers, metrics};

/// What a registry uses of resumable uploads beyond [`UploadState`]; the
/// helpers drivers build uploads with are in [`core::upload`].
pub mod upload {
    pub use stowage_core::upload::{
        finished_already, CleanupReport, CompleteOptions, ResumableSha256, UploadState,
        UPLOADS_AREA, UPLOAD_STATE_VERSION,
    };
}

/// Waiting for the aborts of multipart uploads whose writes were dropped
/// (a command line interrupted mid-upload); the multipart writer itself is
/// in [`core::multipart`].
pub mod multipart {
    pub use stowage_core::multipart::{dropped_aborts, wait_for_aborts, AbortTally};
}
