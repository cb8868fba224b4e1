//! Cleanup of stale uploads and orphaned multipart uploads, bucket set-up
//! (CORS for browser uploads, as Quay does), and `validate`.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use chrono::Utc;
use stowage_core::upload::{self, CleanupReport};
use stowage_core::validate::probe;
use stowage_core::{CheckStatus, Error, Result, ValidationReport};

use crate::error::{from_sdk, DRIVER};
use crate::objects::{next_page_marker, to_chrono};
use crate::S3Storage;

impl S3Storage {
    /// Removes chunked uploads untouched for `older_than` and aborts
    /// multipart uploads under the root started longer ago than that
    /// (those a killed process left behind; they cost money until aborted).
    pub(crate) async fn cleanup(&self, older_than: Duration) -> Result<CleanupReport> {
        let mut report = upload::cleanup_chunk_objects(self, older_than).await?;
        let cutoff: chrono::DateTime<Utc> = upload::cutoff_for(older_than);
        let prefix = self.list_prefix(None);
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        // Markers seen, so that a server repeating one ends the cleanup with
        // an error instead of spinning forever.
        let mut seen = HashSet::new();
        let mut listed = 0u64;
        loop {
            let page = self
                .retrying("ListMultipartUploads", &prefix, || {
                    self.client
                        .list_multipart_uploads()
                        .bucket(self.bucket())
                        .prefix(&prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                })
                .await
                .map_err(|e| from_sdk(e, self.op("ListMultipartUploads", &prefix), &prefix))?;
            listed += page.uploads().len() as u64;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let stale = to_chrono(u.initiated()).is_some_and(|t| t < cutoff);
                if !stale {
                    continue;
                }
                match self
                    .retrying("AbortMultipartUpload", key, || {
                        self.client
                            .abort_multipart_upload()
                            .bucket(self.bucket())
                            .key(key)
                            .upload_id(id)
                            .send()
                    })
                    .await
                {
                    Ok(_) => report.multipart_aborted += 1,
                    Err(e) => match from_sdk(e, self.op("AbortMultipartUpload", key), key) {
                        Error::NotFound { .. } => {}
                        other => return Err(other),
                    },
                }
            }
            let next_key = page.next_key_marker().filter(|m| !m.is_empty());
            let next_id = page.next_upload_id_marker().filter(|m| !m.is_empty());
            // Both markers together say where the next page starts.
            let marker = (next_key.is_some() || next_id.is_some()).then(|| {
                format!(
                    "key-marker={} upload-id-marker={}",
                    next_key.unwrap_or(""),
                    next_id.unwrap_or("")
                )
            });
            let what = format!("s3://{}/{}", self.bucket(), prefix);
            if next_page_marker(
                "ListMultipartUploads",
                &what,
                page.is_truncated(),
                marker,
                &mut seen,
                listed,
            )?
            .is_none()
            {
                return Ok(report);
            }
            key_marker = next_key.map(str::to_string);
            id_marker = next_id.map(str::to_string);
        }
    }

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
