//! `AssumeRoleWithWebIdentity` with a token file read again at every
//! refresh (Kubernetes rotates projected service-account tokens in place).
//!
//! aws-config's `WebIdentityTokenCredentialsProvider` reads the file the same
//! way, but takes its STS endpoint only from the process environment and
//! cannot ask for a session length; this provider calls the same SDK
//! operation (`aws_sdk_sts::Client::assume_role_with_web_identity`) with the
//! configured endpoint and duration, and checks the token file first so
//! that a missing, unreadable, empty or expired token gets a message saying
//! which.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use base64::Engine;
use stowage_core::CredentialsProblem;

/// A problem with the token file itself, found before calling STS.
#[derive(Debug)]
pub(crate) struct TokenFileError {
    pub(crate) problem: CredentialsProblem,
    message: String,
}

impl std::fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenFileError {}

/// Assumes a role with the web identity token in a file.
#[derive(Debug)]
pub(crate) struct WebIdentityProvider {
    sts: aws_sdk_sts::Client,
    token_file: PathBuf,
    role_arn: String,
    session_name: String,
    duration: Duration,
}

impl WebIdentityProvider {
    pub(crate) fn new(
        sts: aws_sdk_sts::Client,
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        duration: Duration,
    ) -> Self {
        Self {
            sts,
            token_file,
            role_arn,
            session_name,
            duration,
        }
    }

    async fn load(&self) -> Result<Credentials, CredentialsError> {
        let token = read_token(&self.token_file)
            .await
            .map_err(CredentialsError::provider_error)?;
        let answer = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .duration_seconds(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX))
            .web_identity_token(token)
            .send()
            .await
            .map_err(CredentialsError::provider_error)?;
        let c = answer.credentials.ok_or_else(|| {
            CredentialsError::unhandled(
                "STS answered AssumeRoleWithWebIdentity without credentials",
            )
        })?;
        let expiry = SystemTime::try_from(c.expiration).map_err(|_| {
            CredentialsError::unhandled("STS answered with an expiry that is not a valid time")
        })?;
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "stowage-web-identity",
        ))
    }
}

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

/// Reads and sanity-checks the token: present, readable, not empty, and
/// (when it is a JWT with `exp`) not expired. The token is never part of a
/// message.
pub(crate) async fn read_token(path: &std::path::Path) -> Result<String, TokenFileError> {
    let shown = path.display();
    let bytes = tokio::fs::read(path).await.map_err(|e| TokenFileError {
        problem: CredentialsProblem::Missing,
        message: match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("web identity token file {shown} does not exist")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("web identity token file {shown} is not readable by this process (permission denied)")
            }
            _ => format!("web identity token file {shown} could not be read: {e}"),
        },
    })?;
    let token = String::from_utf8(bytes)
        .map_err(|_| TokenFileError {
            problem: CredentialsProblem::Invalid,
            message: format!("web identity token file {shown} is not text"),
        })?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(TokenFileError {
            problem: CredentialsProblem::Missing,
            message: format!("web identity token file {shown} is empty"),
        });
    }
    if let Some(exp) = jwt_expiry(&token) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if exp <= now {
            let when = chrono::DateTime::from_timestamp(exp as i64, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| exp.to_string());
            return Err(TokenFileError {
                problem: CredentialsProblem::Expired,
                message: format!(
                    "web identity token in {shown} expired at {when}; whatever writes the file \
                     (the kubelet for projected service-account tokens) has stopped refreshing it"
                ),
            });
        }
    }
    Ok(token)
}

/// The `exp` claim of a JWT, read without verifying it (STS verifies).
fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(exp: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"x","exp":{exp}}}"#));
        format!("{header}.{claims}.c2lnbmF0dXJl")
    }

    #[tokio::test]
    async fn token_file_problems_are_named_without_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = read_token(&missing).await.unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_token(&empty)
            .await
            .unwrap_err()
            .to_string()
            .contains("is empty"));

        let expired = dir.path().join("expired");
        let token = jwt(1_000_000_000);
        std::fs::write(&expired, &token).unwrap();
        let e = read_token(&expired).await.unwrap_err();
        assert_eq!(e.problem, CredentialsProblem::Expired);
        assert!(e.to_string().contains("expired at 2001-09-09"), "{e}");
        assert!(!e.to_string().contains(&token));

        let good = dir.path().join("good");
        let token = jwt(u64::from(u32::MAX));
        std::fs::write(&good, format!("{token}\n")).unwrap();
        assert_eq!(read_token(&good).await.unwrap(), token);
    }

    #[tokio::test]
    async fn unreadable_token_file() {
        // A directory where the file should be: the read fails (as it does
        // for a file this user may not read; root may read any file).
        let dir = tempfile::tempdir().unwrap();
        let e = read_token(dir.path()).await.unwrap_err();
        assert_eq!(e.problem, CredentialsProblem::Missing);
        assert!(e.to_string().contains("could not be read"), "{e}");
    }
}
