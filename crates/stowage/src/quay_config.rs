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
    /// A location whose driver stowage does not implement (Quay's
    /// `GoogleCloudStorage`, `SwiftStorage`, ..., or an unknown name). It
    /// blocks no other location: it is refused only when selected, opened
    /// or validated ([`Location::check_supported`]). Its parameters are not
    /// kept: they may hold secrets.
    Unsupported {
        /// The driver name as the file gives it.
        driver: String,
    },
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
    /// Quay's name of the driver (as the file gives it for an unsupported
    /// one).
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
            Self::Unsupported { driver } => driver.as_str(),
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

impl Location {
    /// `Ok` when stowage can serve this location; for a driver it does not
    /// implement, the refusal: [`Error::Config`] naming the driver, the
    /// location with its key path and the drivers that are built in.
    ///
    /// # Errors
    /// [`Error::Config`] for [`DriverConfig::Unsupported`].
    pub fn check_supported(&self) -> Result<()> {
        match &self.driver {
            DriverConfig::Unsupported { driver } => Err(unsupported_error(&self.name, driver)),
            _ => Ok(()),
        }
    }
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
        // Relative file names in the locations (key files, `*_file`
        // secrets) are relative to the config file, as in Quay's config
        // bundle.
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::parse_with_base(&text, Some(dir.as_path()))
    }

    /// Parses YAML or JSON text (JSON is YAML). Relative file names in the
    /// locations resolve against the current directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with_base(text, None)
    }

    /// Parses YAML or JSON text whose relative file names (key files,
    /// `*_file` secrets, token files) resolve against `base_dir`, as those
    /// of a config file do against its directory.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem found.
    pub fn parse_in(text: &str, base_dir: &Path) -> Result<Self> {
        Self::parse_with_base(text, Some(base_dir))
    }

    fn parse_with_base(text: &str, base_dir: Option<&Path>) -> Result<Self> {
        let mut errs = ConfigErrors::default();
        let yaml: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                errs.push("<file>", format!("not valid YAML or JSON: {e}"));
                return Err(Error::Config(errs));
            }
        };
        // JSON has no NaN or infinity: they would turn into null (an absent
        // key) on the way. Name them instead.
        non_finite_numbers(&yaml, "", &mut errs);
        if !errs.is_empty() {
            return Err(Error::Config(errs));
        }
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
        let config = Self::from_map(&root, base_dir, &mut errs);
        errs.into_result(config)
    }

    fn from_map(
        root: &Map<String, Value>,
        base_dir: Option<&Path>,
        errs: &mut ConfigErrors,
    ) -> Self {
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
                    if let Some(loc) = parse_location(name, entry, base_dir, errs) {
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
    /// by that name, or naming the driver, the location and the built-in
    /// drivers when stowage does not implement its driver
    /// ([`Location::check_supported`]).
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

fn map_keys(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::Object(m)) => m.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

fn parse_location(
    name: &str,
    entry: &Value,
    base_dir: Option<&Path>,
    errs: &mut ConfigErrors,
) -> Option<Location> {
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
    let mut reader = Params::new(format!("{key}[1]"), params);
    if let Some(dir) = base_dir {
        reader = reader.with_base_dir(dir);
    }
    match parse_driver(driver, reader) {
        Ok(Some(config)) => Some(Location {
            name: name.to_string(),
            driver: config,
        }),
        // Kept, without its parameters, and refused only when used: one
        // location stowage cannot serve blocks no other.
        Ok(None) => Some(Location {
            name: name.to_string(),
            driver: DriverConfig::Unsupported {
                driver: driver.to_string(),
            },
        }),
        Err(problems) => {
            errs.extend(problems);
            None
        }
    }
}

/// The refusal of location `name`, whose driver `driver` stowage does not
/// implement (or this binary does not build in): names the driver, the
/// location with its key path and the built-in drivers; never a parameter.
pub(crate) fn unsupported_error(name: &str, driver: &str) -> Error {
    let built_in = crate::factory::BUILT_IN_DRIVERS.join(", ");
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
            "{what} (location {name:?}); built in: {built_in}; the other locations of the \
             file can be used"
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

/// Records every NaN or infinite number in `value` with its key path
/// (`DISTRIBUTED_STORAGE_CONFIG.loc[1].minimum_chunk_size_mb`).
fn non_finite_numbers(value: &serde_yaml_ng::Value, path: &str, errs: &mut ConfigErrors) {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => errs.push(
            if path.is_empty() { "<file>" } else { path },
            format!("{n} is not a finite number"),
        ),
        Y::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                non_finite_numbers(item, &format!("{path}[{i}]"), errs);
            }
        }
        Y::Mapping(map) => {
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let next = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                non_finite_numbers(v, &next, errs);
            }
        }
        Y::Tagged(t) => non_finite_numbers(&t.value, path, errs),
        _ => {}
    }
}
