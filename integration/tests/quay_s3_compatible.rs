//! A Quay config bundle used from another directory, through the `stowage`
//! binary against a real server: `RadosGWStorage`, `RHOCSStorage` and
//! `IBMCloudStorage` locations (Quay's keys, the endpoint split into
//! `hostname`/`port`/`is_secure`) round-trip objects; a CloudFront location
//! signs with the key file next to `config.yaml`; a `SwiftStorage` location
//! blocks none of them and is refused with exit code 2 when used; no secret
//! of any entry appears in any output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stowage_integration::cloudfront::{key_file, Edge, Trust};
use stowage_integration::S3Env;

const DRIVERS: [(&str, &str); 3] = [
    ("ceph", "RadosGWStorage"),
    ("odf", "RHOCSStorage"),
    ("ibm", "IBMCloudStorage"),
];
const SWIFT_SECRET: &str = "swift-password-that-must-never-show";
const KEY_GROUP_ID: &str = "K2JCJMDEHXQW5F";

/// `hostname`, `port`, `is_secure` of Quay's drivers from an endpoint URL
/// (AWS itself without one).
fn quay_endpoint(env: &S3Env) -> (String, Option<u16>, bool) {
    let Some(url) = env.endpoint.as_deref() else {
        return (format!("s3.{}.amazonaws.com", env.region), None, true);
    };
    let (scheme, rest) = url.split_once("://").expect("endpoint with a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_string(), Some(p.parse().expect("a port")))
        }
        _ => (authority.to_string(), None),
    };
    (host, port, scheme == "https")
}

struct Bundle {
    /// Holds `conf/stack/config.yaml` and the key files next to it.
    _dir: tempfile::TempDir,
    config: PathBuf,
    /// Where the commands run: not the bundle's directory.
    work: PathBuf,
    env: S3Env,
    root: String,
}

impl Bundle {
    fn new(env: S3Env, cloudfront_edge: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("conf/stack");
        let work = dir.path().join("elsewhere");
        std::fs::create_dir_all(&stack).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        // Relative file names of the bundle: a secret and the CloudFront key.
        std::fs::write(stack.join("ceph-secret"), format!("{}\n", env.secret_key)).unwrap();
        std::fs::copy(
            key_file("rsa2048-pkcs1.pem"),
            stack.join("default-cloudfront-signing-key.pem"),
        )
        .unwrap();
        let root = format!("stowage-it/quay-{}", uuid::Uuid::new_v4().simple());
        let (hostname, port, is_secure) = quay_endpoint(&env);
        let port = port
            .map(|p| format!("      port: {p}\n"))
            .unwrap_or_default();
        let mut yaml = String::from("DISTRIBUTED_STORAGE_CONFIG:\n");
        for (name, driver) in DRIVERS {
            // The ceph location reads its secret from the file next to
            // config.yaml; the others inline, as Quay bundles do.
            let secret = if name == "ceph" {
                "secret_key_file: ceph-secret".to_string()
            } else {
                format!("secret_key: {}", env.secret_key)
            };
            yaml.push_str(&format!(
                "  {name}:\n    - {driver}\n    - hostname: {hostname}\n{port}      is_secure: \
                 {is_secure}\n      access_key: {}\n      {secret}\n      bucket_name: {}\n      \
                 storage_path: /{root}/{name}\n      s3_region: {}\n",
                env.access_key, env.bucket, env.region,
            ));
        }
        if let Some(edge) = cloudfront_edge {
            yaml.push_str(&format!(
                "  cf:\n    - CloudFrontedS3Storage\n    - endpoint_url: {}\n      s3_bucket: {}\n      \
                 s3_region: {}\n      storage_path: /{root}/cf\n      s3_access_key: {}\n      \
                 s3_secret_key_file: ceph-secret\n      cloudfront_distribution_domain: {edge}\n      \
                 cloudfront_key_id: {KEY_GROUP_ID}\n      \
                 cloudfront_privatekey_filename: default-cloudfront-signing-key.pem\n      \
                 cloudfront_distribution_org_overrides: {{}}\n",
                env.endpoint.clone().unwrap_or_default(),
                env.bucket,
                env.region,
                env.access_key,
            ));
        }
        yaml.push_str(&format!(
            "  swift:\n    - SwiftStorage\n    - swift_container: quay\n      swift_user: \
             quay\n      swift_password: {SWIFT_SECRET}\n      storage_path: /registry\n\
             DISTRIBUTED_STORAGE_PREFERENCE: [ceph]\nDISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: []\n"
        ));
        let config = stack.join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self {
            _dir: dir,
            config,
            work,
            env,
            root,
        }
    }

    fn stack(&self) -> &Path {
        self.config.parent().unwrap()
    }

    /// Runs `stowage --config <bundle>/config.yaml ARGS` from the work
    /// directory; checks no secret is printed.
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(stowage_integration::stowage_binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(&self.work)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in [self.env.secret_key.as_str(), SWIFT_SECRET] {
            assert!(
                !all.contains(secret),
                "a secret in the output of {args:?}:\n{all}"
            );
        }
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: exit {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn quay_s3_compatible_locations_round_trip_from_another_directory() {
    let env = S3Env::get();
    let bundle = Bundle::new(env, None);
    let body: Vec<u8> = (0..6_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(bundle.work.join("in.bin"), &body).unwrap();

    for (name, driver) in DRIVERS {
        let validate = bundle.ok(&["--location", name, "validate"]);
        assert!(
            validate.contains(&format!("location {name} ({driver}, driver s3): ok")),
            "{validate}"
        );
        assert!(validate.contains("bucket reachable"), "{validate}");

        let key = format!("blobs/{name}/layer one.bin");
        bundle.ok(&["--location", name, "put", "in.bin", &key]);
        let out = format!("out-{name}.bin");
        bundle.ok(&["--location", name, "get", &key, &out]);
        assert_eq!(
            std::fs::read(bundle.work.join(&out)).unwrap(),
            body,
            "{driver}"
        );
        assert_eq!(
            bundle.ok(&["--location", name, "ls"]),
            format!("{key}\n"),
            "{driver}: only its own storage_path"
        );
        let stat = bundle.ok(&["--location", name, "stat", "--json", &key]);
        assert!(stat.contains("\"size\":6000000"), "{stat}");

        let policy = bundle.ok(&["--location", name, "iam-policy"]);
        let doc: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(doc["driver"], driver);
        assert!(
            policy.contains(&format!("{}/{}/{name}", bundle.env.bucket, bundle.root)),
            "the policy covers the location's prefix: {policy}"
        );
    }

    // The objects live where Quay's storage_path puts them.
    let listed = tokio::runtime::Runtime::new().unwrap().block_on(async {
        bundle
            .env
            .sdk()
            .await
            .list_objects_v2()
            .bucket(&bundle.env.bucket)
            .prefix(format!("{}/", bundle.root))
            .send()
            .await
            .expect("ListObjectsV2")
    });
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    let mut want: Vec<String> = DRIVERS
        .iter()
        .map(|(name, _)| format!("{}/{name}/blobs/{name}/layer one.bin", bundle.root))
        .collect();
    want.sort();
    assert_eq!(keys, want);

    // Between the drivers, and the default location (the first preferred).
    bundle.ok(&["cp", "ceph:blobs/ceph/layer one.bin", "ibm:copied/x"]);
    bundle.ok(&["cp", "ibm:copied/x", "odf:copied/y"]);
    bundle.ok(&["get", "blobs/ceph/layer one.bin", "default.bin"]);
    assert_eq!(
        std::fs::read(bundle.work.join("default.bin")).unwrap(),
        body
    );

    // setup: RGW and ODF may lack bucket CORS; stowage says so if refused.
    let setup = bundle.run(&["--location", "ceph", "setup"]);
    if setup.status.success() {
        assert!(
            String::from_utf8_lossy(&setup.stdout).contains("CORS rules set"),
            "{}",
            String::from_utf8_lossy(&setup.stdout)
        );
    } else {
        let err = String::from_utf8_lossy(&setup.stderr);
        assert!(
            err.contains("note: location ceph is RadosGWStorage") && err.contains("CORS"),
            "{err}"
        );
    }

    for (name, _) in DRIVERS {
        bundle.ok(&["--location", name, "rm", "-r", "blobs"]);
    }
    bundle.ok(&["--location", "ibm", "rm", "-r", "copied"]);
    bundle.ok(&["--location", "odf", "rm", "-r", "copied"]);
    for (name, _) in DRIVERS {
        assert_eq!(bundle.ok(&["--location", name, "ls"]), "", "{name}");
    }

    // The Swift location blocked nothing above; used, it is refused.
    let swift = bundle.run(&["--location", "swift", "ls"]);
    assert_eq!(swift.status.code(), Some(2));
    let err = String::from_utf8_lossy(&swift.stderr);
    assert!(
        err.contains("DISTRIBUTED_STORAGE_CONFIG.swift[0]") && err.contains("SwiftStorage"),
        "{err}"
    );
    // validate without --location: the three validated, Swift reported.
    let all = bundle.run(&["validate"]);
    assert_eq!(all.status.code(), Some(2));
    let text = String::from_utf8_lossy(&all.stdout);
    for (name, driver) in DRIVERS {
        assert!(
            text.contains(&format!("location {name} ({driver}, driver s3): ok")),
            "{text}"
        );
    }
    assert!(
        text.contains("location swift (SwiftStorage): NOT SUPPORTED"),
        "{text}"
    );
}

#[test]
fn cloudfront_signs_with_the_key_file_next_to_the_config() {
    let env = S3Env::get();
    let edge = Edge::start(
        &env,
        Trust::KeyGroups,
        &[(KEY_GROUP_ID, "rsa2048-public.pem")],
    );
    let bundle = Bundle::new(env, Some(&edge.url));
    let text = bundle.ok(&["--location", "cf", "validate"]);
    let key = bundle.stack().join("default-cloudfront-signing-key.pem");
    for want in [
        format!("private key file: {}", key.display()),
        "key type: RSA 2048".to_string(),
        "fallback in force: none".to_string(),
        "fetch through CloudFront".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} missing:\n{text}");
    }
}
