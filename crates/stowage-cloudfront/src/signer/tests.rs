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
