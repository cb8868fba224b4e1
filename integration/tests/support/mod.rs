//! What the registry replica and TLS/auth tests share: `stowage serve`
//! processes with any flags (each in its own working directory, as
//! separate pods would be), haproxy in front of them, skopeo with
//! credentials and certificates, and a test CA made with openssl.

// Each test file uses part of it; the items are for these tests only.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stowage_integration::{stowage_binary, S3Env};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls `curl -sf <args> <url>` until it succeeds (30 s at most).
pub fn wait_for(url: &str, curl_args: &[&str]) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null"])
            .args(curl_args)
            .arg(url)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} did not answer within 30 s");
}

/// A running `stowage serve`, killed when dropped; its log lines are kept.
#[derive(Debug)]
pub struct Stowage {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Stowage {
    /// Starts `stowage [--config CONFIG] serve --listen ADDR ARGS...` in
    /// `dir` and waits until `/healthz` answers (`https` and `curl_args`,
    /// e.g. `--cacert`, when it serves TLS).
    pub fn start(
        dir: &Path,
        config: Option<&Path>,
        args: &[&str],
        https: bool,
        curl_args: &[&str],
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(stowage_binary());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(["serve", "--listen", &addr])
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn,stowage_registry=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("stowage serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let name = addr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") || line.starts_with("stowage:") {
                    eprintln!("[stowage serve {name}] {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
        let server = Self { child, addr, log };
        let scheme = if https { "https" } else { "http" };
        wait_for(&format!("{scheme}://{}/healthz", server.addr), curl_args);
        server
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Kills the process (SIGKILL: no graceful anything).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's `/metrics` (plain HTTP, no credentials).
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", &format!("http://{}/metrics", self.addr)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The sum of `stowage_registry_requests_total` for `method`.
    pub fn requests(&self, method: &str) -> u64 {
        let prefix = format!("stowage_registry_requests_total{{method=\"{method}\"");
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Stowage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// haproxy in HTTP mode in front of `backends`: round robin, and the
/// server-side connection closed after every response, so each request
/// may land on another replica. Health-checked on `/healthz`; a refused
/// connection is retried on another server. Stopped when dropped.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    /// `127.0.0.1:PORT` of the frontend.
    pub addr: String,
}

impl Haproxy {
    /// Writes the configuration into `dir` and starts haproxy in the
    /// foreground.
    pub fn start(dir: &Path, backends: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("    server replica{i} {b} check\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 512\n\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 300s\n    \
             timeout server 300s\n    timeout http-request 30s\n    retries 3\n    \
             option redispatch 1\n    option http-server-close\n\n\
             frontend registry\n    bind {addr}\n    default_backend replicas\n\n\
             backend replicas\n    balance roundrobin\n    option httpchk GET /healthz\n    \
             default-server inter 300ms fall 1 rise 2\n{servers}"
        );
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        run(Command::new("haproxy").arg("-c").arg("-f").arg(&path));
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy starts (apt-get install haproxy)");
        let proxy = Self { child, addr };
        wait_for(&format!("http://{}/healthz", proxy.addr), &[]);
        proxy
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo copy --preserve-digests` with extra flags (credentials,
/// certificate directories, TLS verification), with an empty blob info
/// cache of its own; returns the output, whether it succeeded or not.
pub fn skopeo(from: &str, to: &str, flags: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new("skopeo")
        .args(["copy", "--preserve-digests"])
        .args(flags)
        .args([from, to])
        .env("XDG_DATA_HOME", cache.path())
        .env("_CONTAINERS_ROOTLESS_UID", "65534")
        .output()
        .expect("skopeo runs")
}

/// The same, panicking with skopeo's output when it fails.
pub fn skopeo_ok(from: &str, to: &str, flags: &[&str]) {
    let out = skopeo(from, to, flags);
    assert!(
        out.status.success(),
        "skopeo copy {from} {to} {flags:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, made
/// with openssl in `dir`.
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// A directory holding only `ca.crt`, for skopeo's `--*-cert-dir`.
    pub cert_dir: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server certificate.
    pub fn make(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let p = |name: &str| dir.join(name);
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=stowage test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt")));
        run(Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        std::fs::write(
            p("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.crt"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("server.ext"))
            .arg("-out")
            .arg(p("server.crt")));
        let cert_dir = dir.join("certs.d");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(p("ca.crt"), cert_dir.join("ca.crt")).unwrap();
        Self {
            ca: p("ca.crt"),
            cert_dir,
            cert: p("server.crt"),
            key: p("server.key"),
        }
    }
}

/// An htpasswd file with one bcrypt entry, made with `htpasswd -B`.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let file = dir.join("htpasswd");
    run(Command::new("htpasswd")
        .args(["-b", "-B", "-C", "5", "-c"])
        .arg(&file)
        .args([user, password]));
    file
}

/// A Quay-format config with one S3 location under a fresh root
/// (`stowage-it/<label>-<uuid>`) of the test bucket, for every replica and
/// command of a test; the secret goes in a file. Returns the config file
/// and the root (the bucket's key prefix).
pub fn s3_config(dir: &Path, env: &S3Env, label: &str) -> (PathBuf, String) {
    s3_location_config(dir, env, label, "S3Storage", "")
}

/// [`s3_config`] with the location's driver (`S3Storage`,
/// `CloudFrontedS3Storage`, ...) and `extra` keys appended to its
/// parameters (YAML lines indented by six spaces).
pub fn s3_location_config(
    dir: &Path,
    env: &S3Env,
    label: &str,
    driver: &str,
    extra: &str,
) -> (PathBuf, String) {
    let secret = dir.join("secret");
    std::fs::write(&secret, &env.secret_key).unwrap();
    let root = format!("stowage-it/{label}-{}", uuid::Uuid::new_v4().simple());
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  main:\n    - {driver}\n    - endpoint_url: {}\n      \
             s3_bucket: {}\n      s3_region: {}\n      storage_path: /{root}\n      \
             s3_access_key: {}\n      s3_secret_key_file: {}\n{extra}",
            env.endpoint.clone().unwrap_or_default(),
            env.bucket,
            env.region,
            env.access_key,
            secret.display(),
        ),
    )
    .unwrap();
    (path, root)
}
