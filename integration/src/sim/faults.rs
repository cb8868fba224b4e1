//! The fault layer: an [`HttpClient`] under the SDK that wraps the real
//! HTTPS client and, for each request, passes it or disturbs it. Every
//! decision is a pure function of the seed and the request (operation, key
//! relative to the root, part number, range, attempt), so a seed replays
//! the same faults for the same sequence of requests, whatever the timing.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;

use super::mix64;

/// What the layer can do to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The connection resets before the request is sent: nothing reaches
    /// the server.
    Reset,
    /// The request is forwarded and handled, then its answer is lost (the
    /// connection breaks while the answer comes back).
    DropAnswer,
    /// `500 InternalError` with an S3 error body, without forwarding.
    InternalError,
    /// `503 SlowDown` with an S3 error body, without forwarding.
    SlowDown,
    /// The answer's body ends with an error after some of its bytes.
    CutBody,
    /// A wait of 200 to 800 ms before the request is forwarded.
    Slow,
    /// A ranged GetObject answered like a server that ignores `Range`:
    /// `200` with the whole object (honouring `If-Match`).
    IgnoreRange,
}

impl FaultKind {
    /// Every kind, in the order decisions pick from.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Reset,
        FaultKind::DropAnswer,
        FaultKind::InternalError,
        FaultKind::SlowDown,
        FaultKind::CutBody,
        FaultKind::Slow,
        FaultKind::IgnoreRange,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Reset => "reset",
            FaultKind::DropAnswer => "drop-answer",
            FaultKind::InternalError => "internal-error",
            FaultKind::SlowDown => "slow-down",
            FaultKind::CutBody => "cut-body",
            FaultKind::Slow => "slow",
            FaultKind::IgnoreRange => "ignore-range",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// What the layer decides and where the requests go.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// The seed every decision derives from.
    pub seed: u64,
    /// The probability that a request is disturbed (0 to 1).
    pub rate: f64,
    /// The kinds to pick from (those that apply to the request).
    pub kinds: Vec<FaultKind>,
    /// The bucket, to find keys in request paths.
    pub bucket: String,
    /// The driver's root: keys are hashed relative to it, so that a replay
    /// under another root makes the same decisions.
    pub root: String,
    /// Whether requests address the bucket in the path (`/bucket/key`).
    pub path_style: bool,
}

/// One fault the layer injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// The simulation step it happened in.
    pub step: usize,
    /// The S3 operation.
    pub operation: String,
    /// The key relative to the root (random ids replaced by `~N`).
    pub key: String,
    /// The part number (0 when the request has none).
    pub part: u32,
    /// How many times the layer had seen the same request before.
    pub attempt: u32,
    /// What was done.
    pub kind: FaultKind,
    /// Details (status, bytes cut, wait).
    pub detail: String,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {}: {} on {} {:?}",
            self.step, self.kind, self.operation, self.key
        )?;
        if self.part > 0 {
            write!(f, " part {}", self.part)?;
        }
        write!(f, " attempt {}: {}", self.attempt, self.detail)
    }
}

/// Counts of what the layer saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests decided on.
    pub requests: u64,
    /// Faults injected.
    pub faults: u64,
    /// Faults by kind name.
    pub by_kind: BTreeMap<String, u64>,
    /// Faults by S3 operation.
    pub by_operation: BTreeMap<String, u64>,
}

impl FaultStats {
    fn count(&mut self, kind: FaultKind, operation: &str) {
        self.faults += 1;
        *self.by_kind.entry(kind.name().to_string()).or_default() += 1;
        *self.by_operation.entry(operation.to_string()).or_default() += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &FaultStats) {
        self.requests += other.requests;
        self.faults += other.faults;
        for (k, n) in &other.by_kind {
            *self.by_kind.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &other.by_operation {
            *self.by_operation.entry(k.clone()).or_default() += n;
        }
    }

    /// `name count, name count, ...` of a map, or `none`.
    pub fn summary(counts: &BTreeMap<String, u64>) -> String {
        if counts.is_empty() {
            return "none".into();
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The SDK's default HTTPS client (hyper 1 with rustls on aws-lc), built
/// the way the SDK builds its own, to be wrapped by a [`FaultLayer`].
pub fn default_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https()
}

/// The fault layer of one simulated run: hands out the HTTP client the
/// driver under test uses, and keeps the decisions' state and counts.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    shared: Arc<Shared>,
    inner: SharedHttpClient,
}

impl FaultLayer {
    /// A layer over `inner`. `direct`, a client that reaches the server
    /// without faults, lets it answer like a server that ignores `Range`
    /// ([`FaultKind::IgnoreRange`] applies only with it).
    pub fn new(
        mut config: FaultConfig,
        inner: SharedHttpClient,
        direct: Option<aws_sdk_s3::Client>,
    ) -> Self {
        config.kinds.sort();
        config.kinds.dedup();
        Self {
            shared: Arc::new(Shared {
                config,
                direct,
                step: AtomicUsize::new(0),
                paused: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            }),
            inner,
        }
    }

    /// The client to hand to `S3Storage::with_http_client`.
    pub fn http_client(&self) -> SharedHttpClient {
        SharedHttpClient::new(FaultClient {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        })
    }

    /// Marks the requests from now on as part of simulation step `step`.
    pub fn set_step(&self, step: usize) {
        self.shared.step.store(step, Ordering::SeqCst);
    }

    /// Stops (`true`) or resumes (`false`) injecting faults; paused, every
    /// request passes and nothing is counted.
    pub fn pause(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
    }

    /// What the layer counted so far.
    pub fn stats(&self) -> FaultStats {
        self.shared.lock().stats.clone()
    }

    /// The faults injected during `step`.
    pub fn events_in(&self, step: usize) -> Vec<FaultEvent> {
        self.shared
            .lock()
            .events
            .iter()
            .filter(|e| e.step == step)
            .cloned()
            .collect()
    }

    /// Whether a CreateMultipartUpload answer was lost during `step` (the
    /// server created an upload whose id the driver never learnt).
    pub fn lost_create_answer_in(&self, step: usize) -> bool {
        self.shared.lock().events.iter().any(|e| {
            e.step == step
                && e.operation == "CreateMultipartUpload"
                && matches!(e.kind, FaultKind::DropAnswer | FaultKind::CutBody)
        })
    }

    /// A digest of every fault injected (step, operation, key, part,
    /// attempt, kind), independent of their order: two runs of a seed that
    /// made the same decisions print the same fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.shared.lock().events.iter().fold(0u64, |acc, e| {
            let text = format!(
                "{}\n{}\n{}\n{}\n{}\n{}",
                e.step, e.operation, e.key, e.part, e.attempt, e.kind
            );
            acc.wrapping_add(mix64(fnv1a(text.as_bytes())))
        })
    }
}

/// A decision with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Reset,
    DropAnswer,
    Status(u16, &'static str),
    CutBody(u64),
    Slow(Duration),
    IgnoreRange,
}

/// What the layer needs to know about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Described {
    method: String,
    operation: String,
    /// Relative to the root, random ids replaced: what decisions hash.
    key: String,
    /// The object key as sent (for the whole-object fetch).
    raw_key: String,
    part: u32,
    upload_id: String,
    /// `Range`, or `x-amz-copy-source-range`.
    range: String,
    /// Whether the request carries a `Range` header.
    ranged: bool,
    if_match: Option<String>,
    copy_source: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Times each request identity was seen.
    attempts: HashMap<String, u32>,
    /// Random ids (upload ids, chunk tags) to `~N`, by first appearance.
    aliases: HashMap<String, String>,
    stats: FaultStats,
    events: Vec<FaultEvent>,
}

#[derive(Debug)]
struct Shared {
    config: FaultConfig,
    direct: Option<aws_sdk_s3::Client>,
    step: AtomicUsize,
    paused: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not hide the counts.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn describe(&self, request: &HttpRequest) -> Described {
        let headers = request.headers();
        self.describe_raw(request.method(), request.uri(), |name| {
            headers.get(name).map(str::to_string)
        })
    }

    fn describe_raw(
        &self,
        method: &str,
        uri: &str,
        header: impl Fn(&str) -> Option<String>,
    ) -> Described {
        let (path, query) = split_uri(uri);
        let query = parse_query(query);
        let value = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let method = method.to_ascii_uppercase();
        let raw_key = self.object_key(path);
        let copy_source = header("x-amz-copy-source").is_some();
        let operation = operation(&method, &query, copy_source, raw_key.is_empty());
        let listing = matches!(
            operation.as_str(),
            "ListObjects" | "ListObjectsV2" | "ListMultipartUploads"
        );
        let hashed = if listing {
            value("prefix").unwrap_or_default()
        } else {
            raw_key.clone()
        };
        let key = self.normalize(self.relative(&hashed));
        let range_header = header("range");
        Described {
            operation,
            key,
            raw_key,
            part: value("partNumber")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            upload_id: value("uploadId").unwrap_or_default(),
            ranged: range_header.is_some(),
            range: range_header
                .or_else(|| header("x-amz-copy-source-range"))
                .unwrap_or_default(),
            if_match: header("if-match"),
            copy_source,
            method,
        }
    }

    /// The object key in a request path (percent-decoded, bucket removed
    /// for path-style requests).
    fn object_key(&self, path: &str) -> String {
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned();
        let key = decoded.strip_prefix('/').unwrap_or(&decoded);
        if !self.config.path_style {
            return key.to_string();
        }
        if key == self.config.bucket {
            return String::new();
        }
        match key.split_once('/') {
            Some((bucket, rest)) if bucket == self.config.bucket => rest.to_string(),
            _ => key.to_string(),
        }
    }

    fn relative<'a>(&self, key: &'a str) -> &'a str {
        let root = self.config.root.as_str();
        if root.is_empty() {
            return key;
        }
        if key == root {
            return "";
        }
        key.strip_prefix(root)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(key)
    }

    /// `key` with each random id (32 or 16 lowercase hex digits between
    /// `/` and `-`) replaced by `~N`, N counting ids in order of first
    /// appearance: upload ids and chunk tags are random in every run.
    fn normalize(&self, key: &str) -> String {
        let mut state = self.lock();
        key.split('/')
            .map(|segment| {
                segment
                    .split('-')
                    .map(|piece| {
                        if !is_random_id(piece) {
                            return piece.to_string();
                        }
                        let next = state.aliases.len() + 1;
                        state
                            .aliases
                            .entry(piece.to_string())
                            .or_insert_with(|| format!("~{next}"))
                            .clone()
                    })
                    .collect::<Vec<_>>()
                    .join("-")
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The attempt number of `d` (0 for the first time the layer sees it)
    /// and the fault, if any.
    fn decide(&self, d: &Described) -> (u32, Option<Fault>) {
        if self.paused.load(Ordering::SeqCst) {
            return (0, None);
        }
        let identity = format!(
            "{}\n{}\n{}\n{}\n{}",
            d.operation, d.key, d.part, d.upload_id, d.range
        );
        let attempt = {
            let mut state = self.lock();
            state.stats.requests += 1;
            let seen = state.attempts.entry(identity).or_default();
            let attempt = *seen;
            *seen += 1;
            attempt
        };
        (
            attempt,
            decision(&self.config, self.direct.is_some(), d, attempt),
        )
    }

    fn record(&self, d: &Described, attempt: u32, kind: FaultKind, detail: String) {
        let step = self.step.load(Ordering::SeqCst);
        let mut state = self.lock();
        state.stats.count(kind, &d.operation);
        state.events.push(FaultEvent {
            step,
            operation: d.operation.clone(),
            key: d.key.clone(),
            part: d.part,
            attempt,
            kind,
            detail,
        });
    }

    /// The whole object, fetched without faults, as a server ignoring
    /// `Range` would send it; `None` when it cannot be had (the request is
    /// then forwarded as it is).
    async fn whole_object(&self, d: &Described) -> Option<HttpResponse> {
        let client = self.direct.as_ref()?;
        let mut request = client
            .get_object()
            .bucket(&self.config.bucket)
            .key(&d.raw_key);
        if let Some(tag) = &d.if_match {
            request = request.if_match(tag.clone());
        }
        let out = request.send().await.ok()?;
        let etag = out.e_tag().map(str::to_string);
        let content_type = out.content_type().map(str::to_string);
        let data = out.body.collect().await.ok()?.into_bytes();
        let mut answer = HttpResponse::new(
            StatusCode::try_from(200u16).ok()?,
            SdkBody::from(data.clone()),
        );
        let headers = answer.headers_mut();
        headers.insert("content-length", data.len().to_string());
        headers.insert("accept-ranges", "bytes");
        headers.insert("x-amz-request-id", "stowage-sim");
        if let Some(etag) = etag {
            headers.insert("etag", etag);
        }
        if let Some(content_type) = content_type {
            headers.insert("content-type", content_type);
        }
        Some(answer)
    }
}

/// The pure decision: whether to disturb the request `d` at `attempt`
/// under `config`, and how.
fn decision(config: &FaultConfig, can_fetch: bool, d: &Described, attempt: u32) -> Option<Fault> {
    let text = format!(
        "{}\n{}\n{}\n{}\n{}",
        d.operation, d.key, d.part, d.range, attempt
    );
    let h = mix64(fnv1a(text.as_bytes()) ^ mix64(config.seed));
    if unit(h) >= config.rate {
        return None;
    }
    let kinds: Vec<FaultKind> = config
        .kinds
        .iter()
        .copied()
        .filter(|k| applies(*k, d, can_fetch))
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let pick = usize::try_from(mix64(h ^ 1) % kinds.len() as u64).unwrap_or(0);
    let parameter = mix64(h ^ 2);
    Some(match kinds[pick] {
        FaultKind::Reset => Fault::Reset,
        FaultKind::DropAnswer => Fault::DropAnswer,
        FaultKind::InternalError => Fault::Status(500, "InternalError"),
        FaultKind::SlowDown => Fault::Status(503, "SlowDown"),
        FaultKind::CutBody => Fault::CutBody(parameter),
        FaultKind::Slow => Fault::Slow(Duration::from_millis(200 + parameter % 601)),
        FaultKind::IgnoreRange => Fault::IgnoreRange,
    })
}

/// Whether `kind` means anything for the request `d`.
fn applies(kind: FaultKind, d: &Described, can_fetch: bool) -> bool {
    match kind {
        FaultKind::Reset
        | FaultKind::DropAnswer
        | FaultKind::InternalError
        | FaultKind::SlowDown
        | FaultKind::Slow => true,
        // Answers with a body: reads, listings, completions, copies.
        FaultKind::CutBody => {
            matches!(d.method.as_str(), "GET" | "POST") || (d.method == "PUT" && d.copy_source)
        }
        FaultKind::IgnoreRange => can_fetch && d.operation == "GetObject" && d.ranged,
    }
}

/// The S3 operation of a request: the SDK's `x-id` query parameter, else
/// from the method and the query's keys.
fn operation(
    method: &str,
    query: &[(String, String)],
    copy_source: bool,
    bucket_level: bool,
) -> String {
    if let Some((_, op)) = query.iter().find(|(k, _)| k == "x-id") {
        return op.clone();
    }
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    let op = match method {
        "HEAD" if bucket_level => "HeadBucket",
        "HEAD" => "HeadObject",
        "GET" if has("uploads") => "ListMultipartUploads",
        "GET" if has("list-type") => "ListObjectsV2",
        "GET" if has("uploadId") => "ListParts",
        "GET" if bucket_level && has("cors") => "GetBucketCors",
        "GET" if bucket_level => "ListObjects",
        "GET" => "GetObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "PUT" if copy_source && has("partNumber") => "UploadPartCopy",
        "PUT" if copy_source => "CopyObject",
        "PUT" if has("partNumber") => "UploadPart",
        "PUT" if bucket_level && has("cors") => "PutBucketCors",
        "PUT" => "PutObject",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        other => return other.to_string(),
    };
    op.to_string()
}

/// The path and the query of a URI (`scheme://authority/path?query`).
fn split_uri(uri: &str) -> (&str, &str) {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path_and_query = rest.find('/').map_or("", |i| &rest[i..]);
    path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""))
}

/// The query's pairs, percent-decoded (`uploads` gives `("uploads", "")`).
fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn is_random_id(piece: &str) -> bool {
    (piece.len() == 32 || piece.len() == 16)
        && piece
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A uniform number in `[0, 1)` from 64 random bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn io_error(message: &'static str) -> ConnectorError {
    ConnectorError::io(Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        message,
    )))
}

/// An S3 error answer (empty body for HEAD, as S3 sends).
fn error_answer(status: u16, code: &str, head: bool) -> HttpResponse {
    let body = if head {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>simulated by the stowage fault layer</Message>\
             <RequestId>stowage-sim</RequestId></Error>"
        )
    };
    let length = body.len();
    let mut answer = HttpResponse::new(
        StatusCode::try_from(status).expect("a valid HTTP status"),
        SdkBody::from(body),
    );
    let headers = answer.headers_mut();
    headers.insert("content-type", "application/xml");
    headers.insert("content-length", length.to_string());
    headers.insert("x-amz-request-id", "stowage-sim");
    answer
}

/// The client handed to the SDK.
#[derive(Debug)]
struct FaultClient {
    inner: SharedHttpClient,
    shared: Arc<Shared>,
}

impl HttpClient for FaultClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultConnector {
            inner: self.inner.http_connector(settings, components),
            shared: self.shared.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        HttpClient::validate_base_client_config(&self.inner, runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        HttpClient::validate_final_config(&self.inner, runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        HttpClient::connector_metadata(&self.inner)
    }
}

/// The connector that decides on each request.
#[derive(Debug)]
struct FaultConnector {
    inner: SharedHttpConnector,
    shared: Arc<Shared>,
}

impl HttpConnector for FaultConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let d = self.shared.describe(&request);
        let (attempt, fault) = self.shared.decide(&d);
        let Some(fault) = fault else {
            return self.inner.call(request);
        };
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        match fault {
            Fault::Reset => {
                shared.record(
                    &d,
                    attempt,
                    FaultKind::Reset,
                    "connection reset, nothing sent".into(),
                );
                HttpConnectorFuture::ready(Err(io_error(
                    "simulated connection reset before the request was sent",
                )))
            }
            Fault::Status(status, code) => {
                let kind = if status == 503 {
                    FaultKind::SlowDown
                } else {
                    FaultKind::InternalError
                };
                shared.record(&d, attempt, kind, format!("answered {status} {code}"));
                HttpConnectorFuture::ready(Ok(error_answer(status, code, d.method == "HEAD")))
            }
            Fault::Slow(wait) => {
                shared.record(
                    &d,
                    attempt,
                    FaultKind::Slow,
                    format!("{} ms before forwarding", wait.as_millis()),
                );
                HttpConnectorFuture::new(slow(inner, request, wait))
            }
            Fault::DropAnswer => {
                shared.record(
                    &d,
                    attempt,
                    FaultKind::DropAnswer,
                    "forwarded, answer dropped".into(),
                );
                HttpConnectorFuture::new(drop_answer(inner, request))
            }
            Fault::CutBody(parameter) => {
                HttpConnectorFuture::new(cut_body(inner, request, shared, d, attempt, parameter))
            }
            Fault::IgnoreRange => {
                HttpConnectorFuture::new(ignore_range(inner, request, shared, d, attempt))
            }
        }
    }
}

async fn slow(
    inner: SharedHttpConnector,
    request: HttpRequest,
    wait: Duration,
) -> Result<HttpResponse, ConnectorError> {
    tokio::time::sleep(wait).await;
    inner.call(request).await
}

async fn drop_answer(
    inner: SharedHttpConnector,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let answer = inner.call(request).await?;
    drop(answer);
    Err(io_error(
        "simulated connection loss: the server handled the request, its answer was lost",
    ))
}

async fn cut_body(
    inner: SharedHttpConnector,
    request: HttpRequest,
    shared: Arc<Shared>,
    d: Described,
    attempt: u32,
    parameter: u64,
) -> Result<HttpResponse, ConnectorError> {
    let mut answer = inner.call(request).await?;
    let length = answer
        .headers()
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let at = match length {
        // No body to cut: the request passes.
        Some(0) => return Ok(answer),
        Some(n) => parameter % n,
        None => parameter % 1024,
    };
    let of = length.map_or_else(|| "?".to_string(), |n| n.to_string());
    shared.record(
        &d,
        attempt,
        FaultKind::CutBody,
        format!("HTTP {} body cut after {at} of {of} bytes", answer.status()),
    );
    let body = answer.take_body();
    *answer.body_mut() = SdkBody::from_body_1_x(CutBody {
        inner: Box::pin(body),
        left: at,
        ended: false,
    });
    Ok(answer)
}

async fn ignore_range(
    inner: SharedHttpConnector,
    request: HttpRequest,
    shared: Arc<Shared>,
    d: Described,
    attempt: u32,
) -> Result<HttpResponse, ConnectorError> {
    match shared.whole_object(&d).await {
        Some(answer) => {
            shared.record(
                &d,
                attempt,
                FaultKind::IgnoreRange,
                format!("Range {:?} ignored, whole object sent", d.range),
            );
            Ok(answer)
        }
        None => inner.call(request).await,
    }
}

/// A body that ends with an error after `left` bytes.
struct CutBody {
    inner: Pin<Box<SdkBody>>,
    left: u64,
    ended: bool,
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.left == 0 {
            this.ended = true;
            let error: Self::Error = Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated connection reset while the answer's body was read",
            ));
            return Poll::Ready(Some(Err(error)));
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let room = usize::try_from(this.left).unwrap_or(usize::MAX);
                    if data.len() > room {
                        data.truncate(room);
                    }
                    this.left -= data.len() as u64;
                    Poll::Ready(Some(Ok(http_body::Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(seed: u64, rate: f64) -> Shared {
        Shared {
            config: FaultConfig {
                seed,
                rate,
                kinds: FaultKind::ALL.to_vec(),
                bucket: "bkt".into(),
                root: "stowage-it/sim-0123".into(),
                path_style: true,
            },
            direct: None,
            step: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn describe(s: &Shared, method: &str, uri: &str, headers: &[(&str, &str)]) -> Described {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.describe_raw(method, uri, |name| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn operations_are_read_from_the_request() {
        let s = shared(1, 0.0);
        let op = |method: &str, uri: &str, headers: &[(&str, &str)]| {
            describe(&s, method, uri, headers).operation
        };
        let object = "http://127.0.0.1:1/bkt/stowage-it/sim-0123/a";
        let copy = [("x-amz-copy-source", "bkt/b")];
        assert_eq!(
            op("GET", &format!("{object}?x-id=GetObject"), &[]),
            "GetObject"
        );
        assert_eq!(op("HEAD", object, &[]), "HeadObject");
        assert_eq!(op("GET", object, &[]), "GetObject");
        assert_eq!(op("PUT", object, &[]), "PutObject");
        assert_eq!(op("PUT", object, &copy), "CopyObject");
        let part = format!("{object}?partNumber=2&uploadId=u");
        assert_eq!(op("PUT", &part, &copy), "UploadPartCopy");
        assert_eq!(op("PUT", &part, &[]), "UploadPart");
        let uploads = format!("{object}?uploads");
        assert_eq!(op("POST", &uploads, &[]), "CreateMultipartUpload");
        let upload = format!("{object}?uploadId=u");
        assert_eq!(op("POST", &upload, &[]), "CompleteMultipartUpload");
        assert_eq!(op("DELETE", &upload, &[]), "AbortMultipartUpload");
        assert_eq!(op("DELETE", object, &[]), "DeleteObject");
        let bucket = "http://127.0.0.1:1/bkt";
        let list = format!("{bucket}?list-type=2&prefix=x");
        assert_eq!(op("GET", &list, &[]), "ListObjectsV2");
        let open = format!("{bucket}?uploads&prefix=x");
        assert_eq!(op("GET", &open, &[]), "ListMultipartUploads");
        let delete = format!("{bucket}?delete");
        assert_eq!(op("POST", &delete, &[]), "DeleteObjects");
    }

    #[test]
    fn keys_are_relative_to_the_root_with_random_ids_replaced() {
        let s = shared(1, 0.0);
        let d = describe(
            &s,
            "PUT",
            "http://h/bkt/stowage-it/sim-0123/_uploads/0123456789abcdef0123456789abcdef/000001-0123456789abcdef?x-id=PutObject",
            &[],
        );
        assert_eq!(d.key, "_uploads/~1/000001-~2");
        assert_eq!(
            d.raw_key,
            "stowage-it/sim-0123/_uploads/0123456789abcdef0123456789abcdef/000001-0123456789abcdef"
        );
        let d = describe(
            &s,
            "GET",
            "http://h/bkt/stowage-it/sim-0123/blobs/c%20d",
            &[],
        );
        assert_eq!(d.key, "blobs/c d");
        let d = describe(
            &s,
            "GET",
            "http://h/bkt?list-type=2&prefix=stowage-it%2Fsim-0123%2F_uploads%2F",
            &[],
        );
        assert_eq!(d.key, "_uploads/");
    }

    #[test]
    fn decisions_are_a_function_of_seed_and_request() {
        let d = describe(
            &shared(0, 0.0),
            "PUT",
            "http://h/bkt/stowage-it/sim-0123/a?partNumber=3&uploadId=x&x-id=UploadPart",
            &[],
        );
        assert_eq!(d.part, 3);
        let config = |seed| shared(seed, 0.5).config;
        let faults: Vec<Option<Fault>> = (0..64)
            .map(|attempt| decision(&config(7), false, &d, attempt))
            .collect();
        let again: Vec<Option<Fault>> = (0..64)
            .map(|attempt| decision(&config(7), false, &d, attempt))
            .collect();
        assert_eq!(faults, again);
        let other: Vec<Option<Fault>> = (0..64)
            .map(|attempt| decision(&config(8), false, &d, attempt))
            .collect();
        assert_ne!(faults, other, "another seed decides otherwise");
        let injected = faults.iter().filter(|f| f.is_some()).count();
        assert!(
            (10..=54).contains(&injected),
            "{injected} of 64 at rate 0.5"
        );
        // Kinds that do not apply are never picked.
        assert!(!faults
            .iter()
            .any(|f| matches!(f, Some(Fault::CutBody(_) | Fault::IgnoreRange))));
    }

    #[test]
    fn attempts_count_repeats_of_the_same_request() {
        let s = shared(3, 0.0);
        let d = describe(&s, "GET", "http://h/bkt/stowage-it/sim-0123/a", &[]);
        assert_eq!(s.decide(&d).0, 0);
        assert_eq!(s.decide(&d).0, 1);
        let ranged = describe(
            &s,
            "GET",
            "http://h/bkt/stowage-it/sim-0123/a",
            &[("range", "bytes=1-2")],
        );
        assert_eq!(s.decide(&ranged).0, 0);
        assert_eq!(s.lock().stats.requests, 3);
    }
}
