//! The pure-Rust signing backend (`pure-rust` feature), for targets where
//! aws-lc does not build: the `rsa`, `sha1`, `sha2` and `p256` crates.
//! RSA signing is blinded but slower (about 2 ms per RSA-2048 signature)
//! and the `rsa` crate carries RUSTSEC-2023-0071 (a timing side channel on
//! private-key operations, no fixed release), which is why aws-lc is the
//! default. Both backends pass the same tests and write the same bytes for
//! RSA (PKCS#1 v1.5 is deterministic); ECDSA signatures differ between them
//! only in the nonce (RFC 6979 here, random in aws-lc), and both verify.
//! The keys (`RsaPrivateKey`, `SigningKey`) zeroize themselves on drop.

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::key::HashAlgorithm;

/// The backend's name.
pub(super) const NAME: &str = "pure-rust";

/// An RSA key with its signers built once (one per hash).
pub(super) struct RsaKey {
    sha1: rsa::pkcs1v15::SigningKey<Sha1>,
    sha256: rsa::pkcs1v15::SigningKey<Sha256>,
}

impl RsaKey {
    /// Loads a PKCS#1 `RSAPrivateKey` (DER); the public half is read from it.
    pub(super) fn new(private_pkcs1: &[u8], _public_pkcs1: &[u8]) -> Result<Self, String> {
        let key = rsa::RsaPrivateKey::from_pkcs1_der(private_pkcs1).map_err(|e| e.to_string())?;
        Ok(Self {
            sha1: rsa::pkcs1v15::SigningKey::new(key.clone()),
            sha256: rsa::pkcs1v15::SigningKey::new(key),
        })
    }

    fn public(&self) -> rsa::RsaPublicKey {
        self.sha1.as_ref().to_public_key()
    }

    /// PKCS#1 v1.5 over `hash`, blinded.
    pub(super) fn sign(&self, message: &[u8], hash: HashAlgorithm) -> Result<Vec<u8>, String> {
        let mut rng = rand::thread_rng();
        match hash {
            HashAlgorithm::Sha1 => self
                .sha1
                .try_sign_with_rng(&mut rng, message)
                .map(|s| s.to_vec()),
            HashAlgorithm::Sha256 => self
                .sha256
                .try_sign_with_rng(&mut rng, message)
                .map(|s| s.to_vec()),
        }
        .map_err(|e| e.to_string())
    }

    /// Checks a PKCS#1 v1.5 signature over `hash` with the public half.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        let Ok(signature) = rsa::pkcs1v15::Signature::try_from(signature) else {
            return false;
        };
        match hash {
            HashAlgorithm::Sha1 => rsa::pkcs1v15::VerifyingKey::<Sha1>::new(self.public())
                .verify(message, &signature)
                .is_ok(),
            HashAlgorithm::Sha256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(self.public())
                .verify(message, &signature)
                .is_ok(),
        }
    }
}

/// An ECDSA P-256 key.
pub(super) struct EcdsaKey(p256::ecdsa::SigningKey);

impl EcdsaKey {
    /// Loads a PKCS#8 or SEC1 `ECPrivateKey` (DER) on P-256.
    pub(super) fn new(der: &[u8]) -> Result<Self, String> {
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(Self(key));
        }
        p256::SecretKey::from_sec1_der(der)
            .map(|k| Self(k.into()))
            .map_err(|e| e.to_string())
    }

    /// The uncompressed public point (`04 || x || y`).
    pub(super) fn public_point(&self) -> Vec<u8> {
        p256::PublicKey::from(self.0.verifying_key())
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// ECDSA over `hash`, DER-encoded (`SEQUENCE { r, s }`), RFC 6979 nonces.
    pub(super) fn sign(&self, message: &[u8], hash: HashAlgorithm) -> Result<Vec<u8>, String> {
        let signature: p256::ecdsa::Signature = self
            .0
            .sign_prehash(&digest(message, hash))
            .map_err(|e| e.to_string())?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    /// Checks a DER-encoded ECDSA signature over `hash`.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        p256::ecdsa::Signature::from_der(signature).is_ok_and(|s| {
            self.0
                .verifying_key()
                .verify_prehash(&digest(message, hash), &s)
                .is_ok()
        })
    }
}

fn digest(message: &[u8], hash: HashAlgorithm) -> Vec<u8> {
    match hash {
        HashAlgorithm::Sha1 => Sha1::digest(message).to_vec(),
        HashAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
    }
}
