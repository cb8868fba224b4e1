//! `CloudFrontedS3Storage`: the S3 driver with a signing layer for download
//! URLs. Every operation but `download_url`, `validate` and `metrics` is
//! the S3 driver's, forwarded as is.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use stowage_core::upload::{CleanupReport, CompleteOptions, UploadState};
use stowage_core::{
    Capabilities, CheckStatus, DirectUrl, DownloadUrlOptions, Fallback, GetOptions, GetResult,
    ListStream, Metric, ObjectMeta, PutOptions, Result, Storage, StoragePath, UploadUrlOptions,
    UrlSource, ValidationReport, WriteStream,
};
use stowage_s3::S3Storage;

use super::aws_ranges::AwsIpRanges;
use super::cache::{round_up, CacheKey, SignedUrlCache};
use super::counters::{Counters, Route};
use crate::config::{CloudFrontConfig, PolicyKind};
use crate::signer::{
    check_key_for_mode, encode_key_path, encode_query_component, CloudFrontSigner, IpCidr, Policy,
    PrivateKey, SignError, SigningMode,
};

/// The driver name in reports and errors.
pub const DRIVER: &str = "cloudfront";

/// The loaded signing keys: the first signs; the others are kept for
/// rotation (validated at start, ready to take over).
#[derive(Debug)]
struct Keys {
    signers: Vec<CloudFrontSigner>,
}

/// S3 for data, CloudFront signed URLs for downloads (Quay's
/// `CloudFrontedS3Storage`).
#[derive(Debug, Clone)]
pub struct CloudFrontedS3Storage {
    s3: S3Storage,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CloudFrontConfig,
    keys: std::result::Result<Keys, SignError>,
    aws_ranges: Option<AwsIpRanges>,
    cache: SignedUrlCache,
    counters: Counters,
}

impl CloudFrontedS3Storage {
    /// Builds the S3 driver from `config.s3` and the signing layer over it.
    /// A private key that is missing, unreadable or invalid does not stop
    /// the driver: download URLs fall back to S3 presigned URLs and
    /// `validate` reports the driver as degraded.
    ///
    /// # Errors
    /// As [`S3Storage::new`].
    pub async fn new(config: CloudFrontConfig) -> Result<Self> {
        let s3 = S3Storage::new(config.s3.clone()).await?;
        Ok(Self::over(s3, config))
    }

    /// The signing layer over an existing S3 driver (e.g. one with STS
    /// credentials). Keys are read and parsed here, once.
    pub fn over(s3: S3Storage, config: CloudFrontConfig) -> Self {
        let keys = load_keys(&config);
        if let Err(e) = &keys {
            tracing::warn!(error = %e, "CloudFront signing unavailable; download URLs fall back to S3 presigned URLs");
        }
        let aws_ranges = config
            .aws_ip_ranges_file
            .as_deref()
            .map(|p| AwsIpRanges::load(p, config.aws_bypass_regions.clone()));
        Self {
            s3,
            inner: Arc::new(Inner {
                cache: SignedUrlCache::new(config.cache_size),
                config,
                keys,
                aws_ranges,
                counters: Counters::default(),
            }),
        }
    }

    /// The S3 driver underneath.
    pub fn s3(&self) -> &S3Storage {
        &self.s3
    }

    /// The configuration.
    pub fn config(&self) -> &CloudFrontConfig {
        &self.inner.config
    }

    /// The signer in use, or why there is none.
    ///
    /// # Errors
    /// Why the key could not be loaded.
    pub fn signer(&self) -> std::result::Result<&CloudFrontSigner, &SignError> {
        self.inner.keys.as_ref().map(|k| &k.signers[0])
    }

    /// How many download URLs took each route.
    pub fn route_count(&self, route: Route) -> u64 {
        self.inner.counters.get(route)
    }

    /// The unsigned CloudFront URL of `path`:
    /// `{distribution}/{storage_path}/{key}` plus extra query parameters,
    /// percent-encoded once.
    pub fn unsigned_url(&self, path: &StoragePath, options: &DownloadUrlOptions) -> String {
        let c = &self.inner.config;
        let mut url = format!(
            "{}/{}",
            c.base_url_for(options.namespace.as_deref()),
            encode_key_path(&self.s3.object_key(path))
        );
        let mut sep = '?';
        for (name, value) in &options.extra_query {
            url.push(sep);
            url.push_str(&encode_query_component(name));
            url.push('=');
            url.push_str(&encode_query_component(value));
            sep = '&';
        }
        url
    }

    fn bypass_reason(&self, client_ip: Option<IpAddr>) -> Option<Route> {
        match client_ip {
            None if self.inner.config.bypass_without_client_ip => Some(Route::NoClientIp),
            Some(ip)
                if self
                    .inner
                    .aws_ranges
                    .as_ref()
                    .is_some_and(|r| r.contains(ip)) =>
            {
                Some(Route::ClientInAws)
            }
            _ => None,
        }
    }

    async fn s3_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
        route: Route,
        fallback: Option<Fallback>,
    ) -> Result<Option<DirectUrl>> {
        let detail = fallback
            .as_ref()
            .map(|f| f.detail.clone())
            .unwrap_or_default();
        self.inner.counters.record(route, &detail);
        let url = self.s3.download_url(path, options).await?;
        Ok(match (url, fallback) {
            (Some(u), Some(f)) => Some(u.with_fallback(f)),
            (u, _) => u,
        })
    }

    async fn sign(
        &self,
        signer: &CloudFrontSigner,
        url: String,
        expires: i64,
        client_ip: Option<IpAddr>,
    ) -> std::result::Result<(String, bool), SignError> {
        let c = &self.inner.config;
        let restrict = c.policy == PolicyKind::Custom && c.restrict_to_client_ip;
        let key = CacheKey {
            url,
            expires,
            client_ip: if restrict { client_ip } else { None },
        };
        if let Some(hit) = self.inner.cache.get(&key) {
            return Ok((hit, true));
        }
        let policy = Policy {
            resource: key.url.clone(),
            date_less_than: expires,
            date_greater_than: None,
            source_ip: key.client_ip.map(IpCidr::single),
        };
        let custom = c.policy == PolicyKind::Custom;
        let signer = signer.clone();
        let url = key.url.clone();
        // RSA signing takes about a millisecond of CPU: keep it off the
        // async workers.
        let signed = tokio::task::spawn_blocking(move || {
            if custom {
                signer.signed_url_custom(&url, &policy)
            } else {
                signer.signed_url_canned(&url, expires)
            }
        })
        .await
        .map_err(|e| SignError::Signing(format!("signing task failed: {e}")))??;
        self.inner.cache.insert(key, signed.clone());
        Ok((signed, false))
    }

    /// The report lines of the signing layer.
    fn validate_signing(&self, report: &mut ValidationReport) -> bool {
        let c = &self.inner.config;
        report.fact("distribution", c.distribution_url.clone());
        report.fact(
            "signing mode",
            if c.configured_mode == SigningMode::Auto {
                format!("{} (auto, from the key id)", c.mode)
            } else {
                c.mode.to_string()
            },
        );
        report.fact("key id", c.keys[0].key_id.clone());
        report.fact("hash", c.hash.as_str());
        report.fact(
            "policy",
            match (c.policy, c.restrict_to_client_ip) {
                (PolicyKind::Canned, _) => "canned",
                (PolicyKind::Custom, true) => "custom, restricted to the client IP",
                (PolicyKind::Custom, false) => "custom",
            },
        );
        if c.keys.len() > 1 {
            let others: Vec<&str> = c.keys[1..].iter().map(|k| k.key_id.as_str()).collect();
            report.fact("rotation keys", others.join(", "));
        }
        if let Some(r) = &self.inner.aws_ranges {
            let (count, error) = r.status();
            match error {
                None => report.check(
                    "aws ip ranges",
                    CheckStatus::Ok,
                    format!("{count} networks; clients inside AWS get S3 URLs"),
                ),
                Some(e) => report.check("aws ip ranges", CheckStatus::Degraded, e),
            }
        }
        let keys = match &self.inner.keys {
            Ok(k) => k,
            Err(e) => {
                report.fact("fallback in force", "S3 presigned URLs for every download");
                report.check(
                    "signing key",
                    CheckStatus::Degraded,
                    format!("{e}; download URLs fall back to S3 presigned URLs"),
                );
                return false;
            }
        };
        report.fact("key type", keys.signers[0].key().kind().to_string());
        report.fact("fallback in force", "none");
        for signer in &keys.signers {
            let url = format!("{}/_stowage_validate/probe", c.distribution_url);
            let policy = Policy::canned(&url, Utc::now().timestamp() + 60);
            let verified = signer.sign_policy(&policy).is_ok_and(|s| {
                crate::signer::decode_cloudfront_base64(&s.signature).is_ok_and(|sig| {
                    signer
                        .key()
                        .verify(s.policy_json.as_bytes(), &sig, signer.hash())
                })
            });
            report.check(
                format!("sign {}", signer.key_id()),
                if verified {
                    CheckStatus::Ok
                } else {
                    CheckStatus::Failed
                },
                if verified {
                    format!(
                        "signed a URL with the {} key and verified it with its public half",
                        signer.key().kind()
                    )
                } else {
                    "the signature did not verify with the key's public half".into()
                },
            );
        }
        true
    }

    /// Fetches a signed URL of a probe object through the distribution:
    /// the only check that sees what the distribution trusts.
    async fn validate_fetch(&self, report: &mut ValidationReport) {
        let probe = match StoragePath::parse(format!(
            "_stowage_validate/cloudfront-{}",
            Utc::now().timestamp_micros()
        )) {
            Ok(p) => p,
            Err(_) => return,
        };
        let body = Bytes::from_static(b"stowage cloudfront probe");
        if let Err(e) = self
            .s3
            .put(&probe, body.clone(), PutOptions::default())
            .await
        {
            report.fail("fetch through CloudFront", &e);
            return;
        }
        let c = &self.inner.config;
        let options = DownloadUrlOptions::default().with_expires_in(Duration::from_secs(120));
        let url = self.unsigned_url(&probe, &options);
        let expires = Utc::now().timestamp() + 120;
        let outcome = match self.signer() {
            Ok(signer) => match signer.signed_url_canned(&url, expires) {
                Ok(signed) => fetch(&signed).await,
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let _ = self.s3.delete(&probe).await;
        match outcome {
            Ok((200, got)) if got == body => report.check(
                "fetch through CloudFront",
                CheckStatus::Ok,
                format!(
                    "{} served a signed URL of a probe object",
                    c.distribution_url
                ),
            ),
            Ok((403, _)) => report.check(
                "fetch through CloudFront",
                CheckStatus::Failed,
                format!(
                    "{} answered 403 to a URL signed with {} ({} mode). Most often the \
                     distribution does not trust this key id: one with trusted key groups \
                     needs the id of a public key in one of its groups (K...); one with \
                     trusted signers needs the root account's key pair id (APKA...). Else \
                     the private key is not the one whose public half was uploaded, or the \
                     origin refused CloudFront (bucket policy, origin access control)",
                    c.distribution_url, c.keys[0].key_id, c.mode
                ),
            ),
            Ok((status, _)) => report.check(
                "fetch through CloudFront",
                CheckStatus::Failed,
                format!(
                    "{} answered {status} to a signed URL of the probe object (expected 200 \
                     with its bytes): check the distribution's origin is this bucket",
                    c.distribution_url
                ),
            ),
            Err(e) => report.check(
                "fetch through CloudFront",
                CheckStatus::Failed,
                format!("cannot fetch through {}: {e}", c.distribution_url),
            ),
        }
    }
}

async fn fetch(url: &str) -> std::result::Result<(u16, Bytes), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| {
        // The URL carries a signature: say where, not what.
        format!("request failed ({})", e.without_url())
    })?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    Ok((status, body))
}

fn load_keys(config: &CloudFrontConfig) -> std::result::Result<Keys, SignError> {
    let mut signers = Vec::new();
    for entry in &config.keys {
        let key = PrivateKey::from_pem_file(&entry.private_key_file)?;
        check_key_for_mode(
            &key,
            config.mode,
            &entry.private_key_file.display().to_string(),
        )?;
        signers.push(CloudFrontSigner::new(&entry.key_id, key).with_hash(config.hash));
    }
    if signers.is_empty() {
        return Err(SignError::Key {
            source_name: "configuration".into(),
            reason: "no signing key configured".into(),
        });
    }
    Ok(Keys { signers })
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for CloudFrontedS3Storage {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        self.s3.capabilities()
    }

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        self.s3.get(path, options).await
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.s3.put_stream(path, data, options).await
    }

    async fn put(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.s3.put(path, data, options).await
    }

    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
        self.s3.stat(path).await
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        self.s3.delete(path).await
    }

    async fn delete_prefix(&self, prefix: &StoragePath) -> Result<u64> {
        self.s3.delete_prefix(prefix).await
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        self.s3.list(prefix)
    }

    async fn copy(&self, from: &StoragePath, to: &StoragePath) -> Result<ObjectMeta> {
        self.s3.copy(from, to).await
    }

    /// A CloudFront signed URL; an S3 presigned URL when the client has no
    /// address or is inside AWS (bypass), or when signing is unavailable
    /// (fallback, saying why in [`DirectUrl::fallback`]).
    async fn download_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        if let Some(route) = self.bypass_reason(options.client_ip) {
            return self.s3_url(path, options, route, None).await;
        }
        let signer = match &self.inner.keys {
            Ok(keys) => &keys.signers[0],
            Err(e) => {
                let fallback = Fallback {
                    cause: Route::KeyUnavailable.as_str(),
                    detail: e.to_string(),
                };
                return self
                    .s3_url(path, options, Route::KeyUnavailable, Some(fallback))
                    .await;
            }
        };
        let granularity = self.inner.config.expiry_granularity.as_secs() as i64;
        let lifetime = i64::try_from(options.expires_in.as_secs()).unwrap_or(i64::MAX / 2);
        let expires = round_up(Utc::now().timestamp() + lifetime.max(1), granularity);
        let url = self.unsigned_url(path, options);
        match self.sign(signer, url, expires, options.client_ip).await {
            Ok((signed, cached)) => {
                let route = if cached { Route::Cached } else { Route::Signed };
                self.inner.counters.record(route, "");
                let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).unwrap_or_default();
                Ok(Some(DirectUrl::new(
                    signed,
                    options.method,
                    expires_at,
                    UrlSource::CloudFrontSigned,
                )))
            }
            Err(e) => {
                let fallback = Fallback {
                    cause: Route::SigningFailed.as_str(),
                    detail: e.to_string(),
                };
                self.s3_url(path, options, Route::SigningFailed, Some(fallback))
                    .await
            }
        }
    }

    /// Always an S3 presigned PUT URL.
    async fn upload_url(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        self.s3.upload_url(path, options).await
    }

    async fn start_upload(&self) -> Result<UploadState> {
        self.s3.start_upload().await
    }

    async fn write_chunk(
        &self,
        state: &UploadState,
        offset: u64,
        data: WriteStream<'_>,
    ) -> Result<UploadState> {
        self.s3.write_chunk(state, offset, data).await
    }

    async fn complete_upload(
        &self,
        state: &UploadState,
        dest: &StoragePath,
        options: CompleteOptions,
    ) -> Result<ObjectMeta> {
        self.s3.complete_upload(state, dest, options).await
    }

    async fn abort_upload(&self, state: &UploadState) -> Result<()> {
        self.s3.abort_upload(state).await
    }

    async fn cleanup_uploads(&self, older_than: Duration) -> Result<CleanupReport> {
        self.s3.cleanup_uploads(older_than).await
    }

    /// The signing layer's checks (mode, key id, key type, sign and verify,
    /// fallback in force), the S3 checks, then a fetch through the
    /// distribution when `cloudfront_validate_fetch` is on.
    async fn validate(&self) -> ValidationReport {
        let mut report = ValidationReport::new(DRIVER);
        let signing = self.validate_signing(&mut report);
        let s3 = self.s3.validate().await;
        let s3_ok = s3.is_ok();
        report.facts.extend(s3.facts);
        report.checks.extend(s3.checks);
        if signing && s3_ok && self.inner.config.validate_fetch {
            self.validate_fetch(&mut report).await;
        }
        report
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut metrics = self.s3.metrics();
        metrics.extend(self.inner.counters.metrics());
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    fn config(id: &str, key: &str) -> CloudFrontConfig {
        CloudFrontConfig::new(
            stowage_s3::S3Config::new("registry-bucket"),
            "d111111abcdef8.cloudfront.net",
            id,
            testdata(key),
        )
    }

    #[test]
    fn key_types_cloudfront_rejects_are_named() {
        let e = load_keys(&config("K2JCJMDEHXQW5F", "rsa1024.pem")).unwrap_err();
        assert!(
            e.to_string().contains("RSA 1024") && e.to_string().contains("2048"),
            "{e}"
        );
        let e = load_keys(&config("APKAEIBAERJR2EXAMPLE", "ec-p256-sec1.pem")).unwrap_err();
        assert!(
            e.to_string()
                .contains("legacy CloudFront key pairs are RSA"),
            "{e}"
        );
        assert!(load_keys(&config("K2JCJMDEHXQW5F", "ec-p256-sec1.pem")).is_ok());
        assert!(load_keys(&config("APKAEIBAERJR2EXAMPLE", "rsa2048-pkcs1.pem")).is_ok());
    }

    #[tokio::test]
    async fn unsigned_urls_encode_keys_once_and_pick_the_namespace_domain() {
        let mut c = config("K2JCJMDEHXQW5F", "rsa2048-pkcs1.pem");
        c.s3 = c.s3.with_root("registry");
        c.org_overrides
            .insert("acme".into(), "https://acme.cdn.example.com".into());
        let storage = CloudFrontedS3Storage::new(c).await.unwrap();
        let path = StoragePath::parse("blobs/a b+c%d/é").unwrap();
        let options = DownloadUrlOptions::default().with_query(
            "response-content-disposition",
            "attachment; filename=\"x y\"",
        );
        assert_eq!(
            storage.unsigned_url(&path, &options),
            "https://d111111abcdef8.cloudfront.net/registry/blobs/a%20b%2Bc%25d/%C3%A9\
             ?response-content-disposition=attachment%3B%20filename%3D%22x%20y%22"
        );
        let acme = DownloadUrlOptions::default().with_namespace("acme");
        assert!(storage
            .unsigned_url(&path, &acme)
            .starts_with("https://acme.cdn.example.com/registry/"));
    }

    #[tokio::test]
    async fn signing_and_cache_without_s3() {
        let storage = CloudFrontedS3Storage::new(config("K2JCJMDEHXQW5F", "rsa2048-pkcs8.pem"))
            .await
            .unwrap();
        let path = StoragePath::parse("blobs/x").unwrap();
        let options = DownloadUrlOptions::default().with_client_ip("203.0.113.1".parse().unwrap());
        let a = storage
            .download_url(&path, &options)
            .await
            .unwrap()
            .unwrap();
        let b = storage
            .download_url(&path, &options)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.source, UrlSource::CloudFrontSigned);
        assert_eq!(a.url, b.url);
        assert_eq!(storage.route_count(Route::Signed), 1);
        assert_eq!(storage.route_count(Route::Cached), 1);
        assert!(a.expires_at > Utc::now() + chrono::Duration::seconds(590));
    }
}
