//! Stowage: the storage layer container registries embed.
//!
//! This crate is what a registry depends on: it reads Quay's
//! `DISTRIBUTED_STORAGE_CONFIG` (YAML or JSON), builds the configured driver
//! behind `Arc<dyn Storage>`, and re-exports the core types.
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
//! (`GoogleCloudStorage`, `SwiftStorage`, ...) and of unknown names are kept
//! as [`DriverConfig::Unsupported`]: refused when used, blocking no other.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod factory;
mod quay_config;
#[cfg(feature = "s3")]
mod quay_s3_compatible;

pub use factory::{open, BUILT_IN_DRIVERS};
#[cfg(feature = "cloudfront")]
pub use quay_config::CloudFrontLocation;
pub use quay_config::{DriverConfig, Location, StowageConfig, DEFAULT_LOCAL_PATH};
#[cfg(feature = "s3")]
pub use quay_s3_compatible::{read_s3_compatible, S3CompatibleDriver};

#[cfg(feature = "azure")]
pub use stowage_azure as azure;
#[cfg(feature = "cloudfront")]
pub use stowage_cloudfront as cloudfront;
pub use stowage_core::*;
pub use stowage_local as local;
#[cfg(feature = "s3")]
pub use stowage_s3 as s3;
#[cfg(feature = "sts")]
pub use stowage_sts as sts;
