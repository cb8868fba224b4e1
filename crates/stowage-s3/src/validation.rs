//! `validate`: HeadBucket first, so a missing bucket, denied access, a
//! wrong region and an unreachable endpoint get distinct messages; then
//! the probe object every driver writes, reads and deletes.

use aws_sdk_s3::error::ProvideErrorMetadata;
use stowage_core::validate::probe;
use stowage_core::{CheckStatus, ValidationReport};

use crate::error::{from_sdk, DRIVER};
use crate::S3Storage;

impl S3Storage {
    /// Why the server answered 400 to HeadBucket. HEAD answers carry no
    /// error body, so a ListObjectsV2 of one key asks again to get the
    /// code: a region the server does not serve is the usual cause.
    async fn explain_bad_request(&self, head_code: Option<String>) -> String {
        let c = &self.config;
        let (code, message) = match head_code {
            Some(code) => (Some(code), None),
            None => match self
                .client
                .list_objects_v2()
                .bucket(&c.bucket)
                .max_keys(1)
                .send()
                .await
            {
                Ok(_) => (None, None),
                Err(e) => (
                    e.code().map(str::to_string),
                    e.message().map(str::to_string),
                ),
            },
        };
        let region_problem = matches!(
            code.as_deref(),
            Some("AuthorizationHeaderMalformed" | "IllegalLocationConstraintException")
        ) || message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("region"));
        if region_problem {
            format!(
                "the server refused requests signed for region {} ({}): set s3_region to the \
                 region the bucket is in",
                c.region,
                message.or(code).unwrap_or_default()
            )
        } else {
            format!(
                "bucket {} answered 400 Bad Request{}",
                c.bucket,
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            )
        }
    }

    /// HeadBucket first, so a missing bucket, denied access, a wrong region
    /// and an unreachable endpoint each get their own message; then the
    /// probe object.
    pub(crate) async fn validate_bucket(&self) -> ValidationReport {
        let mut report = ValidationReport::new(DRIVER);
        let c = &self.config;
        report.fact("bucket", c.bucket.clone());
        report.fact(
            "root",
            if c.root.is_empty() {
                "<bucket root>".to_string()
            } else {
                c.root.clone()
            },
        );
        report.fact("region", c.region.clone());
        report.fact(
            "endpoint",
            c.endpoint.clone().unwrap_or_else(|| "AWS".into()),
        );
        let check = "bucket reachable";
        match self.client.head_bucket().bucket(&c.bucket).send().await {
            Ok(_) => report.check(
                check,
                CheckStatus::Ok,
                format!("bucket {} answers", c.bucket),
            ),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let region = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_string);
                let code = e.code().map(str::to_string);
                let detail = match (status, region) {
                    (Some(301), Some(r)) | (Some(400), Some(r)) if r != c.region => {
                        format!(
                            "bucket {} is in region {r}, but s3_region is {}",
                            c.bucket, c.region
                        )
                    }
                    (Some(400), _) => self.explain_bad_request(code).await,
                    (Some(404), _) => format!("bucket {} does not exist", c.bucket),
                    (Some(403), _) => format!(
                        "access to bucket {} is denied for these credentials{}",
                        c.bucket,
                        code.map(|c| format!(" ({c})")).unwrap_or_default()
                    ),
                    _ => from_sdk(e, self.op("HeadBucket", ""), "").chain(),
                };
                report.check(check, CheckStatus::Failed, detail);
                return report;
            }
        }
        let probed = probe(self).await;
        report.checks.extend(probed.checks);
        report
    }
}
