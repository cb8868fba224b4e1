//! Private keys for signing: RSA (PKCS#1 or PKCS#8 PEM) and ECDSA P-256
//! (SEC1 or PKCS#8 PEM), parsed once, with clear errors for encrypted PEM,
//! public keys and key types CloudFront does not take.
//!
//! The PEM and the DER structure are read here, the same for both signing
//! backends; the key material goes to the backend (aws-lc by default, the
//! pure-Rust crates with the `pure-rust` feature), which checks and holds
//! it. PEM text and DER read here live in [`Zeroizing`] buffers, wiped when
//! dropped; the backends wipe their own copies when the key is dropped.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use zeroize::Zeroizing;

use super::backend;
use super::der;
use super::SignError;

/// The hash a signature is made over. CloudFront assumes SHA-1 unless the
/// URL says `Hash-Algorithm=SHA256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
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
#[non_exhaustive]
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

/// A parsed private key, cheap to clone (clones share it). `Debug` shows
/// its kind only. The key material is wiped from memory when the last clone
/// is dropped.
#[derive(Clone)]
pub struct PrivateKey {
    inner: Arc<Inner>,
}

/// The backend's key, with what is known about it from the DER.
enum Inner {
    Rsa {
        key: Box<backend::RsaKey>,
        bits: usize,
        /// `SubjectPublicKeyInfo` DER.
        public: Vec<u8>,
    },
    Ecdsa {
        key: backend::EcdsaKey,
        /// `SubjectPublicKeyInfo` DER.
        public: Vec<u8>,
    },
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.kind())
    }
}

const OTHER_CURVE: &str = "an EC key on a curve other than P-256; CloudFront takes ECDSA keys on \
                           P-256 (prime256v1) only";

impl PrivateKey {
    /// Reads and parses a PEM file.
    ///
    /// # Errors
    /// [`SignError::Key`] naming the file and what is wrong with it.
    pub fn from_pem_file(path: &Path) -> Result<Self, SignError> {
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| SignError::Key {
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
    /// (SEC1, after an optional `EC PARAMETERS` block) or `PRIVATE KEY`
    /// (PKCS#8, what OpenSSL 3 writes).
    ///
    /// # Errors
    /// [`SignError::Key`] saying what the text is and what to supply.
    pub fn from_pem(text: &str) -> Result<Self, SignError> {
        let err = |reason: String| SignError::Key {
            source_name: "PEM text".into(),
            reason,
        };
        let label = pem_label(text)
            .ok_or_else(|| err("not a PEM file (no -----BEGIN ...----- line)".into()))?;
        let decrypt_hint = "decrypt it first (openssl pkey -in key.pem -out plain.pem) \
                            and protect the plain file with file permissions";
        let inner = match label {
            "ENCRYPTED PRIVATE KEY" => {
                return Err(err(format!(
                    "the key is encrypted (PKCS#8 with a passphrase); {decrypt_hint}"
                )))
            }
            _ if text.contains("Proc-Type: 4,ENCRYPTED") => {
                return Err(err(format!(
                    "the key is encrypted (legacy PEM encryption); {decrypt_hint}"
                )))
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
                return Err(err(format!(
                    "this is a {}, not a private key: give the private key; CloudFront holds \
                     the public half",
                    label.to_lowercase()
                )))
            }
            "OPENSSH PRIVATE KEY" => {
                return Err(err(
                    "an OpenSSH key; convert it to PEM (ssh-keygen -p -m PEM -f key)".into(),
                ))
            }
            "RSA PRIVATE KEY" => {
                let der = pem_body(text, label).map_err(err)?;
                Inner::rsa(&der)
                    .map_err(|e| err(format!("not a valid PKCS#1 RSA private key: {e}")))?
            }
            "EC PRIVATE KEY" => {
                let der = pem_body(text, label).map_err(err)?;
                Inner::ec_sec1(&der).map_err(err)?
            }
            "PRIVATE KEY" => {
                let der = pem_body(text, label).map_err(err)?;
                Inner::pkcs8(&der).map_err(err)?
            }
            other => {
                return Err(err(format!(
                    "a PEM block of type {other:?}; expected an RSA or P-256 private key"
                )))
            }
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The key's kind and size.
    pub fn kind(&self) -> KeyKind {
        match &*self.inner {
            Inner::Rsa { bits, .. } => KeyKind::Rsa(*bits),
            Inner::Ecdsa { .. } => KeyKind::EcdsaP256,
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
        match &*self.inner {
            Inner::Rsa { key, .. } => key.sign(message, hash),
            Inner::Ecdsa { key, .. } => key.sign(message, hash),
        }
        .map_err(SignError::Signing)
    }

    /// Checks a signature with the public half (what CloudFront does).
    pub fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        match &*self.inner {
            Inner::Rsa { key, .. } => key.verify(message, signature, hash),
            Inner::Ecdsa { key, .. } => key.verify(message, signature, hash),
        }
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), what an
    /// operator uploads to CloudFront: byte for byte what `openssl pkey
    /// -pubout` writes.
    pub fn public_key_pem(&self) -> String {
        let spki = match &*self.inner {
            Inner::Rsa { public, .. } | Inner::Ecdsa { public, .. } => public,
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
        let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 60);
        pem.push_str("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            // Base64 is ASCII, so every chunk is valid UTF-8.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }
}

impl Inner {
    /// An RSA key from PKCS#1 `RSAPrivateKey` DER.
    fn rsa(pkcs1: &[u8]) -> Result<Self, String> {
        let public = der::rsa_public(pkcs1)
            .ok_or_else(|| "the DER inside is not an RSAPrivateKey structure".to_string())?;
        let key = Box::new(backend::RsaKey::new(pkcs1, &public.pkcs1)?);
        Ok(Self::Rsa {
            key,
            bits: public.bits,
            public: der::rsa_spki(&public.pkcs1),
        })
    }

    /// A P-256 key from SEC1 `ECPrivateKey` or PKCS#8 DER.
    fn ecdsa(bytes: &[u8]) -> Result<Self, String> {
        let key = backend::EcdsaKey::new(bytes)?;
        let public = der::p256_spki(&key.public_point());
        Ok(Self::Ecdsa { key, public })
    }

    /// `EC PRIVATE KEY`: SEC1, the curve named inside (when it is).
    fn ec_sec1(bytes: &[u8]) -> Result<Self, String> {
        if der::sec1_curve(bytes).is_some_and(|curve| curve != der::OID_P256) {
            return Err(OTHER_CURVE.into());
        }
        Self::ecdsa(bytes).map_err(|e| {
            format!(
                "not a valid P-256 EC private key ({e}); CloudFront takes ECDSA keys on P-256 \
                 (prime256v1) only"
            )
        })
    }

    /// `PRIVATE KEY`: PKCS#8, whose algorithm says what the key is.
    fn pkcs8(bytes: &[u8]) -> Result<Self, String> {
        let info = der::pkcs8(bytes)
            .ok_or_else(|| "not a valid PKCS#8 RSA or P-256 private key".to_string())?;
        match info.algorithm {
            der::OID_RSA_ENCRYPTION => Self::rsa(info.private_key)
                .map_err(|e| format!("not a valid PKCS#8 RSA private key: {e}")),
            der::OID_EC_PUBLIC_KEY if info.parameters == Some(der::OID_P256) => {
                Self::ecdsa(bytes).map_err(|e| format!("not a valid PKCS#8 P-256 private key: {e}"))
            }
            der::OID_EC_PUBLIC_KEY => Err(OTHER_CURVE.into()),
            der::OID_ED25519 | der::OID_ED448 => {
                Err("an EdDSA key; CloudFront signs with RSA 2048 or ECDSA P-256 keys only".into())
            }
            der::OID_DSA => {
                Err("a DSA key; CloudFront signs with RSA 2048 or ECDSA P-256 keys only".into())
            }
            der::OID_RSA_PSS => Err(
                "an RSA-PSS key; CloudFront needs a plain RSA key (PKCS#1 v1.5 signatures)".into(),
            ),
            _ => Err(
                "a PKCS#8 key of an algorithm CloudFront does not take; it signs with RSA \
                      2048 or ECDSA P-256 keys only"
                    .into(),
            ),
        }
    }
}

/// The label of the first PEM block that is not `EC PARAMETERS` (which
/// `openssl ecparam -genkey` writes before the key).
fn pem_label(text: &str) -> Option<&str> {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|r| r.strip_suffix("-----"))
        })
        .find(|label| *label != "EC PARAMETERS")
}

/// The DER between `-----BEGIN {label}-----` and `-----END {label}-----`,
/// skipping RFC 1421 header lines (`Name: value`).
fn pem_body(text: &str, label: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim).skip_while(|l| *l != begin);
    lines.next();
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if !line.contains(':') {
            body.push_str(line);
        }
    }
    if !ended {
        return Err(format!("the PEM block has no {end} line"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| format!("the base64 between the PEM lines does not decode: {e}"))
}
