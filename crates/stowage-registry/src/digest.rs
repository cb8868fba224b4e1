//! The content digests the registry accepts: `sha256:<64 hex>`, the
//! canonical one (the storage layer hashes it once, on the way in, and can
//! resume it across chunks and replicas), and `sha512:<128 hex>`, which the
//! registry checks itself: while a monolithic upload streams in, and by
//! reading the assembled bytes back once when a chunked upload completes
//! (the storage's resumable hasher is SHA-256 only).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use sha2::Digest as _;
use stowage::{Sha256Digest, WriteStream};

/// A content digest in the OCI form `<algorithm>:<lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Digest {
    /// `sha256:` and 64 hex digits.
    Sha256(Sha256Digest),
    /// `sha512:` and 128 hex digits.
    Sha512([u8; 64]),
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase).
    ///
    /// # Errors
    /// A message saying what is wrong (unknown algorithm, length, case).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("sha256:") {
            return text
                .parse::<Sha256Digest>()
                .map(Self::Sha256)
                .map_err(|e| e.to_string());
        }
        if let Some(hex_part) = text.strip_prefix("sha512:") {
            if hex_part.len() != 128 {
                return Err("expected 128 hex digits after 'sha512:'".into());
            }
            if !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err("expected lowercase hex digits after 'sha512:'".into());
            }
            let mut out = [0u8; 64];
            hex::decode_to_slice(hex_part, &mut out).map_err(|_| "not hexadecimal".to_string())?;
            return Ok(Self::Sha512(out));
        }
        Err("the algorithm must be sha256 or sha512".into())
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        Self::Sha256(Sha256Digest::of(data))
    }

    /// The SHA-512 digest of `data`.
    pub fn sha512_of(data: &[u8]) -> Self {
        let mut hasher = Hasher::new(Algorithm::Sha512);
        hasher.update(data);
        hasher.finish()
    }

    /// The digest of `data` with this digest's algorithm (to check content
    /// named by this digest).
    pub fn of_same_algorithm(&self, data: &[u8]) -> Self {
        let mut hasher = Hasher::new(self.algorithm_kind());
        hasher.update(data);
        hasher.finish()
    }

    /// `sha256` or `sha512`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::Sha512(_) => "sha512",
        }
    }

    /// The hex digits, without the algorithm.
    pub fn hex(&self) -> String {
        match self {
            Self::Sha256(d) => d.hex(),
            Self::Sha512(bytes) => hex::encode(bytes),
        }
    }

    /// The SHA-256 digest, when this is one.
    pub fn as_sha256(&self) -> Option<Sha256Digest> {
        match self {
            Self::Sha256(d) => Some(*d),
            Self::Sha512(_) => None,
        }
    }

    fn algorithm_kind(&self) -> Algorithm {
        match self {
            Self::Sha256(_) => Algorithm::Sha256,
            Self::Sha512(_) => Algorithm::Sha512,
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl From<Sha256Digest> for Digest {
    fn from(d: Sha256Digest) -> Self {
        Self::Sha256(d)
    }
}

impl From<&Sha256Digest> for Digest {
    fn from(d: &Sha256Digest) -> Self {
        Self::Sha256(*d)
    }
}

impl From<&Digest> for Digest {
    fn from(d: &Digest) -> Self {
        *d
    }
}

#[derive(Debug, Clone, Copy)]
enum Algorithm {
    Sha256,
    Sha512,
}

/// A running hash of either algorithm.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Digest {
        match self {
            Self::Sha256(h) => {
                let mut out = [0u8; 32];
                out.copy_from_slice(&h.finalize());
                Digest::Sha256(Sha256Digest::from_bytes(out))
            }
            Self::Sha512(h) => {
                let mut out = [0u8; 64];
                out.copy_from_slice(&h.finalize());
                Digest::Sha512(out)
            }
        }
    }
}

/// `data`, hashed on its way through with `expected`'s algorithm; when it
/// ends with other content than `expected` names, it ends with
/// [`stowage::Error::DigestMismatch`] instead (and `mismatch` is set), so a
/// write fed from it fails and stores nothing, as a write with an expected
/// SHA-256 does.
pub(crate) fn verified(
    data: WriteStream<'static>,
    expected: Digest,
    mismatch: Arc<AtomicBool>,
) -> WriteStream<'static> {
    let hasher = Some(Hasher::new(expected.algorithm_kind()));
    futures::stream::unfold(
        (data, hasher, mismatch),
        move |(mut data, mut hasher, mismatch)| async move {
            hasher.as_ref()?;
            match data.next().await {
                Some(Ok(chunk)) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    Some((Ok(chunk), (data, hasher, mismatch)))
                }
                // The stream's own failure ends it.
                Some(Err(e)) => Some((Err(e), (data, None, mismatch))),
                None => {
                    let actual = hasher.take().map(Hasher::finish)?;
                    if actual == expected {
                        return None;
                    }
                    mismatch.store(true, Ordering::Release);
                    let error = stowage::Error::DigestMismatch {
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    };
                    Some((Err(error), (data, None, mismatch)))
                }
            }
        },
    )
    .boxed()
}

/// The digest (with `like`'s algorithm) of everything `data` yields.
///
/// # Errors
/// Whatever the stream fails with.
pub(crate) async fn digest_of_stream(
    mut data: stowage::ByteStream,
    like: &Digest,
) -> stowage::Result<Digest> {
    let mut hasher = Hasher::new(like.algorithm_kind());
    while let Some(chunk) = data.next().await {
        hasher.update(&chunk?);
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[test]
    fn parses_both_algorithms_and_refuses_the_rest() {
        let a = Digest::sha256_of(b"x");
        assert_eq!(Digest::parse(&a.to_string()).unwrap(), a);
        let b = Digest::sha512_of(b"x");
        assert_eq!(b.to_string().len(), "sha512:".len() + 128);
        assert_eq!(Digest::parse(&b.to_string()).unwrap(), b);
        assert_eq!(b.of_same_algorithm(b"x"), b);
        assert_eq!(a.of_same_algorithm(b"x"), a);
        assert!(Digest::parse("sha512:ab").is_err());
        assert!(Digest::parse(&b.to_string().to_uppercase().replace("SHA512", "sha512")).is_err());
        assert!(Digest::parse(&format!("md5:{}", "a".repeat(32))).is_err());
        assert!(Digest::parse("sha384:ab").is_err());
        // The empty string's SHA-512, as everyone knows it.
        assert!(Digest::sha512_of(b"")
            .to_string()
            .starts_with("sha512:cf83e1357eefb8bdf1542850d66d8007"));
    }

    #[tokio::test]
    async fn verified_streams_fail_at_the_end_on_a_mismatch() {
        let chunks = || {
            futures::stream::iter(vec![
                Ok(bytes::Bytes::from_static(b"hello ")),
                Ok(bytes::Bytes::from_static(b"world")),
            ])
            .boxed()
        };
        let good = Digest::sha512_of(b"hello world");
        let flag = Arc::new(AtomicBool::new(false));
        let out: Vec<bytes::Bytes> = verified(chunks(), good, flag.clone())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(out.concat(), b"hello world");
        assert!(!flag.load(Ordering::Acquire));
        let bad = Digest::sha512_of(b"something else");
        let out = verified(chunks(), bad, flag.clone())
            .try_collect::<Vec<_>>()
            .await;
        assert!(matches!(out, Err(stowage::Error::DigestMismatch { .. })));
        assert!(flag.load(Ordering::Acquire));
    }
}
