//! The `stowage` binary on an `S3Storage` location of a real server:
//! put/get/ls/stat/rm/cp/validate, and cp between S3 and a local location.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stowage_integration::S3Env;

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

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("stowage-cli-s3-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
