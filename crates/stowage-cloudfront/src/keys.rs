//! The `CloudFrontedS3Storage` keys a location accepts, in one place: the reader asks
//! for these names, and `docs/configuration.md` documents each
//! (`crates/stowage/tests/config.rs` checks both).

/// `cloudfront_aws_bypass_regions`.
pub const CLOUDFRONT_AWS_BYPASS_REGIONS: &str = "cloudfront_aws_bypass_regions";
/// `cloudfront_aws_ip_ranges_file`.
pub const CLOUDFRONT_AWS_IP_RANGES_FILE: &str = "cloudfront_aws_ip_ranges_file";
/// `cloudfront_bypass_without_client_ip`.
pub const CLOUDFRONT_BYPASS_WITHOUT_CLIENT_IP: &str = "cloudfront_bypass_without_client_ip";
/// `cloudfront_distribution_domain`.
pub const CLOUDFRONT_DISTRIBUTION_DOMAIN: &str = "cloudfront_distribution_domain";
/// `cloudfront_distribution_org_overrides`.
pub const CLOUDFRONT_DISTRIBUTION_ORG_OVERRIDES: &str = "cloudfront_distribution_org_overrides";
/// `cloudfront_expiry_granularity_seconds`.
pub const CLOUDFRONT_EXPIRY_GRANULARITY_SECONDS: &str = "cloudfront_expiry_granularity_seconds";
/// `cloudfront_hash_algorithm`.
pub const CLOUDFRONT_HASH_ALGORITHM: &str = "cloudfront_hash_algorithm";
/// `cloudfront_key_group_keys`.
pub const CLOUDFRONT_KEY_GROUP_KEYS: &str = "cloudfront_key_group_keys";
/// `cloudfront_key_id`.
pub const CLOUDFRONT_KEY_ID: &str = "cloudfront_key_id";
/// `cloudfront_key_id_file`.
pub const CLOUDFRONT_KEY_ID_FILE: &str = "cloudfront_key_id_file";
/// `cloudfront_key_reload_seconds`.
pub const CLOUDFRONT_KEY_RELOAD_SECONDS: &str = "cloudfront_key_reload_seconds";
/// `cloudfront_policy`.
pub const CLOUDFRONT_POLICY: &str = "cloudfront_policy";
/// `cloudfront_privatekey_filename`.
pub const CLOUDFRONT_PRIVATEKEY_FILENAME: &str = "cloudfront_privatekey_filename";
/// `cloudfront_restrict_to_client_ip`.
pub const CLOUDFRONT_RESTRICT_TO_CLIENT_IP: &str = "cloudfront_restrict_to_client_ip";
/// `cloudfront_signing_mode`.
pub const CLOUDFRONT_SIGNING_MODE: &str = "cloudfront_signing_mode";
/// `cloudfront_url_cache_size`.
pub const CLOUDFRONT_URL_CACHE_SIZE: &str = "cloudfront_url_cache_size";
/// `cloudfront_validate_fetch`.
pub const CLOUDFRONT_VALIDATE_FETCH: &str = "cloudfront_validate_fetch";

/// Every key above.
pub const ALL: &[&str] = &[
    CLOUDFRONT_AWS_BYPASS_REGIONS,
    CLOUDFRONT_AWS_IP_RANGES_FILE,
    CLOUDFRONT_BYPASS_WITHOUT_CLIENT_IP,
    CLOUDFRONT_DISTRIBUTION_DOMAIN,
    CLOUDFRONT_DISTRIBUTION_ORG_OVERRIDES,
    CLOUDFRONT_EXPIRY_GRANULARITY_SECONDS,
    CLOUDFRONT_HASH_ALGORITHM,
    CLOUDFRONT_KEY_GROUP_KEYS,
    CLOUDFRONT_KEY_ID,
    CLOUDFRONT_KEY_ID_FILE,
    CLOUDFRONT_KEY_RELOAD_SECONDS,
    CLOUDFRONT_POLICY,
    CLOUDFRONT_PRIVATEKEY_FILENAME,
    CLOUDFRONT_RESTRICT_TO_CLIENT_IP,
    CLOUDFRONT_SIGNING_MODE,
    CLOUDFRONT_URL_CACHE_SIZE,
    CLOUDFRONT_VALIDATE_FETCH,
];
