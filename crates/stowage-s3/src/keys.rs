//! The `S3Storage` keys a location accepts, in one place: the reader asks
//! for these names, and `docs/configuration.md` documents each
//! (`crates/stowage/tests/config.rs` checks both).

/// `endpoint_url`.
pub const ENDPOINT_URL: &str = "endpoint_url";
/// `host`.
pub const HOST: &str = "host";
/// `maximum_chunk_size_gb`.
pub const MAXIMUM_CHUNK_SIZE_GB: &str = "maximum_chunk_size_gb";
/// `minimum_chunk_size_mb`.
pub const MINIMUM_CHUNK_SIZE_MB: &str = "minimum_chunk_size_mb";
/// `port`.
pub const PORT: &str = "port";
/// `s3_access_key`.
pub const S3_ACCESS_KEY: &str = "s3_access_key";
/// `s3_bucket`.
pub const S3_BUCKET: &str = "s3_bucket";
/// `s3_ca_bundle`.
pub const S3_CA_BUNDLE: &str = "s3_ca_bundle";
/// `s3_connect_timeout_seconds`.
pub const S3_CONNECT_TIMEOUT_SECONDS: &str = "s3_connect_timeout_seconds";
/// `s3_max_attempts`.
pub const S3_MAX_ATTEMPTS: &str = "s3_max_attempts";
/// `s3_max_parts_in_flight`.
pub const S3_MAX_PARTS_IN_FLIGHT: &str = "s3_max_parts_in_flight";
/// `s3_max_ranges_in_flight`.
pub const S3_MAX_RANGES_IN_FLIGHT: &str = "s3_max_ranges_in_flight";
/// `s3_read_ahead_ranges`.
pub const S3_READ_AHEAD_RANGES: &str = "s3_read_ahead_ranges";
/// `s3_read_ahead_range_mb`.
pub const S3_READ_AHEAD_RANGE_MB: &str = "s3_read_ahead_range_mb";
/// `s3_multipart_copy_part_size_mb`.
pub const S3_MULTIPART_COPY_PART_SIZE_MB: &str = "s3_multipart_copy_part_size_mb";
/// `s3_multipart_copy_threshold_mb`.
pub const S3_MULTIPART_COPY_THRESHOLD_MB: &str = "s3_multipart_copy_threshold_mb";
/// `s3_part_checksum`.
pub const S3_PART_CHECKSUM: &str = "s3_part_checksum";
/// `s3_part_size_mb`.
pub const S3_PART_SIZE_MB: &str = "s3_part_size_mb";
/// `s3_path_style`.
pub const S3_PATH_STYLE: &str = "s3_path_style";
/// `s3_region`.
pub const S3_REGION: &str = "s3_region";
/// `s3_first_byte_timeout_seconds`.
pub const S3_FIRST_BYTE_TIMEOUT_SECONDS: &str = "s3_first_byte_timeout_seconds";
/// `s3_progress_timeout_seconds`.
pub const S3_PROGRESS_TIMEOUT_SECONDS: &str = "s3_progress_timeout_seconds";
/// `s3_min_upload_rate_kib`.
pub const S3_MIN_UPLOAD_RATE_KIB: &str = "s3_min_upload_rate_kib";
/// `s3_request_timeout_seconds`.
pub const S3_REQUEST_TIMEOUT_SECONDS: &str = "s3_request_timeout_seconds";
/// `s3_retry_timeout_seconds`.
pub const S3_RETRY_TIMEOUT_SECONDS: &str = "s3_retry_timeout_seconds";
/// `s3_secret_key`.
pub const S3_SECRET_KEY: &str = "s3_secret_key";
/// `s3_server_side_encryption`.
pub const S3_SERVER_SIDE_ENCRYPTION: &str = "s3_server_side_encryption";
/// `s3_session_token`.
pub const S3_SESSION_TOKEN: &str = "s3_session_token";
/// `s3_sse_kms_key_id`.
pub const S3_SSE_KMS_KEY_ID: &str = "s3_sse_kms_key_id";
/// `s3_storage_class`.
pub const S3_STORAGE_CLASS: &str = "s3_storage_class";
/// `s3_upload_concurrency`.
pub const S3_UPLOAD_CONCURRENCY: &str = "s3_upload_concurrency";
/// `server_side_assembly`.
pub const SERVER_SIDE_ASSEMBLY: &str = "server_side_assembly";
/// `storage_path`.
pub const STORAGE_PATH: &str = "storage_path";

/// Every key above.
pub const ALL: &[&str] = &[
    ENDPOINT_URL,
    HOST,
    MAXIMUM_CHUNK_SIZE_GB,
    MINIMUM_CHUNK_SIZE_MB,
    PORT,
    S3_ACCESS_KEY,
    S3_BUCKET,
    S3_CA_BUNDLE,
    S3_CONNECT_TIMEOUT_SECONDS,
    S3_FIRST_BYTE_TIMEOUT_SECONDS,
    S3_MAX_ATTEMPTS,
    S3_MAX_PARTS_IN_FLIGHT,
    S3_MAX_RANGES_IN_FLIGHT,
    S3_MIN_UPLOAD_RATE_KIB,
    S3_MULTIPART_COPY_PART_SIZE_MB,
    S3_MULTIPART_COPY_THRESHOLD_MB,
    S3_PART_CHECKSUM,
    S3_PART_SIZE_MB,
    S3_PATH_STYLE,
    S3_PROGRESS_TIMEOUT_SECONDS,
    S3_READ_AHEAD_RANGES,
    S3_READ_AHEAD_RANGE_MB,
    S3_REGION,
    S3_REQUEST_TIMEOUT_SECONDS,
    S3_RETRY_TIMEOUT_SECONDS,
    S3_SECRET_KEY,
    S3_SERVER_SIDE_ENCRYPTION,
    S3_SESSION_TOKEN,
    S3_SSE_KMS_KEY_ID,
    S3_STORAGE_CLASS,
    S3_UPLOAD_CONCURRENCY,
    SERVER_SIDE_ASSEMBLY,
    STORAGE_PATH,
];
