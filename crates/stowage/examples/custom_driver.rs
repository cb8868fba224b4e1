//! A storage driver that lives outside the stowage workspace, registered
//! under a Quay driver name of its own (`MyStorage`) next to the built-in
//! ones, and configured from the same `DISTRIBUTED_STORAGE_CONFIG` an
//! operator already writes:
//!
//! - `MemoryStorage`: a tiny in-memory `Storage` (the seven required
//!   methods; uploads, copies, listing pages and validation come from the
//!   trait's generic implementations);
//! - `MyDriver`: its `DriverFactory`, whose `read` checks the location's
//!   own parameters (`namespace`, `max_object_size_mb`, `api_token` with its
//!   `api_token_file`/`api_token_env` forms) and reports every problem, with
//!   the rest of the file's, in one run;
//! - `main`: a broken configuration (all its problems printed), then a good
//!   one opened through the driver set and used (put, get, a refused write).
//!
//! Needs no network and no server:
//!
//! ```text
//! cargo run -p stowage --example custom_driver
//! ```

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stowage::config::{ConfigErrors, Secret};
use stowage::{
    async_trait, Capabilities, DriverConfig, DriverFactory, DriverParams, Drivers, Error,
    GetOptions, GetResult, ListStream, ObjectMeta, PutOptions, Result, Sha256Digest, Storage,
    StorageExt, StoragePath, StowageConfig, WriteStream,
};

/// The Quay driver name the example registers.
const DRIVER_NAME: &str = "MyStorage";

/// `max_object_size_mb` when the location does not give it.
const DEFAULT_MAX_OBJECT_SIZE_MB: u64 = 64;

/// A configuration with a problem in nearly every key, in both locations.
const BROKEN: &str = r#"
DISTRIBUTED_STORAGE_CONFIG:
  mine:
    - MyStorage
    - namespace: Team_A
      max_object_size_mb: 0
      api_tokn: not-read
  local:
    - LocalStorage
    - storage_pth: /tmp/stowage-example
"#;

/// The configuration the example uses.
const CONFIG: &str = r#"
DISTRIBUTED_STORAGE_CONFIG:
  mine:
    - MyStorage
    - namespace: team-a
      max_object_size_mb: 1
      api_token: example-token-not-a-secret
  local:
    - LocalStorage
    - storage_path: /tmp/stowage-example
DISTRIBUTED_STORAGE_PREFERENCE: [mine]
"#;

/// What `MyDriver::read` makes of a location's parameters.
#[derive(Debug, Clone)]
struct MyConfig {
    /// Every key is stored under `<namespace>/`.
    namespace: String,
    /// Larger writes are refused.
    max_object_size: u64,
    /// What a real backend would be called with; `Debug` prints `***`.
    api_token: Secret,
}

/// The driver's factory: reads a location's parameters, then opens it.
#[derive(Debug)]
struct MyDriver;

#[async_trait]
impl DriverFactory for MyDriver {
    type Config = MyConfig;

    fn read(&self, params: &DriverParams) -> Result<MyConfig, ConfigErrors> {
        // Each helper records its problem (with the key path
        // `DISTRIBUTED_STORAGE_CONFIG.<location>[1].<key>`) and reading goes
        // on, so that one run reports them all.
        let mut p = params.reader();
        let namespace = p.required_string("namespace");
        if let Some(bad) = namespace.as_deref().filter(|ns| !is_namespace(ns)) {
            p.problem(
                "namespace",
                format!("{bad:?}: use lowercase letters, digits and '-'"),
            );
        }
        let max_mb = p
            .u64_in("max_object_size_mb", 1..=1024)
            .unwrap_or(DEFAULT_MAX_OBJECT_SIZE_MB);
        // Inline, or `api_token_file` (relative to the config file's
        // directory), or `api_token_env`.
        let api_token = p.secret("api_token");
        if api_token.is_none() && !p.has("api_token_file") && !p.has("api_token_env") {
            p.problem(
                "api_token",
                "required key is missing (or give api_token_file or api_token_env)",
            );
        }
        let parsed = namespace
            .zip(api_token)
            .map(|(namespace, api_token)| MyConfig {
                namespace,
                max_object_size: max_mb << 20,
                api_token,
            });
        // Adds every key nobody asked for as unknown, listing the accepted
        // ones; `Err` with all problems when there is any.
        p.finish_with(parsed)
    }

    async fn open(&self, config: &MyConfig) -> Result<Arc<dyn Storage>> {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new(config.clone()));
        Ok(storage)
    }
}

/// Whether `text` is a usable namespace: lowercase letters, digits, `-`.
fn is_namespace(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Objects in memory, under `<namespace>/` keys.
#[derive(Debug)]
struct MemoryStorage {
    config: MyConfig,
    objects: Mutex<BTreeMap<String, Stored>>,
    /// Writes so far; each object's ETag is the write that stored it.
    writes: AtomicU64,
}

/// One stored object.
#[derive(Debug, Clone)]
struct Stored {
    data: Bytes,
    etag: String,
    content_type: Option<String>,
}

impl MemoryStorage {
    fn new(config: MyConfig) -> Self {
        Self {
            config,
            objects: Mutex::new(BTreeMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    /// The backend's key of `path`: paths arrive validated, and each driver
    /// maps them under its own root.
    fn key(&self, path: &StoragePath) -> String {
        format!("{}/{path}", self.config.namespace)
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<String, Stored>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn meta(path: StoragePath, stored: &Stored) -> ObjectMeta {
        ObjectMeta::new(path, stored.data.len() as u64)
            .with_etag(Some(stored.etag.clone()))
            .with_content_type(stored.content_type.clone())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn driver(&self) -> &'static str {
        "memory"
    }

    /// No direct URLs, no server-side copies: said honestly, callers (and
    /// the conformance suite) pick what applies.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        let stored = self
            .objects()
            .get(&self.key(path))
            .cloned()
            .ok_or_else(|| Error::not_found(path))?;
        let size = stored.data.len() as u64;
        // `resolve` applies the trait's range rules (a range past the end is
        // `Error::InvalidRange`, one ending past it is cut).
        let range = match options.range {
            Some(range) => range.resolve(path, size)?,
            None => 0..size,
        };
        let body = stored.data.slice(range.start as usize..range.end as usize);
        let meta = Self::meta(path.clone(), &stored);
        Ok(GetResult::new(
            meta,
            range,
            futures::stream::iter([Ok(body)]).boxed(),
        ))
    }

    async fn put_stream(
        &self,
        path: &StoragePath,
        mut data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let limit = self.config.max_object_size;
        let mut body = Vec::new();
        while let Some(chunk) = data.try_next().await? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Error::invalid_argument(format!(
                    "{path} is larger than max_object_size_mb ({} MiB) of namespace {}",
                    limit >> 20,
                    self.config.namespace
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // Nothing becomes visible unless the bytes have the expected digest.
        if let Some(expected) = options.expected_digest {
            let actual = Sha256Digest::of(&body);
            if actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let write = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        let stored = Stored {
            data: Bytes::from(body),
            etag: format!("\"{write}\""),
            content_type: options.content_type,
        };
        let meta = Self::meta(path.clone(), &stored);
        self.objects().insert(self.key(path), stored);
        Ok(meta)
    }

    async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
        let objects = self.objects();
        let stored = objects
            .get(&self.key(path))
            .ok_or_else(|| Error::not_found(path))?;
        Ok(Self::meta(path.clone(), stored))
    }

    async fn delete(&self, path: &StoragePath) -> Result<()> {
        self.objects().remove(&self.key(path));
        Ok(())
    }

    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let root = format!("{}/", self.config.namespace);
        let entries: Vec<Result<ObjectMeta>> = self
            .objects()
            .iter()
            .filter_map(|(key, stored)| {
                let path = match StoragePath::parse(key.strip_prefix(&root)?) {
                    Ok(path) => path,
                    Err(e) => return Some(Err(e)),
                };
                if prefix.is_some_and(|prefix| !path.is_below(prefix)) {
                    return None;
                }
                Some(Ok(Self::meta(path, stored)))
            })
            .collect();
        futures::stream::iter(entries).boxed()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_driver: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> std::result::Result<(), Box<dyn StdError>> {
    // The built-in drivers and ours: a name already in the set (a built-in
    // one included) would be replaced in place.
    let drivers = Drivers::with_builtin().register(DRIVER_NAME, MyDriver);
    println!(
        "drivers: {}",
        drivers.names().collect::<Vec<_>>().join(", ")
    );

    // 1. Every problem of the file at once, ours with the built-in
    //    driver's, each with its key path.
    match StowageConfig::parse_with(&drivers, BROKEN, None) {
        Err(Error::Config(problems)) => {
            println!(
                "\nthe broken configuration has {} problems:",
                problems.0.len()
            );
            for problem in &problems.0 {
                println!("  {problem}");
            }
        }
        Err(other) => return Err(other.into()),
        Ok(_) => return Err("the broken configuration was accepted".into()),
    }

    // 2. The location, as our factory read it.
    let config = StowageConfig::parse_with(&drivers, CONFIG, None)?;
    let location = config.location(None)?;
    let DriverConfig::Custom(custom) = &location.driver else {
        return Err(format!("{}: not read by {DRIVER_NAME}", location.name).into());
    };
    let mine = custom
        .get::<MyConfig>()
        .ok_or("the location's configuration is not a MyConfig")?;
    println!(
        "\nlocation {:?} ({}): {mine:?}",
        location.name,
        custom.driver()
    );
    println!(
        "its api_token has {} characters; Debug shows {:?}",
        mine.api_token.expose().len(),
        mine.api_token
    );

    // 3. Opened through the same set, used through the trait.
    let storage = drivers.open(location).await?;
    let path = StoragePath::parse("blobs/sha256/ab/abcd")?;
    let body = Bytes::from_static(b"layer bytes");
    let written = storage
        .put(
            &path,
            body.clone(),
            PutOptions::default().with_expected_digest(Sha256Digest::of(&body)),
        )
        .await?;
    println!(
        "\nput {path}: {} bytes, etag {}",
        written.size,
        written.etag.as_deref().unwrap_or("-")
    );
    let read = storage.get_bytes(&path).await?;
    println!("get {path}: {:?}", String::from_utf8_lossy(&read));
    let listed: Vec<ObjectMeta> = storage.list(None).try_collect().await?;
    println!("listed: {} object(s)", listed.len());
    let too_large = Bytes::from(vec![0_u8; 2 << 20]);
    match storage
        .put(
            &StoragePath::parse("blobs/too-large")?,
            too_large,
            PutOptions::default(),
        )
        .await
    {
        Err(e) => println!("a 2 MiB put is refused: {e}"),
        Ok(_) => return Err("a put above max_object_size_mb was accepted".into()),
    }

    // 4. The built-in set alone does not know the driver: the location is
    //    refused, naming it, and nothing else of the file is affected.
    match stowage::open(location).await {
        Err(e) => println!("\nwithout the registered driver: {e}"),
        Ok(_) => return Err("the built-in drivers opened a MyStorage location".into()),
    }
    Ok(())
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
