//! The S3 driver against an HTTPS endpoint whose certificate a private CA
//! signed: the fault proxy, without faults, listening with TLS in front of
//! the test server, its certificate from a test CA made with openssl.
//! Without that CA the first request fails at once, naming the endpoint and
//! the untrusted CA (no retries: the same certificate comes back every
//! time); trusted through `s3_ca_bundle` or the `extra_ca_certs/` folder of
//! a Quay config bundle, everything works.

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use stowage_core::config::{FromParams, Params};
use stowage_core::{CheckStatus, PutOptions, Storage, StorageExt, StoragePath};
use stowage_integration::faults::metric;
use stowage_integration::S3Env;
use stowage_s3::{S3Config, S3Storage};
use support::TestCa;

/// How long a request against an untrusted endpoint may take: one
/// handshake, not a retry budget.
const FAST: Duration = Duration::from_secs(5);

/// `servers/fault_proxy.py` listening with TLS (`--tls-cert`, `--tls-key`)
/// in front of the test server; stopped when dropped.
struct TlsProxy {
    child: Child,
    /// `https://127.0.0.1:PORT`, to use as the S3 endpoint.
    url: String,
}

impl TlsProxy {
    fn start(env: &S3Env, ca: &TestCa) -> Self {
        let upstream = env
            .endpoint
            .as_deref()
            .expect("an S3 endpoint (STOWAGE_S3_TEST_ENDPOINT) to put the TLS proxy in front of");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/fault_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--listen", "127.0.0.1:0", "--upstream", upstream])
            .arg("--tls-cert")
            .arg(&ca.cert)
            .arg("--tls-key")
            .arg(&ca.key)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fault proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the proxy's ready line");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("proxy ready line, got {line:?}"))
            .to_string();
        Self {
            url: format!("https://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A location of the test bucket through `proxy`, under a fresh root, as
/// a config file gives it, with `extra` keys.
fn location(env: &S3Env, proxy: &TlsProxy, label: &str, extra: Value) -> Map<String, Value> {
    let mut map = json!({
        "s3_bucket": env.bucket,
        "storage_path": format!("stowage-it/{label}-{}", uuid::Uuid::new_v4().simple()),
        "endpoint_url": proxy.url,
        "s3_region": env.region,
        "s3_access_key": env.access_key,
        "s3_secret_key": env.secret_key,
    });
    if let (Some(map), Value::Object(extra)) = (map.as_object_mut(), extra) {
        map.extend(extra);
    }
    match map {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// The configuration of `map`, read as the config loader reads it (with
/// `bundle` as the config file's directory when given).
fn read(map: &Map<String, Value>, bundle: Option<&Path>) -> S3Config {
    let mut params = Params::new("DISTRIBUTED_STORAGE_CONFIG.tls[1]", map);
    if let Some(dir) = bundle {
        params = params.with_base_dir(dir);
    }
    S3Config::from_params(params).expect("a valid location")
}

/// Writes, reads, lists and deletes one object through `storage`.
async fn round_trip(storage: &S3Storage) {
    let path = StoragePath::parse("blobs/tls/object").unwrap();
    let body = Bytes::from_static(b"bytes over a privately signed certificate");
    storage
        .put(&path, body.clone(), PutOptions::default())
        .await
        .expect("put through the TLS endpoint");
    assert_eq!(storage.get_bytes(&path).await.unwrap(), body);
    let listed: Vec<_> = storage.list(None).collect().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].as_ref().is_ok_and(|m| m.path == path),
        "{listed:?}"
    );
    storage.delete(&path).await.unwrap();
    assert_eq!(metric(storage, "stowage_s3_retries_total"), 0);
}

#[tokio::test]
async fn without_the_ca_requests_fail_at_once_naming_the_endpoint() {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(&dir.path().join("ca"));
    let proxy = TlsProxy::start(&env, &ca);
    let storage = S3Storage::new(read(
        &location(&env, &proxy, "tls-untrusted", json!({})),
        None,
    ))
    .await
    .unwrap();
    let path = StoragePath::parse("blobs/tls/object").unwrap();

    let started = Instant::now();
    let put = storage
        .put(&path, Bytes::from_static(b"x"), PutOptions::default())
        .await
        .expect_err("an untrusted certificate");
    let put_took = started.elapsed();
    let started = Instant::now();
    let listed = storage
        .list(None)
        .next()
        .await
        .expect("one item")
        .expect_err("an untrusted certificate");
    let list_took = started.elapsed();
    for (what, e, took) in [("put", put, put_took), ("ls", listed, list_took)] {
        assert!(took < FAST, "{what} took {took:?}: retried as if transient");
        assert!(!e.is_retryable(), "{what}: {e}");
        let text = e.to_string();
        assert!(
            text.contains(&proxy.url)
                && text.contains("CA that is not trusted")
                && text.contains("s3_ca_bundle"),
            "{what}: {text}"
        );
    }
    assert_eq!(metric(&storage, "stowage_s3_retries_total"), 0);

    let report = storage.validate().await;
    let reachable = report
        .checks
        .iter()
        .find(|c| c.name == "bucket reachable")
        .expect("a reachability check");
    assert_eq!(reachable.status, CheckStatus::Failed);
    assert!(
        reachable.detail.contains(&proxy.url) && reachable.detail.contains("not trusted"),
        "{}",
        reachable.detail
    );
}

#[tokio::test]
async fn a_ca_bundle_setting_makes_the_endpoint_trusted() {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(&dir.path().join("ca"));
    let proxy = TlsProxy::start(&env, &ca);
    let config = read(
        &location(
            &env,
            &proxy,
            "tls-bundle",
            json!({"s3_ca_bundle": ca.ca.to_str().unwrap()}),
        ),
        None,
    );
    assert_eq!(config.ca_bundle.as_deref(), Some(ca.ca.as_path()));
    round_trip(&S3Storage::new(config).await.unwrap()).await;
}

#[tokio::test]
async fn a_config_bundles_extra_ca_certs_folder_is_trusted() {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(&dir.path().join("ca"));
    let proxy = TlsProxy::start(&env, &ca);
    // Quay's config bundle: config.yaml and extra_ca_certs/ side by side.
    let bundle: PathBuf = dir.path().join("conf-stack");
    std::fs::create_dir_all(bundle.join("extra_ca_certs")).unwrap();
    std::fs::copy(&ca.ca, bundle.join("extra_ca_certs/private-ca.crt")).unwrap();
    let config = read(
        &location(&env, &proxy, "tls-extra-ca", json!({})),
        Some(&bundle),
    );
    assert_eq!(
        config.extra_ca_certs,
        [bundle.join("extra_ca_certs/private-ca.crt")]
    );
    round_trip(&S3Storage::new(config).await.unwrap()).await;
}

#[tokio::test]
async fn an_unusable_ca_bundle_is_a_configuration_error_naming_the_key() {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(&dir.path().join("ca"));
    let proxy = TlsProxy::start(&env, &ca);
    // The server's private key where the CA certificate should be.
    let map = location(
        &env,
        &proxy,
        "tls-bad-bundle",
        json!({"s3_ca_bundle": ca.key.to_str().unwrap()}),
    );
    let errs = S3Config::from_params(Params::new("DISTRIBUTED_STORAGE_CONFIG.tls[1]", &map))
        .expect_err("a key is not a CA certificate");
    let text = errs.to_string();
    assert!(
        text.contains("DISTRIBUTED_STORAGE_CONFIG.tls[1].s3_ca_bundle")
            && text.contains("no PEM certificate"),
        "{text}"
    );
}
