//! The registry's lifecycle with the real binary on the embedded local
//! store: deletes (405 `UNSUPPORTED` without `--allow-delete`, 202 with
//! it), `stowage gc` (a dry run, then for real) after skopeo pushed two
//! images sharing a layer and one was deleted, a push in progress kept
//! within the grace, and the catalog and tag lists a page at a time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use stowage_integration::registry::{
    blob_digests, layout_blob, layout_manifest, make_image, sha256, skopeo_copy, Server,
};
use stowage_integration::stowage_binary;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `curl -X method url`: status, headers and body.
fn curl(method: &str, url: &str) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-D"])
        .arg(&headers)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), headers, body.to_string())
}

/// A header's value from curl's header dump, empty when absent.
fn header(headers: &str, name: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The URL path and query a `Link: <...>; rel="next"` names.
fn link_target(link: &str) -> String {
    link.trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string()
}

/// `stowage gc ARGS` in `dir` (the embedded store there): stdout, after
/// checking it succeeded.
fn stowage_gc(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(stowage_binary())
        .arg("gc")
        .args(args)
        .current_dir(dir)
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_LOCATION")
        .output()
        .expect("stowage gc runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "stowage gc {args:?}: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("[stowage gc {args:?}]\n{stdout}{stderr}");
    stdout
}

/// The digests a `stowage gc` output names as removed (`verb` `removed`
/// or `would remove`).
fn removed_digests(stdout: &str, verb: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(verb)?.trim().strip_prefix("sha256:"))
        .map(|rest| format!("sha256:{}", rest.split_whitespace().next().unwrap()))
        .collect()
}

/// Where the embedded store under `dir` keeps the blob `digest`.
fn stored_blob(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    dir.join("stowage-data/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

/// Two images: `a` (make_oci_image.py, two small layers) and `b`, which
/// shares `a`'s first layer and has a second layer and a config of its
/// own. Returns (manifest of a, its config, its own layer, manifest of b).
fn two_images_sharing_a_layer(dir: &Path) -> (String, String, String, String) {
    let a = dir.join("a");
    make_image(&a, &["--small", "--seed", "1"]);
    let other = dir.join("other");
    make_image(&other, &["--small", "--seed", "2"]);
    let (manifest_a, doc_a) = layout_manifest(&a);
    let (_, doc_other) = layout_manifest(&other);
    let shared = doc_a["layers"][0].clone();
    let own_of_a = doc_a["layers"][1]["digest"].as_str().unwrap().to_string();
    let own_of_b = doc_other["layers"][1].clone();

    let b = dir.join("b");
    std::fs::create_dir_all(b.join("blobs/sha256")).unwrap();
    std::fs::write(b.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let write_blob = |bytes: &[u8]| -> String {
        let digest = sha256(bytes);
        std::fs::write(layout_blob(&b, &digest), bytes).unwrap();
        digest
    };
    for (layout, layer) in [(&a, &shared), (&other, &own_of_b)] {
        let digest = layer["digest"].as_str().unwrap();
        write_blob(&std::fs::read(layout_blob(layout, digest)).unwrap());
    }
    // Uncompressed tar layers: their diff ids are their digests.
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [shared["digest"], own_of_b["digest"]]},
    }))
    .unwrap();
    let config_digest = write_blob(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [shared, own_of_b],
    }))
    .unwrap();
    let manifest_b = write_blob(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_b,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(b.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let config_a = doc_a["config"]["digest"].as_str().unwrap().to_string();
    (manifest_a, config_a, own_of_a, manifest_b)
}

/// skopeo pushes two images sharing a layer; deleting one manifest is 405
/// `UNSUPPORTED` without `--allow-delete` and 202 with it; `stowage gc
/// --grace 0s --dry-run` names exactly the deleted image's manifest,
/// config and own layer with their bytes and removes nothing; `stowage gc
/// --grace 0s` removes exactly those; the other image pulls back
/// byte-identical.
#[test]
fn delete_then_gc_keeps_the_image_that_shares_a_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (manifest_a, config_a, own_of_a, manifest_b) = two_images_sharing_a_layer(d);
    let server = Server::start(d, None);
    for (image, tag) in [("a", "a"), ("b", "b")] {
        let layout = d.join(image);
        let to = format!("docker://{}/team/app:{tag}", server.addr);
        skopeo_copy(&format!("oci:{}:latest", layout.display()), &to);
    }
    let base = format!("http://{}/v2/team/app", server.addr);
    for url in [
        format!("{base}/manifests/{manifest_a}"),
        format!("{base}/manifests/a"),
        format!("{base}/blobs/{own_of_a}"),
    ] {
        let (status, _, body) = curl("DELETE", &url);
        assert_eq!(status, 405, "{url}: {body}");
        assert!(body.contains("\"UNSUPPORTED\""), "{url}: {body}");
    }
    let (status, _, _) = curl("GET", &format!("{base}/manifests/a"));
    assert_eq!(status, 200, "nothing was deleted");
    drop(server);

    let server = Server::start_with(d, None, &["--allow-delete"]);
    let base = format!("http://{}/v2/team/app", server.addr);
    let (status, _, body) = curl("DELETE", &format!("{base}/manifests/{manifest_a}"));
    assert_eq!(status, 202, "{body}");
    let (status, _, _) = curl("GET", &format!("{base}/manifests/a"));
    assert_eq!(status, 404, "the tag went with its manifest");
    std::thread::sleep(std::time::Duration::from_millis(50));

    let garbage: BTreeSet<String> = [manifest_a.clone(), config_a, own_of_a]
        .into_iter()
        .collect();
    let bytes: u64 = garbage
        .iter()
        .map(|g| std::fs::metadata(stored_blob(d, g)).unwrap().len())
        .sum();
    let dry = stowage_gc(d, &["--grace", "0s", "--dry-run"]);
    assert_eq!(removed_digests(&dry, "would remove"), garbage, "{dry}");
    assert!(
        dry.contains(&format!("would remove 3 blobs ({bytes} bytes")),
        "{dry}"
    );
    for g in &garbage {
        assert!(stored_blob(d, g).exists(), "the dry run removed {g}");
    }

    let done = stowage_gc(d, &["--grace", "0s"]);
    assert_eq!(removed_digests(&done, "removed"), garbage, "{done}");
    assert!(
        done.contains(&format!("removed 3 blobs ({bytes} bytes")),
        "{done}"
    );
    for g in &garbage {
        assert!(!stored_blob(d, g).exists(), "{g} stayed");
    }
    let (status, _, _) = curl("GET", &format!("{base}/manifests/{manifest_a}"));
    assert_eq!(status, 404);

    let back = d.join("back");
    let from = format!("docker://{}/team/app:b", server.addr);
    skopeo_copy(&from, &format!("oci:{}:b", back.display()));
    let layout_b = d.join("b");
    assert_eq!(blob_digests(&layout_b), blob_digests(&back));
    for digest in blob_digests(&layout_b) {
        assert_eq!(
            std::fs::read(layout_blob(&layout_b, &digest)).unwrap(),
            std::fs::read(layout_blob(&back, &digest)).unwrap(),
            "{digest}"
        );
    }
    assert_eq!(layout_manifest(&back).0, manifest_b);

    // Nothing is left to collect.
    let again = stowage_gc(d, &["--grace", "0s"]);
    assert!(removed_digests(&again, "removed").is_empty(), "{again}");
}

/// A push in progress (its blobs uploaded, one upload still open, the
/// manifest not put yet) is left alone by a collection within the grace;
/// the manifest then goes in and pulls. A collection without grace later
/// removes only the upload abandoned meanwhile.
#[tokio::test]
async fn a_push_in_progress_within_the_grace_is_not_collected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(d, None);
    let http = reqwest::Client::new();
    let base = format!("http://{}/v2/wip/app", server.addr);
    let layer = b"a layer uploaded before its manifest".to_vec();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    for blob in [&layer, &config] {
        let r = http
            .post(format!("{base}/blobs/uploads/?digest={}", sha256(blob)))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = http
        .post(format!("{base}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let upload = format!(
        "http://{}{}",
        server.addr,
        r.headers()["location"].to_str().unwrap()
    );
    let r = http
        .patch(&upload)
        .body(b"half of another layer".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let kept = stowage_gc(d, &["--grace", "10m"]);
    assert!(kept.contains("removed 0 blobs"), "{kept}");
    assert!(kept.contains("0 abandoned uploads"), "{kept}");
    for blob in [&layer, &config] {
        assert!(stored_blob(d, &sha256(blob)).exists());
    }
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 204);

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let r = http
        .put(format!("{base}/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let got = http
        .get(format!("{base}/blobs/{}", sha256(&layer)))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), layer);

    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let swept = stowage_gc(d, &["--grace", "0s"]);
    assert!(swept.contains("removed 0 blobs"), "{swept}");
    assert!(swept.contains("1 abandoned uploads"), "{swept}");
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 404);
}

/// The catalog with `n=1` follows `Link` through every repository, nested
/// names included; 250 tags read 100 at a time; `n=0` is an empty list
/// without `Link`; a bad `n` is 400 `PAGINATION_NUMBER_INVALID`.
#[tokio::test]
async fn catalog_and_tags_page_with_links() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let http = reqwest::Client::new();
    let root = format!("http://{}", server.addr);
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [],
    }))
    .unwrap();
    let repos = ["a", "b/c", "d", "many"];
    for repo in repos {
        let r = http
            .post(format!(
                "{root}/v2/{repo}/blobs/uploads/?digest={}",
                sha256(&config)
            ))
            .body(config.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let tags: Vec<String> = if repo == "many" {
            (0..250).map(|i| format!("t{i:03}")).collect()
        } else {
            vec!["v1".to_string()]
        };
        for tag in tags {
            let r = http
                .put(format!("{root}/v2/{repo}/manifests/{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{repo}:{tag}");
        }
    }

    let mut url = format!("{root}/v2/_catalog?n=1");
    let mut seen = Vec::new();
    loop {
        let (status, headers, body) = curl("GET", &url);
        assert_eq!(status, 200, "{url}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let names = v["repositories"].as_array().unwrap();
        assert_eq!(names.len(), 1, "{url}: {body}");
        let name = names[0].as_str().unwrap().to_string();
        let link = header(&headers, "link");
        seen.push(name.clone());
        if link.is_empty() {
            break;
        }
        assert_eq!(
            link,
            format!("</v2/_catalog?last={name}&n=1>; rel=\"next\"")
        );
        url = format!("{root}{}", link_target(&link));
    }
    assert_eq!(seen, repos);

    let mut url = format!("{root}/v2/many/tags/list?n=100");
    let mut tags = Vec::new();
    let mut pages = 0;
    loop {
        let (status, headers, body) = curl("GET", &url);
        assert_eq!(status, 200, "{url}: {body}");
        pages += 1;
        let v: Value = serde_json::from_str(&body).unwrap();
        for t in v["tags"].as_array().unwrap() {
            tags.push(t.as_str().unwrap().to_string());
        }
        let link = header(&headers, "link");
        if link.is_empty() {
            break;
        }
        url = format!("{root}{}", link_target(&link));
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
    assert_eq!(tags, expected);

    for url in ["/v2/_catalog?n=0", "/v2/many/tags/list?n=0"] {
        let (status, headers, body) = curl("GET", &format!("{root}{url}"));
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body.contains("[]"), "{url}: {body}");
        assert_eq!(header(&headers, "link"), "", "{url}");
    }
    for n in ["-1", "abc", "1001"] {
        for url in [
            format!("/v2/_catalog?n={n}"),
            format!("/v2/many/tags/list?n={n}"),
        ] {
            let (status, _, body) = curl("GET", &format!("{root}{url}"));
            assert_eq!(status, 400, "{url}: {body}");
            assert!(body.contains("PAGINATION_NUMBER_INVALID"), "{url}: {body}");
        }
    }
}
