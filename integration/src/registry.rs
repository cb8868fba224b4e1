//! `stowage serve` as the end-to-end tests run it: the real binary on a
//! free port with a config file, and the real clients (skopeo, oras).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::stowage_binary;
use std::time::{Duration, Instant};

/// The scripts under `integration/registry/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("registry")
        .join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `stowage serve`; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    config: Option<PathBuf>,
    dir: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts `stowage serve` in `dir` (its working directory: the default
    /// local store and upload records live there) with `config` (none: the
    /// embedded default), and waits until `/v2/` answers.
    pub fn start(dir: &Path, config: Option<&Path>) -> Self {
        Self::start_on(dir, config, free_port(), Vec::new())
    }

    /// [`Server::start`] with more `serve` options (`--shutdown-grace-seconds
    /// 5`, ...), kept across [`Server::restart`].
    pub fn start_with(dir: &Path, config: Option<&Path>, args: &[&str]) -> Self {
        let args = args.iter().map(|a| a.to_string()).collect();
        Self::start_on(dir, config, free_port(), args)
    }

    fn start_on(dir: &Path, config: Option<&Path>, port: u16, args: Vec<String>) -> Self {
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(stowage_binary());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(["serve", "--listen", &addr])
            .args(&args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("stowage serve starts");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[stowage serve] {line}");
            }
        });
        let server = Self {
            child,
            addr,
            config: config.map(Path::to_path_buf),
            dir: dir.to_path_buf(),
            args,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        let url = format!("http://{}/v2/", self.addr);
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(out) = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &url])
                .status()
            {
                if out.success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("stowage serve did not answer on {url} within 30 s");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the server a signal by name (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -s {name} {}", self.pid());
    }

    /// Waits up to `limit` for the server to exit; its status, or `None`
    /// when it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the server's status") {
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }

    /// Kills the server and starts it again on the same port, directory and
    /// configuration.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.addr.rsplit(':').next().unwrap().parse().unwrap();
        let (dir, config, args) = (self.dir.clone(), self.config.clone(), self.args.clone());
        std::mem::forget(self);
        Self::start_on(&dir, config.as_deref(), port, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a small OCI image layout in `dir` and returns its manifest digest.
pub fn make_image(dir: &Path, extra_args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script("make_oci_image.py"))
        .arg(dir)
        .args(extra_args)
        .output()
        .expect("python3 builds the image");
    assert!(
        out.status.success(),
        "make_oci_image.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["manifest_digest"].as_str().unwrap().to_string()
}

/// Runs `skopeo copy` with digests preserved and TLS off, in an empty blob
/// info cache (so every push really uploads), and panics with its output
/// when it fails.
pub fn skopeo_copy(from: &str, to: &str) {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ])
        .env("XDG_DATA_HOME", cache.path())
        .env("_CONTAINERS_ROOTLESS_UID", "65534")
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How [`oras_round_trip`] reaches the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrasOptions<'a> {
    /// Blobs in chunks (POST, PATCH..., PUT) rather than whole.
    pub chunked: bool,
    /// HTTPS trusting this CA certificate; plain HTTP when `None`.
    pub ca_file: Option<&'a str>,
    /// Basic credentials, passed in the environment (never as arguments).
    pub creds: Option<(&'a str, &'a str)>,
}

/// Pushes and pulls an artifact with the oras SDK
/// (`registry/oras_check.py`, new bytes every run) to `repo` of
/// `registry`, and panics with its output unless the round trip was whole.
pub fn oras_round_trip(registry: &str, repo: &str, options: OrasOptions<'_>) {
    let mut cmd = Command::new("python3");
    cmd.arg(script("oras_check.py"))
        .args(["--registry", registry, "--repo", repo])
        .env_remove("ORAS_USER")
        .env_remove("ORAS_PASS");
    if options.chunked {
        cmd.arg("--chunked");
    }
    if let Some(ca) = options.ca_file {
        cmd.args(["--ca-file", ca]);
    }
    if let Some((user, password)) = options.creds {
        cmd.env("ORAS_USER", user).env("ORAS_PASS", password);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("oras round trip ok"),
        "oras to {registry}/{repo} ({options:?}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sha256 digests of the blobs of an OCI layout.
pub fn blob_digests(layout: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    out.sort();
    out
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Where an OCI layout keeps the blob `digest`.
pub fn layout_blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The manifest of the single image of an OCI layout: (digest, document).
pub fn layout_manifest(layout: &Path) -> (String, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = std::fs::read(layout_blob(layout, &digest)).unwrap();
    (digest, serde_json::from_slice(&bytes).unwrap())
}
