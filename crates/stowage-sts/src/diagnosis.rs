//! Why STS gave no credentials, in words an operator can act on: the
//! failure's kind, whether asking again may help, and after a refused
//! AssumeRole whether the user keys or the role's trust policy are at fault.
//! A TLS handshake refused on STS's certificate keeps its cause (the CA
//! that is not trusted) and is final, not "unreachable".

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::error::{DisplayErrorContext, SdkError};
use stowage_core::{find_in_chain, CredentialsProblem};

use crate::credentials::Describe;

/// A credential failure explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnosis {
    pub(crate) problem: CredentialsProblem,
    pub(crate) message: String,
    /// STS unreachable, timed out, 5xx or throttled: a later call may work.
    pub(crate) transient: bool,
}

/// The cause of a credential failure, in words an operator can act on.
pub(crate) fn explain(err: &CredentialsError, d: &Describe) -> Diagnosis {
    let role = &d.role;
    if let CredentialsError::CredentialsNotLoaded(_) = err {
        return Diagnosis {
            problem: CredentialsProblem::Missing,
            message: format!(
                "no credentials to call STS with ({}): give sts_user_access_key and \
                 sts_user_secret_key, or run where the default credential chain finds some",
                DisplayErrorContext(err)
            ),
            transient: false,
        };
    }
    // Our own web-identity provider already says precisely what is wrong
    // with the token file.
    if let Some(own) = find_in_chain::<crate::web_identity::TokenFileError>(err) {
        return Diagnosis {
            problem: own.problem,
            message: own.to_string(),
            transient: false,
        };
    }
    // A TLS handshake refused on STS's certificate (a private CA not
    // trusted, a name the certificate does not cover, a port without TLS):
    // the same on every call, and its cause is the message.
    if let Some(tls) = find_in_chain::<stowage_s3::TlsFailure>(err) {
        return Diagnosis {
            problem: CredentialsProblem::Missing,
            message: format!("cannot call STS: {tls}"),
            transient: false,
        };
    }
    let status = sdk_status(err);
    let text = DisplayErrorContext(err).to_string();
    let code = [
        "InvalidIdentityToken",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "NoSuchEntity",
        "MalformedPolicyDocument",
        "Throttling",
        "SlowDown",
    ]
    .into_iter()
    .find(|c| text.contains(c));
    let dispatch = find_dispatch(err);
    if let Some(kind) = dispatch {
        return Diagnosis {
            problem: CredentialsProblem::Missing,
            message: format!(
                "STS at {} is unreachable ({kind}); check sts_endpoint_url and the network",
                d.endpoint
            ),
            transient: true,
        };
    }
    let via = match d.mode {
        "web-identity" => format!(
            "the web identity token in {}",
            d.token_file.as_deref().unwrap_or("the token file")
        ),
        "assume-role" => "the IAM user's keys".to_string(),
        _ => "the profile's credentials".to_string(),
    };
    let (problem, message) = match (status, code) {
        (_, Some("InvalidIdentityToken")) => (
            CredentialsProblem::Invalid,
            format!("STS rejected {via} for role {role} (InvalidIdentityToken): the issuer is not a trusted OIDC provider, or the signature or audience is wrong"),
        ),
        (_, Some("ExpiredTokenException" | "ExpiredToken")) => (
            CredentialsProblem::Expired,
            format!("STS says {via} has expired (role {role})"),
        ),
        (_, Some("InvalidClientTokenId" | "InvalidAccessKeyId")) => (
            CredentialsProblem::Invalid,
            format!("STS does not know the access key of {via} (InvalidClientTokenId): check sts_user_access_key"),
        ),
        (_, Some("SignatureDoesNotMatch")) => (
            CredentialsProblem::Invalid,
            format!("STS rejected the signature made with {via} (SignatureDoesNotMatch): check sts_user_secret_key"),
        ),
        (Some(404), _) | (_, Some("NoSuchEntity")) => (
            CredentialsProblem::Invalid,
            format!("role {role} does not exist (STS answered {}); check sts_role_arn", status.unwrap_or(404)),
        ),
        (Some(403), _) | (_, Some("AccessDenied")) => (
            CredentialsProblem::Invalid,
            format!("STS refused to let {via} assume role {role} (HTTP 403): the role does not exist, or its trust policy does not name this principal{}",
                if d.mode == "assume-role" { " (or the external id is wrong)" } else { "" }),
        ),
        (Some(429), _) | (_, Some("Throttling" | "SlowDown")) => (
            CredentialsProblem::Missing,
            format!("STS at {} throttled the call to assume role {role}", d.endpoint),
        ),
        (Some(s), _) if s >= 500 => (
            CredentialsProblem::Missing,
            format!("STS at {} failed with HTTP {s} while assuming role {role}", d.endpoint),
        ),
        (Some(s), _) => (
            CredentialsProblem::Invalid,
            format!("STS answered HTTP {s} while assuming role {role} with {via}: {}", first_line(&text)),
        ),
        (None, _) => (
            CredentialsProblem::Invalid,
            format!("could not assume role {role} with {via}: {}", first_line(&text)),
        ),
    };
    let transient = problem == CredentialsProblem::Missing;
    Diagnosis {
        problem,
        message,
        transient,
    }
}

fn first_line(s: &str) -> String {
    s.chars().take(300).collect()
}

/// The HTTP status of an STS answer inside `err`, if there was one.
pub(crate) fn sdk_status(err: &CredentialsError) -> Option<u16> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    type Resp = aws_sdk_sts::config::http::HttpResponse;
    if let Some(e) = find_in_chain::<SdkError<AssumeRoleError, Resp>>(err) {
        return e.raw_response().map(|r| r.status().as_u16());
    }
    if let Some(e) = find_in_chain::<SdkError<AssumeRoleWithWebIdentityError, Resp>>(err) {
        return e.raw_response().map(|r| r.status().as_u16());
    }
    None
}

/// `Some(reason)` when STS could not be reached at all.
fn find_dispatch(err: &CredentialsError) -> Option<&'static str> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    type Resp = aws_sdk_sts::config::http::HttpResponse;
    fn kind<E>(e: &SdkError<E, Resp>) -> Option<&'static str> {
        match e {
            SdkError::DispatchFailure(d) if d.is_timeout() => Some("timed out"),
            SdkError::DispatchFailure(d) if d.is_io() => Some("connection failed"),
            SdkError::DispatchFailure(_) => Some("request could not be sent"),
            SdkError::TimeoutError(_) => Some("timed out"),
            _ => None,
        }
    }
    if let Some(e) = find_in_chain::<SdkError<AssumeRoleError, Resp>>(err) {
        return kind(e);
    }
    if let Some(e) = find_in_chain::<SdkError<AssumeRoleWithWebIdentityError, Resp>>(err) {
        return kind(e);
    }
    None
}

/// After STS refused AssumeRole with HTTP 403: are the user keys wrong, or
/// does the role not trust the user? AWS answers GetCallerIdentity for any
/// valid keys; servers without it (Ceph RGW) are asked ListBuckets.
pub(crate) async fn diagnose_user_keys(
    probe: &(aws_sdk_sts::Client, aws_sdk_s3::Client),
) -> String {
    let (sts, s3) = probe;
    let keys_ok = match sts.get_caller_identity().send().await {
        Ok(who) => Some(format!(
            "the user keys are valid (they belong to {}), so the role's trust policy does not allow this user",
            who.arn().unwrap_or("an IAM user")
        )),
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(400) | Some(403) => None,
            _ => match s3.list_buckets().send().await {
                Ok(_) => Some(
                    "the user keys are valid (S3 accepts them), so the role's trust policy does not allow this user"
                        .to_string(),
                ),
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(403) => None,
                Err(_) => {
                    return "could not tell whether the user keys or the role's trust policy is at fault".into()
                }
            },
        },
    };
    keys_ok.unwrap_or_else(|| {
        "the user keys themselves are rejected: check sts_user_access_key and sts_user_secret_key".into()
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use stowage_core::config::Secret;
    use stowage_s3::S3Config;

    use crate::config::{StsConfig, StsSource};

    /// STS on a port that answers plain HTTP to a TLS handshake: one call,
    /// no retry, and a message with the endpoint and the TLS cause instead
    /// of "unreachable".
    #[tokio::test]
    async fn a_tls_failure_keeps_its_cause_and_is_final() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(20) {
                let Ok(mut stream) = stream else { continue };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut hello = [0u8; 1024];
                let _ = stream.read(&mut hello);
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        let endpoint = format!("https://127.0.0.1:{port}");
        let s3 = S3Config::new("bkt").with_endpoint(&endpoint);
        let mut config = StsConfig::assume_role(s3, "arn:aws:iam::123456789012:role/quay");
        config.source = StsSource::AssumeRole {
            user_access_key: Some("AKIDEXAMPLE".into()),
            user_secret_key: Some(Secret::new("not-a-real-secret")),
        };
        let (tracked, stats) = crate::credentials::provider(&config).await;
        let started = Instant::now();
        let failure = tracked.fetch().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!failure.retryable, "{}", failure.message);
        assert!(
            failure.message.contains(&endpoint)
                && failure.message.contains("does not answer TLS")
                && !failure.message.contains("unreachable"),
            "{}",
            failure.message
        );
        assert_eq!(stats.sts_calls(), 1);
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one handshake, no retry"
        );
    }
}
