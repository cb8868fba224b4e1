//! Azure errors onto stowage's kinds, in one place: [`Failure`] is why one
//! attempt of a request failed (the driver's own error type), and
//! [`into_error`] is the one conversion into stowage's [`Error`], from the
//! status and the error code (`x-ms-error-code`). Messages carry the
//! operation, container and blob, never credentials: the service's message
//! is dropped for authentication failures (it may quote the signature) and
//! URLs (which may carry a SAS) are never part of one.

use std::fmt;
use std::time::Duration;

use stowage_core::{CredentialsProblem, Error};

/// The driver's name in errors, logs and metrics.
pub(crate) const DRIVER: &str = "azure";

/// What a request was about, for messages and the error's operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    /// The REST operation, e.g. `PutBlock`.
    pub(crate) name: &'static str,
    /// The container.
    pub(crate) container: &'a str,
    /// The blob name (empty for container operations).
    pub(crate) blob: &'a str,
}

impl Op<'_> {
    /// The operation, container and blob as an error's fields.
    pub(crate) fn operation(&self) -> stowage_core::Operation {
        stowage_core::Operation::new(self.name, self.container, self.blob)
    }

    /// `PutBlock container/blob`, for messages.
    pub(crate) fn what(&self) -> String {
        format!("{} {}/{}", self.name, self.container, self.blob)
    }
}

/// An error status the service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusFailure {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The error code (`x-ms-error-code`, else the body's `<Code>`).
    pub(crate) code: Option<String>,
    /// The first line of the body's `<Message>`; `None` for
    /// authentication failures.
    pub(crate) message: Option<String>,
    /// The answer's `Content-Range` (a 416 names the blob's size there).
    pub(crate) content_range: Option<String>,
}

impl StatusFailure {
    /// Whether the error code is `code`.
    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Why one attempt of a request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The service answered with an error status.
    Status(StatusFailure),
    /// No answer: the connection was refused, reset or closed, or TLS or
    /// name resolution failed (the error carries no URL).
    Transport(reqwest::Error),
    /// No answer within the attempt's deadline.
    Timeout(Duration),
    /// The request could not be built (never sent).
    Invalid(String),
}

impl Failure {
    /// The status failure, when the service answered.
    pub(crate) fn status(&self) -> Option<&StatusFailure> {
        match self {
            Self::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the service answered `status`.
    pub(crate) fn has_status(&self, status: u16) -> bool {
        self.status().is_some_and(|s| s.status == status)
    }

    /// Whether the service answered with error code `code`.
    pub(crate) fn has_code(&self, code: &str) -> bool {
        self.status().is_some_and(|s| s.is(code))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => {
                write!(f, "HTTP {}", s.status)?;
                if let Some(code) = &s.code {
                    write!(f, " {code}")?;
                }
                if let Some(message) = &s.message {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Self::Transport(e) => f.write_str(&error_chain(e)),
            Self::Timeout(d) => write!(f, "no answer within {} s", d.as_secs()),
            Self::Invalid(why) => write!(f, "the request could not be built: {why}"),
        }
    }
}

impl std::error::Error for Failure {}

/// An error and its sources, `: `-separated, at most 300 characters.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.chars().take(300).collect()
}

/// Whether `code` says the credentials were refused: Azure's
/// `AuthenticationFailed`, and `AuthorizationFailure`, which Azurite
/// answers to a wrong key (on Azure it also means the account's network
/// rules refused the request).
pub(crate) fn is_auth_code(code: &str) -> bool {
    matches!(code, "AuthenticationFailed" | "AuthorizationFailure")
}

/// The one conversion of a failed request into stowage's error, recording
/// the operation, container and blob. `path` is the storage path the
/// request was for (what a [`Error::NotFound`] names).
pub(crate) fn into_error(failure: Failure, op: Op<'_>, path: &str) -> Error {
    let what = op.what();
    let error = match failure.status().map(|s| (s.status, s.code.clone())) {
        Some((status, code)) => {
            classify(status, code.as_deref(), &what, op.container, path, failure)
        }
        None => {
            // Timeouts and connection failures are worth another attempt;
            // a request that could not be built is not.
            let retryable = !matches!(failure, Failure::Invalid(_));
            let msg = match failure {
                Failure::Transport(_) => format!("{what}: cannot reach the endpoint"),
                _ => format!("{what}: {failure}"),
            };
            Error::backend(DRIVER, retryable, msg, failure)
        }
    };
    error.with_operation(op.operation())
}

/// The mapping table: (status, code) to kind and retryability.
fn classify(
    status: u16,
    code: Option<&str>,
    what: &str,
    container: &str,
    path: &str,
    source: Failure,
) -> Error {
    let detail = source.to_string();
    let msg = format!("{what}: {detail}");
    let retryable = source.status().is_some_and(crate::retry::retryable_answer);
    match (status, code.unwrap_or("")) {
        (_, "ContainerNotFound") => Error::backend(
            DRIVER,
            false,
            format!("{what}: the container {container} does not exist (check azure_container)"),
            source,
        ),
        (404, _) => Error::NotFound {
            path: path.to_string(),
            source: Some(Box::new(source)),
        },
        (_, c) if is_auth_code(c) => Error::Credentials {
            driver: DRIVER,
            problem: CredentialsProblem::Invalid,
            retryable: false,
            message: format!(
                "{what}: the service refused the credentials ({c}): check azure_account_key, \
                 or the signature, start and expiry of sas_token"
            ),
            operation: None,
            source: Some(Box::new(source)),
        },
        (412, _) | (_, "ConditionNotMet") | (_, "SourceConditionNotMet") => Error::backend(
            DRIVER,
            false,
            format!("{msg} (the blob was replaced since it was read)"),
            source,
        ),
        (403, _) => Error::PermissionDenied {
            driver: DRIVER,
            message: msg,
            operation: None,
            source: Some(Box::new(source)),
        },
        _ => Error::backend(DRIVER, retryable, msg, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::ErrorKind;

    fn failure(status: u16, code: &str, message: Option<&str>) -> Failure {
        Failure::Status(StatusFailure {
            status,
            code: (!code.is_empty()).then(|| code.to_string()),
            message: message.map(str::to_string),
            content_range: None,
        })
    }

    fn kind(status: u16, code: &str) -> ErrorKind {
        let op = Op {
            name: "GetBlob",
            container: "c",
            blob: "b",
        };
        into_error(failure(status, code, None), op, "p").kind()
    }

    #[test]
    fn statuses_and_codes_map_to_kinds() {
        assert_eq!(kind(404, "BlobNotFound"), ErrorKind::NotFound);
        assert_eq!(kind(404, ""), ErrorKind::NotFound);
        assert_eq!(kind(404, "ContainerNotFound"), ErrorKind::Backend);
        assert_eq!(kind(403, "AuthenticationFailed"), ErrorKind::Credentials);
        assert_eq!(kind(403, "AuthorizationFailure"), ErrorKind::Credentials);
        assert_eq!(
            kind(403, "AuthorizationPermissionMismatch"),
            ErrorKind::PermissionDenied
        );
        assert_eq!(kind(412, "ConditionNotMet"), ErrorKind::Backend);
        assert_eq!(kind(503, "ServerBusy"), ErrorKind::Transient);
        assert_eq!(kind(500, "OperationTimedOut"), ErrorKind::Transient);
        assert_eq!(kind(500, "InternalError"), ErrorKind::Transient);
        assert_eq!(kind(429, ""), ErrorKind::Transient);
        assert_eq!(kind(400, "Md5Mismatch"), ErrorKind::Transient);
        assert_eq!(kind(400, "InvalidBlockList"), ErrorKind::Backend);
        assert_eq!(kind(400, "InvalidQueryParameterValue"), ErrorKind::Backend);
    }

    #[test]
    fn messages_name_the_request_and_never_the_credentials() {
        let op = Op {
            name: "PutBlob",
            container: "quay",
            blob: "r/blobs/x",
        };
        let e = into_error(failure(404, "ContainerNotFound", None), op, "blobs/x");
        let text = e.to_string();
        assert!(
            text.contains("PutBlob quay/r/blobs/x") && text.contains("does not exist"),
            "{text}"
        );
        assert_eq!(e.operation().map(|o| o.bucket.as_str()), Some("quay"));
        let e = into_error(failure(403, "AuthenticationFailed", None), op, "blobs/x");
        assert!(e.to_string().contains("azure_account_key"), "{e}");
        let e = into_error(failure(404, "BlobNotFound", None), op, "blobs/x");
        assert!(
            matches!(&e, Error::NotFound { path, .. } if path == "blobs/x"),
            "{e}"
        );
    }
}
