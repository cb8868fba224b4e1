//! Signer behaviour on the throwaway keys in `testdata/`.

use std::path::PathBuf;

use super::*;

pub(crate) fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn key(name: &str) -> PrivateKey {
    PrivateKey::from_pem_file(&testdata(name)).unwrap()
}

fn key_error(name: &str) -> String {
    PrivateKey::from_pem_file(&testdata(name))
        .unwrap_err()
        .to_string()
}

#[test]
fn pkcs1_and_pkcs8_rsa_are_the_same_key() {
    let a = key("rsa2048-pkcs1.pem");
    let b = key("rsa2048-pkcs8.pem");
    assert_eq!(a.kind(), KeyKind::Rsa(2048));
    let sig = a.sign(b"policy", HashAlgorithm::Sha1).unwrap();
    // PKCS#1 v1.5 is deterministic: blinding changes the computation only.
    assert_eq!(sig, b.sign(b"policy", HashAlgorithm::Sha1).unwrap());
    assert!(b.verify(b"policy", &sig, HashAlgorithm::Sha1));
    assert!(!b.verify(b"policy!", &sig, HashAlgorithm::Sha1));
    assert!(!b.verify(b"policy", &sig, HashAlgorithm::Sha256));
    assert_eq!(
        a.public_key_pem(),
        std::fs::read_to_string(testdata("rsa2048-public.pem")).unwrap()
    );
}

#[test]
fn ecdsa_sec1_and_pkcs8_sign_and_verify() {
    for name in ["ec-p256-sec1.pem", "ec-p256-pkcs8.pem"] {
        let k = key(name);
        assert_eq!(k.kind(), KeyKind::EcdsaP256);
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
            let sig = k.sign(b"policy", hash).unwrap();
            assert_eq!(sig[0], 0x30, "DER sequence");
            assert!(k.verify(b"policy", &sig, hash));
            assert!(!k.verify(b"other", &sig, hash));
        }
    }
}

#[test]
fn unusable_keys_get_errors_that_say_what_to_do() {
    let e = key_error("rsa2048-encrypted.pem");
    assert!(e.contains("encrypted") && e.contains("openssl pkey"), "{e}");
    let e = key_error("rsa2048-encrypted-legacy.pem");
    assert!(e.contains("encrypted"), "{e}");
    let e = key_error("rsa2048-public.pem");
    assert!(e.contains("public key") && e.contains("private key"), "{e}");
    let e = key_error("ec-p384.pem");
    assert!(e.contains("P-256"), "{e}");
    let e = key_error("ed25519.pem");
    assert!(e.contains("EdDSA"), "{e}");
    let e = key_error("README.md");
    assert!(
        e.contains("not a PEM file") && e.contains("README.md"),
        "{e}"
    );
    let e = key_error("does-not-exist.pem");
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn canned_url_appends_parameters_after_existing_query() {
    let signer = CloudFrontSigner::new("K2JCJMDEHXQW5F", key("rsa2048-pkcs1.pem"));
    let url =
        "https://d.example.net/a%20b?response-content-disposition=attachment%3B%20filename%3Dx";
    let signed = signer.signed_url_canned(url, 1_900_000_000).unwrap();
    let (base, params) = signed.split_once("&Expires=").unwrap();
    assert_eq!(base, url, "the signed URL starts with the URL, untouched");
    assert!(params.starts_with("1900000000&Signature="));
    assert!(params.ends_with("&Key-Pair-Id=K2JCJMDEHXQW5F"));
    let sig = params
        .split('&')
        .find_map(|p| p.strip_prefix("Signature="))
        .unwrap();
    let raw = decode_cloudfront_base64(sig).unwrap();
    let policy = Policy::canned(url, 1_900_000_000).to_json();
    assert!(signer
        .key()
        .verify(policy.as_bytes(), &raw, HashAlgorithm::Sha1));
}

#[test]
fn sha256_adds_hash_algorithm_parameter_and_cookie() {
    let signer = CloudFrontSigner::new("K2JCJMDEHXQW5F", key("ec-p256-pkcs8.pem"))
        .with_hash(HashAlgorithm::Sha256);
    let signed = signer
        .signed_url_canned("https://d.example.net/x", 1_900_000_000)
        .unwrap();
    assert!(signed.ends_with("&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256"));
    let cookies = signer
        .signed_cookies(&Policy::canned("https://d.example.net/x", 5), true)
        .unwrap();
    let names: Vec<&str> = cookies.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "CloudFront-Expires",
            "CloudFront-Signature",
            "CloudFront-Key-Pair-Id",
            "CloudFront-Hash-Algorithm"
        ]
    );
}

#[test]
fn custom_policy_url_and_cookies_carry_the_policy() {
    let signer = CloudFrontSigner::new("APKAEIBAERJR2EXAMPLE", key("rsa2048-pkcs8.pem"));
    let policy = Policy {
        resource: "https://d.example.net/blobs/*".into(),
        date_less_than: 1_900_000_000,
        date_greater_than: Some(1_800_000_000),
        source_ip: Some(IpCidr::parse("192.0.2.0/24").unwrap()),
    };
    let signed = signer
        .signed_url_custom("https://d.example.net/blobs/x", &policy)
        .unwrap();
    let encoded = signed
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("Policy="))
        .unwrap();
    let json = decode_cloudfront_base64(encoded).unwrap();
    assert_eq!(json, policy.to_json().as_bytes());
    let cookies = signer.signed_cookies(&policy, false).unwrap();
    assert_eq!(cookies[0], ("CloudFront-Policy", encoded.to_string()));
    assert!(
        signer.signed_cookies(&policy, true).is_err(),
        "canned cookies cannot carry conditions"
    );
    assert!(signer
        .signed_url_canned("https://d.example.net/blobs/*", 1)
        .is_err());
    let backwards = Policy {
        date_greater_than: Some(1_900_000_001),
        ..policy
    };
    assert!(matches!(
        signer.sign_policy(&backwards),
        Err(SignError::InvalidPolicy(_))
    ));
}

/// `openssl dgst -<hash> -sign rsa2048-pkcs1.pem` of `policy`: PKCS#1 v1.5
/// is deterministic, so every backend must write exactly these bytes.
const OPENSSL_RSA_SHA1: &str = "X7socO9d8hmsKybkV5E+twN7qTANrol1ss38fEPLpEzVt2b2pVwFviYufQhvw2f9cPQALkfGnxYht12l+KpkT1/LFPvqa1w+mDJ8GNjpMeSTXGbfNdM5+6ZZY/uMv2QAuDdjhisHWBBuo44zUtgHlftij3s6eHTm+0tlkgkEurTqMtCqx0xNBbp8EMt8N9fkwcyEEYst6vKyCmSmdCdRQIy0ksil4WhB2gxuB5ZlzdRMVPqfJcF3+ZIU3sxX2Rex9xlj6PRAkVo2B4Sk6s/XZ54YhFyiTubMR7Iy6XpDfksTo5XtppC1gNkveYi3qvqgQ4fsmxpSfr1og/YbFlCuWw==";
const OPENSSL_RSA_SHA256: &str = "0IkkOR548gGETCbxFQ5GsRA+CMCPC0A9h9S0LB8Nzp+fyFCEIb4hUxUx+NzbpFgxiABL7aAfSdQxZhFNXcAGHSjYmk+NZk+Oe+MfTVNa2+H6mAR7b1QoX/ai/MZ7SZ9iWspRXKzin/YtBciR4envFEAkKw7SYtqE8cEe8PenjFhSX15WpzStTTscoGTzNt/bf/yGfCivw/PCjzMH9ZWndRhqbcE0B4a1YXSs/WWHel/lxTpTTxb9DNLrSIVXtLu2fwnfqIyYJyBzIXE/cYKdY6Bocn5odc0BK/xapdoLZ+FhHJ5y2Y4/lKbtGOmdzVq+2GP0XwfVO0qh8rpZ0V7/JA==";

#[test]
fn rsa_signatures_are_openssls_bytes_on_every_backend() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for name in ["rsa2048-pkcs1.pem", "rsa2048-pkcs8.pem"] {
        let k = key(name);
        for (hash, expected) in [
            (HashAlgorithm::Sha1, OPENSSL_RSA_SHA1),
            (HashAlgorithm::Sha256, OPENSSL_RSA_SHA256),
        ] {
            let sig = k.sign(b"policy", hash).unwrap();
            assert_eq!(
                b64.encode(&sig),
                expected,
                "{name} {hash:?} on the {SIGNING_BACKEND} backend"
            );
            assert!(k.verify(b"policy", &sig, hash));
        }
    }
}

#[test]
fn ecdsa_public_key_pem_is_what_openssl_writes() {
    let expected = std::fs::read_to_string(testdata("ec-p256-public.pem")).unwrap();
    assert_eq!(key("ec-p256-sec1.pem").public_key_pem(), expected);
    assert_eq!(key("ec-p256-pkcs8.pem").public_key_pem(), expected);
}

#[test]
fn ecdsa_signatures_are_der_and_tied_to_their_hash() {
    let k = key("ec-p256-sec1.pem");
    let sha1 = k.sign(b"policy", HashAlgorithm::Sha1).unwrap();
    let sha256 = k.sign(b"policy", HashAlgorithm::Sha256).unwrap();
    for sig in [&sha1, &sha256] {
        // SEQUENCE { INTEGER r, INTEGER s }, short form length.
        assert_eq!((sig[0], usize::from(sig[1]) + 2), (0x30, sig.len()));
        assert_eq!(sig[2], 0x02);
    }
    assert!(!k.verify(b"policy", &sha1, HashAlgorithm::Sha256));
    assert!(!k.verify(b"policy", &sha256, HashAlgorithm::Sha1));
    assert!(!k.verify(b"policy", b"not DER", HashAlgorithm::Sha1));
    let other = key("ec-p256-pkcs8.pem");
    assert!(
        other.verify(b"policy", &sha1, HashAlgorithm::Sha1),
        "same key"
    );
}

#[test]
fn rsa_1024_parses_and_signs_so_the_mode_check_can_name_it() {
    // CloudFront refuses it (check_key_for_mode says so), but the key
    // itself is valid and both backends load it.
    let k = key("rsa1024.pem");
    assert_eq!(k.kind(), KeyKind::Rsa(1024));
    for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
        let sig = k.sign(b"policy", hash).unwrap();
        assert_eq!(sig.len(), 128);
        assert!(k.verify(b"policy", &sig, hash));
    }
    let e = check_key_for_mode(&k, SigningMode::KeyGroup, "rsa1024.pem").unwrap_err();
    assert!(e.to_string().contains("RSA 1024"), "{e}");
}

#[test]
fn ec_parameters_block_before_the_key_is_skipped() {
    let sec1 = std::fs::read_to_string(testdata("ec-p256-sec1.pem")).unwrap();
    let text = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
    );
    assert_eq!(
        PrivateKey::from_pem(&text).unwrap().kind(),
        KeyKind::EcdsaP256
    );
}

#[test]
fn damaged_pem_is_an_error_not_a_panic() {
    let err = |text: &str| PrivateKey::from_pem(text).unwrap_err().to_string();
    let e = err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert!(e.contains("not a valid PKCS#8"), "{e}");
    let e = err("-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n");
    assert!(e.contains("not a valid PKCS#1 RSA private key"), "{e}");
    let e = err("-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n");
    assert!(e.contains("P-256"), "{e}");
    let e = err("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n");
    assert!(e.contains("base64"), "{e}");
    let e = err("-----BEGIN PRIVATE KEY-----\nAAAA\n");
    assert!(e.contains("-----END PRIVATE KEY-----"), "{e}");
    // A real key with its last bytes cut off.
    let pkcs1 = std::fs::read_to_string(testdata("rsa2048-pkcs1.pem")).unwrap();
    let mut lines: Vec<&str> = pkcs1.lines().collect();
    lines.remove(lines.len() - 2);
    let e = err(&lines.join("\n"));
    assert!(e.contains("RSA"), "{e}");
}

#[test]
fn keys_are_shared_between_threads() {
    let k = key("rsa2048-pkcs8.pem");
    let e = key("ec-p256-pkcs8.pem");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
                    assert!(k.verify(b"x", &k.sign(b"x", hash).unwrap(), hash));
                    assert!(e.verify(b"x", &e.sign(b"x", hash).unwrap(), hash));
                }
            });
        }
    });
}
