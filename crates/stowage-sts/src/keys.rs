//! The STS keys a location accepts, in one place: the reader asks
//! for these names, and `docs/configuration.md` documents each
//! (`crates/stowage/tests/config.rs` checks both).

/// `sts_duration_seconds`.
pub const STS_DURATION_SECONDS: &str = "sts_duration_seconds";
/// `sts_endpoint_url`.
pub const STS_ENDPOINT_URL: &str = "sts_endpoint_url";
/// `sts_external_id`.
pub const STS_EXTERNAL_ID: &str = "sts_external_id";
/// `sts_refresh_margin_seconds`.
pub const STS_REFRESH_MARGIN_SECONDS: &str = "sts_refresh_margin_seconds";
/// `sts_region`.
pub const STS_REGION: &str = "sts_region";
/// `sts_role_arn`.
pub const STS_ROLE_ARN: &str = "sts_role_arn";
/// `sts_session_name`.
pub const STS_SESSION_NAME: &str = "sts_session_name";
/// `sts_user_access_key`.
pub const STS_USER_ACCESS_KEY: &str = "sts_user_access_key";
/// `sts_user_secret_key`.
pub const STS_USER_SECRET_KEY: &str = "sts_user_secret_key";
/// `sts_web_identity_token_file`.
pub const STS_WEB_IDENTITY_TOKEN_FILE: &str = "sts_web_identity_token_file";

/// Every key above.
pub const ALL: &[&str] = &[
    STS_DURATION_SECONDS,
    STS_ENDPOINT_URL,
    STS_EXTERNAL_ID,
    STS_REFRESH_MARGIN_SECONDS,
    STS_REGION,
    STS_ROLE_ARN,
    STS_SESSION_NAME,
    STS_USER_ACCESS_KEY,
    STS_USER_SECRET_KEY,
    STS_WEB_IDENTITY_TOKEN_FILE,
];
