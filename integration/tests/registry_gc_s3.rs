//! `stowage gc` on S3 (RGW in CI) while two `stowage serve --allow-delete`
//! replicas on the same location serve behind haproxy (round robin, a new
//! backend connection per request, as in registry_replicas.rs).
//!
//! skopeo pushes image A, image B sharing a layer with A, and image C;
//! C's tag and then its manifest are deleted through the balancer. Then:
//!
//! - **A push during two runs at once.** Two `stowage gc --grace 0s` start
//!   together; each is stopped (SIGSTOP) as soon as it reports its mark
//!   phase, that is once its record is written and its start fixed, and
//!   while both are stopped image D's blobs are uploaded in chunks through
//!   the balancer (POST, PATCH..., PUT; no manifest yet). Both are then
//!   resumed and must exit 0. Between them they remove exactly C's
//!   manifest, config and layers; what is left in the bucket is exactly
//!   A's, B's and D's blobs (D's are unreferenced but younger than the
//!   runs, so kept, as docs/registry.md says); C's links go and its blobs
//!   answer 404 through the balancer; no tombstone is left and both run
//!   records say finished. A run stopped before its sweep began lists D's
//!   blobs and must report exactly them as younger than the grace. D's
//!   manifest is then put (201; with runs recent the registry takes the
//!   careful path, so "used" markers exist for it and its blobs), a third
//!   run removes nothing, and A, B and D pull back byte-identical.
//! - **The report.** `stowage gc --grace 0s --dry-run` names exactly C's
//!   blobs with their sizes, their total and C's links, and changes
//!   nothing (no run record either); the run for real removes and reports
//!   exactly the same; a second run removes nothing; A and B pull back
//!   byte-identical.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stowage_integration::registry::{
    blob_digests, layout_blob, layout_manifest, make_image, sha256,
};
use stowage_integration::{stowage_binary, S3Env};
use support::{s3_config, skopeo_ok, Haproxy, Stowage};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The repository every image of these tests goes to.
const REPO: &str = "team/app";
/// Longer than the storage's timestamps are coarse (S3's `Last-Modified`
/// has whole seconds): what was written before this pause is older than
/// the start of a run begun after it.
const OLDER: Duration = Duration::from_millis(1500);

/// Two replicas with `--allow-delete` on one location, haproxy in front,
/// and a raw S3 client to look at the bucket behind their backs. Fields
/// drop in order: the balancer, the replicas, then the directory.
#[derive(Debug)]
struct Cluster {
    proxy: Haproxy,
    replicas: Vec<Stowage>,
    env: S3Env,
    sdk: aws_sdk_s3::Client,
    config: PathBuf,
    root: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts it (inside the test's runtime: the SDK client is made here).
    fn start() -> Self {
        let env = S3Env::get();
        let dir = tempfile::tempdir().unwrap();
        let (config, root) = s3_config(dir.path(), &env, "gc");
        let replicas: Vec<Stowage> = (0..2)
            .map(|i| {
                Stowage::start(
                    &dir.path().join(format!("replica{i}")),
                    Some(config.as_path()),
                    &["--allow-delete"],
                    false,
                    &[],
                )
            })
            .collect();
        let backends: Vec<&str> = replicas.iter().map(|r| r.addr.as_str()).collect();
        let proxy = Haproxy::start(&dir.path().join("haproxy"), &backends);
        let sdk = env.sdk_with(&env.access_key, &env.secret_key);
        Self {
            proxy,
            replicas,
            env,
            sdk,
            config,
            root,
            dir,
        }
    }

    /// `http://<balancer>`.
    fn base(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    /// skopeo pushes the OCI layout `layout` (its `latest`) as `REPO:tag`
    /// through the balancer.
    fn push(&self, layout: &Path, tag: &str) {
        skopeo_ok(
            &format!("oci:{}:latest", layout.display()),
            &format!("docker://{}/{REPO}:{tag}", self.proxy.addr),
            &["--dest-tls-verify=false"],
        );
    }

    /// skopeo pulls `REPO:tag` through the balancer into a new layout and
    /// checks it holds exactly the blobs of `source`, byte for byte, and
    /// the same manifest.
    fn assert_pulls_identical(&self, tag: &str, source: &Path) {
        let back = self
            .dir
            .path()
            .join(format!("pulled-{tag}-{}", uuid::Uuid::new_v4().simple()));
        skopeo_ok(
            &format!("docker://{}/{REPO}:{tag}", self.proxy.addr),
            &format!("oci:{}:{tag}", back.display()),
            &["--src-tls-verify=false"],
        );
        assert_eq!(blob_digests(source), blob_digests(&back), "{tag}");
        for digest in blob_digests(source) {
            assert_eq!(
                std::fs::read(layout_blob(source, &digest)).unwrap(),
                std::fs::read(layout_blob(&back, &digest)).unwrap(),
                "{tag}: {digest}"
            );
        }
        assert_eq!(layout_manifest(&back).0, layout_manifest(source).0, "{tag}");
    }

    /// The balancer spread the requests: each replica served writes.
    fn assert_every_replica_served(&self) {
        for (i, replica) in self.replicas.iter().enumerate() {
            let writes: u64 = ["POST", "PATCH", "PUT", "DELETE"]
                .iter()
                .map(|m| replica.requests(m))
                .sum();
            assert!(
                writes > 0,
                "replica {i} served no write:\n{}",
                replica.metrics()
            );
        }
    }

    /// `stowage --config <the replicas' config> gc ARGS`.
    fn gc_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(stowage_binary());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("gc")
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("STOWAGE_CONFIG")
            .env_remove("STOWAGE_LOCATION");
        cmd
    }

    /// Runs `stowage gc ARGS` to its end; its stdout, after checking it
    /// exited 0.
    fn gc_ok(&self, args: &[&str]) -> String {
        let out = self.gc_command(args).output().expect("stowage gc runs");
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

    /// The keys below `<root>/<under>` in the bucket.
    async fn keys(&self, under: &str) -> Vec<String> {
        let prefix = format!("{}/{under}", self.root);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sdk
                .list_objects_v2()
                .bucket(&self.env.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .expect("ListObjectsV2");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return keys,
            }
        }
    }

    /// The digests of the blobs stored (`blobs/sha256/<ab>/<hex>`).
    async fn stored_blobs(&self) -> BTreeSet<String> {
        self.keys("blobs/sha256/")
            .await
            .iter()
            .map(|k| format!("sha256:{}", k.rsplit('/').next().unwrap()))
            .collect()
    }

    /// The digests `REPO` has links to (`_layers/sha256/<hex>`).
    async fn links(&self) -> BTreeSet<String> {
        self.keys(&format!("repositories/{REPO}/_layers/sha256/"))
            .await
            .iter()
            .map(|k| format!("sha256:{}", k.rsplit('/').next().unwrap()))
            .collect()
    }

    /// The garbage collection records (`_registry/gc/runs/`), parsed.
    async fn run_records(&self) -> Vec<Value> {
        let mut records: Vec<Value> = Vec::new();
        for key in self.keys("_registry/gc/runs/").await {
            let bytes = self
                .sdk
                .get_object()
                .bucket(&self.env.bucket)
                .key(&key)
                .send()
                .await
                .expect("GetObject")
                .body
                .collect()
                .await
                .expect("the record's body")
                .into_bytes();
            records.push(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{key}: {e}: {}", String::from_utf8_lossy(&bytes))),
            );
        }
        records
    }
}

/// The config and layers a layout's manifest names (what a push uploads
/// as blobs, and what the repository gets links to).
fn config_and_layers(layout: &Path) -> Vec<String> {
    let (_, doc) = layout_manifest(layout);
    let mut out = vec![doc["config"]["digest"].as_str().unwrap().to_string()];
    for layer in doc["layers"].as_array().unwrap() {
        out.push(layer["digest"].as_str().unwrap().to_string());
    }
    out
}

fn digests_of(layout: &Path) -> BTreeSet<String> {
    blob_digests(layout).into_iter().collect()
}

/// The images of these tests, as OCI layouts.
#[derive(Debug)]
struct Images {
    /// make_oci_image.py, two small layers.
    a: PathBuf,
    /// A's first layer, a layer and a config of its own.
    b: PathBuf,
    /// Nothing shared with A, B or D.
    c: PathBuf,
    /// Nothing shared with A, B or C: the push during the collection.
    d: PathBuf,
}

impl Images {
    fn make(dir: &Path) -> Self {
        let a = dir.join("image-a");
        make_image(&a, &["--small", "--seed", "1"]);
        let other = dir.join("image-other");
        make_image(&other, &["--small", "--seed", "2"]);
        let b = dir.join("image-b");
        sharing_a_layer(&a, &other, &b);
        let c = dir.join("image-c");
        make_image(&c, &["--small", "--seed", "3"]);
        let d = dir.join("image-d");
        make_image(&d, &["--small", "--seed", "4"]);
        let images = Self { a, b, c, d };
        // The premise of every assertion below: A and B share a layer, and
        // C and D share nothing with the others.
        let (a, b, c, d) = (
            digests_of(&images.a),
            digests_of(&images.b),
            digests_of(&images.c),
            digests_of(&images.d),
        );
        assert_eq!(a.intersection(&b).count(), 1, "A and B share one layer");
        for (name, own) in [("C", &c), ("D", &d)] {
            for (other_name, other) in [("A", &a), ("B", &b), ("C", &c), ("D", &d)] {
                if name != other_name {
                    assert!(
                        own.is_disjoint(other),
                        "{name} and {other_name} share a blob"
                    );
                }
            }
        }
        images
    }

    /// Every blob of A and B (what the mark finds referenced).
    fn referenced(&self) -> BTreeSet<String> {
        digests_of(&self.a)
            .union(&digests_of(&self.b))
            .cloned()
            .collect()
    }
}

/// Writes into `b` an image of `a`'s first layer, `other`'s second layer
/// and a config of its own (as registry_lifecycle.rs builds it).
fn sharing_a_layer(a: &Path, other: &Path, b: &Path) {
    let (_, doc_a) = layout_manifest(a);
    let (_, doc_other) = layout_manifest(other);
    let shared = doc_a["layers"][0].clone();
    let own = doc_other["layers"][1].clone();
    std::fs::create_dir_all(b.join("blobs/sha256")).unwrap();
    std::fs::write(b.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let write_blob = |bytes: &[u8]| -> String {
        let digest = sha256(bytes);
        std::fs::write(layout_blob(b, &digest), bytes).unwrap();
        digest
    };
    for (layout, layer) in [(a, &shared), (other, &own)] {
        let digest = layer["digest"].as_str().unwrap();
        write_blob(&std::fs::read(layout_blob(layout, digest)).unwrap());
    }
    // Uncompressed tar layers: their diff ids are their digests.
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [shared["digest"], own["digest"]]},
    }))
    .unwrap();
    let config_digest = write_blob(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [shared, own],
    }))
    .unwrap();
    let manifest_digest = write_blob(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(b.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A `Location` the registry answered, made absolute.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// Pushes `data` in chunks of `chunk` bytes (`POST`, `PATCH`..., `PUT
/// ?digest=`) through `base`; each request may land on another replica.
async fn push_chunked(http: &reqwest::Client, base: &str, digest: &str, data: &[u8], chunk: usize) {
    let r = http
        .post(format!("{base}/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{digest}: {:?}", r.text().await);
    let mut location = absolute(base, &header(&r, "location"));
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
        assert_eq!(r.status(), 202, "{digest} chunk {i}: {:?}", r.text().await);
        location = absolute(base, &header(&r, "location"));
    }
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{location}{separator}digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{digest}: {:?}", r.text().await);
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// Deletes `REPO:tag` through the balancer, its tag first (the manifest
/// stays by digest), then its manifest by digest.
async fn delete_image(http: &reqwest::Client, base: &str, tag: &str, digest: &str) {
    let manifests = format!("{base}/v2/{REPO}/manifests");
    let r = http
        .delete(format!("{manifests}/{tag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "DELETE tag {tag}: {:?}", r.text().await);
    assert_eq!(
        status_of(http.head(format!("{manifests}/{tag}"))).await,
        404,
        "the tag {tag} is gone"
    );
    assert_eq!(
        status_of(http.head(format!("{manifests}/{digest}"))).await,
        200,
        "deleting the tag left the manifest"
    );
    let r = http
        .delete(format!("{manifests}/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "DELETE {digest}: {:?}", r.text().await);
    assert_eq!(
        status_of(http.head(format!("{manifests}/{digest}"))).await,
        404,
        "the manifest {digest} is gone"
    );
}

/// skopeo pushes A, B and C; C is deleted through the balancer; then the
/// pause that makes all of it older than a run started next.
async fn three_images_one_deleted(cluster: &Cluster, images: &Images, http: &reqwest::Client) {
    cluster.push(&images.a, "a");
    cluster.push(&images.b, "b");
    cluster.push(&images.c, "c");
    let stored = cluster.stored_blobs().await;
    for digest in images.referenced().iter().chain(&digests_of(&images.c)) {
        assert!(stored.contains(digest), "the push stored {digest}");
    }
    let (c, _) = layout_manifest(&images.c);
    delete_image(http, &cluster.base(), "c", &c).await;
    let manifests = format!("{}/v2/{REPO}/manifests", cluster.base());
    for tag in ["a", "b"] {
        assert_eq!(
            status_of(http.head(format!("{manifests}/{tag}"))).await,
            200,
            "{tag} stays"
        );
    }
    tokio::time::sleep(OLDER).await;
}

/// The digests a `stowage gc` output names as removed (`verb`: `removed`
/// or `would remove`), with the sizes it gives.
fn removed_sizes(stdout: &str, verb: &str) -> BTreeMap<String, u64> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix(verb)?.split_whitespace();
            let digest = words.next()?.strip_prefix("sha256:")?;
            let size: u64 = words.next()?.parse().ok()?;
            Some((format!("sha256:{digest}"), size))
        })
        .collect()
}

fn removed_digests(stdout: &str, verb: &str) -> BTreeSet<String> {
    removed_sizes(stdout, verb).into_keys().collect()
}

/// From the summary line `kept N referenced blobs, M younger than the
/// grace, ...`: (N, M).
fn kept(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kept "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> u64 {
        words
            .get(i)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("word {i} of {line:?}"))
    };
    (number(1), number(4))
}

/// Sends `pid` a signal by name (`STOP`, `CONT`); whether it was sent.
fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// A `stowage gc` running in the background: its stderr is read as it
/// comes, and the process is stopped (SIGSTOP) as soon as it reports its
/// mark phase, i.e. once its record is written and its start fixed; the
/// channel then gets (pid, whether the stop was sent). Killed (after a
/// SIGCONT) when dropped.
#[derive(Debug)]
struct PausedGc {
    child: Option<Child>,
    pid: u32,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// How a [`PausedGc`] ended.
#[derive(Debug)]
struct GcEnd {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl PausedGc {
    fn start(cluster: &Cluster, args: &[&str], paused: mpsc::Sender<(u32, bool)>) -> Self {
        let mut child = cluster
            .gc_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stowage gc starts");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut paused = Some(paused);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let at_mark = line.starts_with("stowage gc: mark:");
                if at_mark {
                    if let Some(tell) = paused.take() {
                        let stopped = signal(pid, "STOP");
                        let _ = tell.send((pid, stopped));
                    }
                }
                eprintln!("[stowage gc {pid}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child: Some(child),
            pid,
            stderr: lines,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Whether its stderr so far has a line starting with `prefix`.
    fn said(&self, prefix: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(prefix))
    }

    /// Whether the process has not exited (a stopped one has not).
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("the status of stowage gc").is_none())
    }

    fn resume(&self) {
        assert!(signal(self.pid, "CONT"), "kill -s CONT {}", self.pid);
    }

    /// Waits for the process to exit (at most `limit`).
    fn finish(mut self, limit: Duration) -> GcEnd {
        let mut child = self.child.take().expect("not finished yet");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("the status of stowage gc") {
                break status;
            }
            if started.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "stowage gc {} did not finish within {limit:?}:\n{}",
                    self.pid,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_string(&mut stdout).unwrap();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        eprintln!("[stowage gc {}] stdout:\n{stdout}", self.pid);
        GcEnd {
            status,
            stdout,
            stderr: self.stderr(),
        }
    }
}

impl Drop for PausedGc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(self.pid, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two collections at once, both under way (records written, not
/// finished) while a push uploads its blobs through the balancer; then
/// exactly the deleted image goes, the push's blobs stay and its manifest
/// goes in, and every image still referenced pulls back byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn two_collections_at_once_while_a_push_uploads_through_two_replicas() {
    let cluster = Cluster::start();
    let images = Images::make(cluster.dir.path());
    let http = reqwest::Client::new();
    let base = cluster.base();
    three_images_one_deleted(&cluster, &images, &http).await;
    let referenced = images.referenced();
    let garbage = digests_of(&images.c);
    let (d_manifest, _) = layout_manifest(&images.d);
    let d_blobs: BTreeSet<String> = config_and_layers(&images.d).into_iter().collect();

    // Two runs at once, each stopped right after it fixed its start.
    let (tell, paused) = mpsc::channel();
    let mut first = PausedGc::start(&cluster, &["--grace", "0s"], tell.clone());
    let mut second = PausedGc::start(&cluster, &["--grace", "0s"], tell);
    for _ in 0..2 {
        let (pid, stopped) = paused
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| {
                panic!(
                    "a stowage gc never reached its mark phase ({e}):\n{}\n---\n{}",
                    first.stderr(),
                    second.stderr()
                )
            });
        assert!(stopped, "kill -s STOP {pid}");
    }
    // What each wrote before it stopped reaches its reader.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_sweep = [
        !first.said("stowage gc: sweep:"),
        !second.said("stowage gc: sweep:"),
    ];
    eprintln!("stopped before their sweep began: {before_sweep:?}");

    // The push: D's blobs, in chunks, through the balancer, manifest not
    // put. Both runs are going on meanwhile.
    for digest in &d_blobs {
        let data = std::fs::read(layout_blob(&images.d, digest)).unwrap();
        push_chunked(&http, &base, digest, &data, 3000).await;
    }
    assert!(
        first.alive() && second.alive(),
        "a collection ended before the push uploaded its blobs:\n{}\n---\n{}",
        first.stderr(),
        second.stderr()
    );
    let records = cluster.run_records().await;
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record["finished"], false, "a run under way: {record}");
    }
    for digest in &d_blobs {
        let head = http.head(format!("{base}/v2/{REPO}/blobs/{digest}"));
        assert_eq!(status_of(head).await, 200, "{digest} uploaded");
    }
    first.resume();
    second.resume();
    let ends = [
        first.finish(Duration::from_secs(180)),
        second.finish(Duration::from_secs(180)),
    ];

    // Both succeeded, and between them removed exactly C's blobs.
    let mut removed = BTreeSet::new();
    for (i, end) in ends.iter().enumerate() {
        assert!(
            end.status.success(),
            "stowage gc #{i}: {:?}\n{}\n{}",
            end.status,
            end.stdout,
            end.stderr
        );
        let own = removed_digests(&end.stdout, "removed");
        assert!(own.is_subset(&garbage), "run #{i} removed {own:?}");
        removed.extend(own);
        let (in_use, young) = kept(&end.stdout);
        assert_eq!(
            in_use,
            referenced.len() as u64,
            "run #{i} found A's and B's blobs referenced:\n{}",
            end.stdout
        );
        if before_sweep[i] {
            // Its listing of blobs came after the push: D's blobs, which
            // nothing refers to yet, were kept for being younger than its
            // start.
            assert_eq!(
                young,
                d_blobs.len() as u64,
                "run #{i} listed D's blobs and kept them as young:\n{}",
                end.stdout
            );
        }
    }
    assert_eq!(removed, garbage, "between them, the runs removed C's blobs");

    // In the bucket: exactly A's, B's and D's blobs; C's links gone; no
    // tombstone; both records finished.
    let expected: BTreeSet<String> = referenced.union(&d_blobs).cloned().collect();
    assert_eq!(cluster.stored_blobs().await, expected);
    let links = cluster.links().await;
    for digest in config_and_layers(&images.c) {
        assert!(!links.contains(&digest), "C's link to {digest} stayed");
    }
    for layout in [&images.a, &images.b, &images.d] {
        for digest in config_and_layers(layout) {
            assert!(links.contains(&digest), "the link to {digest} was removed");
        }
    }
    let tombstones = cluster.keys("_registry/gc/sweeping/").await;
    assert!(tombstones.is_empty(), "tombstones left: {tombstones:?}");
    let records = cluster.run_records().await;
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record["finished"], true, "{record}");
    }

    // Through the balancer: C is gone, D's blobs are there.
    let (c_manifest, _) = layout_manifest(&images.c);
    assert_eq!(
        status_of(http.head(format!("{base}/v2/{REPO}/manifests/{c_manifest}"))).await,
        404
    );
    for digest in config_and_layers(&images.c) {
        let head = http.head(format!("{base}/v2/{REPO}/blobs/{digest}"));
        assert_eq!(status_of(head).await, 404, "C's {digest}");
    }
    for digest in &d_blobs {
        let head = http.head(format!("{base}/v2/{REPO}/blobs/{digest}"));
        assert_eq!(status_of(head).await, 200, "D's {digest}");
    }

    // The push ends: D's manifest goes in. Runs are recent, so the
    // registry took the careful path: "used" markers for the manifest and
    // each blob it names.
    let body = std::fs::read(layout_blob(&images.d, &d_manifest)).unwrap();
    let r = http
        .put(format!("{base}/v2/{REPO}/manifests/d"))
        .header("content-type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "D's manifest: {:?}", r.text().await);
    assert_eq!(header(&r, "docker-content-digest"), d_manifest);
    for digest in d_blobs.iter().chain([&d_manifest]) {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let markers = cluster
            .keys(&format!("_registry/gc/used/sha256/{hex}/"))
            .await;
        assert!(!markers.is_empty(), "no \"used\" marker of {digest}");
    }
    let r = http
        .get(format!("{base}/v2/{REPO}/manifests/d"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // A later run finds nothing to remove.
    tokio::time::sleep(OLDER).await;
    let again = cluster.gc_ok(&["--grace", "0s"]);
    assert!(removed_digests(&again, "removed").is_empty(), "{again}");
    let everything: BTreeSet<String> = expected.into_iter().chain([d_manifest]).collect();
    assert_eq!(cluster.stored_blobs().await, everything);

    // Every image still referenced pulls back byte-identical.
    cluster.assert_pulls_identical("a", &images.a);
    cluster.assert_pulls_identical("b", &images.b);
    cluster.assert_pulls_identical("d", &images.d);
    cluster.assert_every_replica_served();
}

/// The report names exactly the deleted image's blobs with their sizes,
/// the bytes freed and its links, dry and for real; the dry run changes
/// nothing; a second run finds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_report_names_exactly_the_deleted_images_blobs_and_bytes() {
    let cluster = Cluster::start();
    let images = Images::make(cluster.dir.path());
    let http = reqwest::Client::new();
    three_images_one_deleted(&cluster, &images, &http).await;
    let referenced = images.referenced();
    let garbage: BTreeMap<String, u64> = blob_digests(&images.c)
        .into_iter()
        .map(|d| {
            let size = std::fs::metadata(layout_blob(&images.c, &d)).unwrap().len();
            (d, size)
        })
        .collect();
    let bytes: u64 = garbage.values().sum();
    let links = config_and_layers(&images.c).len();
    let everything_before = cluster.stored_blobs().await;

    let dry = cluster.gc_ok(&["--grace", "0s", "--dry-run"]);
    assert_eq!(removed_sizes(&dry, "would remove"), garbage, "{dry}");
    assert!(
        dry.contains(&format!(
            "would remove {} blobs ({bytes} bytes",
            garbage.len()
        )),
        "{dry}"
    );
    assert!(
        dry.contains(&format!("), {links} repository links,")),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            "kept {} referenced blobs, 0 younger than the grace",
            referenced.len()
        )),
        "{dry}"
    );
    assert_eq!(
        cluster.stored_blobs().await,
        everything_before,
        "the dry run removed nothing"
    );
    let records = cluster.keys("_registry/gc/runs/").await;
    assert!(records.is_empty(), "the dry run wrote {records:?}");

    let done = cluster.gc_ok(&["--grace", "0s"]);
    assert_eq!(removed_sizes(&done, "removed"), garbage, "{done}");
    assert!(
        done.contains(&format!("removed {} blobs ({bytes} bytes", garbage.len())),
        "{done}"
    );
    assert!(
        done.contains(&format!("), {links} repository links,")),
        "{done}"
    );
    assert!(
        done.contains(&format!(
            "kept {} referenced blobs, 0 younger than the grace",
            referenced.len()
        )),
        "{done}"
    );
    assert_eq!(cluster.stored_blobs().await, referenced);
    let left = cluster.links().await;
    for digest in config_and_layers(&images.c) {
        assert!(!left.contains(&digest), "C's link to {digest} stayed");
    }

    tokio::time::sleep(OLDER).await;
    let again = cluster.gc_ok(&["--grace", "0s"]);
    assert!(again.contains("removed 0 blobs (0 bytes"), "{again}");
    assert!(removed_digests(&again, "removed").is_empty(), "{again}");

    cluster.assert_pulls_identical("a", &images.a);
    cluster.assert_pulls_identical("b", &images.b);
    cluster.assert_every_replica_served();
}
