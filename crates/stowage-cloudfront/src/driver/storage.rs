//! `CloudFrontedS3Storage`: the S3 driver with a signing layer for download
//! URLs. Every operation but `download_url`, `validate` and `metrics` is
//! the S3 driver's, forwarded as is.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use stowage_core::{
    DirectUrl, DownloadUrlOptions, Fallback, Metric, Result, Storage, StoragePath, UrlSource,
    ValidationReport,
};
use stowage_s3::{CredentialSource, S3Storage};

use super::aws_ranges::AwsIpRanges;
use super::cache::{round_up, CacheKey, SignedUrlCache};
use super::counters::{Counters, Route};
use crate::config::{CloudFrontConfig, PolicyKind};
use crate::signer::{
    check_key_for_mode, encode_key_path, encode_query_component, CloudFrontSigner, IpCidr, Policy,
    PrivateKey, SignError,
};

/// The driver name in reports and errors.
pub const DRIVER: &str = "cloudfront";

/// The loaded signing keys: the first signs; the others are kept for
/// rotation (validated at start, ready to take over).
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) signers: Vec<CloudFrontSigner>,
}

/// S3 for data, CloudFront signed URLs for downloads (Quay's
/// `CloudFrontedS3Storage`).
#[derive(Debug, Clone)]
pub struct CloudFrontedS3Storage {
    pub(super) s3: S3Storage,
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: CloudFrontConfig,
    pub(super) keys: std::result::Result<Keys, SignError>,
    pub(super) aws_ranges: Option<AwsIpRanges>,
    pub(super) cache: SignedUrlCache,
    pub(super) counters: Counters,
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
        Ok(Self::layer(s3, config))
    }

    /// As [`CloudFrontedS3Storage::new`], with the S3 driver's credentials
    /// from `source` (e.g. STS: S3 fallback URLs are then signed by the
    /// session and never outlive it).
    ///
    /// # Errors
    /// As [`S3Storage::new`].
    pub async fn with_credential_source(
        config: CloudFrontConfig,
        source: Arc<dyn CredentialSource>,
    ) -> Result<Self> {
        let s3 = S3Storage::with_credential_source(config.s3.clone(), source).await?;
        Ok(Self::layer(s3, config))
    }

    /// The signing layer over `s3`, built from `config.s3`. Keys are read
    /// and parsed here, once.
    fn layer(s3: S3Storage, config: CloudFrontConfig) -> Self {
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

impl stowage_core::forward::Wraps for CloudFrontedS3Storage {
    type Inner = S3Storage;
    fn wrapped(&self) -> &S3Storage {
        &self.s3
    }
}

stowage_core::forward_storage! {
    impl Storage for CloudFrontedS3Storage;
    forward [capabilities get put_stream put stat delete delete_prefix list list_page copy
             upload_url start_upload write_chunk complete_upload abort_upload cleanup_uploads];

    fn driver(&self) -> &'static str {
        DRIVER
    }

    /// A CloudFront signed URL; an S3 presigned URL when the client has no
    /// address or is inside AWS (bypass), or when signing is unavailable
    /// (fallback, saying why in [`DirectUrl::fallback`]).
    async fn download_url(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        // An IPv4 client on a dual-stack listener arrives as `::ffff:a.b.c.d`:
        // the AWS-range check and the policy CloudFront matches against the
        // viewer's address both need `a.b.c.d`.
        let client_ip = options.client_ip.map(|ip| ip.to_canonical());
        if let Some(route) = self.bypass_reason(client_ip) {
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
        match self.sign(signer, url, expires, client_ip).await {
            Ok((signed, cached)) => {
                let route = if cached { Route::Cached } else { Route::Signed };
                self.inner.counters.record(route, "");
                let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).unwrap_or_default();
                Ok(Some(DirectUrl::new(
                    signed,
                    options.method,
                    expires_at,
                    UrlSource::CdnSigned,
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
        assert_eq!(a.source, UrlSource::CdnSigned);
        assert_eq!(a.url, b.url);
        assert_eq!(storage.route_count(Route::Signed), 1);
        assert_eq!(storage.route_count(Route::Cached), 1);
        assert!(a.expires_at > Utc::now() + chrono::Duration::seconds(590));
    }

    /// The policy of a URL restricted to the client's address, decoded.
    fn policy_of(url: &str) -> String {
        use base64::Engine;
        let encoded = url
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("Policy="))
            .expect("a custom-policy URL");
        let standard = encoded
            .replace('-', "+")
            .replace('_', "=")
            .replace('~', "/");
        let json = base64::engine::general_purpose::STANDARD
            .decode(standard)
            .unwrap();
        String::from_utf8(json).unwrap()
    }

    /// An IPv4-mapped client address (`::ffff:a.b.c.d`, an IPv4 client on
    /// a dual-stack listener) signs the same policy as the plain IPv4
    /// address, the one CloudFront sees and matches.
    #[tokio::test]
    async fn ipv4_mapped_clients_get_an_ipv4_policy() {
        let mut c = config("K2JCJMDEHXQW5F", "rsa2048-pkcs8.pem");
        c.policy = PolicyKind::Custom;
        c.restrict_to_client_ip = true;
        let storage = CloudFrontedS3Storage::new(c).await.unwrap();
        let path = StoragePath::parse("blobs/x").unwrap();
        let mapped =
            DownloadUrlOptions::default().with_client_ip("::ffff:203.0.113.1".parse().unwrap());
        let plain = DownloadUrlOptions::default().with_client_ip("203.0.113.1".parse().unwrap());
        let a = storage.download_url(&path, &mapped).await.unwrap().unwrap();
        let policy = policy_of(&a.url);
        assert!(policy.contains("\"203.0.113.1/32\""), "{policy}");
        assert!(!policy.contains("ffff"), "{policy}");
        let b = storage.download_url(&path, &plain).await.unwrap().unwrap();
        assert_eq!(a.url, b.url);
        assert_eq!(storage.route_count(Route::Cached), 1);
    }
}
