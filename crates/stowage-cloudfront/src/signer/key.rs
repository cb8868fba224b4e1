//! Private keys for signing: RSA (PKCS#1 or PKCS#8 PEM) and ECDSA P-256
//! (SEC1 or PKCS#8 PEM), parsed once, with clear errors for encrypted PEM,
//! public keys and key types CloudFront does not take.

use std::fmt;
use std::path::Path;

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::traits::PublicKeyParts;
use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::SignError;

/// The hash a signature is made over. CloudFront assumes SHA-1 unless the
/// URL says `Hash-Algorithm=SHA256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgorithm {
    /// SHA-1, CloudFront's default.
    #[default]
    Sha1,
    /// SHA-256, sent as `Hash-Algorithm=SHA256`.
    Sha256,
}

impl HashAlgorithm {
    /// Parses `sha1` / `sha256` (any case, `SHA-256` too).
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().replace('-', "").as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            _ => Err(format!(
                "{text:?} is not a hash CloudFront takes: sha1 or sha256"
            )),
        }
    }

    /// The name used in config and output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }
}

/// What kind of key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA of the given size in bits.
    Rsa(usize),
    /// ECDSA on P-256.
    EcdsaP256,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(bits) => write!(f, "RSA {bits}"),
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
        }
    }
}

/// A parsed private key. `Debug` shows its kind only.
#[derive(Clone)]
pub enum PrivateKey {
    /// RSA, signing PKCS#1 v1.5 with blinding.
    Rsa(Box<RsaKey>),
    /// ECDSA P-256, DER-encoded signatures.
    Ecdsa(p256::ecdsa::SigningKey),
}

/// An RSA key with its signers built once (one per hash).
#[derive(Clone)]
pub struct RsaKey {
    sha1: rsa::pkcs1v15::SigningKey<Sha1>,
    sha256: rsa::pkcs1v15::SigningKey<Sha256>,
    bits: usize,
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaKey({} bits)", self.bits)
    }
}

impl RsaKey {
    fn new(key: rsa::RsaPrivateKey) -> Self {
        Self {
            bits: key.size() * 8,
            sha1: rsa::pkcs1v15::SigningKey::new(key.clone()),
            sha256: rsa::pkcs1v15::SigningKey::new(key),
        }
    }

    fn public(&self) -> rsa::RsaPublicKey {
        self.sha1.as_ref().to_public_key()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.kind())
    }
}

/// DER bytes of the OIDs we recognise inside PKCS#8, for precise errors.
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_DSA: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
const OID_RSA_PSS: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
];

impl PrivateKey {
    /// Reads and parses a PEM file.
    ///
    /// # Errors
    /// [`SignError::Key`] naming the file and what is wrong with it.
    pub fn from_pem_file(path: &Path) -> Result<Self, SignError> {
        let text = std::fs::read_to_string(path).map_err(|e| SignError::Key {
            source_name: path.display().to_string(),
            reason: format!("cannot read the private key file: {e}"),
        })?;
        Self::from_pem(&text).map_err(|e| match e {
            SignError::Key { reason, .. } => SignError::Key {
                source_name: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parses PEM text: `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY`
    /// (SEC1) or `PRIVATE KEY` (PKCS#8, what OpenSSL 3 writes).
    ///
    /// # Errors
    /// [`SignError::Key`] saying what the text is and what to supply.
    pub fn from_pem(text: &str) -> Result<Self, SignError> {
        let err = |reason: String| SignError::Key {
            source_name: "PEM text".into(),
            reason,
        };
        let label = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("-----BEGIN ")
                    .and_then(|r| r.strip_suffix("-----"))
            })
            .ok_or_else(|| err("not a PEM file (no -----BEGIN ...----- line)".into()))?;
        let decrypt_hint = "decrypt it first (openssl pkey -in key.pem -out plain.pem) \
                            and protect the plain file with file permissions";
        match label {
            "ENCRYPTED PRIVATE KEY" => Err(err(format!(
                "the key is encrypted (PKCS#8 with a passphrase); {decrypt_hint}"
            ))),
            _ if text.contains("Proc-Type: 4,ENCRYPTED") => Err(err(format!(
                "the key is encrypted (legacy PEM encryption); {decrypt_hint}"
            ))),
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => Err(err(format!(
                "this is a {}, not a private key: give the private key; CloudFront holds the \
                 public half",
                label.to_lowercase()
            ))),
            "OPENSSH PRIVATE KEY" => Err(err(
                "an OpenSSH key; convert it to PEM (ssh-keygen -p -m PEM -f key)".into(),
            )),
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map(|k| Self::Rsa(Box::new(RsaKey::new(k))))
                .map_err(|e| err(format!("not a valid PKCS#1 RSA private key: {e}"))),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(text)
                .map(|k| Self::Ecdsa(k.into()))
                .map_err(|e| {
                    err(format!(
                        "not a P-256 EC private key ({e}); CloudFront takes ECDSA keys on P-256 \
                         (prime256v1) only"
                    ))
                }),
            "PRIVATE KEY" => Self::from_pkcs8_pem(text).map_err(err),
            other => Err(err(format!(
                "a PEM block of type {other:?}; expected an RSA or P-256 private key"
            ))),
        }
    }

    fn from_pkcs8_pem(text: &str) -> Result<Self, String> {
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
            return Ok(Self::Rsa(Box::new(RsaKey::new(key))));
        }
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
            return Ok(Self::Ecdsa(key));
        }
        let der = pem_body(text).unwrap_or_default();
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        Err(if has(OID_ED25519) || has(OID_ED448) {
            "an EdDSA key; CloudFront signs with RSA 2048 or ECDSA P-256 keys only".into()
        } else if has(OID_EC_PUBLIC_KEY) {
            "an EC key on a curve other than P-256; CloudFront takes ECDSA keys on P-256 \
             (prime256v1) only"
                .into()
        } else if has(OID_DSA) {
            "a DSA key; CloudFront signs with RSA 2048 or ECDSA P-256 keys only".into()
        } else if has(OID_RSA_PSS) {
            "an RSA-PSS key; CloudFront needs a plain RSA key (PKCS#1 v1.5 signatures)".into()
        } else {
            "not a valid PKCS#8 RSA or P-256 private key".into()
        })
    }

    /// The key's kind and size.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Rsa(k) => KeyKind::Rsa(k.bits),
            Self::Ecdsa(_) => KeyKind::EcdsaP256,
        }
    }

    /// Signs `message` (a policy) with `hash`. RSA signatures are PKCS#1
    /// v1.5 with blinding (deterministic output, randomised computation);
    /// ECDSA signatures are DER-encoded, as OpenSSL writes them.
    ///
    /// # Errors
    /// [`SignError::Signing`] when the key cannot sign (should not happen
    /// with a key that parsed).
    pub fn sign(&self, message: &[u8], hash: HashAlgorithm) -> Result<Vec<u8>, SignError> {
        let fail = |e: rsa::signature::Error| SignError::Signing(e.to_string());
        let mut rng = rand::thread_rng();
        match (self, hash) {
            (Self::Rsa(key), HashAlgorithm::Sha1) => Ok(key
                .sha1
                .try_sign_with_rng(&mut rng, message)
                .map_err(fail)?
                .to_vec()),
            (Self::Rsa(key), HashAlgorithm::Sha256) => Ok(key
                .sha256
                .try_sign_with_rng(&mut rng, message)
                .map_err(fail)?
                .to_vec()),
            (Self::Ecdsa(key), hash) => {
                let digest = digest(message, hash);
                let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).map_err(fail)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }

    /// Checks a signature with the public half (what CloudFront does).
    pub fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        match (self, hash) {
            (Self::Rsa(key), HashAlgorithm::Sha1) => {
                let verifier = rsa::pkcs1v15::VerifyingKey::<Sha1>::new(key.public());
                rsa::pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|s| verifier.verify(message, &s).is_ok())
            }
            (Self::Rsa(key), HashAlgorithm::Sha256) => {
                let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.public());
                rsa::pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|s| verifier.verify(message, &s).is_ok())
            }
            (Self::Ecdsa(key), hash) => {
                p256::ecdsa::Signature::from_der(signature).is_ok_and(|s| {
                    key.verifying_key()
                        .verify_prehash(&digest(message, hash), &s)
                        .is_ok()
                })
            }
        }
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), what an
    /// operator uploads to CloudFront.
    pub fn public_key_pem(&self) -> String {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        match self {
            Self::Rsa(k) => k
                .public()
                .to_public_key_pem(LineEnding::LF)
                .unwrap_or_default(),
            Self::Ecdsa(k) => p256::PublicKey::from(k.verifying_key())
                .to_public_key_pem(LineEnding::LF)
                .unwrap_or_default(),
        }
    }
}

fn digest(message: &[u8], hash: HashAlgorithm) -> Vec<u8> {
    match hash {
        HashAlgorithm::Sha1 => Sha1::digest(message).to_vec(),
        HashAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
    }
}

fn pem_body(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':'))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
}
