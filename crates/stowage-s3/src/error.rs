//! S3 errors onto stowage's kinds, in one place: status and error code to
//! kind and retryability. Messages carry the operation, bucket and key,
//! never credentials; a TLS handshake refused on the endpoint's
//! certificate names the endpoint and is final.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use stowage_core::{CredentialsFailure, CredentialsProblem, Error};

pub(crate) const DRIVER: &str = "s3";

/// What a request was about, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    pub(crate) name: &'static str,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
}

/// Converts any SDK error, recording the operation, bucket and key.
pub(crate) fn from_sdk<E>(err: SdkError<E, HttpResponse>, op: Op<'_>, path: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    convert(err, op, path).with_operation(op.operation())
}

impl Op<'_> {
    /// The operation, bucket and key as an error's fields.
    pub(crate) fn operation(&self) -> stowage_core::Operation {
        stowage_core::Operation::new(self.name, self.bucket, self.key)
    }
}

fn convert<E>(err: SdkError<E, HttpResponse>, op: Op<'_>, path: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = match &err {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        SdkError::ResponseError(r) => Some(r.raw().status().as_u16()),
        _ => None,
    };
    let code = err.code().map(str::to_string);
    let message = err.message().map(str::to_string);
    let what = format!("{} s3://{}/{}", op.name, op.bucket, op.key);
    // A credential provider (STS) said what is wrong: keep its words.
    if let Some(failure) = CredentialsFailure::find(&err) {
        return Error::Credentials {
            driver: DRIVER,
            problem: failure.problem,
            retryable: failure.retryable,
            message: format!("{what}: {}", failure.message),
            operation: None,
            source: Some(Box::new(err)),
        };
    }
    // Any other failure of a credential source (the embedder's): its kind
    // and retryability, in its words.
    if let Some(source_error) = stowage_core::find_in_chain::<Error>(&err) {
        let (problem, retryable) = match source_error {
            Error::Credentials {
                problem, retryable, ..
            } => (*problem, *retryable),
            other => (CredentialsProblem::Missing, other.is_retryable()),
        };
        let message = format!("{what}: {source_error}");
        return Error::Credentials {
            driver: DRIVER,
            problem,
            retryable,
            message,
            operation: None,
            source: Some(Box::new(err)),
        };
    }
    if matches!(err, SdkError::DispatchFailure(_)) {
        // Lasting: the endpoint's certificate, or a port without TLS.
        if let Some(tls) = crate::tls::TlsFailure::of(&err) {
            return Error::backend(DRIVER, false, format!("{what}: {tls}"), err);
        }
    }
    match &err {
        SdkError::TimeoutError(_) => {
            return Error::backend(DRIVER, true, format!("{what}: timed out"), err);
        }
        SdkError::DispatchFailure(d) => {
            let detail = DisplayErrorContext(&err).to_string();
            if detail.contains("credentials") || detail.contains("identity") {
                return Error::Credentials {
                    driver: DRIVER,
                    problem: CredentialsProblem::Missing,
                    retryable: false,
                    message: format!("{what}: no usable credentials ({})", short(&detail)),
                    operation: None,
                    source: Some(Box::new(err)),
                };
            }
            let reason = if d.is_timeout() {
                "timed out"
            } else {
                "cannot reach the endpoint"
            };
            return Error::backend(DRIVER, true, format!("{what}: {reason}"), err);
        }
        SdkError::ConstructionFailure(_) => {
            let detail = DisplayErrorContext(&err).to_string();
            if detail.contains("credentials") || detail.contains("identity") {
                return Error::Credentials {
                    driver: DRIVER,
                    problem: CredentialsProblem::Missing,
                    retryable: false,
                    message: format!("{what}: no usable credentials ({})", short(&detail)),
                    operation: None,
                    source: Some(Box::new(err)),
                };
            }
            return Error::backend(
                DRIVER,
                false,
                format!("{what}: request could not be built"),
                err,
            );
        }
        _ => {}
    }
    classify(
        status,
        code.as_deref(),
        message.as_deref(),
        &what,
        path,
        err,
    )
}

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

/// The mapping table: (status, code) to kind.
pub(crate) fn classify(
    status: Option<u16>,
    code: Option<&str>,
    message: Option<&str>,
    what: &str,
    path: &str,
    source: impl Into<stowage_core::BoxError>,
) -> Error {
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => format!("HTTP {}", status.unwrap_or(0)),
    };
    let msg = format!("{what}: {detail}");
    match (status.unwrap_or(0), code.unwrap_or("")) {
        (_, "NoSuchBucket") => Error::backend(
            DRIVER,
            false,
            format!("{what}: the bucket does not exist"),
            source,
        ),
        (_, "NoSuchKey") | (404, _) => Error::NotFound {
            path: path.to_string(),
            source: Some(source.into()),
        },
        (_, "ExpiredToken") | (_, "TokenRefreshRequired") | (_, "RequestExpired") => {
            // A new session (the cache reloads it) may well work.
            Error::Credentials {
                driver: DRIVER,
                problem: CredentialsProblem::Expired,
                retryable: true,
                message: msg,
                operation: None,
                source: Some(source.into()),
            }
        }
        (_, "InvalidAccessKeyId")
        | (_, "SignatureDoesNotMatch")
        | (_, "InvalidToken")
        | (_, "InvalidClientTokenId") => Error::Credentials {
            driver: DRIVER,
            problem: CredentialsProblem::Invalid,
            retryable: false,
            message: msg,
            operation: None,
            source: Some(source.into()),
        },
        (_, "AuthorizationHeaderMalformed") | (_, "PermanentRedirect") | (301, _) => {
            Error::backend(
                DRIVER,
                false,
                format!("{msg} (is s3_region the bucket's region?)"),
                source,
            )
        }
        (412, _) | (_, "PreconditionFailed") => Error::backend(
            DRIVER,
            false,
            format!("{msg} (the object was replaced since it was read)"),
            source,
        ),
        (403, _) | (_, "AccessDenied") => Error::PermissionDenied {
            driver: DRIVER,
            message: msg,
            operation: None,
            source: Some(source.into()),
        },
        (_, "SlowDown")
        | (_, "Throttling")
        | (_, "ThrottlingException")
        | (_, "RequestTimeout")
        | (_, "InternalError")
        | (_, "ServiceUnavailable")
        // Bytes damaged or cut on the way: the same request may pass.
        | (_, "BadDigest")
        | (_, "XAmzContentSHA256Mismatch")
        | (_, "IncompleteBody")
        | (408, _)
        | (429, _) => Error::backend(DRIVER, true, msg, source),
        (s, _) if s >= 500 => Error::backend(DRIVER, true, msg, source),
        _ => Error::backend(DRIVER, false, msg, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::ErrorKind;

    fn kind(status: u16, code: &str) -> ErrorKind {
        classify(Some(status), Some(code), None, "op", "p", "x").kind()
    }

    #[test]
    fn statuses_and_codes_map_to_kinds() {
        assert_eq!(kind(404, "NoSuchKey"), ErrorKind::NotFound);
        assert_eq!(kind(404, "NotFound"), ErrorKind::NotFound);
        assert_eq!(kind(404, "NoSuchBucket"), ErrorKind::Backend);
        assert_eq!(kind(403, "AccessDenied"), ErrorKind::PermissionDenied);
        assert_eq!(kind(400, "ExpiredToken"), ErrorKind::Credentials);
        assert_eq!(kind(403, "InvalidAccessKeyId"), ErrorKind::Credentials);
        assert_eq!(kind(403, "SignatureDoesNotMatch"), ErrorKind::Credentials);
        assert_eq!(kind(503, "SlowDown"), ErrorKind::Transient);
        assert_eq!(kind(500, "InternalError"), ErrorKind::Transient);
        assert_eq!(
            kind(200, "InternalError"),
            ErrorKind::Transient,
            "CompleteMultipartUpload's 200 error"
        );
        assert_eq!(kind(502, ""), ErrorKind::Transient);
        assert_eq!(kind(400, "InvalidArgument"), ErrorKind::Backend);
        let e = classify(Some(301), Some("PermanentRedirect"), None, "op", "p", "x").to_string();
        assert!(e.contains("s3_region"), "{e}");
    }

    #[test]
    fn an_untrusted_certificate_is_final_and_says_so() {
        use aws_sdk_s3::operation::put_object::PutObjectError;
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let rejected = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let err: SdkError<PutObjectError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(rejected)));
        let op = Op {
            name: "PutObject",
            bucket: "bkt",
            key: "k",
        };
        let e = from_sdk(err, op, "k");
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.contains("PutObject s3://bkt/k") && text.contains("CA that is not trusted"),
            "{text}"
        );
    }
}
