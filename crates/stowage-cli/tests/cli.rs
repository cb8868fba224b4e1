//! The `stowage` binary end to end on the embedded local store and on a
//! config file.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn stowage(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .current_dir(dir)
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_LOCATION")
        .output()
        .expect("run stowage")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

#[test]
fn put_get_ls_stat_cp_rm_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("in.bin"), &body).unwrap();

    ok(&stowage(d, &["put", "in.bin", "blobs/a b/ünï.bin"]));
    assert!(
        d.join("stowage-data").is_dir(),
        "default store under ./stowage-data"
    );
    ok(&stowage(d, &["get", "blobs/a b/ünï.bin", "out.bin"]));
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap(), body);

    let ls = ok(&stowage(d, &["ls"]));
    assert_eq!(ls, "blobs/a b/ünï.bin\n");
    let long = ok(&stowage(d, &["ls", "-l", "blobs"]));
    assert!(long.contains("3000000"), "{long}");

    let stat = ok(&stowage(d, &["stat", "--json", "blobs/a b/ünï.bin"]));
    let v: serde_json::Value = serde_json::from_str(&stat).unwrap();
    assert_eq!(v["size"], 3_000_000);

    ok(&stowage(
        d,
        &["cp", "local:blobs/a b/ünï.bin", "local:copy/x"],
    ));
    ok(&stowage(d, &["cp", "local:copy/x", "cp-out.bin"]));
    assert_eq!(std::fs::read(d.join("cp-out.bin")).unwrap(), body);
    ok(&stowage(d, &["cp", "in.bin", "local:copy/y"]));

    ok(&stowage(d, &["rm", "blobs/a b/ünï.bin"]));
    let rm = stowage(d, &["rm", "--recursive", "copy"]);
    ok(&rm);
    assert!(String::from_utf8_lossy(&rm.stderr).contains("removed 2 object(s)"));
    assert_eq!(ok(&stowage(d, &["ls"])), "");
}

/// A trailing `/` on a prefix means the prefix (`aws s3 ls dir/`), for `ls`
/// and `rm --recursive`; object paths stay strict.
#[test]
fn trailing_slash_on_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f"), b"x").unwrap();
    for path in ["dir/a", "dir/sub/b", "dirt/c"] {
        ok(&stowage(d, &["put", "f", path]));
    }
    assert_eq!(ok(&stowage(d, &["ls", "dir/"])), "dir/a\ndir/sub/b\n");
    assert_eq!(ok(&stowage(d, &["ls", "dir/sub/"])), "dir/sub/b\n");
    assert!(ok(&stowage(d, &["ls", "-l", "dir/"])).contains("dir/sub/b"));
    // Only one slash, and objects keep refusing it.
    for args in [
        &["ls", "dir//"][..],
        &["rm", "dir/"],
        &["cat", "dir/"],
        &["get", "dir/", "out"],
    ] {
        let out = stowage(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid storage path"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `rm --recursive dir/` removes what is below dir, not dirt/.
    let rm = stowage(d, &["rm", "--recursive", "dir/"]);
    ok(&rm);
    assert!(
        String::from_utf8_lossy(&rm.stderr).contains("removed 2 object(s)"),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert_eq!(ok(&stowage(d, &["ls"])), "dirt/c\n");
    // Nothing left below: not found.
    assert_eq!(
        stowage(d, &["rm", "--recursive", "dir/"]).status.code(),
        Some(1)
    );
    // Without the slash, as before.
    ok(&stowage(d, &["rm", "--recursive", "dirt"]));
    assert_eq!(ok(&stowage(d, &["ls"])), "");
}

/// `stowage serve`'s limits are checked before anything is served: a bad
/// CIDR or size is a usage error (exit 2) naming the value.
#[test]
fn serve_rejects_bad_limits_with_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&[&str], &str); 6] = [
        (
            &["serve", "--trusted-proxies", "10.0.0.0/33"],
            "10.0.0.0/33",
        ),
        (
            &["serve", "--trusted-proxies", "10.0.0.0/8,lb.example"],
            "lb.example",
        ),
        (&["serve", "--trusted-proxies", ""], "--trusted-proxies"),
        (
            &["serve", "--max-upload-size", "99999999999TiB"],
            "too large",
        ),
        (&["serve", "--max-upload-size", "1e3"], "1e3"),
        (
            &["serve", "--idle-timeout-seconds", "18446744073709551616"],
            "18446744073709551616",
        ),
    ];
    for (args, needle) in cases {
        let out = stowage(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(
        !d.join("stowage-registry-state").exists(),
        "nothing was started"
    );
    let help = ok(&stowage(d, &["serve", "--help"]));
    for flag in [
        "--trusted-proxies",
        "--idle-timeout-seconds",
        "--header-read-timeout-seconds",
        "--max-upload-size",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

/// An htpasswd file, certificate or key that cannot be used is a usage
/// error (exit 2) naming the file, before anything is served.
#[test]
fn serve_rejects_unusable_auth_and_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("md5.htpasswd"),
        "alice:$apr1$abcdefgh$0123456789abcdefghijkl\n",
    )
    .unwrap();
    std::fs::write(d.join("junk.pem"), "not a certificate\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["serve", "--htpasswd", "missing.htpasswd"],
            "missing.htpasswd",
        ),
        (&["serve", "--htpasswd", "md5.htpasswd"], "htpasswd -B"),
        (
            &["serve", "--tls-cert", "junk.pem", "--tls-key", "junk.pem"],
            "junk.pem",
        ),
        (
            &[
                "serve",
                "--tls-cert",
                "missing.pem",
                "--tls-key",
                "junk.pem",
            ],
            "missing.pem",
        ),
        (&["serve", "--tls-cert", "junk.pem"], "--tls-key"),
    ];
    for (args, needle) in cases {
        let out = stowage(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = stowage(d, &["serve", "--anonymous-pull"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--anonymous-pull needs --htpasswd"
    );
    assert!(!d.join("stowage-data").exists(), "nothing was served");
    let help = ok(&stowage(d, &["serve", "--help"]));
    for flag in [
        "--htpasswd",
        "--anonymous-pull",
        "--tls-cert",
        "--tls-key",
        "--state-dir",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn stdin_and_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["put", "-", "piped"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(ok(&stowage(dir.path(), &["cat", "piped"])), "from stdin");
    assert_eq!(
        ok(&stowage(dir.path(), &["get", "piped", "-"])),
        "from stdin"
    );
}

#[test]
fn exit_codes_one_for_failed_operations_two_for_usage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = stowage(d, &["get", "no/such", "x"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found: no/such"));
    assert!(!d.join("x").exists(), "no partial file left");
    assert_eq!(stowage(d, &["rm", "no/such"]).status.code(), Some(1));
    let bad_path = stowage(d, &["cat", "a//b"]);
    assert_eq!(bad_path.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_path.stderr).contains("empty segment"));
    assert_eq!(stowage(d, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(stowage(d, &["cp", "a", "b"]).status.code(), Some(2));
}

#[test]
fn config_mistakes_are_all_reported_with_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "DISTRIBUTED_STORAGE_CONFIG:\n  one: [LocalStorage, {storage_pth: x}]\n  two: [Bogus, {}]\nDISTRIBUTED_STORAGE_PREFERENCE: [three]\n",
    )
    .unwrap();
    let out = stowage(dir.path(), &["--config", cfg.to_str().unwrap(), "ls"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "DISTRIBUTED_STORAGE_CONFIG.one[1].storage_path: required key is missing",
        "DISTRIBUTED_STORAGE_CONFIG.one[1].storage_pth: unknown key; accepted keys: storage_path",
        "DISTRIBUTED_STORAGE_PREFERENCE[0]: no location named \"three\"",
        // Alone, an unknown driver would block nothing; with other
        // mistakes it is listed too, so that fixing them uncovers nothing.
        "DISTRIBUTED_STORAGE_CONFIG.two[0]: unknown driver \"Bogus\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn unsupported_locations_block_nothing_and_are_refused_with_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The bundle in its own directory, the commands run from another one.
    let bundle = d.join("conf/stack");
    std::fs::create_dir_all(&bundle).unwrap();
    let cfg = bundle.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  swift:\n    - SwiftStorage\n    - swift_container: quay\n      swift_user: quay\n      swift_password: cli-swift-secret-value\n      temp_url_key: cli-swift-temp-url-value\n      auth_url: https://keystone.example.com:5000/v3\n      storage_path: /datastorage/registry\n  local:\n    - LocalStorage\n    - storage_path: {:?}\nDISTRIBUTED_STORAGE_PREFERENCE: [local]\n",
            d.join("store")
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let no_secret = |out: &Output| {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in ["cli-swift-secret-value", "cli-swift-temp-url-value"] {
            assert!(!all.contains(secret), "secret printed:\n{all}");
        }
    };

    let out = stowage(d, &["--config", c, "--location", "local", "validate"]);
    no_secret(&out);
    let human = ok(&out);
    assert!(
        human.contains("location local (LocalStorage, driver local): ok"),
        "{human}"
    );
    assert!(
        !human.contains("swift"),
        "only the selected location: {human}"
    );
    std::fs::write(d.join("in.txt"), "hello").unwrap();
    ok(&stowage(d, &["--config", c, "put", "in.txt", "blobs/x"]));
    assert_eq!(ok(&stowage(d, &["--config", c, "cat", "blobs/x"])), "hello");

    let out = stowage(d, &["--config", c, "--location", "swift", "validate"]);
    no_secret(&out);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "DISTRIBUTED_STORAGE_CONFIG.swift[0]",
        "Quay driver \"SwiftStorage\" is not supported by stowage",
        "built in: LocalStorage",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let out = stowage(d, &["--config", c, "cp", "local:blobs/x", "swift:blobs/x"]);
    no_secret(&out);
    assert_eq!(out.status.code(), Some(2), "using it is refused too");

    // Without --location: every location stowage serves is validated, the
    // unsupported one is reported, and the exit code says configuration.
    let out = stowage(d, &["--config", c, "validate"]);
    no_secret(&out);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("location local (LocalStorage, driver local): ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("location swift (SwiftStorage): NOT SUPPORTED"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DISTRIBUTED_STORAGE_CONFIG.swift[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_every_location_human_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  a: [LocalStorage, {{storage_path: {:?}}}]\n  b: [LocalStorage, {{storage_path: {:?}}}]\n",
            dir.path().join("a"),
            dir.path().join("b")
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let human = ok(&stowage(dir.path(), &["--config", c, "validate"]));
    assert!(
        human.contains("location a (LocalStorage, driver local): ok"),
        "{human}"
    );
    assert!(
        human.contains("location b (LocalStorage, driver local): ok"),
        "{human}"
    );
    assert!(human.contains("write probe object"), "{human}");
    let json = ok(&stowage(
        dir.path(),
        &["--config", c, "--location", "b", "validate", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["location"], "b");
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["checks"].as_array().unwrap().len(), 4);

    // A location that cannot work fails validation with exit code 1.
    std::fs::write(dir.path().join("file"), "not a dir").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  bad: [LocalStorage, {{storage_path: {:?}}}]\n",
            dir.path().join("file/sub")
        ),
    )
    .unwrap();
    let out = stowage(dir.path(), &["--config", c, "validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
}

/// `stowage sign --key-id ... --private-key <test key> ARGS`, with `input`
/// on standard input.
fn sign_with_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rsa2048-pkcs1.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["sign", "--key-id", "K2JCJMDEHXQW5F", "--private-key"])
        .arg(&key)
        .args(args)
        .current_dir(dir)
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_LOCATION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stowage");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn sign_dash_signs_each_line_of_stdin_like_single_urls() {
    let dir = tempfile::tempdir().unwrap();
    let urls = [
        "https://d111111abcdef8.cloudfront.net/registry/blobs/sha256/ab/abcdef",
        "https://d111111abcdef8.cloudfront.net/a b/c d.tar",
        "https://d111111abcdef8.cloudfront.net/x?response-content-disposition=attachment",
    ];
    for hash in ["sha1", "sha256"] {
        let args = ["--expires", "1900000000", "--hash", hash];
        let single: Vec<String> = urls
            .iter()
            .map(|u| {
                let mut a = args.to_vec();
                a.push(*u);
                ok(&sign_with_stdin(dir.path(), &a, ""))
                    .trim_end()
                    .to_string()
            })
            .collect();
        // CRLF, blank lines and surrounding spaces are all fine.
        let input = format!("{}\r\n\n  {}\n\n{}", urls[0], urls[1], urls[2]);
        let mut a = args.to_vec();
        a.push("-");
        let batch = ok(&sign_with_stdin(dir.path(), &a, &input));
        assert_eq!(batch.lines().collect::<Vec<_>>(), single, "{hash}");
    }

    // A bad line is named; the others are still signed; exit 2 at the end.
    let input = format!("{}\nnot a url\n{}\n", urls[0], urls[1]);
    let out = sign_with_stdin(dir.path(), &["--expires", "1900000000", "-"], &input);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("not an absolute URL"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 3 lines"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    // Cookies are one URL at a time.
    let out = sign_with_stdin(dir.path(), &["--cookies", "-"], "");
    assert_eq!(out.status.code(), Some(2));
}

/// Sends the process `pid` a signal by name (`INT`, `TERM`).
fn send_signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -s {name} {pid}");
}

/// Waits up to `limit` for `child` (its stderr piped) to exit; its exit
/// code (`None`: killed by a signal) and what it wrote to stderr.
fn exit_within(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> (Option<i32>, String) {
    use std::io::Read;
    let mut stderr = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), reader.join().unwrap());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}:\n{}", reader.join().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sigint_during_a_put_cancels_it_stores_nothing_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["put", "-", "blobs/x"])
        .current_dir(dir.path())
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_LOCATION")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stdin stays open: the put waits for the rest.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![7u8; 1 << 20]).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    send_signal(child.id(), "INT");
    let (code, stderr) = exit_within(child, std::time::Duration::from_secs(15));
    drop(stdin);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "stowage: interrupted by SIGINT: the upload of stdin to local:blobs/x was cancelled, \
             nothing was stored"
        ),
        "{stderr}"
    );
    assert_eq!(ok(&stowage(dir.path(), &["ls"])), "");
}

#[test]
fn serve_stops_on_sigterm_and_exits_0() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shutdown-grace-seconds",
            "5",
        ])
        .current_dir(dir.path())
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_LOCATION")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    // The banner comes once the signals are caught.
    while !text.contains("serving an example OCI registry") {
        let line = seen
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no banner:\n{text}"));
        text.push_str(&line);
        text.push('\n');
    }
    send_signal(child.id(), "TERM");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "still serving 15 s after SIGTERM:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    while let Ok(line) = seen.recv_timeout(std::time::Duration::from_secs(5)) {
        text.push_str(&line);
        text.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.contains("stowage: SIGTERM: no new connections; requests in flight have up to 5 s"),
        "{text}"
    );
    assert!(text.contains("stowage: registry stopped"), "{text}");
}

/// `--ranges` and `--range-mib` set the parallel download of `get` and
/// `cp`: small ranges, several in flight, give the same bytes; values out
/// of range are usage errors (exit 2) that name the flag.
#[test]
fn download_ranges_are_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body: Vec<u8> = (0..5_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(d.join("in.bin"), &body).unwrap();
    ok(&stowage(d, &["put", "in.bin", "big"]));
    ok(&stowage(
        d,
        &["get", "--ranges", "3", "--range-mib", "1", "big", "out.bin"],
    ));
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap(), body);
    ok(&stowage(
        d,
        &[
            "cp",
            "--ranges",
            "1",
            "--range-mib",
            "2",
            "local:big",
            "cp.bin",
        ],
    ));
    assert_eq!(std::fs::read(d.join("cp.bin")).unwrap(), body);
    for (flag, value) in [
        ("--ranges", "0"),
        ("--ranges", "65"),
        ("--ranges", "many"),
        ("--range-mib", "0"),
        ("--range-mib", "5121"),
        ("--range-mib", "-1"),
    ] {
        let arg = format!("{flag}={value}");
        let out = stowage(d, &["get", &arg, "big", "x.bin"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
        assert!(!d.join("x.bin").exists());
    }
}
