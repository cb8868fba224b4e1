//! Key ids and signing modes: a legacy CloudFront key pair (`APKA…`, made
//! by the root account, listed as a distribution's trusted signer) versus a
//! public key in a trusted key group (`K…`, uploaded by an IAM user).

use std::fmt;

use super::{KeyKind, PrivateKey, SignError};

/// How a distribution trusts signers, chosen per configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SigningMode {
    /// Inferred from the key id's shape.
    #[default]
    Auto,
    /// A root-account CloudFront key pair (trusted signers), `APKA…` id.
    LegacyKeyPair,
    /// Public keys of a trusted key group, `K…` ids.
    KeyGroup,
}

impl SigningMode {
    /// Parses `auto`, `legacy_key_pair`, `key_group`.
    ///
    /// # Errors
    /// A message listing the accepted values.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "legacy_key_pair" => Ok(Self::LegacyKeyPair),
            "key_group" => Ok(Self::KeyGroup),
            other => Err(format!(
                "{other:?} is not a signing mode: auto, legacy_key_pair or key_group"
            )),
        }
    }

    /// The config value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::LegacyKeyPair => "legacy_key_pair",
            Self::KeyGroup => "key_group",
        }
    }
}

impl fmt::Display for SigningMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a key id looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyIdShape {
    /// `APKA` followed by uppercase letters and digits: a legacy key pair.
    LegacyKeyPair,
    /// `K` followed by uppercase letters and digits: a key group's public key.
    PublicKey,
    /// Neither.
    Unknown,
}

impl KeyIdShape {
    /// The shape of `id`.
    pub fn of(id: &str) -> Self {
        let tail_ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        if let Some(t) = id.strip_prefix("APKA") {
            if tail_ok(t) {
                return Self::LegacyKeyPair;
            }
        }
        match id.strip_prefix('K') {
            Some(t) if tail_ok(t) => Self::PublicKey,
            _ => Self::Unknown,
        }
    }
}

/// Checks `id` against `mode` and resolves `Auto`; the error explains the
/// difference between the two kinds of id and what to supply instead.
///
/// # Errors
/// A sentence for the operator.
pub(crate) fn resolve_mode(mode: SigningMode, id: &str) -> Result<SigningMode, String> {
    let shape = KeyIdShape::of(id);
    match (mode, shape) {
        (SigningMode::Auto, KeyIdShape::LegacyKeyPair) => Ok(SigningMode::LegacyKeyPair),
        (SigningMode::Auto, KeyIdShape::PublicKey) => Ok(SigningMode::KeyGroup),
        (SigningMode::LegacyKeyPair, KeyIdShape::LegacyKeyPair)
        | (SigningMode::KeyGroup, KeyIdShape::PublicKey) => Ok(mode),
        (SigningMode::LegacyKeyPair, KeyIdShape::PublicKey) => Err(format!(
            "{id:?} is the id of a public key in a key group (K...), but the mode is \
             legacy_key_pair, which needs the id of a root-account CloudFront key pair \
             (APKA...) listed as the distribution's trusted signer. Set \
             cloudfront_signing_mode: key_group (and list the key under \
             cloudfront_key_group_keys) if the distribution trusts a key group"
        )),
        (SigningMode::KeyGroup, KeyIdShape::LegacyKeyPair) => Err(format!(
            "{id:?} is a legacy CloudFront key pair id (APKA...), but the mode is key_group: a \
             distribution that trusts key groups answers 403 to it. Give the id CloudFront \
             assigned to the public key you uploaded to the key group (K..., shown under \
             CloudFront > Public keys), or set cloudfront_signing_mode: legacy_key_pair if \
             the distribution still uses trusted signers"
        )),
        (_, KeyIdShape::Unknown) => Err(format!(
            "{id:?} is neither a key group public key id (K followed by capitals and digits) \
             nor a legacy key pair id (APKA...); copy the id from the CloudFront console"
        )),
    }
}

/// CloudFront's rules on key types: key groups take RSA 2048 or ECDSA P-256
/// public keys; legacy key pairs are RSA of at least 2048 bits. `Auto` is
/// resolved from `key_id` when given.
///
/// # Errors
/// [`SignError::Key`] naming the key and the rule.
pub fn check_key_for_mode(
    key: &PrivateKey,
    mode: SigningMode,
    source_name: &str,
) -> Result<(), SignError> {
    let reason = match (mode, key.kind()) {
        (SigningMode::KeyGroup, KeyKind::Rsa(bits)) if bits != 2048 => format!(
            "an RSA {bits} key; CloudFront key groups take RSA 2048 or ECDSA P-256 public keys only"
        ),
        (SigningMode::LegacyKeyPair, KeyKind::EcdsaP256) => {
            "an ECDSA key; legacy CloudFront key pairs are RSA: ECDSA keys need a trusted key \
             group (cloudfront_signing_mode: key_group with a K... id)"
                .into()
        }
        (SigningMode::LegacyKeyPair, KeyKind::Rsa(bits)) if bits < 2048 => {
            format!("an RSA {bits} key; CloudFront key pairs are at least 2048 bits")
        }
        _ => return Ok(()),
    };
    Err(SignError::Key {
        source_name: source_name.into(),
        reason,
    })
}

/// The mode a key id's shape implies (`Auto` when it implies none).
pub fn mode_of_id(key_id: &str) -> SigningMode {
    resolve_mode(SigningMode::Auto, key_id).unwrap_or(SigningMode::Auto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            KeyIdShape::of("APKAEIBAERJR2EXAMPLE"),
            KeyIdShape::LegacyKeyPair
        );
        assert_eq!(KeyIdShape::of("K2JCJMDEHXQW5F"), KeyIdShape::PublicKey);
        assert_eq!(KeyIdShape::of("k2jcjm"), KeyIdShape::Unknown);
        assert_eq!(KeyIdShape::of("APKA"), KeyIdShape::Unknown);
        assert_eq!(KeyIdShape::of(""), KeyIdShape::Unknown);
    }

    #[test]
    fn mode_contradicting_the_id_explains_what_to_supply() {
        let e = resolve_mode(SigningMode::KeyGroup, "APKAEIBAERJR2EXAMPLE").unwrap_err();
        assert!(
            e.contains("legacy CloudFront key pair") && e.contains("K..."),
            "{e}"
        );
        let e = resolve_mode(SigningMode::LegacyKeyPair, "K2JCJMDEHXQW5F").unwrap_err();
        assert!(e.contains("key group") && e.contains("APKA"), "{e}");
        assert_eq!(
            resolve_mode(SigningMode::Auto, "K2JCJMDEHXQW5F"),
            Ok(SigningMode::KeyGroup)
        );
        assert_eq!(
            resolve_mode(SigningMode::Auto, "APKAEIBAERJR2EXAMPLE"),
            Ok(SigningMode::LegacyKeyPair)
        );
        assert!(resolve_mode(SigningMode::Auto, "mykey").is_err());
    }
}
