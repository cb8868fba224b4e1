//! The S3 driver's GCS profile (Quay's `GoogleCloudStorage`) against the
//! S3 test server behind `servers/fault_proxy.py --refuse-gcs-unsupported`,
//! which refuses what Google Cloud Storage's XML API refuses, the way GCS
//! refuses it (unknown query parameters such as the SDK's `x-id`,
//! DeleteObjects, UploadPartCopy, ListObjectsV2, preconditions on multipart
//! requests), and answers a DELETE of a missing object 404 as GCS does.
//! Every fallback path of the profile runs against a real server, and the
//! proxy's `gcs_refused` counter proves the driver never sent what GCS
//! lacks. A `GoogleCloudStorage` location of a Quay config (its
//! `endpoint_url` on the proxy) round-trips objects through the `stowage`
//! binary, and carries a skopeo push and pull through `stowage serve`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_s3::error::ProvideErrorMetadata;
use bytes::Bytes;
use stowage_core::{PutOptions, Storage, StorageExt, StoragePath};
use stowage_integration::faults::FaultProxy;
use stowage_integration::registry::{blob_digests, make_image, skopeo_copy, Server};
use stowage_integration::S3Env;
use stowage_s3::{S3Storage, ServerProfile};

/// The proxy's counters of refusals, all of which must stay 0 for a
/// driver with the GCS profile.
const REFUSALS: [&str; 6] = [
    "gcs_refused",
    "gcs_refused_query",
    "gcs_refused_delete_objects",
    "gcs_refused_part_copy",
    "gcs_refused_list_v2",
    "gcs_refused_preconditions",
];

/// The proxy in GCS mode in front of the test server, with the server's
/// keys (it asks whether a deleted object exists, to answer 404 as GCS).
fn gcs_proxy(env: &S3Env) -> FaultProxy {
    FaultProxy::in_front_of_signing(env, &["--refuse-gcs-unsupported"])
}

async fn assert_nothing_refused(proxy: &FaultProxy) -> serde_json::Value {
    let stats = proxy.stats().await;
    for counter in REFUSALS {
        assert_eq!(
            stats[counter].as_u64(),
            Some(0),
            "the driver sent what GCS refuses ({counter}); proxy stats: {stats}"
        );
    }
    assert!(
        stats["requests"].as_u64().unwrap_or(0) > 0,
        "nothing went through the proxy: {stats}"
    );
    stats
}

/// The whole conformance suite, in order, on a GCS-profile driver through
/// the proxy: listings (v1, paged past 1,000 keys, with delimiters and
/// resumption), copies (CopyObject, and streaming above the multipart-copy
/// threshold), chunked uploads (assembled by streaming), prefix deletes
/// (one DeleteObject per key), presigned URLs fetched over HTTP (no
/// `x-id`), cleanup and validate. Not one request GCS refuses is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_profile_passes_the_conformance_suite_sending_nothing_gcs_refuses() {
    let env = S3Env::get();
    let proxy = gcs_proxy(&env);
    let config = env.config("gcs-profile").with_profile(ServerProfile::Gcs);
    assert!(
        config.server_side_assembly,
        "the profile alone keeps UploadPartCopy away, whatever the setting"
    );
    let storage = S3Storage::new(proxy.config(&config))
        .await
        .expect("driver through the proxy");
    assert!(!storage.capabilities().server_side_assembly);
    stowage_core::testkit::run_all(&storage).await;
    let stats = assert_nothing_refused(&proxy).await;
    assert!(
        stats["gcs_missing_deletes"].as_u64().unwrap_or(0) >= 1,
        "the suite deletes a missing object; the proxy answered none 404: {stats}"
    );
}

/// A raw SDK client through the proxy.
fn sdk_through(env: &S3Env, url: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env.region.clone()))
        .credentials_provider(Credentials::new(
            &env.access_key,
            &env.secret_key,
            None,
            None,
            "test",
        ))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The proxy bites: what the GCS profile avoids is refused with GCS's
/// codes, so the test above would fail on a driver that sent any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_refuses_what_gcs_refuses() {
    let env = S3Env::get();
    let proxy = gcs_proxy(&env);
    let sdk = sdk_through(&env, &proxy.url);

    let err = sdk
        .list_objects_v2()
        .bucket(&env.bucket)
        .prefix("stowage-it/")
        .send()
        .await
        .expect_err("ListObjectsV2 refused");
    assert_eq!(err.code(), Some("NotImplemented"), "{err:?}");

    let delete = aws_sdk_s3::types::Delete::builder()
        .objects(
            aws_sdk_s3::types::ObjectIdentifier::builder()
                .key("stowage-it/gcs-none")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = sdk
        .delete_objects()
        .bucket(&env.bucket)
        .delete(delete)
        .send()
        .await
        .expect_err("DeleteObjects refused");
    assert_eq!(err.code(), Some("NotImplemented"), "{err:?}");

    let err = sdk
        .upload_part_copy()
        .bucket(&env.bucket)
        .key("stowage-it/gcs-none")
        .upload_id("no-such-upload")
        .part_number(1)
        .copy_source(format!("{}/stowage-it/gcs-other", env.bucket))
        .send()
        .await
        .expect_err("UploadPartCopy refused");
    assert_eq!(err.code(), Some("NotImplemented"), "{err:?}");

    // The SDK's x-id query parameter: GCS knows no such parameter.
    let err = sdk
        .get_object()
        .bucket(&env.bucket)
        .key("stowage-it/gcs-none")
        .send()
        .await
        .expect_err("GetObject with x-id refused");
    assert_eq!(err.code(), Some("InvalidArgument"), "{err:?}");

    // A driver without the profile fails at its first write.
    let standard = S3Storage::new(proxy.config(&env.config("gcs-standard")))
        .await
        .expect("driver");
    let path = StoragePath::parse("refused/object").unwrap();
    let put = standard
        .put(&path, Bytes::from_static(b"x"), PutOptions::default())
        .await;
    assert!(put.is_err(), "a PutObject with x-id went through: {put:?}");

    let stats = proxy.stats().await;
    for (counter, at_least) in [
        ("gcs_refused_list_v2", 1),
        ("gcs_refused_delete_objects", 1),
        ("gcs_refused_part_copy", 1),
        ("gcs_refused_query", 2),
        ("gcs_refused", 5),
    ] {
        assert!(
            stats[counter].as_u64().unwrap_or(0) >= at_least,
            "{counter} below {at_least}: {stats}"
        );
    }
}

/// Deleting a missing object succeeds on the GCS profile although the
/// server (here the proxy, as GCS does) answers 404; a standard driver
/// would report the 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_missing_object_is_a_success_despite_gcs_404() {
    let env = S3Env::get();
    let proxy = gcs_proxy(&env);
    let config = env.config("gcs-delete").with_profile(ServerProfile::Gcs);
    let storage = S3Storage::new(proxy.config(&config)).await.expect("driver");
    let path = StoragePath::parse("never/written").unwrap();
    storage
        .delete(&path)
        .await
        .expect("a missing object deletes");
    storage
        .put(&path, Bytes::from_static(b"here"), PutOptions::default())
        .await
        .expect("put");
    storage.delete(&path).await.expect("delete");
    storage.delete(&path).await.expect("deleted twice");
    assert!(storage.get_bytes(&path).await.is_err());
    let stats = assert_nothing_refused(&proxy).await;
    assert!(
        stats["gcs_missing_deletes"].as_u64().unwrap_or(0) >= 2,
        "{stats}"
    );
}

/// A Quay bundle with a `GoogleCloudStorage` location (Quay's keys, the
/// secret in a file next to `config.yaml`, `endpoint_url` on the proxy).
struct Bundle {
    dir: tempfile::TempDir,
    config: PathBuf,
    secret: String,
}

impl Bundle {
    fn new(env: &S3Env, proxy: &FaultProxy) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gcs-secret"),
            format!("{}\n", env.secret_key),
        )
        .unwrap();
        let root = format!("stowage-it/gcs-quay-{}", uuid::Uuid::new_v4().simple());
        let yaml = format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  gcs:\n    - GoogleCloudStorage\n    - access_key: {}\n      \
             secret_key_file: gcs-secret\n      bucket_name: {}\n      storage_path: /{root}\n      \
             endpoint_url: {}\n      s3_region: {}\n      s3_part_size_mb: 5\n\
             DISTRIBUTED_STORAGE_PREFERENCE: [gcs]\nDISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: []\n",
            env.access_key, env.bucket, proxy.url, env.region,
        );
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        Self {
            dir,
            config,
            secret: env.secret_key.clone(),
        }
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    /// `stowage --config <bundle> ARGS`, checking no secret is printed.
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(stowage_integration::stowage_binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.work())
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(&self.secret),
            "the secret in the output of {args:?}"
        );
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

/// put (a multipart write of 3 parts), get, ls, stat, cp and rm -r on a
/// `GoogleCloudStorage` location, opened through the factory by the
/// `stowage` binary, sending nothing GCS refuses.
#[test]
fn quay_google_cloud_storage_location_round_trips() {
    let env = S3Env::get();
    let proxy = gcs_proxy(&env);
    let bundle = Bundle::new(&env, &proxy);
    let body: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(bundle.work().join("in.bin"), &body).unwrap();

    let validate = bundle.ok(&["validate"]);
    assert!(
        validate.contains("location gcs (GoogleCloudStorage, driver s3): ok"),
        "{validate}"
    );
    let key = "blobs/sha256/ab/layer one.bin";
    bundle.ok(&["put", "in.bin", key]);
    bundle.ok(&["get", key, "out.bin"]);
    assert_eq!(std::fs::read(bundle.work().join("out.bin")).unwrap(), body);
    assert_eq!(bundle.ok(&["ls"]), format!("{key}\n"));
    let stat = bundle.ok(&["stat", "--json", key]);
    assert!(stat.contains("\"size\":12000000"), "{stat}");
    bundle.ok(&["cp", &format!("gcs:{key}"), "gcs:copied/x"]);
    assert_eq!(bundle.ok(&["ls", "copied"]), "copied/x\n");
    bundle.ok(&["rm", "-r", "blobs"]);
    bundle.ok(&["rm", "-r", "copied"]);
    assert_eq!(bundle.ok(&["ls"]), "");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(assert_nothing_refused(&proxy));
}

/// `stowage serve` on a `GoogleCloudStorage` location: skopeo pushes (blob
/// uploads assembled by streaming, no UploadPartCopy) and pulls (redirects
/// to presigned URLs without `x-id`, fetched through the proxy).
#[test]
fn skopeo_round_trip_on_a_google_cloud_storage_location() {
    let env = S3Env::get();
    let proxy = gcs_proxy(&env);
    let bundle = Bundle::new(&env, &proxy);
    let server = Server::start(bundle.work(), Some(&bundle.config));
    let image = bundle.work().join("image");
    make_image(&image, &["--layers", "3", "--layer-mib", "6"]);
    let dest = format!("docker://{}/team/app:1.0", server.addr);
    skopeo_copy(&format!("oci:{}:latest", image.display()), &dest);
    let back = bundle.work().join("back");
    skopeo_copy(&dest, &format!("oci:{}:1.0", back.display()));
    assert_eq!(blob_digests(&image), blob_digests(&back));

    let metrics = Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", server.addr)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("stowage_registry_requests_total{method=\"GET\",status=\"307\"}"),
        "blob pulls were redirected to presigned URLs:\n{text}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(assert_nothing_refused(&proxy));
}
