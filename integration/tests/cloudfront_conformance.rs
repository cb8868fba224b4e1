//! The conformance suite through CloudFrontedS3Storage (everything but
//! download URLs is the S3 driver's; the suite checks it stays that way).

use stowage_integration::S3Env;

stowage_core::conformance_tests!(|| async {
    stowage_integration::cloudfront::shared(&S3Env::get(), "cf-conformance").await
});
