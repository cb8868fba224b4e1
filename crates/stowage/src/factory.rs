//! The driver factory: Quay driver names to configurations, and
//! configurations to `Arc<dyn Storage>`.

use std::sync::Arc;

use stowage_core::config::{ConfigErrors, Params};
use stowage_core::{Result, Storage};

use crate::{DriverConfig, Location};

/// Quay driver names built into this binary.
pub const BUILT_IN_DRIVERS: &[&str] = &[
    "LocalStorage",
    #[cfg(feature = "s3")]
    "S3Storage",
    #[cfg(feature = "sts")]
    "STSS3Storage",
    #[cfg(feature = "cloudfront")]
    "CloudFrontedS3Storage",
];

/// Every Quay driver name stowage knows, built in or not.
pub(crate) const KNOWN_DRIVERS: &[&str] = &[
    "LocalStorage",
    "S3Storage",
    "STSS3Storage",
    "CloudFrontedS3Storage",
];

/// Parses the parameters of `driver`; `Ok(None)` when the driver is not
/// built in.
pub(crate) fn parse_driver(
    driver: &str,
    params: Params<'_>,
) -> Result<Option<DriverConfig>, ConfigErrors> {
    Ok(Some(match driver {
        "LocalStorage" => DriverConfig::Local(stowage_local::LocalConfig::from_params(params)?),
        #[cfg(feature = "s3")]
        "S3Storage" => DriverConfig::S3(Box::new(stowage_s3::S3Config::from_params(params)?)),
        #[cfg(feature = "sts")]
        "STSS3Storage" => DriverConfig::Sts(Box::new(stowage_sts::StsConfig::from_params(params)?)),
        #[cfg(feature = "cloudfront")]
        "CloudFrontedS3Storage" => DriverConfig::CloudFront(Box::new(
            stowage_cloudfront::CloudFrontConfig::from_params(params)?,
        )),
        _ => return Ok(None),
    }))
}

/// Builds the storage of a location.
///
/// # Errors
/// [`stowage_core::Error::Config`] when the driver cannot start with this
/// configuration (e.g. an unusable directory).
pub async fn open(location: &Location) -> Result<Arc<dyn Storage>> {
    Ok(match &location.driver {
        DriverConfig::Local(c) => Arc::new(stowage_local::LocalStorage::from_config(c)?),
        #[cfg(feature = "s3")]
        DriverConfig::S3(c) => Arc::new(stowage_s3::S3Storage::new((**c).clone()).await?),
        #[cfg(feature = "sts")]
        DriverConfig::Sts(c) => Arc::new(stowage_sts::STSS3Storage::new((**c).clone()).await?),
        #[cfg(feature = "cloudfront")]
        DriverConfig::CloudFront(c) => {
            Arc::new(stowage_cloudfront::CloudFrontedS3Storage::new((**c).clone()).await?)
        }
    })
}
