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
        DriverConfig::Sts(c) => stowage::sts::open_s3((**c).clone()).await?.0,
        DriverConfig::CloudFront(c) => match &c.sts {
            Some(sts) => stowage::sts::open_s3(sts.clone()).await?.0,
            None => stowage::s3::S3Storage::new(c.cloudfront.s3.clone()).await?,
        },
        DriverConfig::S3Compatible { config, .. } => {
            stowage::s3::S3Storage::new((**config).clone()).await?
        }
        other => {
            return Err(Failure::usage(format!(
                "location {} uses {}, which needs no set-up (only S3 locations do)",
                location.name,
                other.driver_name()
            )))
        }
    };
    if let Err(e) = s3.setup().await {
        // RGW and ODF lack some of what AWS has: say so rather than leave
        // the server's bare refusal.
        let mut failure = Failure::from(e);
        if let DriverConfig::S3Compatible { driver, .. } = &location.driver {
            if let Some(gaps) = driver.known_gaps() {
                failure.message.push_str(&format!(
                    "\nnote: location {} is {driver}: {gaps}. A NotImplemented or \
                     MethodNotAllowed answer above means this server has no bucket CORS; \
                     nothing else of stowage needs it",
                    location.name
                ));
            }
        }
        return Err(failure);
    }
    println!(
        "location {}: CORS rules set on bucket {} (GET and PUT from any origin)",
        location.name,
        s3.bucket()
    );
    Ok(())
}
