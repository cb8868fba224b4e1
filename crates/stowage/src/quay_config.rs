//! Quay-format storage configuration: `DISTRIBUTED_STORAGE_CONFIG`, a map of
//! location name to `[DriverName, {params}]`, with
//! `DISTRIBUTED_STORAGE_PREFERENCE` and `DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS`.
//! Other keys of a Quay `config.yaml` are ignored, so the operator's file can
//! be used as it is.
//!
//! Every problem of a file is reported in one run, with its key path: what
//! JSON cannot hold (NaN, infinities, keys that are not strings) is named
//! where it is and the rest of the file is read on; each location's
//! parameters are read by its driver, which reports every problem and
//! unknown key; and an unknown driver name, which alone blocks nothing
//! (the location is refused only when used), is listed with the others when
//! the file has other problems, so that no fix uncovers another problem.

use std::path::Path;

use serde_json::{Map, Value};
use stowage_core::config::ConfigErrors;
use stowage_core::{Error, Result};

use crate::{DriverParams, Drivers};

/// The local directory used when there is no configuration at all.
pub const DEFAULT_LOCAL_PATH: &str = "./stowage-data";

pub(crate) const STORAGE_CONFIG: &str = "DISTRIBUTED_STORAGE_CONFIG";
const PREFERENCE: &str = "DISTRIBUTED_STORAGE_PREFERENCE";
const DEFAULT_LOCATIONS: &str = "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS";

/// One driver's validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DriverConfig {
    /// Quay's `LocalStorage`.
    Local(stowage_local::LocalConfig),
    /// Quay's `S3Storage`.
    #[cfg(feature = "s3")]
    S3(Box<stowage_s3::S3Config>),
    /// Quay's `STSS3Storage`.
    #[cfg(feature = "sts")]
    Sts(Box<stowage_sts::StsConfig>),
    /// Quay's `CloudFrontedS3Storage` (with STS credentials when the
    /// location has `sts_*` keys).
    #[cfg(feature = "cloudfront")]
    CloudFront(Box<CloudFrontLocation>),
    /// Quay's S3-compatible drivers (`RadosGWStorage`, `RHOCSStorage`,
    /// `IBMCloudStorage`), read with Quay's keys and run on the S3 driver.
    #[cfg(feature = "s3")]
    S3Compatible {
        /// Which of them the location names.
        driver: crate::S3CompatibleDriver,
        /// The S3 configuration the location runs on.
        config: Box<stowage_s3::S3Config>,
    },
    /// Quay's `AzureStorage`: a container of an Azure storage account.
    #[cfg(feature = "azure")]
    Azure(Box<stowage_azure::AzureConfig>),
    /// A location of a driver an embedder registered
    /// ([`Drivers::register`]), checked by that driver when the
    /// configuration was read with its driver set; opened with that set
    /// ([`Drivers::open`]).
    Custom(crate::CustomConfig),
    /// A location whose driver the driver set it was read with does not
    /// have (Quay's `SwiftStorage`, ..., a driver not built into this
    /// binary, or an unknown name), kept with its parameters. It blocks no
    /// other location: it is refused when selected, opened or validated
    /// ([`Location::check_supported`]), unless a driver set that has its
    /// driver opens it ([`Drivers::open`] reads the parameters then).
    /// `Debug` shows the values of secret-looking keys as `***`
    /// ([`DriverParams`]).
    Unsupported(DriverParams),
}

/// A `CloudFrontedS3Storage` location: the signing layer and its S3 bucket,
/// and the STS credentials of that bucket when configured.
#[cfg(feature = "cloudfront")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CloudFrontLocation {
    /// The CloudFront and S3 settings.
    pub cloudfront: stowage_cloudfront::CloudFrontConfig,
    /// STS credentials for the bucket (`sts_*` keys); `None`: the S3 keys
    /// or the SDK's default chain.
    #[cfg(feature = "sts")]
    pub sts: Option<stowage_sts::StsConfig>,
}

impl DriverConfig {
    /// Quay's name of the driver (as the file gives it for a custom or an
    /// unsupported one).
    pub fn driver_name(&self) -> &str {
        match self {
            Self::Local(_) => "LocalStorage",
            #[cfg(feature = "s3")]
            Self::S3(_) => "S3Storage",
            #[cfg(feature = "sts")]
            Self::Sts(_) => "STSS3Storage",
            #[cfg(feature = "cloudfront")]
            Self::CloudFront(_) => "CloudFrontedS3Storage",
            #[cfg(feature = "s3")]
            Self::S3Compatible { driver, .. } => driver.quay_name(),
            #[cfg(feature = "azure")]
            Self::Azure(_) => "AzureStorage",
            Self::Custom(custom) => custom.driver(),
            Self::Unsupported(params) => params.driver(),
        }
    }
}

/// A named storage location.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Location {
    /// Its name (the key in `DISTRIBUTED_STORAGE_CONFIG`).
    pub name: String,
    /// Its driver and parameters.
    pub driver: DriverConfig,
}

impl Location {
    /// The location `name` with `driver`.
    pub fn new(name: impl Into<String>, driver: DriverConfig) -> Self {
        Self {
            name: name.into(),
            driver,
        }
    }

    /// `Ok` when the location's driver was read by a driver of the set the
    /// configuration was read with; for [`DriverConfig::Unsupported`], the
    /// refusal: [`Error::Config`] naming the driver, the location with its
    /// key path and the built-in drivers.
    ///
    /// # Errors
    /// [`Error::Config`] for [`DriverConfig::Unsupported`].
    pub fn check_supported(&self) -> Result<()> {
        match &self.driver {
            DriverConfig::Unsupported(params) => Err(unsupported_error(
                &self.name,
                params.driver(),
                &Drivers::with_builtin().available(),
            )),
            _ => Ok(()),
        }
    }
}

/// All configured locations, in file order, and the preferences.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StowageConfig {
    /// The locations, in the order the file lists them.
    pub locations: Vec<Location>,
    /// `DISTRIBUTED_STORAGE_PREFERENCE` (empty when absent).
    pub preference: Vec<String>,
    /// `DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS` (empty when absent).
    pub default_locations: Vec<String>,
}

impl StowageConfig {
    /// `locations`, without preferences: the first is the default.
    pub fn new(locations: Vec<Location>) -> Self {
        Self {
            locations,
            preference: Vec::new(),
            default_locations: Vec::new(),
        }
    }

    /// The embedded default: one `LocalStorage` location named `local`
    /// under [`DEFAULT_LOCAL_PATH`].
    pub fn embedded_default() -> Self {
        let local = stowage_local::LocalConfig::new(DEFAULT_LOCAL_PATH);
        let mut config = Self::new(vec![Location::new("local", DriverConfig::Local(local))]);
        config.preference = vec!["local".into()];
        config
    }

    /// Reads a YAML or JSON file with the built-in drivers.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with(&Drivers::with_builtin(), path)
    }

    /// Reads a YAML or JSON file with the drivers of `drivers`. Relative
    /// file names in the locations (key files, `*_file` secrets) are
    /// relative to the file's directory, as in Quay's config bundle.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn from_file_with(drivers: &Drivers, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(
                path.display().to_string(),
                format!("cannot read the file: {e}"),
            );
            Error::Config(errs)
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::parse_with(drivers, &text, Some(dir.as_path()))
    }

    /// Parses YAML or JSON text (JSON is YAML) with the built-in drivers.
    /// Relative file names in the locations resolve against the current
    /// directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with(&Drivers::with_builtin(), text, None)
    }

    /// Parses YAML or JSON text whose relative file names (key files,
    /// `*_file` secrets, token files) resolve against `base_dir`, as those
    /// of a config file do against its directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn parse_in(text: &str, base_dir: &Path) -> Result<Self> {
        Self::parse_with(&Drivers::with_builtin(), text, Some(base_dir))
    }

    /// Parses YAML or JSON text with the drivers of `drivers`; relative
    /// file names resolve against `base_dir` (the bundle folder), else the
    /// current directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn parse_with(drivers: &Drivers, text: &str, base_dir: Option<&Path>) -> Result<Self> {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push("<file>", format!("not valid YAML or JSON: {e}"));
            Error::Config(errs)
        })?;
        let mut loader = Loader::new(drivers, base_dir);
        let root = yaml_to_json(&yaml, "", &mut loader.errs);
        let config = loader.read(&root);
        loader.finish(config)
    }

    /// Reads an already parsed configuration (a Quay `config.yaml` as a
    /// `serde_json::Value`; other keys are ignored) with the built-in
    /// drivers. Relative file names resolve against the current directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::from_value_with(&Drivers::with_builtin(), value, None)
    }

    /// Reads an already parsed configuration with the drivers of
    /// `drivers`; relative file names resolve against `base_dir` (the
    /// bundle folder), else the current directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn from_value_with(
        drivers: &Drivers,
        value: &Value,
        base_dir: Option<&Path>,
    ) -> Result<Self> {
        let mut loader = Loader::new(drivers, base_dir);
        let config = loader.read(value);
        loader.finish(config)
    }

    /// The location named `name`, or with `None` the first preferred one
    /// (else the first in the file).
    ///
    /// # Errors
    /// [`Error::Config`] naming the configured locations when there is none
    /// by that name, or naming the driver, the location and the built-in
    /// drivers when its driver was not read ([`Location::check_supported`]).
    pub fn location(&self, name: Option<&str>) -> Result<&Location> {
        let wanted = name.or(self.preference.first().map(String::as_str));
        let found = match wanted {
            Some(n) => self.locations.iter().find(|l| l.name == n),
            None => self.locations.first(),
        };
        if let Some(location) = found {
            location.check_supported()?;
        }
        found.ok_or_else(|| {
            let names: Vec<&str> = self.locations.iter().map(|l| l.name.as_str()).collect();
            let mut errs = ConfigErrors::default();
            errs.push(
                "--location",
                format!(
                    "no location named {:?}; configured: {}",
                    wanted.unwrap_or(""),
                    names.join(", ")
                ),
            );
            Error::Config(errs)
        })
    }
}

/// Reads one configuration, collecting every problem. A "soft" problem (an
/// unknown driver name) alone lets the file load; it is reported with the
/// others when there are others.
struct Loader<'a> {
    drivers: &'a Drivers,
    base_dir: Option<&'a Path>,
    errs: ConfigErrors,
    /// How many of `errs` are soft.
    soft: usize,
}

impl<'a> Loader<'a> {
    fn new(drivers: &'a Drivers, base_dir: Option<&'a Path>) -> Self {
        Self {
            drivers,
            base_dir,
            errs: ConfigErrors::default(),
            soft: 0,
        }
    }

    /// The configuration, unless a problem other than a soft one was found.
    fn finish(self, config: StowageConfig) -> Result<StowageConfig> {
        if self.errs.0.len() == self.soft {
            Ok(config)
        } else {
            Err(Error::Config(self.errs))
        }
    }

    fn read(&mut self, root: &Value) -> StowageConfig {
        match root {
            Value::Object(root) => self.read_map(root),
            _ => {
                self.errs.push("<file>", "expected a map at the top level");
                StowageConfig::new(Vec::new())
            }
        }
    }

    fn read_map(&mut self, root: &Map<String, Value>) -> StowageConfig {
        for key in root.keys() {
            if key.starts_with("DISTRIBUTED_STORAGE_")
                && ![STORAGE_CONFIG, PREFERENCE, DEFAULT_LOCATIONS].contains(&key.as_str())
            {
                self.errs.push(
                    key.clone(),
                    format!("unknown key; accepted: {STORAGE_CONFIG}, {PREFERENCE}, {DEFAULT_LOCATIONS}"),
                );
            }
        }
        let mut locations = Vec::new();
        match root.get(STORAGE_CONFIG) {
            None => self.errs.push(STORAGE_CONFIG, "required key is missing"),
            Some(Value::Object(map)) if map.is_empty() => self
                .errs
                .push(STORAGE_CONFIG, "no storage location is configured"),
            Some(Value::Object(map)) => {
                for (name, entry) in map {
                    if let Some(location) = self.location(name, entry) {
                        locations.push(location);
                    }
                }
            }
            Some(_) => self.errs.push(
                STORAGE_CONFIG,
                "expected a map of location name to [DriverName, {parameters}]",
            ),
        }
        let names: Vec<&str> = match root.get(STORAGE_CONFIG) {
            Some(Value::Object(map)) => map.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        let mut config = StowageConfig::new(locations);
        config.preference = location_list(root, PREFERENCE, &names, &mut self.errs);
        config.default_locations = location_list(root, DEFAULT_LOCATIONS, &names, &mut self.errs);
        config
    }

    /// One location; `None` when it has problems (recorded).
    fn location(&mut self, name: &str, entry: &Value) -> Option<Location> {
        let key = format!("{STORAGE_CONFIG}.{name}");
        let Value::Array(items) = entry else {
            self.errs.push(key, "expected [DriverName, {parameters}]");
            return None;
        };
        // The driver name and the parameters are checked independently:
        // a problem with one hides none of the other.
        let driver = match items.first() {
            Some(Value::String(d)) => Some(d.as_str()),
            _ => {
                self.errs.push(
                    format!("{key}[0]"),
                    "expected the driver name, e.g. LocalStorage",
                );
                None
            }
        };
        let values = match items.get(1) {
            Some(Value::Object(m)) => Some(m.clone()),
            None | Some(Value::Null) => Some(Map::new()),
            Some(_) => {
                self.errs
                    .push(format!("{key}[1]"), "expected a map of parameters");
                None
            }
        };
        if items.len() > 2 {
            self.errs.push(
                key.clone(),
                format!("expected 2 items, found {}", items.len()),
            );
        }
        let (driver, values) = (driver?, values?);
        let mut params = DriverParams::new(name, driver, values);
        if let Some(dir) = self.base_dir {
            params = params.with_base_dir(dir);
        }
        let config = match self.drivers.read(&params) {
            Some(Ok(config)) => config,
            Some(Err(problems)) => {
                self.errs.extend(problems);
                return None;
            }
            // Kept, and refused only when used: one location the driver
            // set cannot serve blocks no other.
            None => {
                if is_unknown(driver) {
                    self.soft += 1;
                    self.errs.push(
                        format!("{key}[0]"),
                        format!(
                            "unknown driver {driver:?}; {} (alone this would not stop the file \
                             from loading: the location would be refused when used)",
                            self.drivers.available()
                        ),
                    );
                }
                DriverConfig::Unsupported(params)
            }
        };
        Some(Location::new(name, config))
    }
}

/// Whether stowage knows nothing of `driver`: neither a driver it
/// implements (built in or not) nor one of Quay's it does not.
fn is_unknown(driver: &str) -> bool {
    !crate::factory::KNOWN_DRIVERS.contains(&driver)
        && !crate::factory::QUAY_ONLY_DRIVERS.contains(&driver)
}

/// The refusal of location `name`, whose driver `driver` the driver set
/// (whose drivers `available` lists) does not have: names the driver, the
/// location with its key path and the drivers; never a parameter.
pub(crate) fn unsupported_error(name: &str, driver: &str, available: &str) -> Error {
    let what = if crate::factory::KNOWN_DRIVERS.contains(&driver) {
        format!("driver {driver:?} is not built into this binary")
    } else if crate::factory::QUAY_ONLY_DRIVERS.contains(&driver) {
        format!("Quay driver {driver:?} is not supported by stowage")
    } else {
        format!("unknown driver {driver:?}")
    };
    let mut errs = ConfigErrors::default();
    errs.push(
        format!("{STORAGE_CONFIG}.{name}[0]"),
        format!(
            "{what} (location {name:?}); {available}; the other locations of the file can be used"
        ),
    );
    Error::Config(errs)
}

fn location_list(
    root: &Map<String, Value>,
    key: &str,
    names: &[&str],
    errs: &mut ConfigErrors,
) -> Vec<String> {
    let list = match root.get(key) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    _ => errs.push(format!("{key}[{i}]"), "expected a location name"),
                }
            }
            out
        }
        Some(_) => {
            errs.push(key, "expected a list of location names");
            return Vec::new();
        }
    };
    for (i, name) in list.iter().enumerate() {
        if !names.is_empty() && !names.contains(&name.as_str()) {
            errs.push(
                format!("{key}[{i}]"),
                format!(
                    "no location named {name:?} in {STORAGE_CONFIG}; configured: {}",
                    names.join(", ")
                ),
            );
        }
    }
    list
}

/// The JSON form of a YAML value, as `serde_json::to_value` makes it, except
/// that what JSON cannot hold is recorded in `errs` with its key path
/// (`DISTRIBUTED_STORAGE_CONFIG.loc[1].minimum_chunk_size_mb`) and the rest
/// is read on: a NaN or an infinity becomes null (an absent key, never 0),
/// an entry whose key is not a string, a number or a boolean is left out.
fn yaml_to_json(value: &serde_yaml_ng::Value, path: &str, errs: &mut ConfigErrors) -> Value {
    use serde_yaml_ng::Value as Y;
    let at = |path: &str| {
        if path.is_empty() {
            "<file>".to_string()
        } else {
            path.to_string()
        }
    };
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        errs.push(at(path), format!("{n} is not a finite number"));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| yaml_to_json(item, &format!("{path}[{i}]"), errs))
                .collect(),
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        let shown = serde_yaml_ng::to_string(other).unwrap_or_default();
                        errs.push(
                            at(path),
                            format!(
                                "a key must be a string, found {}; the entry is left out",
                                shown.trim()
                            ),
                        );
                        continue;
                    }
                };
                let next = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let v = yaml_to_json(v, &next, errs);
                out.insert(key, v);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let mut out = Map::new();
            out.insert(
                tagged.tag.to_string(),
                yaml_to_json(&tagged.value, path, errs),
            );
            Value::Object(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(String, String)> {
        match StowageConfig::parse(text) {
            Ok(_) => Vec::new(),
            Err(Error::Config(errs)) => errs.0.into_iter().map(|p| (p.key, p.message)).collect(),
            Err(other) => panic!("config error expected: {other}"),
        }
    }

    #[test]
    fn yaml_values_json_cannot_hold_are_named_and_the_rest_is_read() {
        let found = problems(
            "DISTRIBUTED_STORAGE_CONFIG:\n  a:\n    - LocalStorage\n    - {storage_path: /x, n: .inf}\n  b:\n    - LocalStorage\n    - ~: x\n      storage_pth: /y\n",
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        for expected in [
            "DISTRIBUTED_STORAGE_CONFIG.a[1].n",
            "DISTRIBUTED_STORAGE_CONFIG.b[1]",
            "DISTRIBUTED_STORAGE_CONFIG.b[1].storage_pth",
            "DISTRIBUTED_STORAGE_CONFIG.b[1].storage_path",
        ] {
            assert!(keys.contains(&expected), "{expected} missing: {found:?}");
        }
        assert!(
            found
                .iter()
                .any(|(_, m)| m.contains("a key must be a string")),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_driver_is_listed_only_with_other_problems() {
        let alone = "DISTRIBUTED_STORAGE_CONFIG:\n  a: [LocalStorage, {storage_path: /x}]\n  b: [NoSuchStorage, {}]\n";
        assert!(
            problems(alone).is_empty(),
            "an unknown driver alone blocks nothing"
        );
        let quay_only =
            "DISTRIBUTED_STORAGE_CONFIG:\n  a: [LocalStorage, {}]\n  b: [SwiftStorage, {}]\n";
        let found = problems(quay_only);
        assert_eq!(found.len(), 1, "Quay's drivers are not typos: {found:?}");
    }
}
