//! The `stowage` binary on `STSS3Storage` locations of Ceph RGW: `validate`
//! reports the assumed role and the credential expiry in each of the three
//! modes (AssumeRole with user keys; web identity from the standard
//! environment variables; a shared config profile with `role_arn` +
//! `web_identity_token_file`), and `iam-policy` prints the documents.

use std::path::Path;
use std::process::{Command, Output};

use stowage_integration::sts::StsEnv;

/// Runs `stowage` with a clean AWS environment plus `env`.
fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(stowage_integration::stowage_binary());
    cmd.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // No instance metadata lookups from a test machine.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn stdout_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s3_keys(env: &StsEnv, root: &str) -> String {
    format!(
        "      endpoint_url: {}\n      s3_bucket: {}\n      s3_region: {}\n      storage_path: /{root}\n",
        env.endpoint, env.s3.bucket, env.s3.region
    )
}

fn assert_reports_role(out: &str, role: &str, mode: &str) {
    assert!(out.contains("(STSS3Storage, driver s3): ok"), "{out}");
    assert!(out.contains(&format!("role: {role}")), "{out}");
    assert!(out.contains(&format!("sts mode: {mode}")), "{out}");
    assert!(out.contains("credential expiry: 20"), "{out}");
    assert!(out.contains("bucket reachable"), "{out}");
}

#[test]
fn validate_reports_the_assumed_role_and_expiry_in_every_mode() {
    let env = StsEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let root = format!("stowage-it/cli-sts-{}", std::process::id());

    // 1. AssumeRole with the IAM user's keys (Quay's keys).
    let config = dir.path().join("assume.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  sts:\n    - STSS3Storage\n    - sts_role_arn: {}\n      sts_user_access_key: {}\n      sts_user_secret_key_env: CLI_STS_SECRET\n{}",
            env.role_arn,
            env.s3.access_key,
            s3_keys(&env, &root)
        ),
    )
    .unwrap();
    let out = stdout_ok(run(
        &config,
        &["validate"],
        &[("CLI_STS_SECRET", &env.s3.secret_key)],
    ));
    assert_reports_role(&out, &env.role_arn, "assume-role");
    assert!(!out.contains(&env.s3.secret_key));

    // 2. Web identity from AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA).
    let token = dir.path().join("token");
    std::fs::write(&token, env.mint_token("cli", 600)).unwrap();
    let config = dir.path().join("bare.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  sts:\n    - STSS3Storage\n    -\n{}",
            s3_keys(&env, &root)
        ),
    )
    .unwrap();
    let out = stdout_ok(run(
        &config,
        &["validate"],
        &[
            ("AWS_ROLE_ARN", &env.web_role_arn),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_ROLE_SESSION_NAME", "cli-pod"),
        ],
    ));
    assert_reports_role(&out, &env.web_role_arn, "web-identity");

    // 3. A shared config profile with role_arn + web_identity_token_file
    //    (OpenShift's Cloud Credential Operator); aws-config's own provider
    //    reads it, and the STS endpoint comes from AWS_ENDPOINT_URL_STS.
    let profile = dir.path().join("aws-config");
    std::fs::write(
        &profile,
        format!(
            "[default]\nrole_arn = {}\nweb_identity_token_file = {}\nrole_session_name = cli-profile\n",
            env.web_role_arn,
            token.display()
        ),
    )
    .unwrap();
    let out = run(
        &config,
        &["validate"],
        &[
            ("AWS_CONFIG_FILE", profile.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_ENDPOINT_URL_STS", &env.endpoint),
        ],
    );
    let out = stdout_ok(out);
    assert!(out.contains("(STSS3Storage, driver s3): ok"), "{out}");
    assert!(out.contains("sts mode: sdk-profile"), "{out}");
    assert!(out.contains("credential expiry: 20"), "{out}");

    // A role that does not exist: exit 1 with the cause, no secret.
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  sts:\n    - STSS3Storage\n    - sts_role_arn: arn:aws:iam:::role/Missing\n      sts_user_access_key: {}\n      sts_user_secret_key_env: CLI_STS_SECRET\n{}",
            env.s3.access_key,
            s3_keys(&env, &root)
        ),
    )
    .unwrap();
    let out = run(
        &config,
        &["validate"],
        &[("CLI_STS_SECRET", &env.s3.secret_key)],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("arn:aws:iam:::role/Missing does not exist"),
        "{text}"
    );
    assert!(!text.contains(&env.s3.secret_key), "{text}");
}

#[test]
fn iam_policy_prints_permission_and_trust_documents() {
    let env = StsEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  sts:\n    - STSS3Storage\n    - sts_role_arn: arn:aws:iam::123456789012:role/quay\n      sts_user_access_key: AK\n      sts_user_secret_key: SK\n{}",
            s3_keys(&env, "registry/root")
        ),
    )
    .unwrap();
    let out = stdout_ok(run(&config, &["iam-policy"], &[]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let permission = doc["permission_policy"].to_string();
    assert!(
        permission.contains(&format!("arn:aws:s3:::{}/registry/root/*", env.s3.bucket)),
        "{permission}"
    );
    let trust = doc["trust_policy"].to_string();
    assert!(
        trust.contains("arn:aws:iam::123456789012:user/USER_NAME"),
        "{trust}"
    );
    let only = stdout_ok(run(&config, &["iam-policy", "--only", "trust"], &[]));
    assert!(
        only.contains("sts:AssumeRole") && !only.contains("s3:GetObject"),
        "{only}"
    );
}
