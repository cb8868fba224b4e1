//! `CloudFrontedS3Storage`: the S3 driver with a signing layer for download
//! URLs. Every operation but `download_url`, `validate` and `metrics` is
//! the S3 driver's, forwarded as is.

use std::net::IpAddr;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
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
use super::rotation::{self, KeyReload, KeyRing};
use crate::config::{CloudFrontConfig, PolicyKind};
use crate::signer::{
    encode_key_path, encode_query_component, CloudFrontSigner, IpCidr, Policy, SignError,
};

/// The driver name in reports and errors.
pub const DRIVER: &str = "cloudfront";

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
    /// The signing keys in force, reloaded when their files change.
    pub(super) keys: KeyRing,
    pub(super) aws_ranges: Option<AwsIpRanges>,
    pub(super) cache: SignedUrlCache,
    pub(super) counters: Counters,
    /// Makes every signing fail, to reach the `signing_failed` fallback
    /// (a key that loaded does not fail to sign otherwise).
    #[cfg(test)]
    pub(super) fail_signing: AtomicBool,
}

impl Inner {
    /// Looks at the key files and reloads them when they changed (at once
    /// with `now`). Reads files.
    pub(super) fn reload_keys(&self, now: bool) -> KeyReload {
        self.keys.reload(&self.config, now)
    }
}

impl CloudFrontedS3Storage {
    /// Builds the S3 driver from `config.s3` and the signing layer over it.
    /// A private key that is missing, unreadable or invalid does not stop
    /// the driver: download URLs fall back to S3 presigned URLs and
    /// `validate` reports the driver as degraded.
    ///
    /// `config` is checked first, however it was built
    /// ([`CloudFrontConfig::problems`], its S3 configuration's included).
    ///
    /// # Errors
    /// [`stowage_core::Error::Config`] listing every problem of `config`,
    /// each with the key it is about; then as [`S3Storage::new`].
    pub async fn new(config: CloudFrontConfig) -> Result<Self> {
        config.problems().into_result(())?;
        let s3 = S3Storage::new(config.s3.clone()).await?;
        Ok(Self::layer(s3, config))
    }

    /// As [`CloudFrontedS3Storage::new`], with the S3 driver's credentials
    /// from `source` (e.g. STS: S3 fallback URLs are then signed by the
    /// session and never outlive it).
    ///
    /// # Errors
    /// As [`CloudFrontedS3Storage::new`].
    pub async fn with_credential_source(
        config: CloudFrontConfig,
        source: Arc<dyn CredentialSource>,
    ) -> Result<Self> {
        config.problems().into_result(())?;
        let s3 = S3Storage::with_credential_source(config.s3.clone(), source).await?;
        Ok(Self::layer(s3, config))
    }

    /// The signing layer over `s3`, built from `config.s3`. Keys are read
    /// and parsed here, then again when their files change (every
    /// `cloudfront_key_reload_seconds`) or on [`crate::reload_signing_keys`].
    fn layer(s3: S3Storage, config: CloudFrontConfig) -> Self {
        let keys = KeyRing::load(&config);
        if let Err(e) = &keys.current().keys {
            tracing::warn!(error = %e, "CloudFront signing unavailable; download URLs fall back to S3 presigned URLs");
        }
        let aws_ranges = config
            .aws_ip_ranges_file
            .as_deref()
            .map(|p| AwsIpRanges::load(p, config.aws_bypass_regions.clone()));
        let inner = Arc::new(Inner {
            cache: SignedUrlCache::new(config.cache_size),
            config,
            keys,
            aws_ranges,
            counters: Counters::default(),
            #[cfg(test)]
            fail_signing: AtomicBool::new(false),
        });
        rotation::watch(&inner);
        Self { s3, inner }
    }

    /// The S3 driver underneath.
    pub fn s3(&self) -> &S3Storage {
        &self.s3
    }

    /// The configuration.
    pub fn config(&self) -> &CloudFrontConfig {
        &self.inner.config
    }

    /// The signer in use now (it changes when the key files do), or why
    /// there is none.
    ///
    /// # Errors
    /// Why the key could not be loaded.
    pub fn signer(&self) -> std::result::Result<CloudFrontSigner, SignError> {
        match &self.inner.keys.current().keys {
            Ok(keys) => Ok(keys.signers[0].clone()),
            Err(e) => Err(e.clone()),
        }
    }

    /// Reads the key files (and key id files) again now, whether or not
    /// they look changed: new keys sign from now on, or, when they cannot
    /// be used, the keys in force stay and the reason is returned.
    /// [`crate::reload_signing_keys`] does this for every location. Reads
    /// files: call it from a blocking thread in async code.
    pub fn reload_keys(&self) -> KeyReload {
        self.inner.reload_keys(true)
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

    /// Signs `url` with `signer`, of the keys of `generation`; a URL
    /// signed before by the same keys comes from the cache (`true`).
    async fn sign(
        &self,
        signer: &CloudFrontSigner,
        generation: u64,
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
            generation,
        };
        if let Some(hit) = self.inner.cache.get(&key) {
            return Ok((hit, true));
        }
        #[cfg(test)]
        if self.inner.fail_signing.load(Ordering::Relaxed) {
            return Err(SignError::Signing("refused by the test".into()));
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
        // The keys in force for this URL: a reload swaps in new ones for
        // the next URL, never in the middle of this one.
        let loaded = self.inner.keys.current();
        let signer = match &loaded.keys {
            Ok(keys) => &keys.signers[0],
            Err(e) => {
                let fallback = Fallback::new(Route::KeyUnavailable.as_str(), e.to_string());
                return self
                    .s3_url(path, options, Route::KeyUnavailable, Some(fallback))
                    .await;
            }
        };
        let granularity = self.inner.config.expiry_granularity.as_secs() as i64;
        let lifetime = i64::try_from(options.expires_in.as_secs()).unwrap_or(i64::MAX / 2);
        let expires = round_up(Utc::now().timestamp() + lifetime.max(1), granularity);
        let url = self.unsigned_url(path, options);
        match self
            .sign(signer, loaded.generation, url, expires, client_ip)
            .await
        {
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
                let fallback = Fallback::new(Route::SigningFailed.as_str(), e.to_string());
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
    use super::super::rotation::load_keys;
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

    /// A key that loaded does not fail to sign, so the test makes signing
    /// fail: the URL is the S3 presigned one, saying why, and counted.
    #[tokio::test]
    async fn a_signing_failure_falls_back_to_s3_saying_why_and_is_counted() {
        let mut c = config("K2JCJMDEHXQW5F", "rsa2048-pkcs8.pem");
        c.s3 = c.s3.with_static_keys(
            "AKIDEXAMPLE",
            stowage_core::config::Secret::new("not-a-real-secret"),
        );
        let storage = CloudFrontedS3Storage::new(c).await.unwrap();
        storage.inner.fail_signing.store(true, Ordering::Relaxed);
        let path = StoragePath::parse("blobs/x").unwrap();
        let options = DownloadUrlOptions::default().with_client_ip("203.0.113.1".parse().unwrap());
        for _ in 0..2 {
            let url = storage
                .download_url(&path, &options)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(url.source, UrlSource::S3Presigned);
            assert!(url.url.contains("X-Amz-Signature="), "{}", url.url);
            let fallback = url.fallback.expect("a fallback saying why");
            assert_eq!(fallback.cause, "signing_failed");
            assert!(
                fallback
                    .detail
                    .contains("signing failed: refused by the test"),
                "{}",
                fallback.detail
            );
        }
        assert_eq!(storage.route_count(Route::SigningFailed), 2);
        assert_eq!(storage.route_count(Route::Signed), 0);
        let counted: u64 = storage
            .metrics()
            .iter()
            .filter(|m| {
                m.name == "stowage_cloudfront_urls_total"
                    && m.labels
                        .iter()
                        .any(|(k, v)| *k == "route" && v.as_str() == "signing_failed")
            })
            .map(|m| m.value)
            .sum();
        assert_eq!(counted, 2);
        // Signing works again: CloudFront URLs again, nothing cached from
        // the failures.
        storage.inner.fail_signing.store(false, Ordering::Relaxed);
        let url = storage
            .download_url(&path, &options)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(url.source, UrlSource::CdnSigned);
        assert!(url.fallback.is_none());
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
