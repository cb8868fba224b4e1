//! Just enough DER for private key files: read the outer layers of PKCS#8
//! (`PrivateKeyInfo`), PKCS#1 (`RSAPrivateKey`) and SEC1 (`ECPrivateKey`)
//! to learn the key's algorithm, curve, size and public half, and write a
//! `SubjectPublicKeyInfo`. Both signing backends share it, so the error
//! messages and the public key PEM are the same whichever signs, and the
//! default build needs no ASN.1 crate. The key material itself is checked by
//! the backend that loads it.
//!
//! Every reader returns `None` on malformed input; nothing here panics.

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0]`, constructed: SEC1's `parameters`.
const CONTEXT_0: u8 = 0xa0;

/// Object identifiers, each as a whole DER element (tag, length, value), so
/// they compare directly with what [`pkcs8`] and [`sec1_curve`] return.
pub(super) const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
pub(super) const OID_RSA_PSS: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
];
pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (secp256r1, NIST P-256).
pub(super) const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(super) const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
pub(super) const OID_ED448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
pub(super) const OID_DSA: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];

/// The `AlgorithmIdentifier` contents of an RSA public key: rsaEncryption
/// with NULL parameters.
const RSA_ALGORITHM: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// The `AlgorithmIdentifier` contents of a P-256 public key: id-ecPublicKey
/// on the named curve prime256v1.
const P256_ALGORITHM: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07,
];

/// One DER element.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    /// The contents.
    body: &'a [u8],
    /// The whole element: tag, length and contents.
    raw: &'a [u8],
}

/// Reads the element at the front of `input`, and what follows it. `None`
/// when `input` is empty or the element is truncated.
fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (body, after) = rest.split_at(len);
    let raw = &input[..input.len() - after.len()];
    Some((Tlv { tag, body, raw }, after))
}

/// Reads an element that must have tag `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    next(input).filter(|(element, _)| element.tag == tag)
}

/// The parts of a PKCS#8 `PrivateKeyInfo` that say what the key is.
#[derive(Debug)]
pub(super) struct Pkcs8<'a> {
    /// The algorithm's OID, as a whole element (compare with `OID_*`).
    pub(super) algorithm: &'a [u8],
    /// The algorithm's parameters as a whole element (for EC keys, the
    /// curve's OID), if any.
    pub(super) parameters: Option<&'a [u8]>,
    /// The `privateKey` OCTET STRING's contents: for RSA, a PKCS#1
    /// `RSAPrivateKey`.
    pub(super) private_key: &'a [u8],
}

/// Reads a PKCS#8 `PrivateKeyInfo` (unencrypted).
pub(super) fn pkcs8(der: &[u8]) -> Option<Pkcs8<'_>> {
    let (info, _) = expect(der, SEQUENCE)?;
    let (_version, rest) = expect(info.body, INTEGER)?;
    let (algorithm, rest) = expect(rest, SEQUENCE)?;
    let (private_key, _) = expect(rest, OCTET_STRING)?;
    let (oid, parameters) = expect(algorithm.body, OBJECT_IDENTIFIER)?;
    Some(Pkcs8 {
        algorithm: oid.raw,
        parameters: next(parameters).map(|(p, _)| p.raw),
        private_key: private_key.body,
    })
}

/// The public half of an RSA key, read from its PKCS#1 `RSAPrivateKey`.
#[derive(Debug)]
pub(super) struct RsaPublic {
    /// The modulus size in bits, as whole bytes (2048 for a 2048-bit key).
    pub(super) bits: usize,
    /// PKCS#1 `RSAPublicKey` DER (modulus and exponent).
    pub(super) pkcs1: Vec<u8>,
}

/// Reads the modulus and public exponent of a PKCS#1 `RSAPrivateKey`.
pub(super) fn rsa_public(private_pkcs1: &[u8]) -> Option<RsaPublic> {
    let (key, _) = expect(private_pkcs1, SEQUENCE)?;
    let (_version, rest) = expect(key.body, INTEGER)?;
    let (modulus, rest) = expect(rest, INTEGER)?;
    let (exponent, _) = expect(rest, INTEGER)?;
    let modulus_bytes = modulus.body.iter().skip_while(|&&b| b == 0).count();
    if modulus_bytes == 0 || exponent.body.iter().all(|&b| b == 0) {
        return None;
    }
    Some(RsaPublic {
        bits: modulus_bytes * 8,
        pkcs1: encode(SEQUENCE, &[modulus.raw, exponent.raw].concat()),
    })
}

/// The `parameters` of a SEC1 `ECPrivateKey` as a whole element (the named
/// curve's OID), when the key has them.
pub(super) fn sec1_curve(der: &[u8]) -> Option<&[u8]> {
    let (key, _) = expect(der, SEQUENCE)?;
    let (_version, rest) = expect(key.body, INTEGER)?;
    let (_private, mut rest) = expect(rest, OCTET_STRING)?;
    while let Some((field, after)) = next(rest) {
        if field.tag == CONTEXT_0 {
            return next(field.body).map(|(curve, _)| curve.raw);
        }
        rest = after;
    }
    None
}

/// DER of an element with `tag` and `contents`.
fn encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// `SubjectPublicKeyInfo` DER (what `openssl pkey -pubout` writes) for an
/// algorithm's identifier contents and the public key bytes.
fn spki(algorithm: &[u8], public_key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(public_key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(public_key);
    encode(
        SEQUENCE,
        &[encode(SEQUENCE, algorithm), encode(BIT_STRING, &bits)].concat(),
    )
}

/// `SubjectPublicKeyInfo` of an RSA key from its PKCS#1 `RSAPublicKey`.
pub(super) fn rsa_spki(public_pkcs1: &[u8]) -> Vec<u8> {
    spki(RSA_ALGORITHM, public_pkcs1)
}

/// `SubjectPublicKeyInfo` of a P-256 key from its uncompressed point
/// (`04 || x || y`).
pub(super) fn p256_spki(point: &[u8]) -> Vec<u8> {
    spki(P256_ALGORITHM, point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_odd_input_reads_as_none() {
        let cases: [&[u8]; 6] = [
            &[],
            &[0x30],
            &[0x30, 0x05, 0x02],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ];
        for input in cases {
            assert!(next(input).is_none(), "{input:?}");
            assert!(pkcs8(input).is_none());
            assert!(rsa_public(input).is_none());
            assert!(sec1_curve(input).is_none());
        }
    }

    #[test]
    fn long_lengths_round_trip() {
        for len in [0, 1, 127, 128, 255, 256, 70_000] {
            let body = vec![7u8; len];
            let der = encode(OCTET_STRING, &body);
            let (tlv, rest) = next(&der).unwrap();
            assert_eq!(
                (tlv.tag, tlv.body, tlv.raw),
                (OCTET_STRING, &body[..], &der[..])
            );
            assert!(rest.is_empty());
        }
    }
}
