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
        "DISTRIBUTED_STORAGE_CONFIG.two[0]: unknown driver \"Bogus\"",
        "DISTRIBUTED_STORAGE_PREFERENCE[0]: no location named \"three\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
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
