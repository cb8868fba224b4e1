//! Building the SDK client from an [`S3Config`].

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use crate::credentials::CredentialSource;
use crate::S3Config;

/// The SDK client for `config`, with `credentials` when given (STS), else
/// the configured static keys, else the SDK's default chain (environment,
/// profile files, web identity, instance metadata).
pub(crate) async fn client(
    config: &S3Config,
    credentials: Option<&dyn CredentialSource>,
    http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
) -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_attempt_timeout(config.first_byte_timeout)
                .build(),
        );
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
            .credentials_provider(source.provider())
            .identity_cache(cache);
    } else if let (Some(ak), Some(sk)) = (&config.access_key, &config.secret_key) {
        loader = loader.credentials_provider(Credentials::new(
            ak.clone(),
            sk.expose().to_string(),
            config
                .session_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            None,
            "stowage-config",
        ));
    }
    if let Some(http) = http {
        loader = loader.http_client(http);
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.path_style)
        // The driver retries (retry.rs): its attempts replace the SDK's, so
        // budgets do not multiply.
        .retry_config(RetryConfig::disabled())
        // Ceph RGW rejects the trailing checksums the SDK sends by default.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
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
