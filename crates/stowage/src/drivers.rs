//! The open driver set: Quay driver names mapped to the factories that read
//! a location's parameters and open its storage.
//!
//! The built-in drivers are entries of the same table
//! ([`Drivers::with_builtin`]); an embedder adds its own, or replaces a
//! built-in one, with [`Drivers::register`]. A configuration read with a
//! driver set ([`StowageConfig::from_value_with`](crate::StowageConfig::from_value_with)
//! and the other `*_with` readers) has every location of a registered driver
//! checked by that driver's factory, with the problems of the whole file
//! reported at once; [`Drivers::open`] builds the storage.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use stowage_core::config::{ConfigErrors, Params};
use stowage_core::{async_trait, Error, Result, Storage};

use crate::quay_config::{unsupported_error, STORAGE_CONFIG};
use crate::{DriverConfig, Location};

/// Parts of parameter names whose values [`DriverParams`]' `Debug` hides.
const SECRET_WORDS: &[&str] = &["key", "secret", "token", "password", "sas", "credential"];

/// One location's parameters, as a driver factory receives them: the
/// location's name, the driver name it gives, its map of parameters as the
/// file holds it, and the bundle folder (the directory of the config file,
/// where key files, `extra_ca_certs` and the like are looked up).
///
/// `Debug` shows the parameters with the value of every key that looks
/// secret (its name contains `key`, `secret`, `token`, `password`, `sas` or
/// `credential`, at any depth) as `"***"`.
#[derive(Clone)]
pub struct DriverParams {
    location: String,
    driver: String,
    values: Map<String, Value>,
    base_dir: Option<PathBuf>,
}

impl DriverParams {
    /// The parameters `values` of the location named `location`, whose
    /// driver name is `driver`. Relative file names resolve against the
    /// current directory until [`DriverParams::with_base_dir`] names the
    /// bundle folder.
    pub fn new(
        location: impl Into<String>,
        driver: impl Into<String>,
        values: Map<String, Value>,
    ) -> Self {
        Self {
            location: location.into(),
            driver: driver.into(),
            values,
            base_dir: None,
        }
    }

    /// Relative file names in the parameters resolve against `dir` (the
    /// bundle folder) instead of the current directory.
    #[must_use]
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// The location's name (its key in `DISTRIBUTED_STORAGE_CONFIG`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The driver name the location gives.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The parameters, as the file holds them.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// The bundle folder relative file names resolve against (`None`: the
    /// current directory).
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// The key path of the parameters:
    /// `DISTRIBUTED_STORAGE_CONFIG.<location>[1]`.
    pub fn key_path(&self) -> String {
        format!("{STORAGE_CONFIG}.{}[1]", self.location)
    }

    /// A reader of the parameters that records every problem with its key
    /// path and resolves relative file names against the bundle folder;
    /// end with [`Params::finish_with`], which adds the unknown keys.
    pub fn reader(&self) -> Params<'_> {
        let params = Params::new(self.key_path(), &self.values);
        match &self.base_dir {
            Some(dir) => params.with_base_dir(dir.as_path()),
            None => params,
        }
    }
}

impl fmt::Debug for DriverParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = Value::Object(redacted(&self.values));
        f.debug_struct("DriverParams")
            .field("location", &self.location)
            .field("driver", &self.driver)
            .field("values", &format_args!("{values}"))
            .field("base_dir", &self.base_dir)
            .finish()
    }
}

/// Whether a parameter name looks like it holds a secret.
fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| key.contains(word))
}

/// `map` with the values of secret-looking keys replaced by `"***"`, at
/// any depth.
fn redacted(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| {
            let shown = if looks_secret(key) {
                Value::String("***".into())
            } else {
                redacted_value(value)
            };
            (key.clone(), shown)
        })
        .collect()
}

fn redacted_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(redacted(map)),
        Value::Array(items) => Value::Array(items.iter().map(redacted_value).collect()),
        other => other.clone(),
    }
}

/// A storage driver as [`Drivers`] knows it: reads the parameters of a
/// location that names it, and opens the storage of what it read. Every
/// built-in driver is one; an embedder implements it for its own (with
/// `#[stowage::async_trait]` on the impl) and registers it with
/// [`Drivers::register`].
#[async_trait]
pub trait DriverFactory: Send + Sync + 'static {
    /// The checked configuration of one location, kept in its
    /// [`Location`] as [`DriverConfig::Custom`] (see [`CustomConfig::get`]).
    type Config: fmt::Debug + Send + Sync + 'static;

    /// Reads and checks the parameters of one location, opening nothing
    /// (files the parameters name may be read). Runs when a configuration
    /// is read with the driver set, and before [`Drivers::open`] opens a
    /// location that was read without it.
    ///
    /// # Errors
    /// Every problem found, each with its key path: read with
    /// [`DriverParams::reader`] and end with [`Params::finish_with`], which
    /// reports unknown keys too.
    fn read(&self, params: &DriverParams) -> Result<Self::Config, ConfigErrors>;

    /// Builds the storage of a location from what [`DriverFactory::read`]
    /// returned.
    ///
    /// # Errors
    /// Whatever the driver fails with when starting: [`Error::Config`] for
    /// a configuration it cannot start with (an unusable directory), a
    /// backend error for a service it cannot reach.
    async fn open(&self, config: &Self::Config) -> Result<Arc<dyn Storage>>;
}

/// A value of any driver's configuration type.
trait AnyConfig: Any + fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + fmt::Debug + Send + Sync> AnyConfig for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The configuration of a location whose driver was registered with
/// [`Drivers::register`]: what that driver's [`DriverFactory::read`]
/// returned, and the parameters it read it from.
#[derive(Clone)]
pub struct CustomConfig {
    params: DriverParams,
    config: Arc<dyn AnyConfig>,
}

impl CustomConfig {
    /// `config`, read from `params`.
    pub fn new<T: fmt::Debug + Send + Sync + 'static>(params: DriverParams, config: T) -> Self {
        let config: Arc<dyn AnyConfig> = Arc::new(config);
        Self { params, config }
    }

    /// The driver name the location gives.
    pub fn driver(&self) -> &str {
        self.params.driver()
    }

    /// The parameters the configuration was read from.
    pub fn params(&self) -> &DriverParams {
        &self.params
    }

    /// The driver's configuration, when it is a `T` (the `Config` of the
    /// factory that read it).
    pub fn get<T: 'static>(&self) -> Option<&T> {
        (*self.config).as_any().downcast_ref::<T>()
    }
}

impl fmt::Debug for CustomConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomConfig")
            .field("driver", &self.params.driver())
            .field("config", &self.config)
            .finish()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the table holds: a factory whose configurations are
/// [`DriverConfig`]s.
trait Entry: Send + Sync {
    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors>;
    fn open<'a>(&'a self, location: &'a Location) -> BoxFuture<'a, Result<Arc<dyn Storage>>>;
}

/// A built-in driver: its configurations are [`DriverConfig`] variants of
/// their own, which callers can match.
struct BuiltIn<F>(F);

impl<F: DriverFactory<Config = DriverConfig>> Entry for BuiltIn<F> {
    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        self.0.read(params)
    }

    fn open<'a>(&'a self, location: &'a Location) -> BoxFuture<'a, Result<Arc<dyn Storage>>> {
        Box::pin(async move {
            match &location.driver {
                // Read by a driver registered under this name in another
                // set: read again from the parameters.
                DriverConfig::Custom(custom) => {
                    let config = self.0.read(custom.params()).map_err(Error::Config)?;
                    self.0.open(&config).await
                }
                config => self.0.open(config).await,
            }
        })
    }
}

/// An embedder's driver: its configurations are kept as
/// [`DriverConfig::Custom`].
struct Registered<F>(F);

impl<F: DriverFactory> Entry for Registered<F> {
    fn read(&self, params: &DriverParams) -> Result<DriverConfig, ConfigErrors> {
        let config = self.0.read(params)?;
        Ok(DriverConfig::Custom(CustomConfig::new(
            params.clone(),
            config,
        )))
    }

    fn open<'a>(&'a self, location: &'a Location) -> BoxFuture<'a, Result<Arc<dyn Storage>>> {
        Box::pin(async move {
            let DriverConfig::Custom(custom) = &location.driver else {
                return Err(read_elsewhere(location));
            };
            if let Some(config) = custom.get::<F::Config>() {
                return self.0.open(config).await;
            }
            // Read by another driver of the same name: read again.
            let config = self.0.read(custom.params()).map_err(Error::Config)?;
            self.0.open(&config).await
        })
    }
}

/// The refusal of a location read by a built-in driver whose name an
/// embedder's driver has taken in this set: its parameters are not kept.
fn read_elsewhere(location: &Location) -> Error {
    let mut errs = ConfigErrors::default();
    errs.push(
        format!("{STORAGE_CONFIG}.{}[0]", location.name),
        format!(
            "location {:?} was read by the built-in {} driver, which this driver set replaces: \
             read the configuration with this driver set",
            location.name,
            location.driver.driver_name()
        ),
    );
    Error::Config(errs)
}

/// One name of the table.
#[derive(Clone)]
struct Registration {
    name: String,
    built_in: bool,
    entry: Arc<dyn Entry>,
}

/// A set of drivers keyed by Quay driver name: the built-in ones
/// ([`Drivers::with_builtin`]) and those an embedder registers.
///
/// ```no_run
/// # async fn demo(my_factory: impl stowage::DriverFactory) -> stowage::Result<()> {
/// use stowage::{Drivers, StowageConfig};
/// let drivers = Drivers::with_builtin().register("MyStorage", my_factory);
/// let config = StowageConfig::from_file_with(&drivers, "config.yaml".as_ref())?;
/// let storage = drivers.open(config.location(None)?).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Drivers {
    entries: Vec<Registration>,
}

impl fmt::Debug for Drivers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drivers")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl Drivers {
    /// A set without any driver: every location is kept as
    /// [`DriverConfig::Unsupported`] until a set that has its driver opens
    /// it.
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The drivers built into this crate ([`crate::BUILT_IN_DRIVERS`], as
    /// the cargo features select them).
    pub fn with_builtin() -> Self {
        let mut drivers = Self::empty();
        crate::factory::register_builtin(&mut drivers);
        drivers
    }

    /// This set with `factory` as the driver of locations named `name`,
    /// replacing a driver of that name (a built-in one included: the
    /// locations it reads are then [`DriverConfig::Custom`]).
    #[must_use]
    pub fn register(mut self, name: impl Into<String>, factory: impl DriverFactory) -> Self {
        self.insert(name.into(), false, Arc::new(Registered(factory)));
        self
    }

    /// Registers a built-in driver, whose configurations are variants of
    /// their own.
    pub(crate) fn add_builtin<F: DriverFactory<Config = DriverConfig>>(
        &mut self,
        name: &str,
        factory: F,
    ) {
        self.insert(name.to_string(), true, Arc::new(BuiltIn(factory)));
    }

    fn insert(&mut self, name: String, built_in: bool, entry: Arc<dyn Entry>) {
        let registration = Registration {
            name,
            built_in,
            entry,
        };
        let found = self
            .entries
            .iter()
            .position(|r| r.name == registration.name);
        match found {
            Some(i) => self.entries[i] = registration,
            None => self.entries.push(registration),
        }
    }

    /// The driver names of the set, in the order they were registered.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|r| r.name.as_str())
    }

    /// Whether the set has a driver named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    fn entry(&self, name: &str) -> Option<&dyn Entry> {
        self.entries
            .iter()
            .find(|r| r.name == name)
            .map(|r| &*r.entry)
    }

    /// Reads `params` with the driver they name; `None` when the set has
    /// no driver of that name.
    pub(crate) fn read(&self, params: &DriverParams) -> Option<Result<DriverConfig, ConfigErrors>> {
        self.entry(params.driver()).map(|entry| entry.read(params))
    }

    /// The drivers of the set, for messages: `built in: A, B` and, when an
    /// embedder registered some, `; registered: C`.
    pub(crate) fn available(&self) -> String {
        let names = |built_in: bool| {
            self.entries
                .iter()
                .filter(|r| r.built_in == built_in)
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let registered = names(false);
        if registered.is_empty() {
            format!("built in: {}", names(true))
        } else {
            format!("built in: {}; registered: {registered}", names(true))
        }
    }

    /// Builds the storage of `location` with the driver its configuration
    /// names. A location kept as [`DriverConfig::Unsupported`] (read
    /// without this driver) is read first, with every problem reported.
    ///
    /// # Errors
    /// [`Error::Config`] when the set has no driver of that name (naming
    /// the driver, the location with its key path and the drivers of the
    /// set) or when the parameters have problems; whatever the driver fails
    /// with when starting.
    pub async fn open(&self, location: &Location) -> Result<Arc<dyn Storage>> {
        let driver = location.driver.driver_name();
        let Some(entry) = self.entry(driver) else {
            return Err(unsupported_error(&location.name, driver, &self.available()));
        };
        match &location.driver {
            DriverConfig::Unsupported(params) => {
                let config = entry.read(params).map_err(Error::Config)?;
                let read = Location::new(location.name.clone(), config);
                entry.open(&read).await
            }
            _ => entry.open(location).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set_registers_every_built_in_driver_in_order() {
        let drivers = Drivers::with_builtin();
        assert_eq!(
            drivers.names().collect::<Vec<_>>(),
            crate::BUILT_IN_DRIVERS.to_vec()
        );
        assert_eq!(
            drivers.available(),
            format!("built in: {}", crate::BUILT_IN_DRIVERS.join(", "))
        );
    }

    #[test]
    fn debug_hides_values_of_secret_looking_keys_at_any_depth() {
        let values: Map<String, Value> = serde_json::from_str(
            r#"{"bucket": "b", "Access_Key": "AK", "nested": {"sas_token": "sv=1",
                "list": [{"password": "pw"}, "plain"]}, "shared_secret": {"a": 1},
                "credentials_file": "/k.json"}"#,
        )
        .unwrap();
        let shown = format!("{:?}", DriverParams::new("loc", "X", values));
        for hidden in ["AK", "sv=1", "pw", "\"a\"", "/k.json"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        for kept in ["\"bucket\":\"b\"", "plain", "Access_Key", "sas_token"] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }

    #[test]
    fn a_registered_name_replaces_the_built_in_one_in_place() {
        #[derive(Debug)]
        struct Nothing;
        #[async_trait]
        impl DriverFactory for Nothing {
            type Config = ();
            fn read(&self, _params: &DriverParams) -> Result<(), ConfigErrors> {
                Ok(())
            }
            async fn open(&self, _config: &()) -> Result<Arc<dyn Storage>> {
                Err(Error::Unsupported {
                    operation: "open",
                    driver: "nothing",
                })
            }
        }
        let drivers = Drivers::with_builtin().register("LocalStorage", Nothing);
        assert_eq!(
            drivers.names().collect::<Vec<_>>(),
            crate::BUILT_IN_DRIVERS.to_vec()
        );
        assert!(drivers.available().ends_with("; registered: LocalStorage"));
        let read = drivers
            .read(&DriverParams::new("l", "LocalStorage", Map::new()))
            .expect("registered")
            .expect("no problems");
        let DriverConfig::Custom(custom) = &read else {
            panic!("custom expected: {read:?}")
        };
        assert_eq!(custom.get::<()>(), Some(&()));
        assert_eq!(custom.driver(), "LocalStorage");
    }
}
