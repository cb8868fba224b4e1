//! `stowage serve` on a Quay `AzureStorage` location of a real Blob service
//! (Azurite in CI): skopeo pushes and pulls with blob GETs redirected to
//! SAS URLs, a redirected blob fetched whole and by range with a plain
//! HTTP client (the right bytes, the signature in the URL, no key in it),
//! and a chunked upload started on one replica, continued and finished on
//! a second one (as two pods behind a load balancer), every byte checked.

mod support;

use std::path::{Path, PathBuf};

use sha2::Digest as _;
use stowage_integration::azure::AzureEnv;
use stowage_integration::registry::{blob_digests, make_image, skopeo_copy};
use support::Stowage;

/// A Quay-format config with one `AzureStorage` location under a fresh
/// root of the test container, with Quay's own keys.
fn config(dir: &Path, env: &AzureEnv) -> PathBuf {
    let root = format!(
        "stowage-it/registry-azure-{}",
        uuid::Uuid::new_v4().simple()
    );
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  azure:\n    - AzureStorage\n    - azure_container: {}\n      \
             azure_account_name: {}\n      azure_account_key: {}\n      endpoint_url: {}\n      \
             storage_path: /{root}\nDISTRIBUTED_STORAGE_PREFERENCE: [azure]\n",
            env.container, env.account, env.key, env.account_url,
        ),
    )
    .unwrap();
    path
}

fn sha256(data: &[u8]) -> String {
    let mut out = String::from("sha256:");
    for b in sha2::Sha256::digest(data) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Deterministic bytes that differ per `seed`.
fn bytes(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// The sum of the counter lines of `name` in a `/metrics` text whose
/// labels contain `labels`.
fn counter(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// skopeo pushes an image of three 6 MiB layers and pulls it back through
/// `stowage serve` on Azure: the same blobs, and the pulls were redirected.
#[test]
fn skopeo_round_trip_on_an_azure_location_with_sas_redirects() {
    let env = AzureEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &env);
    let server = Stowage::start(&dir.path().join("replica"), Some(&config), &[], false, &[]);
    let image = dir.path().join("image");
    make_image(&image, &["--layers", "3", "--layer-mib", "6"]);
    let dest = format!("docker://{}/team/app:1.0", server.addr);
    skopeo_copy(&format!("oci:{}:latest", image.display()), &dest);
    let back = dir.path().join("back");
    skopeo_copy(&dest, &format!("oci:{}:1.0", back.display()));
    assert_eq!(blob_digests(&image), blob_digests(&back));
    let text = server.metrics();
    assert!(
        counter(
            &text,
            "stowage_registry_requests_total",
            "method=\"GET\",status=\"307\""
        ) >= 4,
        "blob pulls were redirected to SAS URLs:\n{text}"
    );
    assert!(
        !server.log().contains(&env.key),
        "the account key in the log"
    );
}

/// A blob pushed through the API is answered by a 307 to a SAS URL of the
/// account; that URL, fetched with a plain client, serves exactly the
/// blob, and a ranged GET is redirected too and serves exactly the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_get_redirects_to_a_sas_url_that_serves_the_right_bytes() {
    let env = AzureEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &env);
    let server = Stowage::start(&dir.path().join("replica"), Some(&config), &[], false, &[]);
    let base = format!("http://{}", server.addr);
    let data = bytes(7, 5 * 1024 * 1024 + 123);
    let digest = sha256(&data);
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .post(format!("{base}/v2/sas/app/blobs/uploads/?digest={digest}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    let blob = format!("{base}/v2/sas/app/blobs/{digest}");
    let r = no_follow.get(&blob).send().await.unwrap();
    assert_eq!(r.status(), 307, "{:?}", r.text().await);
    let location = header(&r, "location");
    let url = reqwest::Url::parse(&location).unwrap();
    assert!(
        location.starts_with(&env.account_url),
        "the redirect goes to the account: {location}"
    );
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(
        query.iter().any(|(k, _)| k == "sig") && query.iter().any(|(k, _)| k == "se"),
        "a SAS URL (signature and expiry): {location}"
    );
    assert!(
        query
            .iter()
            .any(|(k, v)| k == "sp" && !v.contains('w') && !v.contains('d')),
        "read-only permissions: {location}"
    );
    assert!(!location.contains(&env.key), "the key in the URL");
    let plain = reqwest::Client::new();
    let fetched = plain.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    let fetched = fetched.bytes().await.unwrap();
    assert_eq!(sha256(&fetched), digest, "the SAS URL serves the blob");

    // A ranged GET is redirected as well, and the range is honoured.
    let (start, end) = (1_000_003usize, 3_000_010usize);
    let r = no_follow
        .get(&blob)
        .header("range", format!("bytes={start}-{end}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307, "ranged GETs are redirected too");
    let ranged = plain
        .get(header(&r, "location"))
        .header("range", format!("bytes={start}-{end}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &data[start..=end]);

    // Following the redirects, as a client does, gives the same bytes.
    let followed = plain.get(&blob).send().await.unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(sha256(&followed.bytes().await.unwrap()), digest);

    // With redirects off, the registry streams the same bytes itself.
    let streaming = Stowage::start(
        &dir.path().join("streaming"),
        Some(&config),
        &["--no-redirect"],
        false,
        &[],
    );
    let r = no_follow
        .get(format!(
            "http://{}/v2/sas/app/blobs/{digest}",
            streaming.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
}

/// A chunked upload: POST and the first two PATCHes on replica A, the
/// next PATCHes and the PUT on replica B, which knows the upload only from
/// the storage (its own working directory is empty). The blob is whole
/// and its digest right when read from either replica; a retried PUT of the
/// finished upload does not corrupt it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_continued_and_finished_on_a_second_replica() {
    let env = AzureEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &env);
    let a = Stowage::start(&dir.path().join("a"), Some(&config), &[], false, &[]);
    let b = Stowage::start(&dir.path().join("b"), Some(&config), &[], false, &[]);
    let (base_a, base_b) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let chunk = 3 * 1024 * 1024 + 17;
    let data = bytes(11, 4 * chunk + 5000);
    let digest = sha256(&data);

    let r = http
        .post(format!("{base_a}/v2/relay/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = header(&r, "location");
    for (i, part) in data.chunks(chunk).enumerate() {
        let base = if i < 2 { &base_a } else { &base_b };
        let start = i * chunk;
        let r = http
            .patch(format!("{base}{location}"))
            .header(
                "content-range",
                format!("{start}-{}", start + part.len() - 1),
            )
            .header("content-type", "application/octet-stream")
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "chunk {i}: {:?}", r.text().await);
        assert_eq!(
            header(&r, "range"),
            format!("0-{}", start + part.len() - 1),
            "chunk {i}"
        );
        location = header(&r, "location");
    }
    // Replica B reports the upload's progress though A started it.
    let r = http
        .get(format!("{base_b}{location}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), format!("0-{}", data.len() - 1));

    let put = format!("{base_b}{location}?digest={digest}");
    let r = http.put(&put).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(header(&r, "docker-content-digest"), digest);

    for base in [&base_a, &base_b] {
        let r = http
            .head(format!("{base}/v2/relay/app/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{base}");
        assert_eq!(header(&r, "content-length"), data.len().to_string());
        let r = reqwest::get(format!("{base}/v2/relay/app/blobs/{digest}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sha256(&r.bytes().await.unwrap()), digest, "{base}");
    }
    // A retried PUT (a client that lost the 201) on the other replica
    // answers as distribution does, and the blob stays whole.
    let retried = http
        .put(format!("{base_a}{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert!(
        retried.status() == 201 || retried.status() == 404,
        "a retried PUT: {}",
        retried.status()
    );
    let r = reqwest::get(format!("{base_a}/v2/relay/app/blobs/{digest}"))
        .await
        .unwrap();
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
}
