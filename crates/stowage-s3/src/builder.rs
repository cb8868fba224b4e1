//! Building the SDK client from an [`S3Config`]: with the driver's own
//! HTTPS client (trusted CAs, proxies: `tls.rs`) or the embedder's, from
//! nothing, from the embedder's `SdkConfig`, or over a ready client.

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use stowage_core::{Error, Result};

use crate::credentials::{SdkProvider, SharedSource};
use crate::tls::naming_tls_failures;
use crate::S3Config;

/// The SDK client for `config`, with `credentials` when given (STS), else
/// the configured static keys, else the SDK's default chain (environment,
/// profile files, web identity, instance metadata). Requests go through
/// `http` when given (the embedder's client wins over the configured CAs),
/// else through [`S3Config::https_client`].
///
/// # Errors
/// [`stowage_core::Error::Config`] listing every problem of `config`
/// ([`S3Config::problems`]) and of its CA certificates.
pub(crate) async fn client(
    config: &S3Config,
    credentials: Option<&SharedSource>,
    http: Option<SharedHttpClient>,
) -> Result<aws_sdk_s3::Client> {
    let http = checked_http_client(config, http)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
        .timeout_config(timeouts(config))
        // The default credential chain (instance metadata, web identity)
        // goes through the same client: same CAs, same proxy.
        .http_client(http);
    if let Some(source) = credentials {
        // A source that caches itself (STS, refreshing in the background)
        // is asked on every request and answers from memory: the SDK's lazy
        // cache on top would reload synchronously inside its buffer time.
        // Any other source gets that cache: one identity for the whole
        // client, loaded once for concurrent requests, renewed
        // `refresh_margin` before expiry.
        let cache = if source.caches_itself() {
            IdentityCache::no_cache()
        } else {
            IdentityCache::lazy()
                .buffer_time(source.refresh_margin())
                .build()
        };
        loader = loader
            .credentials_provider(SdkProvider(SharedSource::clone(source)))
            .identity_cache(cache);
    } else if let Some(keys) = static_keys(config) {
        loader = loader.credentials_provider(keys);
    }
    let shared = loader.load().await;
    let builder = addressing(aws_sdk_s3::config::Builder::from(&shared), config);
    Ok(aws_sdk_s3::Client::from_conf(
        driver_settings(builder, config).build(),
    ))
}

/// The SDK client for `config` on the embedder's `sdk`: its credentials
/// (unless `config` has static keys), identity cache, HTTP client (else
/// [`S3Config::https_client`]), sleep and time sources; `config`'s region,
/// endpoint and addressing (they say where the bucket is), and the
/// driver's timeouts, retries (off: the driver retries) and checksums.
///
/// # Errors
/// [`stowage_core::Error::Config`] listing every problem of `config`
/// ([`S3Config::problems`]) and of its CA certificates (those only when
/// `sdk` has no HTTP client).
pub(crate) fn client_from_sdk_config(
    config: &S3Config,
    sdk: &SdkConfig,
) -> Result<aws_sdk_s3::Client> {
    let http = checked_http_client(config, sdk.http_client())?;
    let mut builder = aws_sdk_s3::config::Builder::from(sdk)
        .http_client(http)
        .region(Region::new(config.region.clone()));
    if sdk.behavior_version().is_none() {
        builder = builder.behavior_version(BehaviorVersion::latest());
    }
    if let Some(keys) = static_keys(config) {
        builder = builder.credentials_provider(keys);
    }
    let builder = addressing(builder, config);
    Ok(aws_sdk_s3::Client::from_conf(
        driver_settings(builder, config).build(),
    ))
}

/// `client` with the driver's timeouts, retries (off) and checksums on
/// top; its region, endpoint, addressing, credentials and HTTP client stay
/// (a client without one gets [`S3Config::https_client`]).
///
/// # Errors
/// [`stowage_core::Error::Config`] listing every problem of `config`
/// ([`S3Config::problems`]) and of its CA certificates (those only when
/// `client` has no HTTP client).
pub(crate) fn client_over(
    config: &S3Config,
    client: &aws_sdk_s3::Client,
) -> Result<aws_sdk_s3::Client> {
    let own = client.config();
    let http = checked_http_client(config, own.http_client())?;
    let builder = own.to_builder().http_client(http);
    Ok(aws_sdk_s3::Client::from_conf(
        driver_settings(builder, config).build(),
    ))
}

/// [`http_client`] once `config` is checked: every problem of the
/// configuration ([`S3Config::problems`]) and of the CA certificates its
/// client would trust, in one [`Error::Config`]. Every way of building the
/// driver goes through here, so a configuration built in code is refused
/// at construction as one read from a file is when it is loaded.
fn checked_http_client(
    config: &S3Config,
    given: Option<SharedHttpClient>,
) -> Result<SharedHttpClient> {
    let mut problems = config.problems();
    match http_client(config, given) {
        Ok(http) if problems.is_empty() => Ok(http),
        Ok(_) => Err(Error::Config(problems)),
        Err(Error::Config(more)) => {
            problems.extend(more);
            Err(Error::Config(problems))
        }
        Err(e) => Err(e),
    }
}

/// `given` (an embedder's client) with TLS failures named, else the
/// driver's own client.
fn http_client(config: &S3Config, given: Option<SharedHttpClient>) -> Result<SharedHttpClient> {
    match given {
        Some(http) => {
            if config.ca_bundle.is_some() || !config.extra_ca_certs.is_empty() {
                tracing::warn!(
                    "the embedder's HTTP client is used as it is: s3_ca_bundle and the config \
                     bundle's extra CA certificates do not apply to it"
                );
            }
            Ok(naming_tls_failures(http))
        }
        None => config.https_client(),
    }
}

/// The configured static keys as a credentials provider.
fn static_keys(config: &S3Config) -> Option<Credentials> {
    let (Some(ak), Some(sk)) = (&config.access_key, &config.secret_key) else {
        return None;
    };
    Some(Credentials::new(
        ak.clone(),
        sk.expose().to_string(),
        config
            .session_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        None,
        "stowage-config",
    ))
}

/// The connect timeout and the attempt timeout of requests without a body
/// (`body_attempt_override` lengthens it for bodies).
fn timeouts(config: &S3Config) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(config.connect_timeout)
        .operation_attempt_timeout(config.first_byte_timeout)
        .build()
}

/// Where the bucket is: path-style addressing, the endpoint.
fn addressing(
    builder: aws_sdk_s3::config::Builder,
    config: &S3Config,
) -> aws_sdk_s3::config::Builder {
    let builder = builder.force_path_style(config.path_style);
    match &config.endpoint {
        Some(endpoint) => builder.endpoint_url(endpoint),
        None => builder,
    }
}

/// What the driver relies on, whoever made the client: its own attempt
/// deadlines, no SDK retries (the driver's attempts replace the SDK's, so
/// budgets do not multiply), checksums only when an operation requires
/// them (Ceph RGW rejects the trailing checksums the SDK sends by default).
fn driver_settings(
    builder: aws_sdk_s3::config::Builder,
    config: &S3Config,
) -> aws_sdk_s3::config::Builder {
    builder
        .timeout_config(timeouts(config))
        .retry_config(RetryConfig::disabled())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
}

/// A per-request configuration override for a request carrying `size`
/// body bytes: the attempt timeout of [`S3Config::body_attempt_timeout`],
/// the connect timeout unchanged.
pub(crate) fn body_attempt_override(config: &S3Config, size: u64) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_attempt_timeout(config.body_attempt_timeout(size))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::SharedCredentialsProvider;
    use stowage_core::config::Secret;
    use stowage_core::{DownloadUrlOptions, Storage, StoragePath};

    use crate::S3Storage;

    fn config() -> S3Config {
        S3Config::new("bkt")
            .with_endpoint("https://s3.example.net:9000")
            .with_region("eu-west-1")
    }

    /// What the driver needs of any client, checked on its copy.
    fn assert_driver_settings(client: &aws_sdk_s3::Client) {
        let own = client.config();
        assert_eq!(own.retry_config().map(|r| r.max_attempts()), Some(1));
        assert_eq!(
            own.request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
        assert_eq!(
            own.timeout_config()
                .and_then(|t| t.operation_attempt_timeout()),
            Some(config().first_byte_timeout)
        );
        assert!(own.http_client().is_some());
    }

    #[tokio::test]
    async fn an_embedders_client_gets_the_drivers_retries_and_checksums_on_a_copy() {
        let theirs = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .endpoint_url("https://s3.example.net:9000")
                .force_path_style(true)
                .credentials_provider(Credentials::new(
                    "AKIDTHEIRS",
                    "not-a-real-secret",
                    None,
                    None,
                    "test",
                ))
                .retry_config(RetryConfig::standard().with_max_attempts(5))
                .build(),
        );
        let storage = S3Storage::from_client(config(), theirs.clone()).unwrap();
        assert_driver_settings(&storage.client);
        assert_eq!(
            theirs.config().retry_config().map(|r| r.max_attempts()),
            Some(5),
            "the embedder's client is not changed"
        );
        let url = storage
            .download_url(
                &StoragePath::parse("a/b").unwrap(),
                &DownloadUrlOptions::default(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.url.starts_with("https://s3.example.net:9000/bkt/a/b?")
                && url.url.contains("AKIDTHEIRS%2F"),
            "{}",
            url.url
        );
    }

    #[tokio::test]
    async fn an_sdk_config_gives_the_credentials_and_the_config_where_the_bucket_is() {
        let sdk = SdkConfig::builder()
            .region(Region::new("us-west-2"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDSDKCONFIG",
                "not-a-real-secret",
                None,
                None,
                "test",
            )))
            .build();
        let storage = S3Storage::from_sdk_config(config(), &sdk).unwrap();
        assert_driver_settings(&storage.client);
        assert_eq!(
            storage.client.config().region().map(|r| r.as_ref()),
            Some("eu-west-1"),
            "the bucket's region, from the configuration"
        );
        let url = storage
            .download_url(
                &StoragePath::parse("a/b").unwrap(),
                &DownloadUrlOptions::default(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.url.starts_with("https://s3.example.net:9000/bkt/a/b?")
                && url.url.contains("AKIDSDKCONFIG%2F")
                && url.url.contains("%2Feu-west-1%2Fs3%2F"),
            "{}",
            url.url
        );
        // Static keys in the configuration win over the SdkConfig's.
        let keyed = config().with_static_keys("AKIDCONFIG", Secret::new("not-a-real-secret"));
        let storage = S3Storage::from_sdk_config(keyed, &sdk).unwrap();
        let url = storage
            .download_url(
                &StoragePath::parse("a/b").unwrap(),
                &DownloadUrlOptions::default(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(url.url.contains("AKIDCONFIG%2F"), "{}", url.url);
    }

    #[tokio::test]
    async fn a_config_built_in_code_is_refused_with_every_problem_at_once() {
        let mut config = S3Config::new("")
            .with_endpoint("x y")
            .with_region("eu west")
            .with_root("a/../b")
            .with_ca_bundle("/nonexistent/stowage-ca.pem");
        config.part_size = 0;
        config.upload_concurrency = 0;
        config.connect_timeout = std::time::Duration::ZERO;
        config.max_attempts = 0;
        let e = S3Storage::new(config.clone()).await.unwrap_err();
        let stowage_core::Error::Config(problems) = &e else {
            panic!("not a configuration error: {e}");
        };
        let keys: Vec<&str> = problems.0.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "s3_bucket",
            "endpoint_url",
            "s3_region",
            "storage_path",
            "s3_ca_bundle",
            "s3_part_size_mb",
            "s3_upload_concurrency",
            "s3_connect_timeout_seconds",
            "s3_max_attempts",
        ] {
            assert!(keys.contains(&key), "{key} is not named: {e}");
        }
        let text = e.to_string();
        assert!(text.contains("s3_bucket: empty"), "{text}");
        assert!(
            text.contains("endpoint_url: \"x y\" is not a URL"),
            "{text}"
        );
        // Every constructor checks, the embedder's SDK configuration and
        // client included.
        let sdk = SdkConfig::builder().build();
        assert!(matches!(
            S3Storage::from_sdk_config(config, &sdk),
            Err(stowage_core::Error::Config(_))
        ));
    }

    #[tokio::test]
    async fn an_unusable_ca_bundle_stops_the_driver_naming_the_key() {
        let config = config().with_ca_bundle("/nonexistent/stowage-ca.pem");
        let e = S3Storage::new(config.clone()).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("s3_ca_bundle") && text.contains("/nonexistent/stowage-ca.pem"),
            "{text}"
        );
        assert!(S3Storage::from_sdk_config(config, &SdkConfig::builder().build()).is_err());
    }
}
