//! `stowage serve` on the embedded local store, driven by real clients:
//! skopeo (image round trip), the oras SDK, a restart in the middle of a
//! chunked upload, a 512 MiB layer pushed in chunks with the server's
//! memory bounded, and SIGTERM during a push (graceful stop).

use std::process::Command;
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------
// Retried PUTs finishing an upload (completion is idempotent).
// ---------------------------------------------------------------------------

mod retried_puts {
    use super::*;

    /// Every file below `dir` with its bytes (none when it is missing).
    fn files_below(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return out;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files_below(&path));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
        out
    }

    /// A PUT with a last chunk answered 201, then retried on a view of the
    /// upload from before it (its record put back as it was: the last
    /// chunk not in it, the chunks gone, the blob stored), as a replica
    /// behind a load balancer may see it: the retry finds the chunks gone,
    /// reads the stored blob back, answers 201, and the blob holds the
    /// bytes of its digest. Once the record is removed, the same PUT is
    /// 404 `BLOB_UPLOAD_UNKNOWN`, as in distribution.
    #[tokio::test]
    async fn a_put_retried_on_a_view_from_before_it_answers_201_with_the_stored_blob() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), None);
        let http = reqwest::Client::new();
        let base = format!("http://{}", server.addr);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let digest = Sha256Digest::of(&data).to_string();
        let r = http
            .post(format!("{base}/v2/retry/app/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = format!("{base}{}", header(&r, "location"));
        let id = header(&r, "docker-upload-uuid");
        let r = http
            .patch(&location)
            .header("content-range", "0-149999")
            .body(data[..150_000].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let records = dir.path().join("stowage-data/_registry/uploads").join(&id);
        let before = files_below(&records);
        assert!(
            !before.is_empty(),
            "the upload's record is in {}",
            records.display()
        );
        let put = || {
            http.put(format!("{location}?digest={digest}"))
                .header("content-range", "150000-199999")
                .body(data[150_000..].to_vec())
                .send()
        };
        let r = put().await.unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        assert!(files_below(&records).is_empty(), "the record is removed");

        // The record as it was before the PUT.
        for (path, bytes) in &before {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let r = put().await.unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let got = http
            .get(format!("{base}/v2/retry/app/blobs/{digest}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the blob holds the bytes of its digest");
        let chunks = dir.path().join("stowage-data/_uploads").join(&id);
        assert!(files_below(&chunks).is_empty(), "no chunk is left");
        assert!(files_below(&records).is_empty(), "the record is removed");

        // The upload is gone now.
        let r = put().await.unwrap();
        assert_eq!(r.status(), 404);
        let body = r.text().await.unwrap();
        assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");
        drop(server);
    }
}

/// Whether a new TCP connection to `addr` is refused within 5 s.
async fn refused_soon(addr: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// SIGTERM in the middle of a chunk that is still arriving: new
/// connections are refused at once, the chunk is received and recorded
/// (202), the server exits 0, and the next server continues the upload.
#[tokio::test]
async fn sigterm_lets_the_chunk_in_flight_finish_and_refuses_new_connections() {
    const PIECE: usize = 128 * 1024;
    const PIECES: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), None, &["--shutdown-grace-seconds", "30"]);
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let upload = header(&r, "location");
    let data: Vec<u8> = (0..PIECE * PIECES).map(|i| (i * 13 % 256) as u8).collect();
    // 4 MiB in pieces 100 ms apart: about 3 s of body.
    let pieces: Vec<Bytes> = data.chunks(PIECE).map(Bytes::copy_from_slice).collect();
    let body = futures::stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(piece)
    });
    let chunk = tokio::spawn(
        http.patch(format!("{base}{upload}"))
            .header("content-range", format!("0-{}", data.len() - 1))
            .header("content-length", data.len())
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!chunk.is_finished(), "the chunk was meant to be in flight");

    server.signal("TERM");
    assert!(
        refused_soon(&server.addr).await,
        "new connections are still accepted after SIGTERM"
    );
    let r = chunk
        .await
        .unwrap()
        .expect("the chunk in flight is answered");
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits once its last request finished");
    assert_eq!(status.code(), Some(0), "{status:?}");

    // The upload was kept: the next server continues it.
    let server = Server::start(dir.path(), None);
    let base = format!("http://{}", server.addr);
    let r = http.get(format!("{base}{upload}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), format!("0-{}", data.len() - 1));
    let digest = Sha256Digest::of(&data).to_string();
    let r = http
        .put(format!("{base}{upload}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

/// SIGTERM with a request that cannot finish (its body stopped): the
/// server waits out --shutdown-grace-seconds, closes it and exits 0.
#[tokio::test]
async fn sigterm_cuts_a_request_still_running_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), None, &["--shutdown-grace-seconds", "2"]);
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let upload = header(&r, "location");
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1000]))])
        .chain(futures::stream::pending());
    let stuck = tokio::spawn(
        http.patch(format!("{base}{upload}"))
            .header("content-length", 1_000_000)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits after its shutdown grace");
    let waited = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "exited {waited:?} after SIGTERM with a 2 s grace"
    );
    let cut = stuck.await.unwrap();
    assert!(
        cut.is_err() || !cut.as_ref().unwrap().status().is_success(),
        "{cut:?}"
    );
}
