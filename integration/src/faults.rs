//! `servers/fault_proxy.py` in front of the test server: resets in either
//! direction every N bytes, 503 SlowDown on a fraction of requests, stalls,
//! CompleteMultipartUpload answers dropped after the request was
//! forwarded, damaged request bodies, tampered listing tokens. A driver
//! whose endpoint is [`FaultProxy::url`] sees those faults; one on the
//! server's own endpoint checks what really happened.

use std::io::BufRead;

use stowage_core::Storage;
use stowage_s3::{S3Config, S3Storage};

use crate::S3Env;

/// A running fault proxy; stopped when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`, to use as an S3 endpoint.
    pub url: String,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream` with `args` (the proxy's
    /// options, e.g. `["--reset-up-every", "30M"]`).
    pub fn start(upstream: &str, args: &[&str]) -> Self {
        Self::start_with_env(upstream, args, &[])
    }

    /// [`FaultProxy::start`] with environment variables for the proxy.
    pub fn start_with_env(upstream: &str, args: &[&str], vars: &[(&str, &str)]) -> Self {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/fault_proxy.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args(["--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(args)
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the fault proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the proxy's ready line");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("proxy ready line, got {line:?}"))
            .to_string();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Starts the proxy in front of the test server of `env`.
    pub fn in_front_of(env: &S3Env, args: &[&str]) -> Self {
        Self::start(
            env.endpoint
                .as_deref()
                .expect("an S3 endpoint (STOWAGE_S3_TEST_ENDPOINT) to put the proxy in front of"),
            args,
        )
    }

    /// [`FaultProxy::in_front_of`] with the test server's keys given to the
    /// proxy, for the faults where it sends requests of its own
    /// (`--ignore-range`).
    pub fn in_front_of_signing(env: &S3Env, args: &[&str]) -> Self {
        Self::start_with_env(
            env.endpoint
                .as_deref()
                .expect("an S3 endpoint (STOWAGE_S3_TEST_ENDPOINT) to put the proxy in front of"),
            args,
            &[
                ("PROXY_ACCESS_KEY", env.access_key.as_str()),
                ("PROXY_SECRET_KEY", env.secret_key.as_str()),
                ("PROXY_REGION", env.region.as_str()),
            ],
        )
    }

    /// What the proxy counted (`requests`, `resets_up`, `resets_down`,
    /// `slowdowns`, `complete_dropped`, `corrupted`, `list_tampered`, ...).
    pub async fn stats(&self) -> serde_json::Value {
        let text = reqwest::get(format!("{}/__proxy/stats", self.url))
            .await
            .expect("proxy stats")
            .text()
            .await
            .expect("proxy stats body");
        serde_json::from_str(&text).expect("proxy stats are JSON")
    }

    /// One counter of [`FaultProxy::stats`].
    pub async fn stat(&self, name: &str) -> u64 {
        self.stats().await[name].as_u64().unwrap_or(0)
    }

    /// Changes faults while running, e.g. `"slowdown_fraction=0.2"`.
    pub async fn configure(&self, query: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/__proxy/config?{query}", self.url))
            .send()
            .await
            .expect("proxy config");
        assert!(answer.status().is_success(), "proxy config {query}");
    }

    /// `config` with its endpoint moved to this proxy.
    pub fn config(&self, config: &S3Config) -> S3Config {
        let mut c = config.clone();
        c.endpoint = Some(self.url.clone());
        c
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of a driver's metric samples named `name`.
pub fn metric(storage: &dyn Storage, name: &str) -> u64 {
    storage
        .metrics()
        .iter()
        .filter(|m| m.name == name)
        .map(|m| m.value)
        .sum()
}

/// How many requests took each number of attempts above one
/// (`stowage_s3_retried_requests_total{attempts}`), non-zero ones only,
/// as `attempts=count` pairs for a test's report.
pub fn attempts_report(storage: &dyn Storage) -> String {
    storage
        .metrics()
        .iter()
        .filter(|m| m.name == "stowage_s3_retried_requests_total" && m.value > 0)
        .map(|m| {
            let n = m
                .labels
                .iter()
                .find(|(k, _)| *k == "attempts")
                .map_or("?", |(_, v)| v);
            format!("{n}={}", m.value)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A driver through the proxy and one straight to the server, under the
/// same fresh root (`configure` adjusts the configuration of both).
pub async fn through_and_direct(
    env: &S3Env,
    proxy: &FaultProxy,
    label: &str,
    configure: impl Fn(&mut S3Config),
) -> (S3Storage, S3Storage) {
    let mut config = env.config(label);
    configure(&mut config);
    let through = S3Storage::new(proxy.config(&config))
        .await
        .expect("driver through the proxy");
    let direct = S3Storage::new(config).await.expect("driver");
    (through, direct)
}
