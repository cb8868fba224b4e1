//! Reading `CloudFrontedS3Storage` parameters.

use serde_json::{json, Value};
use stowage_core::config::Params;

use super::*;

fn parse(v: Value) -> Result<CloudFrontConfig, String> {
    let map = v.as_object().unwrap().clone();
    CloudFrontConfig::from_params(Params::new("loc[1]", &map)).map_err(|e| e.to_string())
}

fn base() -> Value {
    json!({
        "s3_bucket": "registry-bucket",
        "storage_path": "/registry",
        "cloudfront_distribution_domain": "d111111abcdef8.cloudfront.net",
        "cloudfront_key_id": "APKAEIBAERJR2EXAMPLE",
        "cloudfront_privatekey_filename": "/keys/cf.pem",
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

#[test]
fn quay_keys_give_legacy_mode_by_shape() {
    let c = parse(base()).unwrap();
    assert_eq!(c.mode, SigningMode::LegacyKeyPair);
    assert_eq!(c.configured_mode, SigningMode::Auto);
    assert_eq!(c.distribution_url, "https://d111111abcdef8.cloudfront.net");
    assert_eq!(c.s3.root, "registry");
    assert_eq!(c.policy, PolicyKind::Canned);
    assert!(c.bypass_without_client_ip);
}

#[test]
fn key_group_with_rotation_keys() {
    let v = json!({
        "s3_bucket": "registry-bucket",
        "cloudfront_distribution_domain": "http://127.0.0.1:8080",
        "cloudfront_signing_mode": "key_group",
        "cloudfront_key_group_keys": [
            {"key_id": "K2JCJMDEHXQW5F", "private_key_filename": "/k/new.pem"},
            {"key_id": "K3OLDKEY000001", "private_key_filename": "/k/old.pem"},
        ],
        "cloudfront_distribution_org_overrides": {"acme": "acme.cdn.example.com"},
        "cloudfront_hash_algorithm": "SHA256",
    });
    let c = parse(v).unwrap();
    assert_eq!(c.mode, SigningMode::KeyGroup);
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.keys[0].key_id, "K2JCJMDEHXQW5F");
    assert_eq!(c.hash, HashAlgorithm::Sha256);
    assert_eq!(c.base_url_for(Some("acme")), "https://acme.cdn.example.com");
    assert_eq!(c.base_url_for(Some("other")), "http://127.0.0.1:8080");
}

#[test]
fn mode_contradicting_the_id_is_a_config_error() {
    let e = parse(with(base(), "cloudfront_signing_mode", json!("key_group"))).unwrap_err();
    assert!(e.contains("loc[1].cloudfront_key_id"), "{e}");
    assert!(e.contains("legacy CloudFront key pair id"), "{e}");
    let v = with(
        with(base(), "cloudfront_key_id", json!("K2JCJMDEHXQW5F")),
        "cloudfront_signing_mode",
        json!("legacy_key_pair"),
    );
    let e = parse(v).unwrap_err();
    assert!(e.contains("public key in a key group"), "{e}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let v = json!({
        "s3_bucket": "registry-bucket",
        "cloudfront_distribution_domain": "https://d.example.net/path",
        "cloudfront_key_id": "K2JCJMDEHXQW5F",
        "cloudfront_signing_mode": "sometimes",
        "cloudfront_policy": "lax",
        "cloudfront_hash_algorithm": "md5",
        "cloudfront_key_group_keys": [{"key_id": "K3X"}],
        "cloudfront_unknown": 1,
    });
    let e = parse(v).unwrap_err();
    for key in [
        "loc[1].cloudfront_distribution_domain",
        "loc[1].cloudfront_privatekey_filename",
        "loc[1].cloudfront_signing_mode",
        "loc[1].cloudfront_policy",
        "loc[1].cloudfront_hash_algorithm",
        "loc[1].cloudfront_key_group_keys[0]",
        "loc[1].cloudfront_unknown",
    ] {
        assert!(e.contains(key), "{key} missing from:\n{e}");
    }
}

#[test]
fn no_key_at_all_is_an_error() {
    let v =
        json!({"s3_bucket": "registry-bucket", "cloudfront_distribution_domain": "d.example.net"});
    let e = parse(v).unwrap_err();
    assert!(e.contains("no signing key"), "{e}");
}

#[test]
fn legacy_mode_takes_one_key_only() {
    let v = with(
        base(),
        "cloudfront_key_group_keys",
        json!([{"key_id": "APKAOTHER0000000000", "private_key_filename": "/k"}]),
    );
    let e = parse(v).unwrap_err();
    assert!(e.contains("one root-account key pair"), "{e}");
}
