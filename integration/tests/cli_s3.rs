//! The `stowage` binary on an `S3Storage` location of a real server:
//! put/get/ls/stat/rm/cp/validate, cp between S3 and a local location, and
//! SIGINT in the middle of a transfer through a slow link (the fault
//! proxy): the multipart upload aborted, a second signal exiting at once,
//! no partial download left.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use stowage_integration::faults::FaultProxy;
use stowage_integration::{multipart_uploads, S3Env};

fn run(dir: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(stowage_integration::stowage_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_on_an_s3_location() {
    let env = S3Env::get();
    let dir = tempfile_dir();
    let root = format!("stowage-it/cli-{}", std::process::id());
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  s3:\n    - S3Storage\n    - endpoint_url: {}\n      s3_bucket: {}\n      s3_region: {}\n      storage_path: /{root}\n      s3_access_key: {}\n      s3_secret_key_env: CLI_TEST_SECRET\n  disk:\n    - LocalStorage\n    - storage_path: {:?}\nDISTRIBUTED_STORAGE_PREFERENCE: [s3]\n",
            env.endpoint.clone().unwrap_or_default(),
            env.bucket,
            env.region,
            env.access_key,
            dir.join("disk"),
        ),
    )
    .unwrap();
    std::env::set_var("CLI_TEST_SECRET", &env.secret_key);
    let body: Vec<u8> = (0..7_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("in.bin"), &body).unwrap();

    let validate = ok(run(&dir, &config, &["validate"]));
    assert!(
        validate.contains("location s3 (S3Storage, driver s3): ok"),
        "{validate}"
    );
    assert!(validate.contains("bucket reachable"), "{validate}");

    let setup = ok(run(&dir, &config, &["--location", "s3", "setup"]));
    assert!(setup.contains("CORS rules set"), "{setup}");
    let cors = tokio::runtime::Runtime::new().unwrap().block_on(async {
        env.sdk()
            .await
            .get_bucket_cors()
            .bucket(&env.bucket)
            .send()
            .await
            .expect("GetBucketCors after setup")
    });
    let methods: Vec<String> = cors
        .cors_rules()
        .iter()
        .flat_map(|r| r.allowed_methods().to_vec())
        .collect();
    assert!(
        methods.contains(&"GET".to_string()) && methods.contains(&"PUT".to_string()),
        "{methods:?}"
    );
    let refused = run(&dir, &config, &["--location", "disk", "setup"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        validate.contains("location disk (LocalStorage, driver local): ok"),
        "{validate}"
    );

    ok(run(&dir, &config, &["put", "in.bin", "layers/a b+c.bin"]));
    ok(run(&dir, &config, &["get", "layers/a b+c.bin", "out.bin"]));
    assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), body);
    assert_eq!(ok(run(&dir, &config, &["ls"])), "layers/a b+c.bin\n");
    let stat = ok(run(&dir, &config, &["stat", "--json", "layers/a b+c.bin"]));
    assert!(stat.contains("\"size\":7000000"), "{stat}");

    ok(run(
        &dir,
        &config,
        &["cp", "s3:layers/a b+c.bin", "disk:copied/x"],
    ));
    assert_eq!(std::fs::read(dir.join("disk/copied/x")).unwrap(), body);
    ok(run(&dir, &config, &["cp", "disk:copied/x", "s3:back/y"]));
    ok(run(&dir, &config, &["cp", "s3:back/y", "s3:back/z"]));
    assert_eq!(ok(run(&dir, &config, &["ls", "back"])), "back/y\nback/z\n");

    ok(run(&dir, &config, &["rm", "-r", "back"]));
    ok(run(&dir, &config, &["rm", "layers/a b+c.bin"]));
    assert_eq!(ok(run(&dir, &config, &["ls"])), "");
    let missing = run(&dir, &config, &["cat", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
}

/// A scratch directory under the system's temporary directory, removed
/// when dropped (whether the test passed or not).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Scratch {
    let d = std::env::temp_dir().join(format!("stowage-cli-s3-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// A config with two locations on one fresh root of the test server:
/// `slow` through `proxy` (the default) and `direct` to the server.
struct Interruptible {
    env: S3Env,
    dir: Scratch,
    config: PathBuf,
    /// The root's key prefix, with its trailing `/`.
    prefix: String,
    rt: tokio::runtime::Runtime,
    sdk: aws_sdk_s3::Client,
}

impl Interruptible {
    fn new(proxy: &FaultProxy) -> Self {
        let env = S3Env::get();
        let dir = tempfile_dir();
        let root = format!("stowage-it/cli-int-{}", uuid::Uuid::new_v4().simple());
        let location = |endpoint: &str| {
            format!(
                "    - S3Storage\n    - endpoint_url: {endpoint}\n      s3_bucket: {}\n      s3_region: {}\n      storage_path: /{root}\n      s3_access_key: {}\n      s3_secret_key_env: CLI_TEST_SECRET\n",
                env.bucket, env.region, env.access_key,
            )
        };
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "DISTRIBUTED_STORAGE_CONFIG:\n  slow:\n{}  direct:\n{}DISTRIBUTED_STORAGE_PREFERENCE: [slow]\n",
                location(&proxy.url),
                location(env.endpoint.as_deref().unwrap_or_default()),
            ),
        )
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sdk = rt.block_on(env.sdk());
        Self {
            env,
            dir,
            config,
            prefix: format!("{root}/"),
            rt,
            sdk,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(stowage_integration::stowage_binary());
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(&self.dir)
            .env("CLI_TEST_SECRET", &self.env.secret_key);
        cmd
    }

    /// Starts `stowage ARGS` with its stderr captured.
    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Multipart uploads open under the root, on the server itself.
    fn open_uploads(&self) -> Vec<(String, String)> {
        self.rt
            .block_on(multipart_uploads(&self.sdk, &self.env.bucket, &self.prefix))
    }

    /// Object keys under the root, on the server itself.
    fn objects(&self) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.sdk
                    .list_objects_v2()
                    .bucket(&self.env.bucket)
                    .prefix(&self.prefix)
                    .send(),
            )
            .expect("ListObjectsV2");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Waits until the put in `child` has a multipart upload open.
    fn wait_for_upload(&self, child: &mut Child) {
        let started = Instant::now();
        while self.open_uploads().is_empty() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "stowage ended before opening a multipart upload"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no multipart upload within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Aborts what a test left open, straight on the server.
    fn abort_leftovers(&self) {
        for (key, id) in self.open_uploads() {
            let _ = self.rt.block_on(
                self.sdk
                    .abort_multipart_upload()
                    .bucket(&self.env.bucket)
                    .key(key)
                    .upload_id(id)
                    .send(),
            );
        }
    }
}

/// Sends `child` a signal by name (`INT`, `TERM`).
fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -s {name}");
}

/// Waits up to `limit` for `child` to exit; its status and stderr.
fn finish(mut child: Child, limit: Duration) -> (ExitStatus, String) {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "stowage still running {limit:?} after the signal:\n{}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

/// A 64 MiB file (eight 8 MiB parts), at 2 MiB/s through the proxy: half
/// a minute of upload, interrupted after a couple of seconds.
const BIG: usize = 64 << 20;

#[test]
fn sigint_during_a_put_aborts_its_multipart_upload_and_stores_nothing() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &["--throttle-bytes-per-second", "2M"]);
    let t = Interruptible::new(&proxy);
    std::fs::write(t.dir.join("big.bin"), vec![0x5a_u8; BIG]).unwrap();
    let mut child = t.spawn(&["put", "big.bin", "big/object.bin"]);
    t.wait_for_upload(&mut child);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the put was meant to be slow"
    );

    signal(&child, "INT");
    let (status, stderr) = finish(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "interrupted by SIGINT: the upload of big.bin to slow:big/object.bin was aborted, \
             nothing was stored"
        ),
        "{stderr}"
    );
    let left = t.open_uploads();
    t.abort_leftovers();
    assert!(left.is_empty(), "multipart uploads left open: {left:?}");
    assert_eq!(t.objects(), Vec::<String>::new(), "nothing is stored");
}

#[test]
fn a_second_sigint_exits_at_once_while_the_abort_is_held_up() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &["--throttle-bytes-per-second", "2M"]);
    let t = Interruptible::new(&proxy);
    std::fs::write(t.dir.join("big.bin"), vec![0x5a_u8; BIG]).unwrap();
    let mut child = t.spawn(&["put", "big.bin", "big/object.bin"]);
    t.wait_for_upload(&mut child);
    // Every request from now on (the abort) is held for a minute.
    t.rt.block_on(proxy.configure("stall_fraction=1&stall_seconds=60"));

    signal(&child, "INT");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGINT waits for the abort"
    );
    let again = Instant::now();
    signal(&child, "INT");
    let (status, stderr) = finish(child, Duration::from_secs(10));
    let took = again.elapsed();
    t.abort_leftovers();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(3),
        "the second SIGINT took {took:?}"
    );
    assert!(
        stderr.contains("SIGINT: aborting the multipart upload"),
        "{stderr}"
    );
    assert!(
        stderr.contains("SIGINT again: exiting at once; a multipart upload may stay open"),
        "{stderr}"
    );
}

#[test]
fn sigint_during_a_get_leaves_no_partial_file() {
    let env = S3Env::get();
    let proxy = FaultProxy::in_front_of(&env, &[]);
    let t = Interruptible::new(&proxy);
    std::fs::write(t.dir.join("big.bin"), vec![0x5a_u8; BIG]).unwrap();
    let put = t
        .command(&["--location", "direct", "put", "big.bin", "obj"])
        .output()
        .unwrap();
    ok(put);
    // Downloads through the proxy pause a second every MiB (the ranges in
    // flight together: about 8 s for the file).
    t.rt.block_on(proxy.configure("stall_down_every=1M&stall_seconds=1"));
    let mut child = t.spawn(&["get", "obj", "out.bin"]);
    // The download's temporary file: `.out.bin.<random>.partial`, created
    // exclusively beside the destination.
    let partials = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(".out.bin.") && name.ends_with(".partial")
            })
            .collect()
    };
    let started = Instant::now();
    while partials(&t.dir).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the get ended early");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no partial file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));

    signal(&child, "INT");
    let (status, stderr) = finish(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "interrupted by SIGINT: the download of slow:obj to out.bin was stopped; no partial \
             file is left"
        ),
        "{stderr}"
    );
    assert!(partials(&t.dir).is_empty(), "no partial file is left");
    assert!(!t.dir.join("out.bin").exists());
    ok(t.command(&["--location", "direct", "rm", "obj"])
        .output()
        .unwrap());
}
