//! The CloudFront signer against outside oracles: URLs and cookies
//! byte-identical to botocore's `CloudFrontSigner` (RSA, SHA-1) over a table
//! of awkward URLs, and signatures that `openssl dgst -verify` accepts for
//! RSA and ECDSA, SHA-1 and SHA-256. `stowage sign` is checked the same way.
//! Needs python3 with botocore and the openssl command (no S3 server).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use stowage_cloudfront::signer::{
    decode_cloudfront_base64, normalize_url, CloudFrontSigner, HashAlgorithm, IpCidr, Policy,
    PrivateKey,
};
use stowage_integration::cloudfront::{key_file, script};

const EXPIRES: i64 = 1_900_000_000;

/// URLs other signers got wrong: spaces, `=`, `,`, `@`, `%2F`, non-ASCII,
/// `&` and existing query strings, response-content-disposition with a
/// filename.
const URLS: &[&str] = &[
    "https://d111111abcdef8.cloudfront.net/registry/sha256/ab/abcdef",
    "https://d111111abcdef8.cloudfront.net/a b/c d.tar",
    "https://d111111abcdef8.cloudfront.net/k=v,w@x/y",
    "https://d111111abcdef8.cloudfront.net/dir%2Fname/file",
    "https://d111111abcdef8.cloudfront.net/caf\u{e9}/\u{30ec}\u{30a4}\u{30e4}\u{30fc}",
    "https://d111111abcdef8.cloudfront.net/x?a=1&b=2",
    "https://d111111abcdef8.cloudfront.net/blob?response-content-disposition=attachment%3B%20filename%3D%22layer%20one.tar%22",
    "https://d111111abcdef8.cloudfront.net/blob?response-content-disposition=attachment; filename=\"x y.tar\"",
    "https://d111111abcdef8.cloudfront.net/100%/50% off",
    "https://d111111abcdef8.cloudfront.net/q\"uote/and\\back",
    "http://cdn.example.com:8080/p?x=a&y=b&y=c",
];

fn oracle(cases: &[Value]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(script("botocore_oracle.py"))
        .arg("sign")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the botocore oracle");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore oracle failed (is botocore installed?)"
    );
    serde_json::from_slice(&out.stdout).expect("oracle JSON")
}

fn signer(key: &str, id: &str) -> CloudFrontSigner {
    CloudFrontSigner::new(id, PrivateKey::from_pem_file(&key_file(key)).unwrap())
}

#[test]
fn canned_and_custom_urls_match_botocore_byte_for_byte() {
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for key in ["rsa2048-pkcs1.pem", "rsa2048-pkcs8.pem"] {
        let s = signer(key, "K2JCJMDEHXQW5F");
        for raw in URLS {
            let url = normalize_url(raw).unwrap();
            cases.push(json!({"url": url, "key_id": "K2JCJMDEHXQW5F",
                "private_key": key_file(key), "policy": "canned", "expires": EXPIRES,
                "not_before": null, "ip": null, "resource": null, "cookies": false}));
            ours.push(s.signed_url_canned(&url, EXPIRES).unwrap());

            // Custom: a wildcard over the URL's directory, not-before, a CIDR.
            let resource = format!("{}*", &url[..url.rfind('/').unwrap() + 1]);
            let mut policy = Policy::canned(resource.clone(), EXPIRES);
            policy.date_greater_than = Some(EXPIRES - 3600);
            policy.source_ip = Some(IpCidr::parse("192.0.2.0/24").unwrap());
            cases.push(json!({"url": url, "key_id": "K2JCJMDEHXQW5F",
                "private_key": key_file(key), "policy": "custom", "expires": EXPIRES,
                "not_before": EXPIRES - 3600, "ip": "192.0.2.0/24", "resource": resource,
                "cookies": false}));
            ours.push(s.signed_url_custom(&url, &policy).unwrap());
        }
    }
    let theirs = oracle(&cases);
    assert_eq!(theirs.len(), ours.len());
    for ((case, mine), botocore) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(
            mine,
            botocore["url"].as_str().unwrap(),
            "differs from botocore for {case}"
        );
    }
}

#[test]
fn cookies_match_botocore() {
    let s = signer("rsa2048-pkcs8.pem", "APKAEIBAERJR2EXAMPLE");
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for raw in URLS {
        let url = normalize_url(raw).unwrap();
        cases.push(json!({"url": url, "key_id": "APKAEIBAERJR2EXAMPLE",
            "private_key": key_file("rsa2048-pkcs8.pem"), "policy": "canned",
            "expires": EXPIRES, "not_before": null, "ip": null, "resource": null,
            "cookies": true}));
        ours.push(
            s.signed_cookies(&Policy::canned(&url, EXPIRES), true)
                .unwrap(),
        );
        let mut policy = Policy::canned("https://d111111abcdef8.cloudfront.net/*", EXPIRES);
        policy.source_ip = Some(IpCidr::parse("2001:db8::/32").unwrap());
        cases.push(json!({"url": url, "key_id": "APKAEIBAERJR2EXAMPLE",
            "private_key": key_file("rsa2048-pkcs8.pem"), "policy": "custom",
            "expires": EXPIRES, "not_before": null, "ip": "2001:db8::/32",
            "resource": policy.resource, "cookies": true}));
        ours.push(s.signed_cookies(&policy, false).unwrap());
    }
    let theirs = oracle(&cases);
    for ((case, mine), botocore) in cases.iter().zip(&ours).zip(&theirs) {
        let theirs: Vec<(String, String)> =
            serde_json::from_value(botocore["cookies"].clone()).unwrap();
        let mine: Vec<(String, String)> = mine
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        assert_eq!(mine, theirs, "cookies differ from botocore for {case}");
    }
}

/// `openssl dgst -<hash> -verify public.pem -signature sig policy`.
fn openssl_verifies(public: &str, hash: HashAlgorithm, policy: &str, signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (dir.path().join("policy"), dir.path().join("sig"));
    std::fs::write(&p, policy).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new("openssl")
        .arg("dgst")
        .arg(format!("-{}", hash.as_str()))
        .arg("-verify")
        .arg(key_file(public))
        .arg("-signature")
        .arg(&s)
        .arg(&p)
        .output()
        .expect("openssl runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[test]
fn openssl_verifies_rsa_and_ecdsa_signatures() {
    for (key, public) in [
        ("rsa2048-pkcs1.pem", "rsa2048-public.pem"),
        ("ec-p256-pkcs8.pem", "ec-p256-public.pem"),
        ("ec-p256-sec1.pem", "ec-p256-public.pem"),
    ] {
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
            let s = signer(key, "K2JCJMDEHXQW5F").with_hash(hash);
            let url = normalize_url(URLS[1]).unwrap();
            let signed = s.signed_url_canned(&url, EXPIRES).unwrap();
            let sig = signed
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("Signature="))
                .unwrap();
            let raw = decode_cloudfront_base64(sig).unwrap();
            let policy = Policy::canned(&url, EXPIRES).to_json();
            assert!(
                openssl_verifies(public, hash, &policy, &raw),
                "{key} {hash:?}"
            );
            assert!(
                !openssl_verifies(public, hash, &format!("{policy} "), &raw),
                "a changed policy must not verify"
            );
            assert!(
                !openssl_verifies("rsa2048-second-public.pem", hash, &policy, &raw),
                "another key must not verify"
            );
        }
    }
}

/// `stowage sign --key-id ID --private-key KEY ARGS...`.
fn sign(id: &str, key: &Path, args: &[&str]) -> Output {
    Command::new(stowage_integration::stowage_binary())
        .args(["sign", "--key-id", id, "--private-key"])
        .arg(key)
        .args(args)
        .output()
        .unwrap()
}

/// What `stowage sign` prints, asserting it succeeded.
fn sign_ok(id: &str, key: &Path, args: &[&str]) -> String {
    let out = sign(id, key, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn stowage_sign_matches_botocore() {
    let key = key_file("rsa2048-pkcs1.pem");
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for raw in URLS {
        let expires = EXPIRES.to_string();
        ours.push(sign_ok(
            "K2JCJMDEHXQW5F",
            &key,
            &["--expires", &expires, raw],
        ));
        cases.push(
            json!({"url": normalize_url(raw).unwrap(), "key_id": "K2JCJMDEHXQW5F",
            "private_key": key, "policy": "canned", "expires": EXPIRES, "not_before": null,
            "ip": null, "resource": null, "cookies": false}),
        );
        let not_before = (EXPIRES - 10).to_string();
        ours.push(sign_ok(
            "K2JCJMDEHXQW5F",
            &key,
            &[
                "--policy",
                "custom",
                "--expires",
                &expires,
                "--not-before",
                &not_before,
                "--ip",
                "10.0.0.1",
                raw,
            ],
        ));
        cases.push(
            json!({"url": normalize_url(raw).unwrap(), "key_id": "K2JCJMDEHXQW5F",
            "private_key": key, "policy": "custom", "expires": EXPIRES,
            "not_before": EXPIRES - 10, "ip": "10.0.0.1", "resource": null, "cookies": false}),
        );
    }
    let cookie_lines = sign_ok(
        "APKAEIBAERJR2EXAMPLE",
        &key,
        &["--cookies", "--expires", &EXPIRES.to_string(), URLS[0]],
    );
    let theirs = oracle(&cases);
    for ((case, mine), botocore) in cases.iter().zip(&ours).zip(&theirs) {
        assert_eq!(mine, botocore["url"].as_str().unwrap(), "{case}");
    }
    let cookie_case = json!({"url": URLS[0], "key_id": "APKAEIBAERJR2EXAMPLE",
        "private_key": key, "policy": "canned", "expires": EXPIRES, "not_before": null,
        "ip": null, "resource": null, "cookies": true});
    let theirs = oracle(&[cookie_case]);
    let expected: Vec<String> = theirs[0]["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}={}", c[0].as_str().unwrap(), c[1].as_str().unwrap()))
        .collect();
    assert_eq!(cookie_lines.lines().collect::<Vec<_>>(), expected);

    // A wrong key file is a usage error naming the file.
    let out = sign(
        "K2JCJMDEHXQW5F",
        &key_file("rsa2048-public.pem"),
        &[URLS[0]],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rsa2048-public.pem") && err.contains("public key"),
        "{err}"
    );
}
