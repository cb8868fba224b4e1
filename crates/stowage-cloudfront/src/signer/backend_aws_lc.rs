//! The default signing backend: aws-lc, the library the AWS SDK's TLS
//! already links, through aws-lc-rs. RSA private-key operations are blinded
//! and constant time (no Marvin-style timing channel, unlike the `rsa`
//! crate) and run at OpenSSL's speed; ECDSA P-256 is about ten times the
//! `p256` crate's.
//!
//! aws-lc-rs's safe API signs RSA PKCS#1 v1.5 over SHA-256 and ECDSA P-256
//! over SHA-256. It has no signing over SHA-1 (only verification), and
//! SHA-1 is CloudFront's default hash, so those signatures go through
//! [`raw::Key`]: the same key held as an aws-lc `EVP_PKEY`, signed with
//! aws-lc's `RSA_sign` / `ECDSA_sign` over a SHA-1 digest. That module is
//! the signer's only unsafe code.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
    RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, RSA_PKCS1_SHA256,
};

use super::key::HashAlgorithm;

/// The backend's name.
pub(super) const NAME: &str = "aws-lc";

/// The digest of `message` and the NID aws-lc knows its hash by.
fn digest_of(message: &[u8], hash: HashAlgorithm) -> (digest::Digest, std::ffi::c_int) {
    match hash {
        HashAlgorithm::Sha1 => (
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, message),
            aws_lc_sys::NID_sha1,
        ),
        HashAlgorithm::Sha256 => (
            digest::digest(&digest::SHA256, message),
            aws_lc_sys::NID_sha256,
        ),
    }
}

/// An RSA key, parsed once.
pub(super) struct RsaKey {
    /// aws-lc-rs's key pair, for SHA-256. `None` for sizes aws-lc-rs does not
    /// take (under 2048 or over 8192 bits): CloudFront refuses those anyway,
    /// but `stowage sign` with a key id of unknown shape still signs with
    /// them, as it did before, through `raw` instead.
    pair: Option<RsaKeyPair>,
    /// The same key as an aws-lc handle, for SHA-1.
    raw: raw::Key,
    /// PKCS#1 `RSAPublicKey` DER, for verification.
    public: Vec<u8>,
}

impl RsaKey {
    /// Loads a PKCS#1 `RSAPrivateKey` (DER), whose public half is
    /// `public_pkcs1`.
    pub(super) fn new(private_pkcs1: &[u8], public_pkcs1: &[u8]) -> Result<Self, String> {
        // aws-lc checks the key (RSA_check_key) as it parses it.
        let raw = raw::Key::rsa(private_pkcs1)?;
        Ok(Self {
            pair: RsaKeyPair::from_der(private_pkcs1).ok(),
            raw,
            public: public_pkcs1.to_vec(),
        })
    }

    /// PKCS#1 v1.5 over `hash`.
    pub(super) fn sign(&self, message: &[u8], hash: HashAlgorithm) -> Result<Vec<u8>, String> {
        if let (Some(pair), HashAlgorithm::Sha256) = (&self.pair, hash) {
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|e| format!("aws-lc RSA signing failed: {e}"))?;
            return Ok(signature);
        }
        let (digest, nid) = digest_of(message, hash);
        self.raw.sign_digest(nid, digest.as_ref())
    }

    /// Checks a PKCS#1 v1.5 signature over `hash` with the public half.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        let public = self.public.as_slice();
        match hash {
            HashAlgorithm::Sha1 => {
                UnparsedPublicKey::new(&RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, public)
                    .verify(message, signature)
            }
            HashAlgorithm::Sha256 => {
                UnparsedPublicKey::new(&RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, public)
                    .verify(message, signature)
            }
        }
        .is_ok()
    }
}

/// An ECDSA P-256 key, parsed once.
pub(super) struct EcdsaKey {
    /// aws-lc-rs's key pair, for SHA-256.
    pair: EcdsaKeyPair,
    /// The same key as an aws-lc handle, for SHA-1.
    raw: raw::Key,
    /// The uncompressed public point.
    point: Vec<u8>,
}

impl EcdsaKey {
    /// Loads a SEC1 `ECPrivateKey` or PKCS#8 key (DER) on P-256.
    pub(super) fn new(der: &[u8]) -> Result<Self, String> {
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map_err(|e| format!("aws-lc rejects it: {e}"))?;
        let raw = raw::Key::ec(der)?;
        let point = pair.public_key().as_ref().to_vec();
        Ok(Self { pair, raw, point })
    }

    /// The uncompressed public point (`04 || x || y`).
    pub(super) fn public_point(&self) -> Vec<u8> {
        self.point.clone()
    }

    /// ECDSA over `hash`, DER-encoded (`SEQUENCE { r, s }`), random nonces.
    pub(super) fn sign(&self, message: &[u8], hash: HashAlgorithm) -> Result<Vec<u8>, String> {
        match hash {
            HashAlgorithm::Sha256 => self
                .pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| format!("aws-lc ECDSA signing failed: {e}")),
            HashAlgorithm::Sha1 => {
                let (digest, nid) = digest_of(message, hash);
                self.raw.sign_digest(nid, digest.as_ref())
            }
        }
    }

    /// Checks a DER-encoded ECDSA signature over `hash`.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        match hash {
            HashAlgorithm::Sha256 => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
                .verify(message, signature)
                .is_ok(),
            HashAlgorithm::Sha1 => {
                let (digest, _) = digest_of(message, hash);
                self.raw.verify_ecdsa_digest(digest.as_ref(), signature)
            }
        }
    }
}

/// All of the signer's unsafe code: a private key held as an aws-lc
/// `EVP_PKEY`, for what aws-lc-rs's safe API does not do, signing a SHA-1
/// digest (RSA PKCS#1 v1.5 and ECDSA) and checking an ECDSA signature over
/// one. Five small FFI calls, each with its contract written beside it:
/// parse (`d2i_PrivateKey`), borrow the RSA or EC_KEY inside
/// (`EVP_PKEY_get0_*`), sign (`RSA_sign` / `ECDSA_sign` into a buffer of the
/// size aws-lc reports), verify (`ECDSA_verify`), free (`EVP_PKEY_free`,
/// which also wipes the key: aws-lc's `OPENSSL_free` zeroes every block).
mod raw {
    use std::ffi::{c_int, c_long, c_uint};
    use std::ptr::{self, NonNull};

    use aws_lc_sys::{
        d2i_PrivateKey, ECDSA_sign, ECDSA_size, ECDSA_verify, EVP_PKEY_free, EVP_PKEY_get0_EC_KEY,
        EVP_PKEY_get0_RSA, RSA_sign, RSA_size, EC_KEY, EVP_PKEY, EVP_PKEY_EC, EVP_PKEY_RSA, RSA,
    };

    /// The RSA or EC_KEY inside the `EVP_PKEY`, borrowed from it.
    #[derive(Clone, Copy)]
    enum Inner {
        Rsa(NonNull<RSA>),
        Ec(NonNull<EC_KEY>),
    }

    /// An owned aws-lc private key.
    pub(super) struct Key {
        pkey: NonNull<EVP_PKEY>,
        inner: Inner,
    }

    // SAFETY: the key is never changed after it is parsed. aws-lc documents
    // its keys as usable from several threads at once by functions that do
    // not mutate them; RSA_sign takes a non-const RSA only for the blinding
    // and Montgomery caches, which aws-lc guards with the RSA's own lock
    // (aws-lc-rs shares its RsaKeyPair across threads the same way).
    unsafe impl Send for Key {}
    // SAFETY: as for Send.
    unsafe impl Sync for Key {}

    impl Key {
        /// Parses a PKCS#1 `RSAPrivateKey` (or PKCS#8 RSA key), checking it.
        pub(super) fn rsa(der: &[u8]) -> Result<Self, String> {
            Self::parse(der, EVP_PKEY_RSA)
        }

        /// Parses a SEC1 `ECPrivateKey` or PKCS#8 EC key, checking it.
        pub(super) fn ec(der: &[u8]) -> Result<Self, String> {
            Self::parse(der, EVP_PKEY_EC)
        }

        fn parse(der: &[u8], kind: c_int) -> Result<Self, String> {
            let len = c_long::try_from(der.len()).map_err(|_| "the key is too long".to_string())?;
            let mut input = der.as_ptr();
            // SAFETY: `input` points at `len` readable bytes that outlive the
            // call; aws-lc reads at most `len` of them and only moves the
            // local `input` forward. With a null `out` it returns a new
            // EVP_PKEY that we own, or null.
            let pkey = unsafe { d2i_PrivateKey(kind, ptr::null_mut(), &mut input, len) };
            let pkey = NonNull::new(pkey)
                .ok_or_else(|| "aws-lc cannot parse or check the key".to_string())?;
            // SAFETY: `pkey` is a live EVP_PKEY of type `kind`; get0 returns a
            // pointer owned by it (valid as long as `pkey`), null if the type
            // differs.
            let inner = unsafe {
                if kind == EVP_PKEY_RSA {
                    NonNull::new(EVP_PKEY_get0_RSA(pkey.as_ptr())).map(Inner::Rsa)
                } else {
                    NonNull::new(EVP_PKEY_get0_EC_KEY(pkey.as_ptr())).map(Inner::Ec)
                }
            };
            match inner {
                Some(inner) => Ok(Self { pkey, inner }),
                None => {
                    // SAFETY: we own `pkey` and nothing else refers to it.
                    unsafe { EVP_PKEY_free(pkey.as_ptr()) };
                    Err("aws-lc parsed a key of another type".into())
                }
            }
        }

        /// Signs `digest`, the hash `hash_nid` of the message: RSA PKCS#1
        /// v1.5 (aws-lc adds the hash's DigestInfo and blinds the private
        /// operation) or ECDSA (DER-encoded, random nonce).
        pub(super) fn sign_digest(
            &self,
            hash_nid: c_int,
            digest: &[u8],
        ) -> Result<Vec<u8>, String> {
            let mut written: c_uint = 0;
            match self.inner {
                Inner::Rsa(rsa) => {
                    // SAFETY: `rsa` lives as long as `self`. RSA_size is the
                    // length of every signature, the most RSA_sign writes to
                    // `out`; `digest` is readable for its length; `written`
                    // is a valid out-parameter.
                    let mut out = vec![0u8; unsafe { RSA_size(rsa.as_ptr()) } as usize];
                    let ok = unsafe {
                        RSA_sign(
                            hash_nid,
                            digest.as_ptr(),
                            digest.len(),
                            out.as_mut_ptr(),
                            &mut written,
                            rsa.as_ptr(),
                        )
                    };
                    if ok != 1 {
                        return Err("aws-lc RSA_sign failed".into());
                    }
                    out.truncate(written as usize);
                    Ok(out)
                }
                Inner::Ec(ec) => {
                    // SAFETY: `ec` lives as long as `self`. ECDSA_size is the
                    // longest DER signature the key makes, the most
                    // ECDSA_sign writes to `out`; `digest` is readable for
                    // its length; `written` is a valid out-parameter.
                    let mut out = vec![0u8; unsafe { ECDSA_size(ec.as_ptr()) }];
                    let ok = unsafe {
                        ECDSA_sign(
                            0,
                            digest.as_ptr(),
                            digest.len(),
                            out.as_mut_ptr(),
                            &mut written,
                            ec.as_ptr(),
                        )
                    };
                    if ok != 1 {
                        return Err("aws-lc ECDSA_sign failed".into());
                    }
                    out.truncate(written as usize);
                    Ok(out)
                }
            }
        }

        /// Checks a DER-encoded ECDSA signature of `digest` (false for an
        /// RSA key).
        pub(super) fn verify_ecdsa_digest(&self, digest: &[u8], signature: &[u8]) -> bool {
            let Inner::Ec(ec) = self.inner else {
                return false;
            };
            // SAFETY: `ec` lives as long as `self`; `digest` and `signature`
            // are readable for their lengths; aws-lc only reads them.
            unsafe {
                ECDSA_verify(
                    0,
                    digest.as_ptr(),
                    digest.len(),
                    signature.as_ptr(),
                    signature.len(),
                    ec.as_ptr(),
                ) == 1
            }
        }
    }

    impl Drop for Key {
        fn drop(&mut self) {
            // SAFETY: `self` owns `pkey`, and with it the RSA or EC_KEY that
            // `inner` borrows; nothing uses either after this.
            unsafe { EVP_PKEY_free(self.pkey.as_ptr()) }
        }
    }
}
