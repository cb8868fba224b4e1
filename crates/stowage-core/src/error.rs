//! The one error type every driver returns.

use std::fmt;

use crate::config::ConfigErrors;

/// A boxed error from a backend SDK or library, kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A stowage result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a storage operation can fail with, named by what a registry
/// can do about it. Backend SDK types appear only as a `source`.
///
/// Messages never contain secrets: drivers build them from paths, keys,
/// bucket names and status codes only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object at the path.
    #[error("not found: {path}")]
    NotFound {
        /// The path that was looked up.
        path: String,
        /// The backend's answer, when there was one.
        #[source]
        source: Option<BoxError>,
    },

    /// A storage path broke a rule.
    #[error("invalid storage path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// The rule it broke.
        reason: String,
    },

    /// A read range lies outside the object.
    #[error("invalid range {range} for {path} ({size} bytes)")]
    InvalidRange {
        /// The object.
        path: String,
        /// The range asked for.
        range: String,
        /// The object's size.
        size: u64,
    },

    /// A chunk of a resumable upload did not start where the upload stands.
    #[error("upload offset mismatch: chunk starts at {got}, upload has {expected} bytes")]
    OffsetMismatch {
        /// The offset the next chunk must start at (bytes received so far).
        expected: u64,
        /// The offset that was given.
        got: u64,
    },

    /// The content does not have the expected digest; nothing was stored.
    #[error("digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },

    /// The backend refused the operation.
    #[error("permission denied by {driver}: {message}")]
    PermissionDenied {
        /// The driver.
        driver: &'static str,
        /// What was refused.
        message: String,
        /// The request, where the backend has one.
        operation: Option<Box<Operation>>,
        /// The backend's answer.
        #[source]
        source: Option<BoxError>,
    },

    /// Credentials are missing, expired or invalid, or could not be had.
    #[error("{driver} credentials {problem}{}: {message}", if *retryable { " (transient)" } else { "" })]
    Credentials {
        /// The driver.
        driver: &'static str,
        /// What is wrong with them.
        problem: CredentialsProblem,
        /// Whether asking again may help: the credential service was
        /// unreachable, timed out, failed (5xx) or throttled, or the session
        /// expired and a new one can be had. A denied or invalid role is not
        /// retryable.
        retryable: bool,
        /// Details (never the secret itself).
        message: String,
        /// The request, where the backend has one.
        operation: Option<Box<Operation>>,
        /// The provider's or the backend's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The caller asked for something the operation cannot take (e.g. a
    /// presigned URL lifetime outside the backend's limits).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong and what is accepted.
        message: String,
    },

    /// The data stream the caller handed in failed (a client's broken
    /// request body): nothing is wrong with the backend, nothing was stored.
    #[error("the data to store failed: {message}")]
    InputStream {
        /// What happened.
        message: String,
        /// The stream's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The driver cannot do this operation.
    #[error("{operation} is not supported by the {driver} driver")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The driver.
        driver: &'static str,
    },

    /// The configuration has problems; all of them are listed.
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),

    /// A resumable upload state cannot be used (unknown version, tampered,
    /// or its temporary data is gone).
    #[error("invalid upload state: {reason}")]
    InvalidUploadState {
        /// Why.
        reason: String,
    },

    /// The backend failed. `retryable` says whether the same request may
    /// succeed when sent again (timeouts, throttling, 5xx).
    #[error("{driver} backend error{}: {message}", if *retryable { " (transient)" } else { "" })]
    Backend {
        /// The driver.
        driver: &'static str,
        /// Whether retrying may help.
        retryable: bool,
        /// What failed.
        message: String,
        /// The request, where the backend has one.
        operation: Option<Box<Operation>>,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

/// The backend request an error is about: operation, bucket and key as
/// fields, so callers need not parse messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operation {
    /// The backend's name of the operation, e.g. `UploadPart`.
    pub name: &'static str,
    /// The bucket (or container).
    pub bucket: String,
    /// The object key.
    pub key: String,
}

impl Operation {
    /// Operation `name` on `key` in `bucket`.
    pub fn new(name: &'static str, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name,
            bucket: bucket.into(),
            key: key.into(),
        }
    }
}

/// A credential provider's failure with its kind. Credential providers
/// (the STS driver's) return it so that the driver making the request can
/// report [`Error::Credentials`] with the right problem and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct CredentialsFailure {
    /// What is wrong.
    pub problem: CredentialsProblem,
    /// Details, never the secret itself.
    pub message: String,
    /// Whether asking again may help (the credential service was
    /// unreachable, timed out, failed or throttled).
    pub retryable: bool,
}

impl CredentialsFailure {
    /// A failure with its problem, message and whether asking again may
    /// help.
    pub fn new(problem: CredentialsProblem, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            problem,
            message: message.into(),
            retryable,
        }
    }

    /// The first `CredentialsFailure` in `err`'s source chain.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        find_in_chain(err)
    }
}

/// The first error of type `T` in `err`'s source chain (`err` included):
/// the one error-chain search every crate uses.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// What is wrong with a set of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsProblem {
    /// None were found.
    Missing,
    /// They were valid once and have expired.
    Expired,
    /// The backend does not accept them.
    Invalid,
}

impl fmt::Display for CredentialsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Invalid => "invalid",
        })
    }
}

/// The kind of an [`Error`], for matching without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::InvalidPath`].
    InvalidPath,
    /// [`Error::InvalidRange`].
    InvalidRange,
    /// [`Error::OffsetMismatch`].
    OffsetMismatch,
    /// [`Error::DigestMismatch`].
    DigestMismatch,
    /// [`Error::PermissionDenied`].
    PermissionDenied,
    /// [`Error::Credentials`].
    Credentials,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::Config`].
    InvalidConfig,
    /// [`Error::InvalidUploadState`].
    InvalidUploadState,
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::InputStream`].
    InputStream,
    /// [`Error::Backend`] with `retryable: true`: safe to retry.
    Transient,
    /// [`Error::Backend`] with `retryable: false`.
    Backend,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::InvalidPath { .. } => ErrorKind::InvalidPath,
            Self::InvalidRange { .. } => ErrorKind::InvalidRange,
            Self::OffsetMismatch { .. } => ErrorKind::OffsetMismatch,
            Self::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::Credentials { .. } => ErrorKind::Credentials,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::Config(_) => ErrorKind::InvalidConfig,
            Self::InvalidUploadState { .. } => ErrorKind::InvalidUploadState,
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::InputStream { .. } => ErrorKind::InputStream,
            Self::Backend {
                retryable: true, ..
            } => ErrorKind::Transient,
            Self::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Credentials { retryable, .. } => *retryable,
            _ => self.kind() == ErrorKind::Transient,
        }
    }

    /// The backend request this error is about, when the driver has one.
    pub fn operation(&self) -> Option<&Operation> {
        match self {
            Self::PermissionDenied { operation, .. }
            | Self::Credentials { operation, .. }
            | Self::Backend { operation, .. } => operation.as_deref(),
            _ => None,
        }
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }

    /// An [`Error::InputStream`]: the caller's data stream failed.
    pub fn input_stream(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::InputStream {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A [`Error::Backend`] with a source.
    pub fn backend(
        driver: &'static str,
        retryable: bool,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            driver,
            retryable,
            message: message.into(),
            operation: None,
            source: Some(source.into()),
        }
    }

    /// This error with `operation` recorded (on the variants that carry
    /// one; others are returned as they are).
    pub fn with_operation(mut self, op: Operation) -> Self {
        if let Self::PermissionDenied { operation, .. }
        | Self::Credentials { operation, .. }
        | Self::Backend { operation, .. } = &mut self
        {
            *operation = Some(Box::new(op));
        }
        self
    }

    /// A [`Error::NotFound`] for `path`.
    pub fn not_found(path: impl fmt::Display) -> Self {
        Self::NotFound {
            path: path.to_string(),
            source: None,
        }
    }

    /// The full chain of messages, `: `-separated, for logs and CLIs.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let msg = s.to_string();
            if !out.contains(&msg) {
                out.push_str(": ");
                out.push_str(&msg);
            }
            source = s.source();
        }
        out
    }
}

/// An [`std::io::Error`] for code that speaks `std::io` (an `AsyncRead`
/// over a blob, a `Read` adapter, a `?` in a function returning
/// `io::Result`). The kind says what the caller can do; the stowage error
/// stays inside (`get_ref`/`into_inner` and `downcast`), with its sources.
///
/// | stowage error | `io::ErrorKind` |
/// |---|---|
/// | `NotFound` | `NotFound` |
/// | `PermissionDenied`, `Credentials` | `PermissionDenied` |
/// | `InvalidPath`, `InvalidRange`, `InvalidArgument`, `OffsetMismatch`, `Config` | `InvalidInput` |
/// | `DigestMismatch`, `InvalidUploadState` | `InvalidData` |
/// | `Unsupported` | `Unsupported` |
/// | `InputStream`, `Backend` (retryable or not) | the kind of the first `io::Error` among its sources (e.g. `UnexpectedEof`, `TimedOut`), else `Other` |
///
/// `Interrupted` is never produced (it becomes `Other`): readers retry it
/// at once, in a loop. Whether a backend error is worth retrying is
/// [`Error::is_retryable`] on the error inside.
impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match &err {
            Error::NotFound { .. } => Io::NotFound,
            Error::PermissionDenied { .. } | Error::Credentials { .. } => Io::PermissionDenied,
            Error::InvalidPath { .. }
            | Error::InvalidRange { .. }
            | Error::InvalidArgument { .. }
            | Error::OffsetMismatch { .. }
            | Error::Config(_) => Io::InvalidInput,
            Error::DigestMismatch { .. } | Error::InvalidUploadState { .. } => Io::InvalidData,
            Error::Unsupported { .. } => Io::Unsupported,
            Error::InputStream { .. } | Error::Backend { .. } => {
                match find_in_chain::<std::io::Error>(&err).map(std::io::Error::kind) {
                    Some(kind) if kind != Io::Interrupted => kind,
                    _ => Io::Other,
                }
            }
        };
        std::io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn io_errors_carry_a_kind_and_the_stowage_error() {
        let denied = Error::PermissionDenied {
            driver: "s3",
            message: "AccessDenied".into(),
            operation: None,
            source: None,
        };
        let cases = [
            (Error::not_found("blobs/a"), io::ErrorKind::NotFound),
            (denied, io::ErrorKind::PermissionDenied),
            (
                Error::InvalidPath {
                    path: "/a".into(),
                    reason: "absolute".into(),
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                Error::InvalidRange {
                    path: "a".into(),
                    range: "9-".into(),
                    size: 1,
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                Error::invalid_argument("expiry"),
                io::ErrorKind::InvalidInput,
            ),
            (
                Error::DigestMismatch {
                    expected: "sha256:a".into(),
                    actual: "sha256:b".into(),
                },
                io::ErrorKind::InvalidData,
            ),
            (
                Error::Unsupported {
                    operation: "copy",
                    driver: "x",
                },
                io::ErrorKind::Unsupported,
            ),
            (
                Error::backend("s3", true, "SlowDown", "throttled"),
                io::ErrorKind::Other,
            ),
            (
                Error::backend(
                    "local",
                    false,
                    "reading a/b",
                    io::Error::from(io::ErrorKind::UnexpectedEof),
                ),
                io::ErrorKind::UnexpectedEof,
            ),
            (
                Error::backend(
                    "local",
                    false,
                    "reading a/b",
                    io::Error::from(io::ErrorKind::Interrupted),
                ),
                io::ErrorKind::Other,
            ),
        ];
        for (err, kind) in cases {
            let shown = err.to_string();
            let retryable = err.is_retryable();
            let io_err = io::Error::from(err);
            assert_eq!(io_err.kind(), kind, "{shown}");
            assert_eq!(io_err.to_string(), shown);
            let inner = io_err
                .get_ref()
                .and_then(|e| e.downcast_ref::<Error>())
                .expect("the stowage error is inside");
            assert_eq!(inner.is_retryable(), retryable, "{shown}");
        }
    }
}
