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
    assert!(
        !text.contains("NoSuchStorage"),
        "an unknown driver blocks nothing; it is refused only when used:\n{text}"
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
  gcs:
    - GoogleCloudStorage
    - {access_key: GOOGACCESS, secret_key: gcs-secret-value, bucket_name: b, storage_path: /r}
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
DISTRIBUTED_STORAGE_PREFERENCE: [local, gcs]
DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: [gcs]
"#;

const UNSUPPORTED_SECRETS: &[&str] = &[
    "gcs-secret-value",
    "swift-secret-value",
    "cloudflare-secret-value",
    "akamai-secret-value",
    "multicdn-secret-value",
    "mystery-secret-value",
];

#[tokio::test]
async fn unsupported_drivers_block_nothing_and_are_refused_when_used() {
    let cfg = StowageConfig::parse(UNSUPPORTED_BUNDLE).expect("unsupported drivers block nothing");
    assert_eq!(cfg.locations.len(), 7);
    assert_eq!(cfg.location(None).unwrap().name, "local", "preferred");
    let local = cfg.location(Some("local")).unwrap();
    assert!(matches!(local.driver, DriverConfig::Local(_)));
    let dbg = format!("{cfg:?}");
    for secret in UNSUPPORTED_SECRETS {
        assert!(!dbg.contains(secret), "{secret} in Debug: {dbg}");
    }

    for (name, driver, quay) in [
        ("gcs", "GoogleCloudStorage", true),
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
    let preferring_gcs = UNSUPPORTED_BUNDLE.replace(
        "DISTRIBUTED_STORAGE_PREFERENCE: [local, gcs]",
        "DISTRIBUTED_STORAGE_PREFERENCE: [gcs, local]",
    );
    let cfg = StowageConfig::parse(&preferring_gcs).unwrap();
    let err = cfg.location(None).unwrap_err().to_string();
    assert!(
        err.contains("DISTRIBUTED_STORAGE_CONFIG.gcs[0]") && err.contains("GoogleCloudStorage"),
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
        "GoogleCloudStorage",
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
