//! Quay-format configuration: accepted shapes and every problem reported.

use stowage::{DriverConfig, Error, StowageConfig};

#[test]
fn reads_a_quay_config_yaml_ignoring_other_keys() {
    let cfg = StowageConfig::parse(
        r#"
SERVER_HOSTNAME: quay.example.com
FEATURE_PROXY_STORAGE: false
DISTRIBUTED_STORAGE_CONFIG:
  default:
    - LocalStorage
    - storage_path: /datastorage/registry
  second:
    - LocalStorage
    - {storage_path: /other}
DISTRIBUTED_STORAGE_PREFERENCE: [second, default]
DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: []
"#,
    )
    .expect("valid");
    assert_eq!(cfg.locations.len(), 2);
    assert_eq!(cfg.locations[0].name, "default", "file order kept");
    assert_eq!(
        cfg.location(None).unwrap().name,
        "second",
        "first preferred"
    );
    let DriverConfig::Local(local) = &cfg.location(Some("default")).unwrap().driver else {
        panic!("local driver expected")
    };
    assert_eq!(local.storage_path.to_str(), Some("/datastorage/registry"));
}

#[test]
fn reads_json() {
    let cfg = StowageConfig::parse(
        r#"{"DISTRIBUTED_STORAGE_CONFIG": {"local": ["LocalStorage", {"storage_path": "/x"}]}}"#,
    )
    .unwrap();
    assert_eq!(cfg.location(None).unwrap().name, "local");
}

#[test]
fn reports_every_problem_with_its_key() {
    let err = StowageConfig::parse(
        r#"
DISTRIBUTED_STORAGE_CONFIG:
  a:
    - LocalStorage
    - storage_pth: /typo
  b:
    - NoSuchStorage
    - {}
  c:
    - S3Storage
    - {s3_bucket: x, s3_region: eu-west-1}
  d: LocalStorage
DISTRIBUTED_STORAGE_PREFERENCE: [a, zz]
DISTRIBUTED_STORAGE_PREFERENCES: [a]
"#,
    )
    .unwrap_err();
    let Error::Config(errs) = &err else {
        panic!("config error expected: {err}")
    };
    let text = err.to_string();
    let keys: Vec<&str> = errs.0.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "DISTRIBUTED_STORAGE_CONFIG.a[1].storage_path",
        "DISTRIBUTED_STORAGE_CONFIG.a[1].storage_pth",
        "DISTRIBUTED_STORAGE_CONFIG.b[0]",
        "DISTRIBUTED_STORAGE_CONFIG.d",
        "DISTRIBUTED_STORAGE_PREFERENCE[1]",
        "DISTRIBUTED_STORAGE_PREFERENCES",
    ] {
        assert!(keys.contains(&expected), "missing {expected} in:\n{text}");
    }
    assert!(
        text.contains("unknown key; accepted keys: storage_path"),
        "{text}"
    );
    assert!(
        text.contains("unknown driver \"NoSuchStorage\"; built in: LocalStorage"),
        "{text}"
    );
    assert!(text.contains("no location named \"zz\""), "{text}");
}

#[test]
fn missing_location_names_the_configured_ones() {
    let cfg = StowageConfig::embedded_default();
    let err = cfg.location(Some("nope")).unwrap_err().to_string();
    assert!(
        err.contains("no location named \"nope\"; configured: local"),
        "{err}"
    );
}

#[tokio::test]
async fn opens_a_local_location() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "DISTRIBUTED_STORAGE_CONFIG:\n  x: [LocalStorage, {{storage_path: {:?}}}]\n",
        dir.path().join("nested/root")
    );
    let cfg = StowageConfig::parse(&text).unwrap();
    let storage = stowage::open(cfg.location(None).unwrap()).await.unwrap();
    assert!(storage.validate().await.is_ok());
    assert!(dir.path().join("nested/root").is_dir());
}

#[test]
fn reads_an_s3_location_with_quay_keys() {
    let cfg = StowageConfig::parse(
        r#"
DISTRIBUTED_STORAGE_CONFIG:
  s3_us_east:
    - S3Storage
    - host: s3.example.internal
      port: 8443
      s3_access_key: AKIAEXAMPLE
      s3_secret_key: example-secret
      s3_bucket: quay-registry
      storage_path: /datastorage/registry
"#,
    )
    .unwrap();
    let DriverConfig::S3(c) = &cfg.location(None).unwrap().driver else {
        panic!("S3 expected")
    };
    assert_eq!(c.bucket, "quay-registry");
    assert_eq!(c.root, "datastorage/registry");
    assert_eq!(
        c.endpoint.as_deref(),
        Some("https://s3.example.internal:8443")
    );
    assert!(c.path_style);
    assert!(
        !format!("{cfg:?}").contains("example-secret"),
        "no secret in Debug"
    );
}
