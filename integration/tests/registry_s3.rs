//! `stowage serve` on S3Storage and on CloudFrontedS3Storage (behind the
//! edge verifier) of the integration server, driven by skopeo: blob pulls
//! follow the registry's redirects to S3 presigned or CloudFront signed URLs.

use std::path::Path;

use stowage_integration::cloudfront::{key_file, Edge, Trust};
use stowage_integration::registry::{blob_digests, make_image, skopeo_copy, Server};
use stowage_integration::S3Env;

mod support;

/// A Quay-format config with one location of `driver` and `extra` keys,
/// under a fresh root of the test bucket.
fn config(dir: &Path, env: &S3Env, driver: &str, extra: &str) -> std::path::PathBuf {
    support::s3_location_config(dir, env, "registry", driver, extra).0
}

fn round_trip(dir: &Path, server: &Server) {
    let image = dir.join("image");
    make_image(&image, &["--layers", "3", "--layer-mib", "6"]);
    let dest = format!("docker://{}/team/app:1.0", server.addr);
    skopeo_copy(&format!("oci:{}:latest", image.display()), &dest);
    let back = dir.join("back");
    skopeo_copy(&dest, &format!("oci:{}:1.0", back.display()));
    assert_eq!(blob_digests(&image), blob_digests(&back));
}

fn metrics(server: &Server) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", server.addr)])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_round_trip_on_s3_with_presigned_redirects() {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &env, "S3Storage", "");
    let server = Server::start(dir.path(), Some(&config));
    round_trip(dir.path(), &server);
    let text = metrics(&server);
    assert!(
        text.contains("stowage_registry_requests_total{method=\"GET\",status=\"307\"}"),
        "blob pulls were redirected to S3:\n{text}"
    );
}

#[test]
fn skopeo_round_trip_on_cloudfront_with_signed_redirects() {
    let env = S3Env::get();
    let edge = Edge::start(
        &env,
        Trust::KeyGroups,
        &[("K2JCJMDEHXQW5F", "rsa2048-public.pem")],
    );
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "      cloudfront_distribution_domain: {}\n      cloudfront_key_id: K2JCJMDEHXQW5F\n      \
         cloudfront_privatekey_filename: {}\n",
        edge.url,
        key_file("rsa2048-pkcs8.pem").display()
    );
    let config = config(dir.path(), &env, "CloudFrontedS3Storage", &extra);
    let server = Server::start(dir.path(), Some(&config));
    round_trip(dir.path(), &server);
    let text = metrics(&server);
    let signed: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("stowage_cloudfront_urls_total{route=\"signed\"}")
                || l.starts_with("stowage_cloudfront_urls_total{route=\"cached\"}")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        signed >= 4,
        "blob pulls went through CloudFront URLs:\n{text}"
    );
    assert!(
        text.contains("stowage_cloudfront_urls_total{route=\"key_unavailable\"} 0"),
        "{text}"
    );
}

/// Starts an upload and sends `sent` bytes of a PATCH announcing more, then
/// goes silent, holding the connection open (a stalled client).
fn stalled_upload(addr: &str, sent: usize) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut post = std::net::TcpStream::connect(addr).unwrap();
    write!(
        post,
        "POST /v2/stalled/app/blobs/uploads/ HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).unwrap();
    let location = answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .unwrap_or_else(|| panic!("no Location in {answer:?}"))
        .trim()
        .to_string();
    let mut patch = std::net::TcpStream::connect(addr).unwrap();
    write!(
        patch,
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        sent * 4
    )
    .unwrap();
    patch.write_all(&vec![b's'; sent]).unwrap();
    patch.flush().unwrap();
    patch
}

/// 20 uploads stall mid-part (6 MiB of a chunk sent, then silence) while
/// the driver-wide part budget is 4 parts: a skopeo push beside them still
/// finishes, because a part takes the budget only when it is full and ready
/// to send, not at its first byte. (Before that change the push waited
/// for the server's 60 s idle timeout to drop the stalled clients: the
/// bound below is far above a push's few seconds and below that timeout.)
#[test]
fn stalled_uploads_do_not_block_a_push() {
    let env = S3Env::get();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &env,
        "S3Storage",
        "      s3_max_parts_in_flight: 4\n",
    );
    let server = Server::start(dir.path(), Some(&config));
    let stalled: Vec<_> = (0..20)
        .map(|_| stalled_upload(&server.addr, 6 * 1024 * 1024))
        .collect();
    let started = std::time::Instant::now();
    round_trip(dir.path(), &server);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "the push took {:?} beside stalled uploads",
        started.elapsed()
    );
    drop(stalled);
}
