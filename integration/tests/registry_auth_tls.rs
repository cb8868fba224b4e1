//! `stowage serve` with HTTPS (a test CA made with openssl) and htpasswd
//! authentication (`htpasswd -B`), on the embedded local store: curl sees
//! the 401s, skopeo pushes and pulls with `--creds` and `--cert-dir`, the
//! oras SDK pushes and pulls with credentials,
//! anonymous pulls when allowed, and the password never reaches the log.

mod support;

use std::process::Command;

use stowage_integration::registry::{blob_digests, make_image, oras_round_trip, OrasOptions};
use support::{htpasswd, skopeo, skopeo_ok, Stowage, TestCa};

const USER: &str = "alice";
const PASSWORD: &str = "correct-horse-42";

/// `curl` against the server: status, headers and body.
fn curl(ca: &std::path::Path, url: &str, extra: &[&str]) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(ca)
        .arg("-D")
        .arg(&headers)
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), headers, body.to_string())
}

fn assert_challenge(status: u16, headers: &str, body: &str, what: &str) {
    assert_eq!(status, 401, "{what}: {headers}{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"stowage\""),
        "{what}: {headers}"
    );
    assert!(body.contains("\"UNAUTHORIZED\""), "{what}: {body}");
    assert!(!body.contains(PASSWORD), "{what}: {body}");
}

#[test]
fn tls_and_htpasswd_with_curl_and_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(&dir.path().join("ca"));
    let users = htpasswd(dir.path(), USER, PASSWORD);
    let cacert = ca.ca.to_str().unwrap().to_string();
    let args = [
        "--tls-cert",
        ca.cert.to_str().unwrap(),
        "--tls-key",
        ca.key.to_str().unwrap(),
        "--htpasswd",
        users.to_str().unwrap(),
    ];
    let server = Stowage::start(
        &dir.path().join("server"),
        None,
        &args,
        true,
        &["--cacert", &cacert],
    );
    let base = format!("https://{}", server.addr);

    // curl: the 401s, then the right credentials.
    let (status, headers, body) = curl(&ca.ca, &format!("{base}/v2/"), &[]);
    assert_challenge(status, &headers, &body, "anonymous /v2/");
    let wrong = format!("{USER}:not-the-password");
    let (status, headers, body) = curl(&ca.ca, &format!("{base}/v2/"), &["-u", &wrong]);
    assert_challenge(status, &headers, &body, "wrong password");
    let (status, headers, body) = curl(
        &ca.ca,
        &format!("{base}/v2/app/tags/list"),
        &["-u", "mallory:x"],
    );
    assert_challenge(status, &headers, &body, "unknown user");
    let (status, headers, body) = curl(
        &ca.ca,
        &format!("{base}/v2/app/blobs/uploads/"),
        &["-X", "POST"],
    );
    assert_challenge(status, &headers, &body, "anonymous push");
    let right = format!("{USER}:{PASSWORD}");
    let (status, _, body) = curl(&ca.ca, &format!("{base}/v2/"), &["-u", &right]);
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = curl(&ca.ca, &format!("{base}/metrics"), &[]);
    assert_eq!(status, 401, "/metrics needs credentials");
    for probe in ["healthz", "readyz"] {
        let (status, _, _) = curl(&ca.ca, &format!("{base}/{probe}"), &[]);
        assert_eq!(status, 200, "{probe} needs no credentials");
    }
    // Plain HTTP on the TLS port gets nowhere; TLS without the CA neither.
    let plain = Command::new("curl")
        .args(["-sf", "-m", "10", &format!("http://{}/v2/", server.addr)])
        .status()
        .unwrap();
    assert!(!plain.success());
    let untrusted = Command::new("curl")
        .args(["-sf", "-m", "10", &format!("{base}/healthz")])
        .status()
        .unwrap();
    assert!(
        !untrusted.success(),
        "the test CA is not trusted by default"
    );

    // skopeo with credentials and the CA.
    let image = dir.path().join("image");
    make_image(&image, &["--small"]);
    let dest = format!("docker://{}/team/app:1.0", server.addr);
    let cert_dir = ca.cert_dir.to_str().unwrap();
    let source = format!("oci:{}:latest", image.display());
    let refused = skopeo(&source, &dest, &["--dest-cert-dir", cert_dir]);
    assert!(
        !refused.status.success(),
        "a push without credentials is refused"
    );
    skopeo_ok(
        &source,
        &dest,
        &["--dest-creds", &right, "--dest-cert-dir", cert_dir],
    );
    let back = dir.path().join("back");
    skopeo_ok(
        &dest,
        &format!("oci:{}:1.0", back.display()),
        &["--src-creds", &right, "--src-cert-dir", cert_dir],
    );
    assert_eq!(blob_digests(&image), blob_digests(&back));
    let anonymous = skopeo(
        &dest,
        &format!("oci:{}:anon", dir.path().join("anon").display()),
        &["--src-cert-dir", cert_dir],
    );
    assert!(
        !anonymous.status.success(),
        "no anonymous pulls without --anonymous-pull"
    );

    // oras (the SDK) with credentials over HTTPS, whole and chunked (its
    // check first sees /v2/ refuse a request without them).
    for (repo, chunked) in [("artifacts/whole", false), ("artifacts/chunked", true)] {
        let options = OrasOptions {
            chunked,
            ca_file: Some(&cacert),
            creds: Some((USER, PASSWORD)),
        };
        oras_round_trip(&server.addr, repo, options);
    }

    // The password never reaches the log, whatever was sent.
    let log = server.log();
    assert!(
        log.contains("user") || log.contains("alice"),
        "requests are logged with the user:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains("not-the-password"),
        "{log}"
    );
}

#[test]
fn anonymous_pulls_with_skopeo_and_pushes_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::make(&dir.path().join("ca"));
    let users = htpasswd(dir.path(), USER, PASSWORD);
    let cacert = ca.ca.to_str().unwrap().to_string();
    let args = [
        "--tls-cert",
        ca.cert.to_str().unwrap(),
        "--tls-key",
        ca.key.to_str().unwrap(),
        "--htpasswd",
        users.to_str().unwrap(),
        "--anonymous-pull",
    ];
    let server = Stowage::start(
        &dir.path().join("server"),
        None,
        &args,
        true,
        &["--cacert", &cacert],
    );
    let image = dir.path().join("image");
    make_image(&image, &["--small"]);
    let dest = format!("docker://{}/public/app:1.0", server.addr);
    let cert_dir = ca.cert_dir.to_str().unwrap();
    let right = format!("{USER}:{PASSWORD}");
    // Pushing still needs credentials; /v2/ answers 401 so clients learn
    // how to send them.
    let refused = skopeo(
        &format!("oci:{}:latest", image.display()),
        &dest,
        &["--dest-cert-dir", cert_dir],
    );
    assert!(!refused.status.success(), "an anonymous push is refused");
    skopeo_ok(
        &format!("oci:{}:latest", image.display()),
        &dest,
        &["--dest-creds", &right, "--dest-cert-dir", cert_dir],
    );
    // Pulling needs nothing.
    let back = dir.path().join("back");
    skopeo_ok(
        &dest,
        &format!("oci:{}:1.0", back.display()),
        &["--src-cert-dir", cert_dir],
    );
    assert_eq!(blob_digests(&image), blob_digests(&back));
    let base = format!("https://{}", server.addr);
    let (status, _, body) = curl(&ca.ca, &format!("{base}/v2/public/app/manifests/1.0"), &[]);
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = curl(
        &ca.ca,
        &format!("{base}/v2/public/app/manifests/1.0"),
        &["-u", "alice:wrong"],
    );
    assert_challenge(status, &headers, &body, "wrong credentials on a pull");
    let (status, headers, body) = curl(
        &ca.ca,
        &format!("{base}/v2/public/app/manifests/1.0"),
        &["-X", "DELETE"],
    );
    assert_challenge(status, &headers, &body, "anonymous delete");
}

// The security review, with the real binary: TLS certificates reloaded
// without a restart, htpasswd failing closed, the connection limit,
// access log lines, and failed logins logged at a limited rate.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// `text` without ANSI colour sequences (the log's fields are coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Waits until `check` holds (30 s at most).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within 30 s");
}

/// `curl` over plain HTTP: status, headers and body.
fn http(url: &str, extra: &[&str]) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-o", "-", "-w", "\n%{http_code}", "-D"])
        .arg(&headers)
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), headers, body.to_string())
}

/// Replaces `file` with `bytes` by a rename, as cert-manager, Kubernetes
/// secret updates and editors do.
fn replace_file(file: &std::path::Path, bytes: &[u8]) {
    let next = file.with_extension("next");
    std::fs::write(&next, bytes).unwrap();
    std::fs::rename(&next, file).unwrap();
}

#[test]
fn tls_certificate_and_key_are_reloaded_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::make(&dir.path().join("first"));
    let second = TestCa::make(&dir.path().join("second"));
    // The files served: the first pair, then the second.
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let first_ca = first.ca.to_str().unwrap().to_string();
    let server = Stowage::start(
        &dir.path().join("server"),
        None,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        true,
        &["--cacert", &first_ca],
    );
    let url = format!("https://{}/healthz", server.addr);
    assert_eq!(curl(&first.ca, &url, &[]).0, 200);

    // Renewed: the key first, then the certificate (a check between the
    // two sees a pair that does not fit and keeps the old one).
    replace_file(&key, &std::fs::read(&second.key).unwrap());
    replace_file(&cert, &std::fs::read(&second.cert).unwrap());
    eventually("the renewed certificate is served", || {
        curl(&second.ca, &url, &[]).0 == 200
    });
    assert_eq!(
        curl(&first.ca, &url, &[]).0,
        0,
        "the first CA no longer verifies what is served"
    );

    // A broken certificate file: the last good pair stays, and the log
    // says why, naming the file.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(curl(&second.ca, &url, &[]).0, 200, "still served");
    let log = plain(&server.log());
    assert!(
        log.contains("no certificate found") && log.contains("tls.crt"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[test]
fn htpasswd_fails_closed_while_its_file_is_gone_and_recovers_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), USER, PASSWORD);
    let server = Stowage::start(
        &dir.path().join("server"),
        None,
        &["--htpasswd", users.to_str().unwrap()],
        false,
        &[],
    );
    let base = format!("http://{}", server.addr);
    let right = format!("{USER}:{PASSWORD}");
    let authenticated = || http(&format!("{base}/v2/"), &["-u", &right]).0;
    assert_eq!(authenticated(), 200);
    assert_eq!(http(&format!("{base}/readyz"), &[]).0, 200);

    std::fs::remove_file(&users).unwrap();
    eventually("credentials refused once the file is gone", || {
        authenticated() == 401
    });
    let (status, _, body) = http(&format!("{base}/readyz"), &[]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("htpasswd"), "{body}");
    assert!(!body.contains(dir.path().to_str().unwrap()), "{body}");
    let log = plain(&server.log());
    assert!(log.contains("htpasswd file cannot be used"), "{log}");

    htpasswd(dir.path(), USER, PASSWORD);
    eventually("credentials work again with the file back", || {
        authenticated() == 200
    });
    assert_eq!(http(&format!("{base}/readyz"), &[]).0, 200);
    assert!(!plain(&server.log()).contains(PASSWORD));
}

#[test]
fn connections_past_max_connections_wait_for_one_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Stowage::start(
        &dir.path().join("server"),
        None,
        &["--max-connections", "2"],
        false,
        &[],
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(server.addr.as_str()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut status = [0u8; 12];
        c.read_exact(&mut status).unwrap();
        assert_eq!(&status, b"HTTP/1.1 200");
        held.push(c);
    }
    // Connected (the kernel's backlog), but not served while both places
    // are taken.
    let mut third = TcpStream::connect(server.addr.as_str()).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(early.is_err(), "served past --max-connections: {early:?}");
    // One closes: the third is served.
    drop(held.pop());
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = plain(&server.log());
    assert!(log.contains("connection limit reached"), "{log}");
}

#[test]
fn access_lines_for_every_request_and_failed_logins_at_a_limited_rate() {
    let dir = tempfile::tempdir().unwrap();
    let users = htpasswd(dir.path(), USER, PASSWORD);
    let server = Stowage::start(
        &dir.path().join("server"),
        None,
        &["--htpasswd", users.to_str().unwrap()],
        false,
        &[],
    );
    let base = format!("http://{}", server.addr);
    let right = format!("{USER}:{PASSWORD}");

    // A push: one access line with the client, method, path (no query),
    // status, bytes received, duration and request id.
    let data = b"an access-logged layer";
    let layer = dir.path().join("layer");
    std::fs::write(&layer, data).unwrap();
    let digest = format!("sha256:{}", hex_of(&sha2::Sha256::digest(data)));
    let (status, headers, body) = http(
        &format!("{base}/v2/team/app/blobs/uploads/?digest={digest}"),
        &[
            "-u",
            &right,
            "-X",
            "POST",
            "-H",
            "content-type: application/octet-stream",
            "--data-binary",
            &format!("@{}", layer.display()),
        ],
    );
    assert_eq!(status, 201, "{headers}{body}");
    let request_id = headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_string())
        })
        .expect("a request id");
    let access_line = || {
        plain(&server.log())
            .lines()
            .find(|l| l.contains("stowage_registry::access") && l.contains(&request_id))
            .map(str::to_string)
    };
    eventually("the push's access line", || access_line().is_some());
    let line = access_line().unwrap();
    for part in [
        "client=127.0.0.1",
        "method=POST",
        "path=\"/v2/team/app/blobs/uploads/\"",
        "status=201",
        &format!("bytes_received={}", data.len()),
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    assert!(!line.contains("digest="), "no query: {line}");

    // Ten wrong passwords from one client within 10 s: one line.
    let wrong = format!("{USER}:not-the-password");
    for _ in 0..10 {
        assert_eq!(http(&format!("{base}/v2/"), &["-u", &wrong]).0, 401);
    }
    let failures = || {
        plain(&server.log())
            .lines()
            .filter(|l| l.contains("authentication failed"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    eventually("a failed-login line", || !failures().is_empty());
    std::thread::sleep(Duration::from_secs(1));
    let lines = failures();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("alice") && lines[0].contains("127.0.0.1"),
        "{lines:#?}"
    );
    // Past 10 s, the next failure is logged with the count left out.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(http(&format!("{base}/v2/"), &["-u", &wrong]).0, 401);
    eventually("the second failed-login line", || failures().len() == 2);
    let lines = failures();
    assert!(lines[1].contains("suppressed=9"), "{lines:#?}");

    let log = server.log();
    assert!(
        !log.contains(PASSWORD) && !log.contains("not-the-password"),
        "{log}"
    );
}

/// Lowercase hex of `bytes`.
fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
