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
