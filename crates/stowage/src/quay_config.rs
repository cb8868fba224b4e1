//! Quay-format storage configuration: `DISTRIBUTED_STORAGE_CONFIG`, a map of
//! location name to `[DriverName, {params}]`, with
//! `DISTRIBUTED_STORAGE_PREFERENCE` and `DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS`.
//! Other keys of a Quay `config.yaml` are ignored, so the operator's file can
//! be used as it is. Every problem is reported in one go, with its key path.

use std::path::Path;

use serde_json::{Map, Value};
use stowage_core::config::{ConfigErrors, Params};
use stowage_core::{Error, Result};

use crate::factory::parse_driver;

/// The local directory used when there is no configuration at all.
pub const DEFAULT_LOCAL_PATH: &str = "./stowage-data";

const STORAGE_CONFIG: &str = "DISTRIBUTED_STORAGE_CONFIG";
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
    /// Quay's `CloudFrontedS3Storage`.
    #[cfg(feature = "cloudfront")]
    CloudFront(Box<stowage_cloudfront::CloudFrontConfig>),
}

impl DriverConfig {
    /// Quay's name of the driver.
    pub fn driver_name(&self) -> &'static str {
        match self {
            Self::Local(_) => "LocalStorage",
            #[cfg(feature = "s3")]
            Self::S3(_) => "S3Storage",
            #[cfg(feature = "sts")]
            Self::Sts(_) => "STSS3Storage",
            #[cfg(feature = "cloudfront")]
            Self::CloudFront(_) => "CloudFrontedS3Storage",
        }
    }
}

/// A named storage location.
#[derive(Debug, Clone)]
pub struct Location {
    /// Its name (the key in `DISTRIBUTED_STORAGE_CONFIG`).
    pub name: String,
    /// Its driver and parameters.
    pub driver: DriverConfig,
}

/// All configured locations, in file order, and the preferences.
#[derive(Debug, Clone)]
pub struct StowageConfig {
    /// The locations, in the order the file lists them.
    pub locations: Vec<Location>,
    /// `DISTRIBUTED_STORAGE_PREFERENCE` (empty when absent).
    pub preference: Vec<String>,
    /// `DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS` (empty when absent).
    pub default_locations: Vec<String>,
}

impl StowageConfig {
    /// The embedded default: one `LocalStorage` location named `local`
    /// under [`DEFAULT_LOCAL_PATH`].
    pub fn embedded_default() -> Self {
        Self {
            locations: vec![Location {
                name: "local".into(),
                driver: DriverConfig::Local(stowage_local::LocalConfig::new(DEFAULT_LOCAL_PATH)),
            }],
            preference: vec!["local".into()],
            default_locations: Vec::new(),
        }
    }

    /// Reads a YAML or JSON file.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(
                path.display().to_string(),
                format!("cannot read the file: {e}"),
            );
            Error::Config(errs)
        })?;
        Self::parse(&text)
    }

    /// Parses YAML or JSON text (JSON is YAML).
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn parse(text: &str) -> Result<Self> {
        let mut errs = ConfigErrors::default();
        let yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                errs.push("<file>", format!("not valid YAML or JSON: {e}"));
                return Err(Error::Config(errs));
            }
        };
        let root = match serde_json::to_value(yaml) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                errs.push("<file>", "expected a map at the top level");
                return Err(Error::Config(errs));
            }
            Err(e) => {
                errs.push("<file>", format!("cannot be read as a map of strings: {e}"));
                return Err(Error::Config(errs));
            }
        };
        let config = Self::from_map(&root, &mut errs);
        errs.into_result(config)
    }

    fn from_map(root: &Map<String, Value>, errs: &mut ConfigErrors) -> Self {
        for key in root.keys() {
            if key.starts_with("DISTRIBUTED_STORAGE_")
                && ![STORAGE_CONFIG, PREFERENCE, DEFAULT_LOCATIONS].contains(&key.as_str())
            {
                errs.push(
                    key.clone(),
                    format!("unknown key; accepted: {STORAGE_CONFIG}, {PREFERENCE}, {DEFAULT_LOCATIONS}"),
                );
            }
        }
        let mut locations = Vec::new();
        match root.get(STORAGE_CONFIG) {
            None => errs.push(STORAGE_CONFIG, "required key is missing"),
            Some(Value::Object(map)) if map.is_empty() => {
                errs.push(STORAGE_CONFIG, "no storage location is configured")
            }
            Some(Value::Object(map)) => {
                for (name, entry) in map {
                    if let Some(loc) = parse_location(name, entry, errs) {
                        locations.push(loc);
                    }
                }
            }
            Some(_) => errs.push(
                STORAGE_CONFIG,
                "expected a map of location name to [DriverName, {parameters}]",
            ),
        }
        let names: Vec<&str> = map_keys(root.get(STORAGE_CONFIG));
        let preference = location_list(root, PREFERENCE, &names, errs);
        let default_locations = location_list(root, DEFAULT_LOCATIONS, &names, errs);
        Self {
            locations,
            preference,
            default_locations,
        }
    }

    /// The location named `name`, or with `None` the first preferred one
    /// (else the first in the file).
    ///
    /// # Errors
    /// [`Error::Config`] naming the configured locations when there is none
    /// by that name.
    pub fn location(&self, name: Option<&str>) -> Result<&Location> {
        let wanted = name.or(self.preference.first().map(String::as_str));
        let found = match wanted {
            Some(n) => self.locations.iter().find(|l| l.name == n),
            None => self.locations.first(),
        };
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

fn map_keys(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::Object(m)) => m.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

fn parse_location(name: &str, entry: &Value, errs: &mut ConfigErrors) -> Option<Location> {
    let key = format!("{STORAGE_CONFIG}.{name}");
    let Value::Array(items) = entry else {
        errs.push(key, "expected [DriverName, {parameters}]");
        return None;
    };
    let driver = match items.first() {
        Some(Value::String(d)) => d.as_str(),
        _ => {
            errs.push(
                format!("{key}[0]"),
                "expected the driver name, e.g. LocalStorage",
            );
            return None;
        }
    };
    let empty = Map::new();
    let params = match items.get(1) {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => &empty,
        Some(_) => {
            errs.push(format!("{key}[1]"), "expected a map of parameters");
            return None;
        }
    };
    if items.len() > 2 {
        errs.push(
            key.clone(),
            format!("expected 2 items, found {}", items.len()),
        );
    }
    match parse_driver(driver, Params::new(format!("{key}[1]"), params)) {
        Ok(Some(config)) => Some(Location {
            name: name.to_string(),
            driver: config,
        }),
        Ok(None) => {
            errs.push(format!("{key}[0]"), unknown_driver_message(driver));
            None
        }
        Err(problems) => {
            errs.extend(problems);
            None
        }
    }
}

fn unknown_driver_message(driver: &str) -> String {
    let built_in = crate::factory::BUILT_IN_DRIVERS.join(", ");
    if crate::factory::KNOWN_DRIVERS.contains(&driver) {
        format!("driver {driver:?} is not built into this binary; built in: {built_in}")
    } else {
        format!("unknown driver {driver:?}; built in: {built_in}")
    }
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
