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
//! | `sts` (default) | `STSS3Storage`: S3 with credentials of an assumed role |
//! | `cloudfront` (default) | `CloudFrontedS3Storage`: S3 with CloudFront signed download URLs |

mod factory;
mod quay_config;

pub use factory::{open, BUILT_IN_DRIVERS};
pub use quay_config::{DriverConfig, Location, StowageConfig, DEFAULT_LOCAL_PATH};

#[cfg(feature = "cloudfront")]
pub use stowage_cloudfront as cloudfront;
pub use stowage_core::*;
pub use stowage_local as local;
#[cfg(feature = "s3")]
pub use stowage_s3 as s3;
#[cfg(feature = "sts")]
pub use stowage_sts as sts;
