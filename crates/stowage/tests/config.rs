//! Quay-format configuration: accepted shapes and every problem reported.

use std::path::{Path, PathBuf};

use stowage::{DriverConfig, Error, S3CompatibleDriver, StowageConfig};

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
    // Alone, an unknown driver blocks nothing (it is refused only when
    // used); with other problems it is listed too, so that fixing them
    // uncovers nothing new.
    assert!(
        keys.contains(&"DISTRIBUTED_STORAGE_CONFIG.b[0]")
            && text.contains("unknown driver \"NoSuchStorage\""),
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

/// The S3 configuration of an S3-compatible location, or a panic naming
/// what the location is instead.
fn s3_compatible<'a>(
    cfg: &'a StowageConfig,
    name: &str,
) -> (S3CompatibleDriver, &'a stowage::s3::S3Config) {
    match &cfg.location(Some(name)).unwrap().driver {
        DriverConfig::S3Compatible { driver, config } => (*driver, &**config),
        other => panic!("{name}: S3-compatible location expected, found {other:?}"),
    }
}

#[test]
fn quays_s3_compatible_drivers_run_on_the_s3_driver() {
    let cfg = StowageConfig::parse(
        r#"
DISTRIBUTED_STORAGE_CONFIG:
  ceph:
    - RadosGWStorage
    - access_key: RGWACCESS
      secret_key: rgw-secret-value
      bucket_name: quay-rgw
      hostname: rgw.example.internal
      is_secure: false
      port: 7480
      storage_path: /datastorage/registry
  odf:
    - RHOCSStorage
    - access_key: ODFACCESS
      secret_key: odf-secret-value
      bucket_name: quay-datastore-1234
      hostname: s3.openshift-storage.svc.cluster.local
      is_secure: true
      port: "443"
      storage_path: /datastorage/registry
      maximum_chunk_size_mb: 100
      server_side_assembly: false
  ibm:
    - IBMCloudStorage
    - access_key: IBMACCESS
      secret_key: ibm-secret-value
      bucket_name: quay-ibm
      hostname: s3.us-south.cloud-object-storage.appdomain.cloud
      is_secure: 'true'
      storage_path: /registry
      minimum_chunk_size_mb: 50
      maximum_chunk_size_gb: 2
"#,
    )
    .expect("valid");
    let mib = 1024 * 1024;

    let (driver, c) = s3_compatible(&cfg, "ceph");
    assert_eq!(driver, S3CompatibleDriver::RadosGw);
    assert_eq!(
        c.endpoint.as_deref(),
        Some("http://rgw.example.internal:7480")
    );
    assert!(c.path_style, "path-style addressing");
    assert_eq!(c.sse, stowage::s3::ServerSideEncryption::None);
    assert_eq!(c.bucket, "quay-rgw");
    assert_eq!(c.root, "datastorage/registry");
    assert_eq!(c.access_key.as_deref(), Some("RGWACCESS"));
    assert_eq!(
        c.secret_key.as_ref().map(|s| s.expose()),
        Some("rgw-secret-value")
    );
    assert_eq!(c.max_chunk_size, 32 * mib, "Quay's RadosGW default");
    assert!(c.server_side_assembly);

    let (driver, c) = s3_compatible(&cfg, "odf");
    assert_eq!(driver, S3CompatibleDriver::Rhocs);
    assert_eq!(
        c.endpoint.as_deref(),
        Some("https://s3.openshift-storage.svc.cluster.local:443")
    );
    assert!(c.path_style);
    assert_eq!(c.max_chunk_size, 100 * mib);
    assert!(!c.server_side_assembly);

    let (driver, c) = s3_compatible(&cfg, "ibm");
    assert_eq!(driver, S3CompatibleDriver::IbmCloud);
    assert_eq!(
        c.endpoint.as_deref(),
        Some("https://s3.us-south.cloud-object-storage.appdomain.cloud")
    );
    assert_eq!(c.min_chunk_size, 50 * mib);
    assert_eq!(c.max_chunk_size, 2 * 1024 * mib);

    for (name, quay) in [
        ("ceph", "RadosGWStorage"),
        ("odf", "RHOCSStorage"),
        ("ibm", "IBMCloudStorage"),
    ] {
        let loc = cfg.location(Some(name)).unwrap();
        assert_eq!(loc.driver.driver_name(), quay);
        loc.check_supported().unwrap();
    }
    let dbg = format!("{cfg:?}");
    for secret in ["rgw-secret-value", "odf-secret-value", "ibm-secret-value"] {
        assert!(!dbg.contains(secret), "secret in Debug: {dbg}");
    }
    for name in ["RadosGWStorage", "RHOCSStorage", "IBMCloudStorage"] {
        assert!(stowage::BUILT_IN_DRIVERS.contains(&name), "{name}");
    }
}

#[test]
fn s3_compatible_problems_name_quays_keys() {
    let err = StowageConfig::parse(
        r#"
DISTRIBUTED_STORAGE_CONFIG:
  ceph:
    - RadosGWStorage
    - access_key: RGWACCESS
      secret_key: rgw-secret-value
      hostname: rgw.example.internal
      port: 99999
      maximum_chunk_size_mb: 1e300
  ibm:
    - IBMCloudStorage
    - access_key: ""
      secret_key: ibm-secret-value
      bucket_name:
      hostname: ftp://ibm.example
      s3_bucket: wrong-key
      maximum_chunk_size_gb: "inf"
"#,
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "DISTRIBUTED_STORAGE_CONFIG.ceph[1].bucket_name: required key is missing",
        "DISTRIBUTED_STORAGE_CONFIG.ceph[1].is_secure: required key is missing",
        "DISTRIBUTED_STORAGE_CONFIG.ceph[1].port: 99999 is not a TCP port",
        "DISTRIBUTED_STORAGE_CONFIG.ceph[1].maximum_chunk_size_mb: 1e300",
        "DISTRIBUTED_STORAGE_CONFIG.ibm[1].access_key: required key has no value",
        "DISTRIBUTED_STORAGE_CONFIG.ibm[1].bucket_name: required key has no value",
        "DISTRIBUTED_STORAGE_CONFIG.ibm[1].hostname:",
        "DISTRIBUTED_STORAGE_CONFIG.ibm[1].s3_bucket: unknown key",
        "DISTRIBUTED_STORAGE_CONFIG.ibm[1].maximum_chunk_size_gb: expected a finite number",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    for secret in ["rgw-secret-value", "ibm-secret-value"] {
        assert!(!text.contains(secret), "secret in the message: {text}");
    }
}

/// A bundle with every driver stowage does not implement, and a local
/// location; each unsupported entry carries a secret that must never show.
const UNSUPPORTED_BUNDLE: &str = r#"
DISTRIBUTED_STORAGE_CONFIG:
  swift:
    - SwiftStorage
    - {auth_url: "https://keystone:5000/v3", auth_version: 3, swift_container: c, swift_user: u,
       swift_password: swift-secret-value, storage_path: /r, os_options: {tenant_id: t}}
  cloudflare:
    - CloudFlareStorage
    - {cloudflare_domain: cdn.example.com, s3_access_key: A, s3_secret_key: cloudflare-secret-value,
       s3_bucket: b, storage_path: /r}
  akamai:
    - AkamaiS3Storage
    - {akamai_domain: a.example.net, akamai_shared_secret: akamai-secret-value, s3_bucket: b,
       storage_path: /r}
  multicdn:
    - MultiCDNStorage
    - providers:
        one: [CloudFrontedS3Storage, {s3_secret_key: multicdn-secret-value}]
      default_provider: one
  mystery:
    - FancyNewStorage
    - {password: mystery-secret-value}
  local:
    - LocalStorage
    - storage_path: /datastorage/registry
DISTRIBUTED_STORAGE_PREFERENCE: [local, swift]
DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: [swift]
"#;

const UNSUPPORTED_SECRETS: &[&str] = &[
    "swift-secret-value",
    "cloudflare-secret-value",
    "akamai-secret-value",
    "multicdn-secret-value",
    "mystery-secret-value",
];

#[tokio::test]
async fn unsupported_drivers_block_nothing_and_are_refused_when_used() {
    let cfg = StowageConfig::parse(UNSUPPORTED_BUNDLE).expect("unsupported drivers block nothing");
    assert_eq!(cfg.locations.len(), 6);
    assert_eq!(cfg.location(None).unwrap().name, "local", "preferred");
    let local = cfg.location(Some("local")).unwrap();
    assert!(matches!(local.driver, DriverConfig::Local(_)));
    let dbg = format!("{cfg:?}");
    for secret in UNSUPPORTED_SECRETS {
        assert!(!dbg.contains(secret), "{secret} in Debug: {dbg}");
    }

    for (name, driver, quay) in [
        ("swift", "SwiftStorage", true),
        ("cloudflare", "CloudFlareStorage", true),
        ("akamai", "AkamaiS3Storage", true),
        ("multicdn", "MultiCDNStorage", true),
        ("mystery", "FancyNewStorage", false),
    ] {
        let located = cfg.locations.iter().find(|l| l.name == name).unwrap();
        assert_eq!(located.driver.driver_name(), driver);
        let err = cfg.location(Some(name)).unwrap_err();
        let Error::Config(errs) = &err else {
            panic!("config error expected: {err}")
        };
        assert_eq!(errs.0.len(), 1, "{err}");
        assert_eq!(
            errs.0[0].key,
            format!("DISTRIBUTED_STORAGE_CONFIG.{name}[0]")
        );
        let text = err.to_string();
        assert!(text.contains(driver), "{text}");
        assert!(text.contains(&format!("location {name:?}")), "{text}");
        assert!(text.contains("built in: LocalStorage"), "{text}");
        assert!(text.contains("RadosGWStorage"), "{text}");
        if quay {
            assert!(
                text.contains(&format!(
                    "Quay driver {driver:?} is not supported by stowage"
                )),
                "{text}"
            );
        } else {
            assert!(
                text.contains(&format!("unknown driver {driver:?}")),
                "{text}"
            );
        }
        for secret in UNSUPPORTED_SECRETS {
            assert!(!text.contains(secret), "{secret} in: {text}");
        }
        let opened = stowage::open(located).await.expect_err("refused");
        assert!(matches!(opened, Error::Config(_)), "{opened}");
        assert_eq!(opened.to_string(), text, "open refuses the same way");
    }

    // The default location is refused when it is an unsupported one.
    let preferring_swift = UNSUPPORTED_BUNDLE.replace(
        "DISTRIBUTED_STORAGE_PREFERENCE: [local, swift]",
        "DISTRIBUTED_STORAGE_PREFERENCE: [swift, local]",
    );
    let cfg = StowageConfig::parse(&preferring_swift).unwrap();
    let err = cfg.location(None).unwrap_err().to_string();
    assert!(
        err.contains("DISTRIBUTED_STORAGE_CONFIG.swift[0]") && err.contains("SwiftStorage"),
        "{err}"
    );
    assert_eq!(cfg.location(Some("local")).unwrap().name, "local");
}

#[test]
fn file_names_resolve_against_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("keys")).unwrap();
    std::fs::write(d.join("keys/cf.pem"), "not read at parse time").unwrap();
    std::fs::write(d.join("s3-secret.txt"), "secret-from-a-relative-file\n").unwrap();
    std::fs::write(d.join("rgw-secret.txt"), "rgw-secret-from-file\n").unwrap();
    std::fs::write(
        d.join("config.yaml"),
        r#"
DISTRIBUTED_STORAGE_CONFIG:
  cf:
    - CloudFrontedS3Storage
    - cloudfront_distribution_domain: d111111abcdef8.cloudfront.net
      cloudfront_key_id: APKAEXAMPLEKEYID0001
      cloudfront_privatekey_filename: keys/cf.pem
      cloudfront_aws_ip_ranges_file: ip-ranges.json
      s3_bucket: quay-cf
      storage_path: /registry
  cf_group:
    - CloudFrontedS3Storage
    - cloudfront_distribution_domain: d111111abcdef8.cloudfront.net
      cloudfront_key_group_keys:
        - {key_id: K2JCJMDEHXQW5F, private_key_filename: keys/new.pem}
        - {key_id: K3OLDKEY000001, private_key_filename: /etc/keys/old.pem}
      s3_bucket: quay-cf
  s3:
    - S3Storage
    - s3_bucket: quay-s3
      s3_access_key: AKIAEXAMPLE
      s3_secret_key_file: s3-secret.txt
  ceph:
    - RadosGWStorage
    - {hostname: rgw.local, is_secure: false, access_key: A, secret_key_file: rgw-secret.txt,
       bucket_name: quay-rgw}
  sts:
    - STSS3Storage
    - s3_bucket: quay-sts
      sts_role_arn: arn:aws:iam::123456789012:role/quay
      sts_web_identity_token_file: token/web-identity
"#,
    )
    .unwrap();
    // The test's current directory is the crate's, not `d`: relative names
    // must not depend on it.
    assert_ne!(std::env::current_dir().unwrap(), d);
    let cfg = StowageConfig::from_file(&d.join("config.yaml")).expect("valid");

    let DriverConfig::CloudFront(c) = &cfg.location(Some("cf")).unwrap().driver else {
        panic!("CloudFront expected")
    };
    assert_eq!(c.cloudfront.keys[0].private_key_file, d.join("keys/cf.pem"));
    assert_eq!(
        c.cloudfront.aws_ip_ranges_file.as_deref(),
        Some(d.join("ip-ranges.json").as_path())
    );
    let DriverConfig::CloudFront(c) = &cfg.location(Some("cf_group")).unwrap().driver else {
        panic!("CloudFront expected")
    };
    let files: Vec<&Path> = c
        .cloudfront
        .keys
        .iter()
        .map(|k| k.private_key_file.as_path())
        .collect();
    assert_eq!(
        files,
        [
            d.join("keys/new.pem").as_path(),
            Path::new("/etc/keys/old.pem")
        ],
        "relative names against the config's directory, absolute as given"
    );

    let DriverConfig::S3(c) = &cfg.location(Some("s3")).unwrap().driver else {
        panic!("S3 expected")
    };
    assert_eq!(
        c.secret_key.as_ref().map(|s| s.expose()),
        Some("secret-from-a-relative-file")
    );
    let (_, c) = s3_compatible(&cfg, "ceph");
    assert_eq!(
        c.secret_key.as_ref().map(|s| s.expose()),
        Some("rgw-secret-from-file")
    );
    let DriverConfig::Sts(c) = &cfg.location(Some("sts")).unwrap().driver else {
        panic!("STS expected")
    };
    let stowage::sts::StsSource::WebIdentity { token_file } = &c.source else {
        panic!("web identity expected: {:?}", c.source)
    };
    assert_eq!(token_file, &d.join("token/web-identity"));

    // Without a file, names stay relative to the current directory; with
    // parse_in, they resolve against the directory given.
    let text = std::fs::read_to_string(d.join("config.yaml")).unwrap();
    let in_dir = StowageConfig::parse_in(&text, d).unwrap();
    let DriverConfig::CloudFront(c) = &in_dir.location(Some("cf")).unwrap().driver else {
        panic!("CloudFront expected")
    };
    assert_eq!(c.cloudfront.keys[0].private_key_file, d.join("keys/cf.pem"));
    let no_secret_files = text
        .replace("s3_secret_key_file: s3-secret.txt", "s3_secret_key: inline")
        .replace("secret_key_file: rgw-secret.txt", "secret_key: inline");
    let here = StowageConfig::parse(&no_secret_files).unwrap();
    let DriverConfig::CloudFront(c) = &here.location(Some("cf")).unwrap().driver else {
        panic!("CloudFront expected")
    };
    assert_eq!(
        c.cloudfront.keys[0].private_key_file,
        PathBuf::from("keys/cf.pem")
    );
}

/// The Quay-shaped bundles of `tests/data`: each parses; every location
/// works except those whose drivers stowage does not implement, which are
/// refused naming their driver.
#[test]
fn quay_shaped_bundles_parse_and_refuse_only_unsupported_drivers() {
    const NOT_IMPLEMENTED: &[&str] = &[
        "SwiftStorage",
        "CloudFlareStorage",
        "AkamaiS3Storage",
        "MultiCDNStorage",
        "FakeStorage",
    ];
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("quay-") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "test data missing: {files:?}");
    let mut seen = std::collections::BTreeSet::new();
    for file in &files {
        let cfg =
            StowageConfig::from_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!cfg.locations.is_empty(), "{}", file.display());
        for loc in &cfg.locations {
            let driver = loc.driver.driver_name().to_string();
            match loc.check_supported() {
                Ok(()) => assert!(
                    !NOT_IMPLEMENTED.contains(&driver.as_str()),
                    "{}: {} accepted",
                    file.display(),
                    driver
                ),
                Err(e) => {
                    assert!(
                        NOT_IMPLEMENTED.contains(&driver.as_str()),
                        "{}: {driver} refused: {e}",
                        file.display()
                    );
                    assert!(e.to_string().contains(&driver), "{e}");
                }
            }
            seen.insert(driver);
        }
        if file.ends_with("quay-cloudfront.yaml") {
            let DriverConfig::CloudFront(c) = &cfg.location(None).unwrap().driver else {
                panic!("CloudFront expected")
            };
            assert_eq!(
                c.cloudfront.keys[0].private_key_file,
                data.join("default-cloudfront-signing-key.pem"),
                "the key file is looked up in the bundle's directory"
            );
        }
    }
    for driver in [
        "LocalStorage",
        "S3Storage",
        "STSS3Storage",
        "CloudFrontedS3Storage",
        "RadosGWStorage",
        "RHOCSStorage",
        "IBMCloudStorage",
        "AzureStorage",
        "GoogleCloudStorage",
    ] {
        assert!(seen.contains(driver), "no test bundle uses {driver}");
    }
}

/// Each driver crate lists its keys in one place (`keys::ALL`); the reader
/// asks for exactly those (and a secret's `_file`/`_env` forms), and every
/// one is documented in docs/configuration.md. The test reads the copy in
/// `tests/data` (a published crate reads only its own files);
/// integration/tests/docs_examples.rs fails when the copy and the docs
/// differ.
#[test]
fn every_accepted_key_is_listed_and_documented() {
    use stowage_core::config::Params;
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configuration.md"),
    )
    .unwrap();
    let empty = serde_json::Map::new();
    let base = |k: &str| -> String {
        k.strip_suffix("_file")
            .or_else(|| k.strip_suffix("_env"))
            .filter(|b| b.ends_with("_key") || b.ends_with("_token"))
            .unwrap_or(k)
            .to_string()
    };
    let readers: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "S3",
            {
                let mut p = Params::new("loc", &empty);
                let _ = stowage::s3::S3Config::read(&mut p);
                p.asked_keys()
            },
            stowage::s3::keys::ALL.to_vec(),
        ),
        (
            "STS",
            {
                let mut p = Params::new("loc", &empty);
                let _ = stowage::sts::StsConfig::read_over(&mut p, &|_| None, None);
                p.asked_keys()
            },
            [stowage::sts::keys::ALL, &["s3_access_key", "s3_secret_key"]].concat(),
        ),
        (
            "CloudFront",
            {
                let mut p = Params::new("loc", &empty);
                let _ = stowage::cloudfront::CloudFrontConfig::read(&mut p);
                p.asked_keys()
            },
            [stowage::cloudfront::keys::ALL, stowage::s3::keys::ALL].concat(),
        ),
        (
            "Azure",
            {
                let mut p = Params::new("loc", &empty);
                let _ = stowage::azure::AzureConfig::read(&mut p);
                p.asked_keys()
            },
            stowage::azure::keys::ALL.to_vec(),
        ),
    ];
    for (name, asked, listed) in readers {
        for k in &asked {
            let k = if listed.contains(&k.as_str()) || !listed.contains(&base(k).as_str()) {
                k.clone()
            } else {
                base(k)
            };
            assert!(
                listed.contains(&k.as_str()),
                "{name} reader asks for {k}, not in its keys::ALL"
            );
        }
        for k in &listed {
            assert!(
                asked.iter().any(|a| a == k),
                "{name} keys::ALL lists {k}, which its reader never reads"
            );
        }
    }
    // A secret's `_file` and `_env` forms are documented once, for every
    // secret key (the "Secrets" section).
    assert!(docs.contains("`s3_secret_key_file:") && docs.contains("`s3_secret_key_env:"));
    let all = [
        stowage::s3::keys::ALL,
        stowage::sts::keys::ALL,
        stowage::cloudfront::keys::ALL,
        stowage::azure::keys::ALL,
    ]
    .concat();
    let missing: Vec<&&str> = all
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys accepted but not in docs/configuration.md (as copied to tests/data): {missing:?}"
    );
}

/// YAML's `.nan` and `.inf` have no JSON form: named with their key path,
/// never read as 0 or as an absent key.
#[test]
fn non_finite_numbers_are_named() {
    for value in [".nan", ".inf", "-.inf"] {
        let err = StowageConfig::parse(&format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  s3:\n    - S3Storage\n    - s3_bucket: b-1\n      minimum_chunk_size_mb: {value}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("DISTRIBUTED_STORAGE_CONFIG.s3[1].minimum_chunk_size_mb")
                && err.contains("not a finite number"),
            "{value}: {err}"
        );
    }
}

// Every problem of a file in one run: one test per boundary where reading
// used to stop (or still could), and the open driver set.

use std::sync::Arc;

use stowage::config::{ConfigErrors, Secret};
use stowage::{DriverParams, Drivers};

/// The key paths of a configuration error's problems.
fn problem_keys(err: &Error) -> Vec<String> {
    let Error::Config(errs) = err else {
        panic!("config error expected: {err}")
    };
    errs.0.iter().map(|p| p.key.clone()).collect()
}

/// YAML's NaN is named, and the file is read on: a null required key and
/// an out-of-range number beside it are reported in the same run.
#[test]
fn non_finite_numbers_hide_no_other_problem() {
    let err = StowageConfig::parse(
        "DISTRIBUTED_STORAGE_CONFIG:\n  s3:\n    - S3Storage\n    - s3_bucket:\n      minimum_chunk_size_mb: 1e300\n      maximum_chunk_size_gb: .nan\n",
    )
    .unwrap_err();
    let keys = problem_keys(&err);
    for key in [
        "s3_bucket",
        "minimum_chunk_size_mb",
        "maximum_chunk_size_gb",
    ] {
        let key = format!("DISTRIBUTED_STORAGE_CONFIG.s3[1].{key}");
        assert!(keys.contains(&key), "{key} missing in:\n{err}");
    }
    assert!(err.to_string().contains("not a finite number"), "{err}");
}

/// A misspelt key and an unknown driver name are reported together; once
/// the key is fixed, the unknown driver alone blocks nothing.
#[test]
fn a_misspelt_key_does_not_hide_an_unknown_driver_name() {
    let text = "DISTRIBUTED_STORAGE_CONFIG:\n  a: [LocalStorage, {storage_pth: /x}]\n  b: [S3Storag, {s3_bucket: b-1}]\n";
    let err = StowageConfig::parse(text).unwrap_err();
    let keys = problem_keys(&err);
    for key in [
        "DISTRIBUTED_STORAGE_CONFIG.a[1].storage_pth",
        "DISTRIBUTED_STORAGE_CONFIG.b[0]",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in:\n{err}");
    }
    assert!(
        err.to_string().contains("unknown driver \"S3Storag\""),
        "{err}"
    );
    let cfg = StowageConfig::parse(&text.replace("storage_pth", "storage_path")).unwrap();
    assert!(cfg.location(Some("a")).is_ok());
    assert!(cfg.location(Some("b")).is_err(), "refused when used");
}

/// A key JSON cannot hold (here null) is named where it is; the other
/// locations are still read.
#[test]
fn a_key_that_is_not_a_string_hides_no_other_problem() {
    let err = StowageConfig::parse(
        "DISTRIBUTED_STORAGE_CONFIG:\n  a:\n    - LocalStorage\n    - ~: x\n      storage_path: /x\n  b: [S3Storage, {s3_region: eu-west-1}]\n",
    )
    .unwrap_err();
    let keys = problem_keys(&err);
    for key in [
        "DISTRIBUTED_STORAGE_CONFIG.a[1]",
        "DISTRIBUTED_STORAGE_CONFIG.b[1].s3_bucket",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in:\n{err}");
    }
    assert!(err.to_string().contains("a key must be a string"), "{err}");
}

/// A location's driver name and its parameters are checked independently.
#[test]
fn a_bad_driver_name_does_not_hide_bad_parameters() {
    let err =
        StowageConfig::parse("DISTRIBUTED_STORAGE_CONFIG:\n  a: [42, not-a-map]\n").unwrap_err();
    let keys = problem_keys(&err);
    for key in [
        "DISTRIBUTED_STORAGE_CONFIG.a[0]",
        "DISTRIBUTED_STORAGE_CONFIG.a[1]",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in:\n{err}");
    }
}

/// An already parsed configuration reads and reports as a file does.
#[test]
fn from_value_reads_an_already_parsed_configuration() {
    let mut value = serde_json::json!({
        "SERVER_HOSTNAME": "quay.example.com",
        "DISTRIBUTED_STORAGE_CONFIG": {
            "local": ["LocalStorage", {"storage_path": "/x"}],
            "s3": ["S3Storage", {"s3_bucket": null}],
        },
        "DISTRIBUTED_STORAGE_PREFERENCE": ["s3"],
    });
    let err = StowageConfig::from_value(&value).unwrap_err();
    assert_eq!(
        problem_keys(&err),
        ["DISTRIBUTED_STORAGE_CONFIG.s3[1].s3_bucket"],
        "{err}"
    );
    value["DISTRIBUTED_STORAGE_CONFIG"]["s3"][1]["s3_bucket"] = serde_json::json!("b-1");
    let cfg = StowageConfig::from_value(&value).unwrap();
    assert!(matches!(
        cfg.location(None).unwrap().driver,
        DriverConfig::S3(_)
    ));
}

/// An embedder's driver for the tests: objects in memory; a required
/// `label`, a `key_file` looked up in the bundle folder, an `api_token`.
struct MemoryDriver;

#[derive(Debug)]
struct MemoryConfig {
    label: String,
    key_file: Option<PathBuf>,
    api_token: Option<Secret>,
}

#[stowage::async_trait]
impl stowage::DriverFactory for MemoryDriver {
    type Config = MemoryConfig;

    fn read(&self, params: &DriverParams) -> Result<MemoryConfig, ConfigErrors> {
        let mut p = params.reader();
        let label = p.required_string("label");
        let key_file = p.path("key_file");
        let api_token = p.secret("api_token");
        p.finish_with(label.map(|label| MemoryConfig {
            label,
            key_file,
            api_token,
        }))
    }

    async fn open(&self, config: &MemoryConfig) -> stowage::Result<Arc<dyn stowage::Storage>> {
        assert!(!config.label.is_empty());
        let storage: Arc<dyn stowage::Storage> =
            Arc::new(stowage::local::LocalStorage::in_memory());
        Ok(storage)
    }
}

#[tokio::test]
async fn a_registered_driver_is_read_with_the_file_and_opened() {
    let dir = tempfile::tempdir().unwrap();
    let drivers = Drivers::with_builtin().register("MemoryStorage", MemoryDriver);
    assert!(drivers.contains("MemoryStorage") && drivers.contains("LocalStorage"));
    let text = "DISTRIBUTED_STORAGE_CONFIG:\n  mem: [MemoryStorage, {label: blobs, key_file: keys/k.pem, api_token: tok-secret-value}]\n  local: [LocalStorage, {storage_path: /x}]\nDISTRIBUTED_STORAGE_PREFERENCE: [mem]\n";
    let cfg = StowageConfig::parse_with(&drivers, text, Some(dir.path())).unwrap();
    let location = cfg.location(None).unwrap();
    assert_eq!(location.driver.driver_name(), "MemoryStorage");
    let DriverConfig::Custom(custom) = &location.driver else {
        panic!("custom expected: {location:?}")
    };
    let own = custom.get::<MemoryConfig>().expect("the driver's own type");
    assert_eq!(own.label, "blobs");
    assert_eq!(
        own.key_file.as_deref(),
        Some(dir.path().join("keys/k.pem").as_path())
    );
    assert_eq!(
        own.api_token.as_ref().map(Secret::expose),
        Some("tok-secret-value")
    );
    let storage = drivers.open(location).await.unwrap();
    assert!(storage.validate().await.is_ok());
    assert!(matches!(
        cfg.location(Some("local")).unwrap().driver,
        DriverConfig::Local(_)
    ));

    // The built-in set has no such driver: refused, naming it.
    let err = stowage::open(location).await.unwrap_err().to_string();
    assert!(err.contains("unknown driver \"MemoryStorage\""), "{err}");
    assert!(err.contains("DISTRIBUTED_STORAGE_CONFIG.mem[0]"), "{err}");

    // Its problems are reported with the file's, in one run.
    let value = serde_json::json!({"DISTRIBUTED_STORAGE_CONFIG": {
        "mem": ["MemoryStorage", {"lable": "x"}],
        "local": ["LocalStorage", {"storage_pth": "/x"}],
    }});
    let err = StowageConfig::from_value_with(&drivers, &value, None).unwrap_err();
    let keys = problem_keys(&err);
    for key in [
        "DISTRIBUTED_STORAGE_CONFIG.mem[1].label",
        "DISTRIBUTED_STORAGE_CONFIG.mem[1].lable",
        "DISTRIBUTED_STORAGE_CONFIG.local[1].storage_pth",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in:\n{err}");
    }
}

/// A location of a driver the reading set lacks keeps its parameters
/// (secret-looking values hidden in `Debug`), and a set that has the
/// driver reads and opens it later.
#[tokio::test]
async fn an_unsupported_location_is_opened_by_a_driver_registered_later() {
    let cfg = StowageConfig::parse(
        "DISTRIBUTED_STORAGE_CONFIG:\n  mem: [MemoryStorage, {label: blobs, api_token: tok-secret-value}]\n  bad: [MemoryStorage, {api_token: t}]\n",
    )
    .expect("a driver the set lacks blocks nothing");
    let location = cfg.locations.iter().find(|l| l.name == "mem").unwrap();
    let DriverConfig::Unsupported(params) = &location.driver else {
        panic!("unsupported expected: {location:?}")
    };
    assert_eq!(params.driver(), "MemoryStorage");
    assert_eq!(params.values()["label"], "blobs");
    assert_eq!(params.key_path(), "DISTRIBUTED_STORAGE_CONFIG.mem[1]");
    let dbg = format!("{cfg:?}");
    assert!(
        !dbg.contains("tok-secret-value") && dbg.contains("api_token"),
        "{dbg}"
    );
    assert!(
        cfg.location(Some("mem")).is_err(),
        "refused by the built-in set"
    );

    let drivers = Drivers::with_builtin().register("MemoryStorage", MemoryDriver);
    let storage = drivers.open(location).await.unwrap();
    assert!(storage.validate().await.is_ok());
    let bad = cfg.locations.iter().find(|l| l.name == "bad").unwrap();
    let err = drivers.open(bad).await.unwrap_err();
    assert_eq!(
        problem_keys(&err),
        ["DISTRIBUTED_STORAGE_CONFIG.bad[1].label"],
        "{err}"
    );
}
