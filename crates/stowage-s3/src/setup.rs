//! One-off bucket set-up: CORS rules for browser uploads, as Quay sets.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use stowage_core::Result;

use crate::error::from_sdk;
use crate::S3Storage;

impl S3Storage {
    /// Sets the bucket's CORS rules the way Quay does: GET from any origin
    /// (with `Authorization`), PUT from any origin (with `Content-Type`,
    /// `x-amz-acl`, `origin`), for browser uploads to presigned URLs.
    ///
    /// # Errors
    /// Backend failures (e.g. no `s3:PutBucketCORS` permission).
    pub async fn setup(&self) -> Result<()> {
        let rule = |method: &str, headers: &[&str]| {
            let mut b = CorsRule::builder()
                .allowed_origins("*")
                .allowed_methods(method)
                .max_age_seconds(3000);
            for h in headers {
                b = b.allowed_headers(*h);
            }
            b.build().expect("origins and methods are set")
        };
        let cors = CorsConfiguration::builder()
            .cors_rules(rule("GET", &["Authorization"]))
            .cors_rules(rule("PUT", &["Content-Type", "x-amz-acl", "origin"]))
            .build()
            .expect("rules are set");
        self.retrying("PutBucketCors", "", || {
            self.client
                .put_bucket_cors()
                .bucket(self.bucket())
                .cors_configuration(cors.clone())
                .send()
        })
        .await
        .map_err(|e| from_sdk(e, self.op("PutBucketCors", ""), ""))?;
        Ok(())
    }
}
