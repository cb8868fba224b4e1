//! The built-in drivers: each a [`DriverFactory`] registered in
//! [`Drivers::with_builtin`] under its Quay name, as an embedder registers
//! its own. Their configurations are [`DriverConfig`] variants of their
//! own, so callers can match them (`stowage iam-policy`, `setup`, `sign`).

use std::sync::Arc;

use stowage_core::config::{ConfigErrors, FromParams};
use stowage_core::{async_trait, Error, Result, Storage};

#[cfg(feature = "cloudfront")]
use crate::CloudFrontLocation;
use crate::{DriverConfig, DriverFactory, DriverParams, Drivers, Location};

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
    #[cfg(feature = "s3")]
    "GoogleCloudStorage",
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
    "GoogleCloudStorage",
    "AzureStorage",
];

/// Quay driver names stowage does not implement: a location using one is
/// kept and refused only when used (see `docs/configuration.md`).
pub(crate) const QUAY_ONLY_DRIVERS: &[&str] = &[
    "SwiftStorage",
    "CloudFlareStorage",
    "AkamaiS3Storage",
    "MultiCDNStorage",
];

/// Registers every built-in driver in `drivers`, in the order of
/// [`BUILT_IN_DRIVERS`].
pub(crate) fn register_builtin(drivers: &mut Drivers) {
    drivers.add_builtin("LocalStorage", LocalDriver);
    #[cfg(feature = "s3")]
    drivers.add_builtin("S3Storage", S3Driver);
    #[cfg(feature = "sts")]
    drivers.add_builtin("STSS3Storage", StsDriver);
    #[cfg(feature = "cloudfront")]
    drivers.add_builtin("CloudFrontedS3Storage", CloudFrontDriver);
    #[cfg(feature = "s3")]
    {
        for kind in crate::S3CompatibleDriver::ALL {
            drivers.add_builtin(kind.quay_name(), S3CompatibleFactory(kind));
        }
    }
    #[cfg(feature = "azure")]
    drivers.add_builtin("AzureStorage", AzureDriver);
}

/// Builds the storage of a location with the built-in drivers:
/// `Drivers::with_builtin().open(location)`.
///
/// # Errors
/// [`stowage_core::Error::Config`] when the driver cannot start with this
/// configuration (e.g. an unusable directory), or when the location's
/// driver is not built in ([`Location::check_supported`]).
pub async fn open(location: &Location) -> Result<Arc<dyn Storage>> {
    let drivers = Drivers::with_builtin();
    drivers.open(location).await
}

/// The refusal of a configuration a built-in driver did not read (never
/// met: the driver set dispatches on the configuration's driver name).
fn not_mine(driver: &str, config: &DriverConfig) -> Error {
    Error::invalid_argument(format!(
        "the {driver} driver cannot open a {} configuration",
        config.driver_name()
    ))
}

/// Quay's `LocalStorage`.
struct LocalDriver;

#[async_trait]
impl DriverFactory for LocalDriver {
    type Config = DriverConfig;

    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        stowage_local::LocalConfig::from_params(params.reader()).map(DriverConfig::Local)
    }

    async fn open(&self, config: &DriverConfig) -> Result<Arc<dyn Storage>> {
        let DriverConfig::Local(c) = config else {
            return Err(not_mine("LocalStorage", config));
        };
        let storage: Arc<dyn Storage> = Arc::new(stowage_local::LocalStorage::from_config(c)?);
        Ok(storage)
    }
}

/// Quay's `S3Storage`.
#[cfg(feature = "s3")]
struct S3Driver;

#[cfg(feature = "s3")]
#[async_trait]
impl DriverFactory for S3Driver {
    type Config = DriverConfig;

    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        stowage_s3::S3Config::from_params(params.reader()).map(|c| DriverConfig::S3(Box::new(c)))
    }

    async fn open(&self, config: &DriverConfig) -> Result<Arc<dyn Storage>> {
        let DriverConfig::S3(c) = config else {
            return Err(not_mine("S3Storage", config));
        };
        let storage: Arc<dyn Storage> = Arc::new(stowage_s3::S3Storage::new((**c).clone()).await?);
        Ok(storage)
    }
}

/// Quay's `STSS3Storage`: S3 with credentials of an assumed role.
#[cfg(feature = "sts")]
struct StsDriver;

#[cfg(feature = "sts")]
#[async_trait]
impl DriverFactory for StsDriver {
    type Config = DriverConfig;

    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        stowage_sts::StsConfig::from_params(params.reader()).map(|c| DriverConfig::Sts(Box::new(c)))
    }

    async fn open(&self, config: &DriverConfig) -> Result<Arc<dyn Storage>> {
        let DriverConfig::Sts(c) = config else {
            return Err(not_mine("STSS3Storage", config));
        };
        let storage: Arc<dyn Storage> = Arc::new(stowage_sts::open_s3((**c).clone()).await?.0);
        Ok(storage)
    }
}

/// Quay's `CloudFrontedS3Storage`, with STS credentials when the location
/// has `sts_*` keys.
#[cfg(feature = "cloudfront")]
struct CloudFrontDriver;

#[cfg(feature = "cloudfront")]
#[async_trait]
impl DriverFactory for CloudFrontDriver {
    type Config = DriverConfig;

    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        read_cloudfront(params).map(|c| DriverConfig::CloudFront(Box::new(c)))
    }

    async fn open(&self, config: &DriverConfig) -> Result<Arc<dyn Storage>> {
        let DriverConfig::CloudFront(c) = config else {
            return Err(not_mine("CloudFrontedS3Storage", config));
        };
        let storage: Arc<dyn Storage> = Arc::new(open_cloudfront(c).await?);
        Ok(storage)
    }
}

/// Reads a `CloudFrontedS3Storage` location: the CloudFront and S3 keys,
/// and STS keys when any `sts_*` key is given (CloudFront over a bucket
/// whose credentials come from STS).
#[cfg(feature = "cloudfront")]
fn read_cloudfront(params: &DriverParams) -> Result<CloudFrontLocation, ConfigErrors> {
    let mut params = params.reader();
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
        let source = Arc::new(stowage_sts::StsCredentials::new(sts.clone()).await?);
        return CloudFrontedS3Storage::with_credential_source(c.cloudfront.clone(), source).await;
    }
    CloudFrontedS3Storage::new(c.cloudfront.clone()).await
}

/// Quay's S3-compatible drivers (`RadosGWStorage`, `RHOCSStorage`,
/// `IBMCloudStorage`): Quay's keys, run on the S3 driver.
#[cfg(feature = "s3")]
struct S3CompatibleFactory(crate::S3CompatibleDriver);

#[cfg(feature = "s3")]
#[async_trait]
impl DriverFactory for S3CompatibleFactory {
    type Config = DriverConfig;

    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        let kind = self.0;
        crate::quay_s3_compatible::read_s3_compatible(kind, params.reader()).map(|config| {
            DriverConfig::S3Compatible {
                driver: kind,
                config: Box::new(config),
            }
        })
    }

    async fn open(&self, config: &DriverConfig) -> Result<Arc<dyn Storage>> {
        let DriverConfig::S3Compatible { config: c, .. } = config else {
            return Err(not_mine(self.0.quay_name(), config));
        };
        let storage: Arc<dyn Storage> = Arc::new(stowage_s3::S3Storage::new((**c).clone()).await?);
        Ok(storage)
    }
}

/// Quay's `AzureStorage`.
#[cfg(feature = "azure")]
struct AzureDriver;

#[cfg(feature = "azure")]
#[async_trait]
impl DriverFactory for AzureDriver {
    type Config = DriverConfig;

    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        stowage_azure::AzureConfig::from_params(params.reader())
            .map(|c| DriverConfig::Azure(Box::new(c)))
    }

    async fn open(&self, config: &DriverConfig) -> Result<Arc<dyn Storage>> {
        let DriverConfig::Azure(c) = config else {
            return Err(not_mine("AzureStorage", config));
        };
        let storage: Arc<dyn Storage> = Arc::new(stowage_azure::AzureStorage::new((**c).clone())?);
        Ok(storage)
    }
}
