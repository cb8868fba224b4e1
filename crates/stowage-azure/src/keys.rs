//! The `AzureStorage` keys a location accepts, in one place: the reader asks
//! for these names, and `docs/configuration.md` documents each.

/// `azure_account_key` (Quay's key): the storage account's access key.
pub const AZURE_ACCOUNT_KEY: &str = "azure_account_key";
/// `azure_account_name` (Quay's key).
pub const AZURE_ACCOUNT_NAME: &str = "azure_account_name";
/// `azure_block_size_mb`.
pub const AZURE_BLOCK_SIZE_MB: &str = "azure_block_size_mb";
/// `azure_connect_timeout_seconds`.
pub const AZURE_CONNECT_TIMEOUT_SECONDS: &str = "azure_connect_timeout_seconds";
/// `azure_container` (Quay's key).
pub const AZURE_CONTAINER: &str = "azure_container";
/// `azure_content_md5`.
pub const AZURE_CONTENT_MD5: &str = "azure_content_md5";
/// `azure_copy_timeout_seconds`.
pub const AZURE_COPY_TIMEOUT_SECONDS: &str = "azure_copy_timeout_seconds";
/// `azure_first_byte_timeout_seconds`.
pub const AZURE_FIRST_BYTE_TIMEOUT_SECONDS: &str = "azure_first_byte_timeout_seconds";
/// `azure_max_attempts`.
pub const AZURE_MAX_ATTEMPTS: &str = "azure_max_attempts";
/// `azure_max_blocks_in_flight`.
pub const AZURE_MAX_BLOCKS_IN_FLIGHT: &str = "azure_max_blocks_in_flight";
/// `azure_min_upload_rate_kib`.
pub const AZURE_MIN_UPLOAD_RATE_KIB: &str = "azure_min_upload_rate_kib";
/// `azure_progress_timeout_seconds`.
pub const AZURE_PROGRESS_TIMEOUT_SECONDS: &str = "azure_progress_timeout_seconds";
/// `azure_request_timeout_seconds`.
pub const AZURE_REQUEST_TIMEOUT_SECONDS: &str = "azure_request_timeout_seconds";
/// `azure_retry_timeout_seconds`.
pub const AZURE_RETRY_TIMEOUT_SECONDS: &str = "azure_retry_timeout_seconds";
/// `azure_upload_concurrency`.
pub const AZURE_UPLOAD_CONCURRENCY: &str = "azure_upload_concurrency";
/// `endpoint_url` (Quay's key): the account URL.
pub const ENDPOINT_URL: &str = "endpoint_url";
/// `sas_token` (Quay's key).
pub const SAS_TOKEN: &str = "sas_token";
/// `server_side_assembly`.
pub const SERVER_SIDE_ASSEMBLY: &str = "server_side_assembly";
/// `storage_path` (Quay's key).
pub const STORAGE_PATH: &str = "storage_path";

/// Every key above.
pub const ALL: &[&str] = &[
    AZURE_ACCOUNT_KEY,
    AZURE_ACCOUNT_NAME,
    AZURE_BLOCK_SIZE_MB,
    AZURE_CONNECT_TIMEOUT_SECONDS,
    AZURE_CONTAINER,
    AZURE_CONTENT_MD5,
    AZURE_COPY_TIMEOUT_SECONDS,
    AZURE_FIRST_BYTE_TIMEOUT_SECONDS,
    AZURE_MAX_ATTEMPTS,
    AZURE_MAX_BLOCKS_IN_FLIGHT,
    AZURE_MIN_UPLOAD_RATE_KIB,
    AZURE_PROGRESS_TIMEOUT_SECONDS,
    AZURE_REQUEST_TIMEOUT_SECONDS,
    AZURE_RETRY_TIMEOUT_SECONDS,
    AZURE_UPLOAD_CONCURRENCY,
    ENDPOINT_URL,
    SAS_TOKEN,
    SERVER_SIDE_ASSEMBLY,
    STORAGE_PATH,
];
