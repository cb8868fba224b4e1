//! Two and three `stowage serve` replicas on one S3 location, each in its
//! own working directory (as separate pods would be), behind haproxy with a
//! new backend connection per request and round robin, so consecutive
//! requests of one push land on different replicas: skopeo pushes and
//! pulls, oras pushes (whole and chunked), the OCI API (chunks, 416,
//! sha512, referrers, mounts), an upload continued after the replica that
//! started it died, and a push whose replica is killed midway, retried
//! through the balancer.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest as _;
use stowage_core::Sha256Digest;
use stowage_integration::registry::{blob_digests, make_image, oras_round_trip, OrasOptions};
use stowage_integration::S3Env;
use support::{s3_config, skopeo_ok, Haproxy, Stowage};

/// `n` replicas on one location and haproxy in front of them.
fn cluster(n: usize) -> (tempfile::TempDir, Vec<Stowage>, Haproxy) {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = s3_config(dir.path(), &env, "replicas");
    let replicas: Vec<Stowage> = (0..n)
        .map(|i| {
            Stowage::start(
                &dir.path().join(format!("replica{i}")),
                Some(config.as_path()),
                &[],
                false,
                &[],
            )
        })
        .collect();
    let backends: Vec<&str> = replicas.iter().map(|r| r.addr.as_str()).collect();
    let proxy = Haproxy::start(&dir.path().join("haproxy"), &backends);
    (dir, replicas, proxy)
}

#[test]
fn three_replicas_behind_haproxy_with_skopeo_and_oras() {
    let (dir, replicas, proxy) = cluster(3);
    let image = dir.path().join("image");
    make_image(&image, &["--layers", "3", "--layer-mib", "4"]);
    let dest = format!("docker://{}/team/app:1.0", proxy.addr);
    skopeo_ok(
        &format!("oci:{}:latest", image.display()),
        &dest,
        &["--dest-tls-verify=false"],
    );
    let back = dir.path().join("back");
    skopeo_ok(
        &dest,
        &format!("oci:{}:1.0", back.display()),
        &["--src-tls-verify=false"],
    );
    assert_eq!(blob_digests(&image), blob_digests(&back));
    oras_round_trip(&proxy.addr, "artifacts/whole", OrasOptions::default());
    let chunked = OrasOptions {
        chunked: true,
        ..OrasOptions::default()
    };
    oras_round_trip(&proxy.addr, "artifacts/chunked", chunked);
    // The balancer spread the pushes: every replica took part.
    for (i, replica) in replicas.iter().enumerate() {
        let writes = replica.requests("POST") + replica.requests("PATCH") + replica.requests("PUT");
        assert!(
            writes > 0,
            "replica {i} served no push request:\n{}",
            replica.metrics()
        );
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex_string(&sha2::Sha512::digest(data)))
}

fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Pushes `data` as one blob (`POST ?digest=`) through `base`.
async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, digest: &str, data: Vec<u8>) {
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{digest}: {:?}", r.text().await);
}

/// Pushes `data` in chunks of `chunk` bytes (`POST`, `PATCH`..., `PUT`)
/// through `base`; each request may land on another replica.
async fn push_chunked(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    digest: &str,
    data: &[u8],
    chunk: usize,
) {
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = format!("{base}{}", header(&r, "location"));
    for (i, part) in data.chunks(chunk).enumerate() {
        let start = i * chunk;
        let r = http
            .patch(&location)
            .header(
                "content-range",
                format!("{start}-{}", start + part.len() - 1),
            )
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i}: {:?}", r.text().await);
        location = format!("{base}{}", header(&r, "location"));
    }
    let r = http
        .put(format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{digest}: {:?}", r.text().await);
}

async fn get_bytes(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn the_oci_api_through_two_replicas() {
    let (_dir, _replicas, proxy) = cluster(2);
    let base = format!("http://{}", proxy.addr);
    let http = reqwest::Client::new();

    // A chunked upload, one replica after the other, then pulled back (a
    // redirect to S3).
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let digest = Sha256Digest::of(&data).to_string();
    push_chunked(&http, &base, "team/app", &digest, &data, 700_000).await;
    assert_eq!(
        get_bytes(&http, &format!("{base}/v2/team/app/blobs/{digest}")).await,
        data
    );

    // An out-of-order chunk and an out-of-order final PUT: 416 with the
    // range so far, whichever replica answers.
    let r = http
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = format!("{base}{}", header(&r, "location"));
    let r = http
        .patch(&location)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for method in [reqwest::Method::PATCH, reqwest::Method::PUT] {
        let r = http
            .request(method.clone(), format!("{location}?digest={digest}"))
            .header("content-range", "20-29")
            .body(vec![2u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416, "{method}");
        assert_eq!(header(&r, "range"), "0-9", "{method}");
    }

    // sha512, whole and chunked.
    let big: Vec<u8> = data.iter().rev().copied().collect();
    let d512 = sha512(&data);
    push_blob(&http, &base, "team/app", &d512, data.clone()).await;
    assert_eq!(
        get_bytes(&http, &format!("{base}/v2/team/app/blobs/{d512}")).await,
        data
    );
    let big512 = sha512(&big);
    push_chunked(&http, &base, "team/app", &big512, &big, 1_000_000).await;
    assert_eq!(
        get_bytes(&http, &format!("{base}/v2/team/app/blobs/{big512}")).await,
        big
    );

    // An image, an artifact referring to it, the referrers API.
    let config = b"{}".to_vec();
    let config_digest = Sha256Digest::of(&config).to_string();
    push_blob(&http, &base, "team/app", &config_digest, config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest, "size": data.len()}],
    }))
    .unwrap();
    let subject = Sha256Digest::of(&manifest).to_string();
    let put_manifest = |reference: String, body: Vec<u8>| {
        http.put(format!("{base}/v2/team/app/manifests/{reference}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
    };
    let r = put_manifest("v1".into(), manifest.clone()).await.unwrap();
    assert_eq!(r.status(), 201);
    let signature = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": config_digest, "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": subject, "size": manifest.len()},
    }))
    .unwrap();
    let signature_digest = Sha256Digest::of(&signature).to_string();
    let r = put_manifest(signature_digest.clone(), signature)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), subject);
    for query in ["", "?artifactType=application/vnd.example.signature"] {
        let index: Value = serde_json::from_slice(
            &get_bytes(
                &http,
                &format!("{base}/v2/team/app/referrers/{subject}{query}"),
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            signature_digest.as_str(),
            "{query}"
        );
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    }

    // A mount into another repository, then its manifest there.
    for blob in [&config_digest, &digest] {
        let r = http
            .post(format!(
                "{base}/v2/other/app/blobs/uploads/?mount={blob}&from=team/app"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{blob}");
    }
    let r = http
        .put(format!("{base}/v2/other/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Waits until `replica` has served a request of the push (an upload
/// started or a chunk sent), for at most a minute.
fn wait_until_pushing(replica: &Stowage) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if replica.requests("POST") + replica.requests("PATCH") + replica.requests("PUT") > 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_push_and_the_push_retried() {
    let (dir, mut replicas, proxy) = cluster(3);
    let image = dir.path().join("image");
    make_image(&image, &["--layers", "4", "--layer-mib", "24"]);
    let source = format!("oci:{}:latest", image.display());
    let dest = format!("docker://{}/team/big:1.0", proxy.addr);

    // A push under way; one replica dies in the middle of it.
    let cache = tempfile::tempdir().unwrap();
    let push = Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &source,
            &dest,
        ])
        .env("XDG_DATA_HOME", cache.path())
        .env("_CONTAINERS_ROOTLESS_UID", "65534")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pushing = wait_until_pushing(&replicas[1]);
    replicas[1].kill();
    assert!(
        pushing,
        "the balancer never sent a request of the push to the replica that was killed"
    );
    let first = push.wait_with_output().unwrap();
    eprintln!(
        "push with a replica killed {}: {}",
        if pushing {
            "mid-push"
        } else {
            "(the push had not reached it)"
        },
        if first.status.success() {
            "completed anyway".to_string()
        } else {
            format!(
                "failed as expected: {}",
                String::from_utf8_lossy(&first.stderr).trim()
            )
        }
    );
    // haproxy's health check takes the dead replica out; the client's retry
    // goes through the balancer to the others and completes the push.
    std::thread::sleep(Duration::from_secs(1));
    skopeo_ok(&source, &dest, &["--dest-tls-verify=false"]);
    let back = dir.path().join("back");
    skopeo_ok(
        &dest,
        &format!("oci:{}:1.0", back.display()),
        &["--src-tls-verify=false"],
    );
    assert_eq!(blob_digests(&image), blob_digests(&back));

    // An upload started on one replica, which then dies, continued and
    // finished by another one through the balancer.
    let http = reqwest::Client::new();
    let direct = format!("http://{}", replicas[0].addr);
    let base = format!("http://{}", proxy.addr);
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let r = http
        .post(format!("{direct}/v2/team/orphan/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let path = header(&r, "location");
    let r = http
        .patch(format!("{direct}{path}"))
        .header("content-range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    replicas[0].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), 204, "the surviving replica knows the upload");
    assert_eq!(header(&r, "range"), "0-999999");
    let r = http
        .patch(format!("{base}{path}"))
        .header("content-range", "1000000-1999999")
        .body(data[1_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let digest = Sha256Digest::of(&data).to_string();
    let r = http
        .put(format!("{base}{path}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(
        get_bytes(&http, &format!("{base}/v2/team/orphan/blobs/{digest}")).await,
        data
    );
}
