//! `stowage serve` on the embedded local store, driven by real clients:
//! skopeo (image round trip), the oras SDK, a restart in the middle of a
//! chunked upload, and a 512 MiB layer pushed in chunks with the server's
//! memory bounded.

use std::process::Command;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use stowage_core::Sha256Digest;
use stowage_integration::registry::{
    blob_digests, make_image, oras_round_trip, script, skopeo_copy, OrasOptions, Server,
};

#[test]
fn skopeo_round_trip_on_the_default_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let image = dir.path().join("image");
    let manifest = make_image(&image, &["--small"]);
    let dest = format!("docker://{}/library/small:v1", server.addr);
    skopeo_copy(&format!("oci:{}:latest", image.display()), &dest);
    let back = dir.path().join("back");
    skopeo_copy(&dest, &format!("oci:{}:v1", back.display()));
    assert_eq!(blob_digests(&image), blob_digests(&back));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], manifest.as_str());
    // The data went to the embedded default store in the working directory.
    assert!(dir.path().join("stowage-data/blobs/sha256").is_dir());
}

#[test]
fn oras_sdk_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    oras_round_trip(&server.addr, "artifacts/whole", OrasOptions::default());
    let chunked = OrasOptions {
        chunked: true,
        ..OrasOptions::default()
    };
    oras_round_trip(&server.addr, "artifacts/chunked", chunked);
    // The chunked run really sent chunks (its blobs are new to the repo).
    let metrics = Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", server.addr)])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("stowage_registry_requests_total{method=\"PATCH\",status=\"202\"}"),
        "{metrics}"
    );
}

/// oras (the SDK) attaches two artifacts with `subject`, to an image
/// skopeo pushed and to another artifact, and lists them through the
/// referrers API: OCI-Subject on the pushes, both listed with their
/// artifactType, the artifactType filter, the subject untouched (skopeo
/// pulls the image whole after), and an empty index for a digest nobody
/// refers to.
#[test]
fn oras_attaches_artifacts_and_lists_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let image = dir.path().join("image");
    make_image(&image, &["--small"]);
    let dest = format!("docker://{}/team/image:v1", server.addr);
    skopeo_copy(&format!("oci:{}:latest", image.display()), &dest);
    for (repo, subject) in [("team/image", Some("v1")), ("team/attach", None)] {
        let mut cmd = Command::new("python3");
        cmd.arg(script("oras_referrers.py"))
            .args(["--registry", &server.addr, "--repo", repo]);
        if let Some(tag) = subject {
            cmd.args(["--subject-tag", tag]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{repo}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("oras referrers ok"));
    }
    let back = dir.path().join("back");
    skopeo_copy(&dest, &format!("oci:{}:v1", back.display()));
    assert_eq!(blob_digests(&image), blob_digests(&back));
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_string()
}

#[tokio::test]
async fn restart_in_the_middle_of_a_chunked_upload() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = format!("{base}{}", header(&r, "location"));
    let r = http
        .patch(&location)
        .header("content-range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let server = server.restart();
    // A new client: the old one's pooled connection died with the server.
    let http = reqwest::Client::new();
    let r = http.get(&location).send().await.unwrap();
    assert_eq!(r.status(), 204, "the upload survived the restart");
    assert_eq!(header(&r, "range"), "0-999999");
    let r = http
        .patch(&location)
        .header("content-range", "1000000-2999999")
        .body(data[1_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let digest = Sha256Digest::of(&data).to_string();
    let r = http
        .put(format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = http
        .get(format!("{base}/v2/app/blobs/{digest}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
    drop(server);
}

/// Deterministic pseudo-random bytes, generated 1 MiB at a time.
fn block(index: u64) -> Bytes {
    let mut out = Vec::with_capacity(1 << 20);
    let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

#[tokio::test]
async fn large_layer_in_chunks_with_bounded_server_memory() {
    const MIB: u64 = 1 << 20;
    const CHUNK_MIB: u64 = 64;
    const TOTAL_MIB: u64 = 512;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let before = server.peak_rss();

    let mut hasher = Sha256::new();
    for i in 0..TOTAL_MIB {
        hasher.update(block(i));
    }
    let digest = Sha256Digest::from_bytes(hasher.finalize().into()).to_string();

    let r = http
        .post(format!("{base}/v2/big/layer/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let mut location = format!("{base}{}", header(&r, "location"));
    for chunk in 0..TOTAL_MIB / CHUNK_MIB {
        let first = chunk * CHUNK_MIB;
        let body = futures::stream::iter(first..first + CHUNK_MIB)
            .map(|i| Ok::<_, std::io::Error>(block(i)));
        let r = http
            .patch(&location)
            .header(
                "content-range",
                format!("{}-{}", first * MIB, (first + CHUNK_MIB) * MIB - 1),
            )
            .header("content-length", CHUNK_MIB * MIB)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {chunk}");
        location = format!("{base}{}", header(&r, "location"));
    }
    let r = http
        .put(format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    let mut pulled = Sha256::new();
    let mut size = 0u64;
    let mut stream = http
        .get(format!("{base}/v2/big/layer/blobs/{digest}"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len() as u64;
        pulled.update(&chunk);
    }
    assert_eq!(size, TOTAL_MIB * MIB);
    assert_eq!(
        Sha256Digest::from_bytes(pulled.finalize().into()).to_string(),
        digest
    );

    let peak = server.peak_rss();
    eprintln!(
        "stowage serve peak RSS: {} MiB before, {} MiB after a {TOTAL_MIB} MiB layer in {CHUNK_MIB} MiB chunks",
        before / MIB,
        peak / MIB
    );
    // A server that held one whole 64 MiB chunk in memory would pass 80 MiB.
    assert!(
        peak < 80 * MIB,
        "the server held {} MiB at its peak: it buffers chunks instead of streaming them",
        peak / MIB
    );
}
