//! The CloudFront URL and cookie signer, usable on its own (no S3 in here).
//!
//! ```
//! use stowage_cloudfront::signer::{CloudFrontSigner, PrivateKey, normalize_url};
//! # fn demo(pem: &str) -> Result<(), stowage_cloudfront::signer::SignError> {
//! let signer = CloudFrontSigner::new("K2JCJMDEHXQW5F", PrivateKey::from_pem(pem)?);
//! let url = normalize_url("https://d111111abcdef8.cloudfront.net/blobs/a b")?;
//! let signed = signer.signed_url_canned(&url, 1_900_000_000)?;
//! assert!(signed.contains("Key-Pair-Id=K2JCJMDEHXQW5F"));
//! # Ok(()) }
//! ```
//!
//! Signatures are made by one of two backends, chosen at build time (see
//! [`SIGNING_BACKEND`]): aws-lc through aws-lc-rs (the default feature
//! `aws-lc`), or the pure-Rust `rsa`/`p256` crates (feature `pure-rust`,
//! which wins when both are on). Keys, errors and output are the same.

#[cfg(all(feature = "aws-lc", not(feature = "pure-rust")))]
mod backend_aws_lc;
#[cfg(feature = "pure-rust")]
mod backend_pure;
mod der;
mod key;
mod key_id;
mod policy;
mod url;

#[cfg(all(feature = "aws-lc", not(feature = "pure-rust")))]
use backend_aws_lc as backend;
#[cfg(feature = "pure-rust")]
use backend_pure as backend;

#[cfg(not(any(feature = "aws-lc", feature = "pure-rust")))]
compile_error!(
    "stowage-cloudfront needs a signing backend: the `aws-lc` feature (default) or `pure-rust`"
);

use std::sync::Arc;

/// The signing backend this build uses: `"aws-lc"` (default) or
/// `"pure-rust"` (the `pure-rust` feature).
pub const SIGNING_BACKEND: &str = backend::NAME;

pub use key::{HashAlgorithm, KeyKind, PrivateKey};
pub(crate) use key_id::resolve_mode;
pub use key_id::{check_key_for_mode, mode_of_id, KeyIdShape, SigningMode};
pub use policy::{IpCidr, Policy};
pub use url::{
    cloudfront_base64, decode_cloudfront_base64, encode_key_path, encode_query_component,
    normalize_url,
};

/// Why a URL or cookie could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The URL cannot be signed as given.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The policy is not one CloudFront accepts.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// The private key is missing, unreadable or unusable.
    #[error("private key {source_name}: {reason}")]
    Key {
        /// The file (or "PEM text").
        source_name: String,
        /// What is wrong and what to supply.
        reason: String,
    },
    /// The key failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs CloudFront URLs and cookies with one key. Cheap to clone; the key
/// is parsed once and shared.
#[derive(Debug, Clone)]
pub struct CloudFrontSigner {
    key_id: String,
    key: Arc<PrivateKey>,
    hash: HashAlgorithm,
}

/// The pieces of a signature, for URLs and cookies alike.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedPolicy {
    /// The policy JSON that was signed.
    pub policy_json: String,
    /// The signature in CloudFront base64.
    pub signature: String,
}

impl CloudFrontSigner {
    /// A signer for `key_id` (an `APKA…` key pair id or a `K…` public key
    /// id) with `key`, signing over SHA-1.
    pub fn new(key_id: impl Into<String>, key: PrivateKey) -> Self {
        Self {
            key_id: key_id.into(),
            key: Arc::new(key),
            hash: HashAlgorithm::Sha1,
        }
    }

    /// Signs over `hash` instead (SHA-256 adds `Hash-Algorithm=SHA256`).
    pub fn with_hash(mut self, hash: HashAlgorithm) -> Self {
        self.hash = hash;
        self
    }

    /// The key id sent as `Key-Pair-Id`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The hash signatures are made over.
    pub fn hash(&self) -> HashAlgorithm {
        self.hash
    }

    /// Signs a policy.
    ///
    /// # Errors
    /// [`SignError::Signing`].
    pub fn sign_policy(&self, policy: &Policy) -> Result<SignedPolicy, SignError> {
        if policy
            .date_greater_than
            .is_some_and(|nb| nb >= policy.date_less_than)
        {
            return Err(SignError::InvalidPolicy(format!(
                "not-before {} is not before the expiry {}",
                policy.date_greater_than.unwrap_or_default(),
                policy.date_less_than
            )));
        }
        let policy_json = policy.to_json();
        let signature = self.key.sign(policy_json.as_bytes(), self.hash)?;
        Ok(SignedPolicy {
            policy_json,
            signature: cloudfront_base64(&signature),
        })
    }

    /// A canned-policy URL: `url` (already normalised, see
    /// [`normalize_url`]) plus `Expires`, `Signature`, `Key-Pair-Id` (and
    /// `Hash-Algorithm` for SHA-256). The signed text is exactly `url`.
    ///
    /// # Errors
    /// [`SignError::InvalidPolicy`] when `url` has a wildcard (canned
    /// policies cannot), [`SignError::Signing`].
    pub fn signed_url_canned(&self, url: &str, expires: i64) -> Result<String, SignError> {
        if url.contains('*') {
            return Err(SignError::InvalidPolicy(
                "a canned policy cannot cover a wildcard resource; use a custom policy".into(),
            ));
        }
        let signed = self.sign_policy(&Policy::canned(url, expires))?;
        let expires = expires.to_string();
        Ok(url::append_params(
            url,
            &self.params("Expires", &expires, &signed),
        ))
    }

    /// A custom-policy URL: `url` plus `Policy`, `Signature`, `Key-Pair-Id`
    /// (and `Hash-Algorithm` for SHA-256). `policy.resource` may be `url` or
    /// a wildcard pattern covering it.
    ///
    /// # Errors
    /// [`SignError::InvalidPolicy`], [`SignError::Signing`].
    pub fn signed_url_custom(&self, url: &str, policy: &Policy) -> Result<String, SignError> {
        let signed = self.sign_policy(policy)?;
        let encoded = cloudfront_base64(signed.policy_json.as_bytes());
        Ok(url::append_params(
            url,
            &self.params("Policy", &encoded, &signed),
        ))
    }

    /// Signed cookies for `policy`: canned (`CloudFront-Expires`) when
    /// `canned` is set and the policy allows it, else custom
    /// (`CloudFront-Policy`). Each is `(name, value)`.
    ///
    /// # Errors
    /// [`SignError::InvalidPolicy`], [`SignError::Signing`].
    pub fn signed_cookies(
        &self,
        policy: &Policy,
        canned: bool,
    ) -> Result<Vec<(&'static str, String)>, SignError> {
        if canned && !policy.is_canned() {
            return Err(SignError::InvalidPolicy(
                "a canned policy has only a resource without wildcards and an expiry; \
                 use a custom policy for not-before, source IP or wildcards"
                    .into(),
            ));
        }
        let signed = self.sign_policy(policy)?;
        let mut cookies = vec![if canned {
            ("CloudFront-Expires", policy.date_less_than.to_string())
        } else {
            (
                "CloudFront-Policy",
                cloudfront_base64(signed.policy_json.as_bytes()),
            )
        }];
        cookies.push(("CloudFront-Signature", signed.signature));
        cookies.push(("CloudFront-Key-Pair-Id", self.key_id.clone()));
        if self.hash == HashAlgorithm::Sha256 {
            cookies.push(("CloudFront-Hash-Algorithm", "SHA256".into()));
        }
        Ok(cookies)
    }

    fn params<'a>(
        &'a self,
        first: &'static str,
        value: &'a str,
        signed: &'a SignedPolicy,
    ) -> Vec<(&'static str, &'a str)> {
        let mut params = vec![
            (first, value),
            ("Signature", signed.signature.as_str()),
            ("Key-Pair-Id", self.key_id.as_str()),
        ];
        if self.hash == HashAlgorithm::Sha256 {
            params.push(("Hash-Algorithm", "SHA256"));
        }
        params
    }
}

#[cfg(test)]
mod tests;
