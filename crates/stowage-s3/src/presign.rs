//! Presigned GET, HEAD and PUT URLs, through the SDK's presigning.

use std::time::Duration;

use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use chrono::Utc;
use stowage_core::{
    DirectUrl, DownloadUrlOptions, Error, Result, StoragePath, UploadUrlOptions, UrlMethod,
    UrlSource,
};

use crate::error::{from_sdk, DRIVER};
use crate::S3Storage;

/// SigV4 presigned URLs live at most 7 days.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

fn presigning(expires_in: Duration) -> Result<PresigningConfig> {
    if expires_in.is_zero() || expires_in > MAX_EXPIRY {
        return Err(Error::invalid_argument(format!(
            "presigned URL lifetime {expires_in:?} is outside 1 s to 7 days (SigV4's limits)"
        )));
    }
    PresigningConfig::expires_in(expires_in)
        .map_err(|e| Error::backend(DRIVER, false, "presigning configuration", e))
}

fn direct(request: PresignedRequest, method: UrlMethod, expires_in: Duration) -> DirectUrl {
    let expires_at = Utc::now() + chrono::Duration::from_std(expires_in).unwrap_or_default();
    let mut url = DirectUrl::new(request.uri(), method, expires_at, UrlSource::S3Presigned);
    // Every signed header the client must send (content-type, and on AWS
    // x-amz-server-side-encryption / x-amz-storage-class on uploads), but
    // host, which the client's HTTP library sets from the URL.
    for (name, value) in request.headers() {
        if !name.eq_ignore_ascii_case("host") {
            url = url.with_header(name, value);
        }
    }
    url
}

impl S3Storage {
    /// `requested`, shortened so the URL does not outlive the credentials
    /// that sign it (session credentials from STS expire; a URL signed with
    /// them stops working then, whatever its own expiry says).
    fn url_lifetime(&self, requested: Duration) -> Duration {
        let left = self
            .credentials
            .as_ref()
            .and_then(|c| c.expiry())
            .map(|expiry| {
                expiry
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            });
        match left {
            // Whole seconds, at least one: SigV4 counts in seconds.
            Some(left) if left < requested => Duration::from_secs(left.as_secs().max(1)),
            _ => requested,
        }
    }

    pub(crate) async fn presigned_download(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<DirectUrl> {
        let key = self.object_key(path);
        let lifetime = self.url_lifetime(options.expires_in);
        let config = presigning(lifetime)?;
        if options.method == UrlMethod::Head {
            let request = self
                .client
                .head_object()
                .bucket(self.bucket())
                .key(&key)
                .presigned(config)
                .await
                .map_err(|e| from_sdk(e, self.op("presign HeadObject", &key), path.as_str()))?;
            return Ok(direct(request, UrlMethod::Head, lifetime));
        }
        let mut get = self.client.get_object().bucket(self.bucket()).key(&key);
        for (name, value) in &options.extra_query {
            get = match name.as_str() {
                "response-content-disposition" => get.response_content_disposition(value),
                "response-content-type" => get.response_content_type(value),
                "response-cache-control" => get.response_cache_control(value),
                "response-content-encoding" => get.response_content_encoding(value),
                "response-content-language" => get.response_content_language(value),
                _ => {
                    return Err(Error::Unsupported {
                        operation: "query parameters other than response-* on S3 presigned URLs",
                        driver: DRIVER,
                    })
                }
            };
        }
        let request = get
            .presigned(config)
            .await
            .map_err(|e| from_sdk(e, self.op("presign GetObject", &key), path.as_str()))?;
        Ok(direct(request, UrlMethod::Get, lifetime))
    }

    pub(crate) async fn presigned_upload(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<DirectUrl> {
        let key = self.object_key(path);
        let lifetime = self.url_lifetime(options.expires_in);
        let config = presigning(lifetime)?;
        let request = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(&key)
            .set_content_type(options.content_type.clone());
        let request = self
            .with_write_settings_put(request)
            .presigned(config)
            .await
            .map_err(|e| from_sdk(e, self.op("presign PutObject", &key), path.as_str()))?;
        let mut url = direct(request, UrlMethod::Put, lifetime);
        if let Some(ct) = &options.content_type {
            if !url
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                url = url.with_header("content-type", ct);
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use stowage_core::config::Secret;
    use stowage_core::{Storage, StoragePath, UploadUrlOptions};

    use crate::{S3Config, S3Storage, ServerSideEncryption};

    #[tokio::test]
    async fn upload_url_lists_every_signed_header_the_client_must_send() {
        let mut c = S3Config::new("registry-bucket")
            .with_region("us-east-1")
            .with_static_keys("AKIDEXAMPLE", Secret::new("not-a-real-secret"));
        c.sse = ServerSideEncryption::Aes256;
        c.storage_class = Some("STANDARD_IA".into());
        let s3 = S3Storage::new(c).await.unwrap();
        let url = s3
            .upload_url(
                &StoragePath::parse("blobs/a").unwrap(),
                &UploadUrlOptions::default().with_content_type("application/octet-stream"),
            )
            .await
            .unwrap()
            .unwrap();
        let names: Vec<String> = url
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        for needed in [
            "content-type",
            "x-amz-server-side-encryption",
            "x-amz-storage-class",
        ] {
            assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "host"));
        assert!(!url.url.contains("not-a-real-secret"));
    }
}
