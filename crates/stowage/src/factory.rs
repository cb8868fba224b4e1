//! The driver factory: Quay driver names to configurations, and
//! configurations to `Arc<dyn Storage>`.

use std::sync::Arc;

use stowage_core::config::{ConfigErrors, FromParams, Params};
use stowage_core::{Result, Storage};

#[cfg(feature = "cloudfront")]
use crate::CloudFrontLocation;
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
    #[cfg(feature = "s3")]
    "RadosGWStorage",
    #[cfg(feature = "s3")]
    "RHOCSStorage",
    #[cfg(feature = "s3")]
    "IBMCloudStorage",
    #[cfg(feature = "azure")]
    "AzureStorage",
];

/// Every Quay driver name stowage implements, built in or not.
pub(crate) const KNOWN_DRIVERS: &[&str] = &[
    "LocalStorage",
    "S3Storage",
    "STSS3Storage",
    "CloudFrontedS3Storage",
    "RadosGWStorage",
    "RHOCSStorage",
    "IBMCloudStorage",
    "AzureStorage",
];

/// Quay driver names stowage does not implement: a location using one is
/// kept and refused only when used (see `docs/configuration.md`).
pub(crate) const QUAY_ONLY_DRIVERS: &[&str] = &[
    "GoogleCloudStorage",
    "SwiftStorage",
    "CloudFlareStorage",
    "AkamaiS3Storage",
    "MultiCDNStorage",
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
        "CloudFrontedS3Storage" => DriverConfig::CloudFront(Box::new(read_cloudfront(params)?)),
        #[cfg(feature = "s3")]
        "RadosGWStorage" | "RHOCSStorage" | "IBMCloudStorage" => {
            let Some(kind) = crate::S3CompatibleDriver::from_quay_name(driver) else {
                return Ok(None);
            };
            DriverConfig::S3Compatible {
                driver: kind,
                config: Box::new(crate::quay_s3_compatible::read_s3_compatible(kind, params)?),
            }
        }
        #[cfg(feature = "azure")]
        "AzureStorage" => {
            DriverConfig::Azure(Box::new(stowage_azure::AzureConfig::from_params(params)?))
        }
        _ => return Ok(None),
    }))
}

/// Reads a `CloudFrontedS3Storage` location: the CloudFront and S3 keys,
/// and STS keys when any `sts_*` key is given (CloudFront over a bucket
/// whose credentials come from STS).
#[cfg(feature = "cloudfront")]
fn read_cloudfront(mut params: Params<'_>) -> Result<CloudFrontLocation, ConfigErrors> {
    let cloudfront = stowage_cloudfront::CloudFrontConfig::read(&mut params);
    #[cfg(feature = "sts")]
    let sts = if params.has_key_starting_with("sts_") {
        let s3 = cloudfront.as_ref().map(|c| c.s3.clone());
        stowage_sts::StsConfig::read_over(&mut params, &process_env, s3).map(Some)
    } else {
        Some(None)
    };
    #[cfg(feature = "sts")]
    let parsed = cloudfront
        .zip(sts)
        .map(|(cloudfront, sts)| CloudFrontLocation { cloudfront, sts });
    #[cfg(not(feature = "sts"))]
    let parsed = cloudfront.map(|cloudfront| CloudFrontLocation { cloudfront });
    params.finish_with(parsed)
}

/// Environment lookups for configuration readers.
#[cfg(feature = "sts")]
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(feature = "cloudfront")]
async fn open_cloudfront(
    c: &CloudFrontLocation,
) -> Result<stowage_cloudfront::CloudFrontedS3Storage> {
    use stowage_cloudfront::CloudFrontedS3Storage;
    #[cfg(feature = "sts")]
    if let Some(sts) = &c.sts {
        let source = Arc::new(stowage_sts::StsCredentials::new(sts.clone()).await);
        return CloudFrontedS3Storage::with_credential_source(c.cloudfront.clone(), source).await;
    }
    CloudFrontedS3Storage::new(c.cloudfront.clone()).await
}

/// Builds the storage of a location.
///
/// # Errors
/// [`stowage_core::Error::Config`] when the driver cannot start with this
/// configuration (e.g. an unusable directory), or when stowage does not
/// implement the location's driver ([`Location::check_supported`]).
pub async fn open(location: &Location) -> Result<Arc<dyn Storage>> {
    Ok(match &location.driver {
        DriverConfig::Local(c) => Arc::new(stowage_local::LocalStorage::from_config(c)?),
        #[cfg(feature = "s3")]
        DriverConfig::S3(c) => Arc::new(stowage_s3::S3Storage::new((**c).clone()).await?),
        #[cfg(feature = "sts")]
        DriverConfig::Sts(c) => Arc::new(stowage_sts::open_s3((**c).clone()).await?.0),
        #[cfg(feature = "cloudfront")]
        DriverConfig::CloudFront(c) => Arc::new(open_cloudfront(c).await?),
        #[cfg(feature = "s3")]
        DriverConfig::S3Compatible { config, .. } => {
            Arc::new(stowage_s3::S3Storage::new((**config).clone()).await?)
        }
        #[cfg(feature = "azure")]
        DriverConfig::Azure(c) => Arc::new(stowage_azure::AzureStorage::new((**c).clone())?),
        DriverConfig::Unsupported { driver } => {
            return Err(crate::quay_config::unsupported_error(
                &location.name,
                driver,
            ))
        }
    })
}
