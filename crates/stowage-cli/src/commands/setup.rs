//! `stowage setup`: the one-off bucket set-up of an S3 location.

use stowage::DriverConfig;

use crate::context::Context;
use crate::failure::Failure;

/// Sets the bucket's CORS rules (GET with `Authorization`, PUT with
/// `Content-Type`), which browser uploads need.
pub(crate) async fn run(ctx: &Context) -> Result<(), Failure> {
    let location = ctx.selected()?;
    let s3 = match &location.driver {
        DriverConfig::S3(c) => stowage::s3::S3Storage::new((**c).clone()).await?,
        DriverConfig::Sts(c) => stowage::sts::STSS3Storage::new((**c).clone())
            .await?
            .s3()
            .clone(),
        DriverConfig::CloudFront(c) => {
            stowage::cloudfront::CloudFrontedS3Storage::new((**c).clone())
                .await?
                .s3()
                .clone()
        }
        other => {
            return Err(Failure::usage(format!(
                "location {} uses {}, which needs no set-up (only S3 locations do)",
                location.name,
                other.driver_name()
            )))
        }
    };
    s3.setup().await?;
    println!(
        "location {}: CORS rules set on bucket {} (GET and PUT from any origin)",
        location.name,
        s3.bucket()
    );
    Ok(())
}
