//! OCI Distribution error codes and their HTTP statuses, in one place, and
//! the spec's JSON error body.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The spec's error codes (the ones this registry answers with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Blob unknown to the registry (404).
    BlobUnknown,
    /// Error in blob upload (400).
    BlobUploadInvalid,
    /// Blob upload unknown to the registry (404).
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content (400).
    DigestInvalid,
    /// Blob unknown to the registry, referenced by a manifest (400).
    ManifestBlobUnknown,
    /// Manifest invalid (400).
    ManifestInvalid,
    /// Manifest unknown (404).
    ManifestUnknown,
    /// Invalid repository name (400).
    NameInvalid,
    /// Repository name not known to the registry (404).
    NameUnknown,
    /// Provided length did not match content length (400).
    SizeInvalid,
    /// A page size (`n`) that is not a number from 0 to the registry's
    /// maximum (400), as distribution answers.
    PaginationNumberInvalid,
    /// The operation is unsupported (405).
    Unsupported,
    /// Requested range not satisfiable (416).
    RangeInvalid,
    /// Authentication required (401).
    Unauthorized,
    /// Requested access to the resource is denied (403).
    Denied,
    /// Too many requests (429).
    TooManyRequests,
    /// Anything else (500).
    Unknown,
}

impl ErrorCode {
    /// The code as the spec spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Self::Unsupported => "UNSUPPORTED",
            Self::RangeInvalid => "RANGE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status the code goes with, e.g. 404.
    pub fn status(&self) -> u16 {
        self.http().as_u16()
    }

    /// [`ErrorCode::status`] as the HTTP crate's type.
    pub(crate) fn http(&self) -> StatusCode {
        match self {
            Self::BlobUnknown
            | Self::BlobUploadUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown => StatusCode::NOT_FOUND,
            Self::BlobUploadInvalid
            | Self::DigestInvalid
            | Self::ManifestBlobUnknown
            | Self::ManifestInvalid
            | Self::NameInvalid
            | Self::SizeInvalid
            | Self::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            Self::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Self::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failed request: an error code, a message, and extra headers (e.g.
/// `Range` on 416).
#[derive(Debug)]
#[non_exhaustive]
pub struct RegistryError {
    /// The code.
    pub code: ErrorCode,
    /// What went wrong, for the client.
    pub message: String,
    /// Headers to send with the error, as (name, value).
    pub headers: Vec<(String, String)>,
    /// The HTTP status when it is not the code's usual one (413 for an
    /// upload over the size limit, 408 for a silent client).
    pub status: Option<u16>,
}

impl RegistryError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            headers: Vec::new(),
            status: None,
        }
    }

    /// 413 `SIZE_INVALID`: what was sent is larger than the registry
    /// takes (a blob upload past `--max-upload-size`, a manifest past its
    /// limit); `message` says which limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SizeInvalid, message)
            .with_status(StatusCode::PAYLOAD_TOO_LARGE.as_u16())
    }

    /// Answers with `status` instead of the code's usual one.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The HTTP status this error is answered with, e.g. 404.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.status())
    }

    /// [`RegistryError::http_status`] as the HTTP crate's type (a status
    /// outside 100 to 999 answers 500).
    fn http(&self) -> StatusCode {
        StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The error as a client may see it: a server error (5xx) keeps its
    /// code and status but its message becomes a generic one naming
    /// `request_id`; the details (bucket, endpoint, keys, role ARNs from a
    /// storage error chain, local paths) go to the log at error level,
    /// inside the request's span, under the same id. Other errors are
    /// returned unchanged: their messages are about the client's request.
    pub fn for_client(self, request_id: &str) -> Self {
        if !self.http().is_server_error() {
            return self;
        }
        tracing::error!(
            request_id,
            code = self.code.as_str(),
            error = %self.message,
            "request failed"
        );
        Self {
            message: format!(
                "internal server error; the server log has the details under request id {request_id}"
            ),
            ..self
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.headers.push((name.as_ref().to_string(), value.into()));
        self
    }

    /// Maps a storage error met while working on `what` (a blob or a
    /// manifest): not found becomes `not_found`; digest mismatches become
    /// `DIGEST_INVALID`; a request body that broke off `BLOB_UPLOAD_INVALID`;
    /// the rest `UNKNOWN` with the error's text, which
    /// names buckets, endpoints and keys: [`RegistryError::for_client`]
    /// keeps it out of the response and logs it.
    pub fn storage(e: stowage::Error, not_found: ErrorCode) -> Self {
        match e {
            stowage::Error::NotFound { .. } => Self::new(not_found, e.to_string()),
            stowage::Error::DigestMismatch { .. } => {
                Self::new(ErrorCode::DigestInvalid, e.to_string())
            }
            stowage::Error::InvalidUploadState { .. } => {
                Self::new(ErrorCode::BlobUploadInvalid, e.to_string())
            }
            stowage::Error::InvalidRange { .. } => {
                Self::new(ErrorCode::RangeInvalid, e.to_string())
            }
            // The client's body broke off (a reset, a proxy's cut): the
            // request's fault, a 400, and nothing was stored.
            stowage::Error::InputStream { .. } => {
                Self::new(ErrorCode::BlobUploadInvalid, e.to_string())
            }
            other => {
                // Logged at error level once, by `for_client`, when the
                // request fails with it.
                tracing::debug!(error = %other.chain(), "storage error");
                Self::new(ErrorCode::Unknown, other.chain())
            }
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": null}]});
        let mut response = (self.http(), axum::Json(body)).into_response();
        for (name, value) in self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(n, v);
            }
        }
        response
    }
}

/// A handler's result.
pub(crate) type RegistryResult<T = Response> = Result<T, RegistryError>;
