//! Pieces every driver's configuration uses: a parameter reader that
//! collects all problems with their key paths, and a secret type that never
//! prints its value.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// One problem in a configuration, with the full key path it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigProblem {
    /// Where: e.g. `DISTRIBUTED_STORAGE_CONFIG.default[1].s3_bucket`.
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration (never empty when returned as an
/// error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl ConfigErrors {
    /// Adds a problem.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    /// Records a problem at `key` when `value`, the count `field` of a
    /// configuration, is outside `range`: how a configuration's own check
    /// (`problems()`) names a count built in code.
    pub fn check_count(&mut self, key: &str, field: &str, value: u64, range: RangeInclusive<u64>) {
        if !range.contains(&value) {
            self.push(
                key,
                format!(
                    "{field} is {value}: use {} to {}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    /// Records a problem at `key` when `value`, the size in bytes `field`
    /// of a configuration, is outside `range` (sizes shown in GiB, MiB or
    /// KiB when whole).
    pub fn check_size(&mut self, key: &str, field: &str, value: u64, range: RangeInclusive<u64>) {
        if !range.contains(&value) {
            self.push(
                key,
                format!(
                    "{field} is {}: use {} to {}",
                    show_size(value),
                    show_size(*range.start()),
                    show_size(*range.end())
                ),
            );
        }
    }

    /// Records a problem at `key` when `value`, the duration `field` of a
    /// configuration, is zero or longer than `max`.
    pub fn check_duration(&mut self, key: &str, field: &str, value: Duration, max: Duration) {
        if value.is_zero() || value > max {
            self.push(
                key,
                format!("{field} is {value:?}: use above zero up to {max:?}"),
            );
        }
    }

    /// `Ok(value)` when there are no problems, else the problems as an error.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when any problem was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, crate::Error> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(crate::Error::Config(self))
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A size for a message: whole GiB, MiB or KiB when it is one, else bytes.
fn show_size(bytes: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

/// `text` as an `http://` or `https://` URL with a host (parsed with
/// `url::Url`, surrounding spaces ignored): the one check of URL settings,
/// whether read from a file ([`Params::http_url`]) or set in code (a
/// configuration's `problems()`).
///
/// # Errors
/// Why `text` is not one, quoting it.
pub fn parse_http_url(text: &str) -> Result<url::Url, String> {
    match url::Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        Ok(_) => Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        )),
        Err(e) => Err(format!(
            "{text:?} is not a URL ({e}); e.g. https://host:port"
        )),
    }
}

/// A driver configuration read from one location's parameters:
/// `from_params` is written once, here; each driver writes `read_params`.
pub trait FromParams: Sized {
    /// Reads the driver's keys, recording every problem in `params`;
    /// `None` when a problem was recorded.
    fn read_params(params: &mut Params<'_>) -> Option<Self>;

    /// Reads the parameters of a location, reporting unknown keys too:
    /// every problem at once, each with its key path, never a panic.
    ///
    /// # Errors
    /// Every problem found.
    fn from_params(mut params: Params<'_>) -> Result<Self, ConfigErrors> {
        let parsed = Self::read_params(&mut params);
        params.finish_with(parsed)
    }
}

/// A secret (key, password): `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for handing to an SDK. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads one location's parameters (a JSON/YAML map), recording every
/// problem instead of stopping at the first.
///
/// Every key asked for is remembered, so [`Params::finish`] can report keys
/// nobody asked for as unknown, listing the accepted ones.
///
/// Relative file names ([`Params::path`], the `{key}_file` form of
/// [`Params::secret`], [`Params::resolve_path`]) resolve against the base
/// directory when one is set ([`Params::with_base_dir`]: the directory of
/// the config file), else against the current directory.
///
/// `Debug` shows the key path and the key names, never a value (the map
/// may hold inline secrets, and problems may quote values).
pub struct Params<'a> {
    path: String,
    map: &'a Map<String, Value>,
    asked: BTreeSet<String>,
    problems: ConfigErrors,
    base_dir: Option<PathBuf>,
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params")
            .field("path", &self.path)
            .field("keys", &self.map.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> Params<'a> {
    /// A reader of `map`, whose keys live at `path` (e.g.
    /// `DISTRIBUTED_STORAGE_CONFIG.default[1]`).
    pub fn new(path: impl Into<String>, map: &'a Map<String, Value>) -> Self {
        Self {
            path: path.into(),
            map,
            asked: BTreeSet::new(),
            problems: ConfigErrors::default(),
            base_dir: None,
        }
    }

    /// Resolves relative file names against `dir` (the directory of the
    /// config file) instead of the current directory.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// The directory relative file names resolve against (`None`: the
    /// current directory).
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    /// `file` resolved against the base directory when it is relative;
    /// absolute paths (and every path without a base directory) as given.
    pub fn resolve_path(&self, file: impl AsRef<Path>) -> PathBuf {
        let file = file.as_ref();
        match &self.base_dir {
            Some(base) if file.is_relative() && !file.as_os_str().is_empty() => base.join(file),
            _ => file.to_path_buf(),
        }
    }

    /// The full key path of `key`.
    pub fn key_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// Records a problem at `key`.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key_path(key);
        self.problems.push(key, message);
    }

    fn raw(&mut self, key: &str) -> Option<&'a Value> {
        self.asked.insert(key.to_string());
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Whether `key` is present (and not null).
    pub fn has(&mut self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// Every key asked for so far: after a driver's reader ran on any map,
    /// the keys that driver accepts (the docs test checks each is
    /// documented).
    pub fn asked_keys(&self) -> Vec<String> {
        self.asked.iter().cloned().collect()
    }

    /// Records each of `problems` whose key has no problem recorded yet.
    /// Their keys are relative to this location, as a configuration's own
    /// check gives them (`S3Config::problems`, which a configuration built
    /// in code is refused with): how a reader runs that same check on the
    /// configuration it built without naming a key twice.
    pub fn extend_unreported(&mut self, problems: ConfigErrors) {
        let reported: BTreeSet<String> = self.problems.0.iter().map(|p| p.key.clone()).collect();
        for p in problems.0 {
            let key = self.key_path(&p.key);
            if !reported.contains(&key) {
                self.problems.push(key, p.message);
            }
        }
    }

    /// How many problems were recorded so far (a reader compares before and
    /// after to know whether its keys were all good).
    pub fn problem_count(&self) -> usize {
        self.problems.0.len()
    }

    /// Whether any key of the map starts with `prefix` (e.g. `sts_`: a
    /// location asks for STS credentials). Asks for no key.
    pub fn has_key_starting_with(&self, prefix: &str) -> bool {
        self.map.keys().any(|k| k.starts_with(prefix))
    }

    /// A string value.
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.problem(key, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// A required string value; records "missing" when absent and "has no
    /// value" when present but null or empty (`s3_bucket:` with nothing
    /// after it).
    pub fn required_string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            None => {
                self.asked.insert(key.to_string());
                self.problem(key, "required key is missing");
                None
            }
            Some(Value::Null) => {
                self.asked.insert(key.to_string());
                self.problem(key, "required key has no value");
                None
            }
            Some(_) => {
                let v = self.string(key)?;
                if v.trim().is_empty() {
                    self.problem(key, "required key has no value");
                    return None;
                }
                Some(v)
            }
        }
    }

    /// A non-negative integer (a number or a numeric string).
    pub fn u64(&mut self, key: &str) -> Option<u64> {
        match self.raw(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::String(s) if s.trim().parse::<u64>().is_ok() => s.trim().parse().ok(),
            other => {
                self.problem(
                    key,
                    format!("expected a non-negative integer, found {}", show(other)),
                );
                None
            }
        }
    }

    /// A finite number (a number or a numeric string); NaN and infinities
    /// are recorded as problems.
    pub fn f64(&mut self, key: &str) -> Option<f64> {
        let raw = self.raw(key)?;
        let n = match raw {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.problem(
                    key,
                    format!("expected a finite number, found {}", show(raw)),
                );
                None
            }
        }
    }

    /// A boolean (`true`/`false`, or the strings `true`/`false`/`yes`/`no`).
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => {
                    self.problem(key, format!("expected true or false, found {s:?}"));
                    None
                }
            },
            other => {
                self.problem(
                    key,
                    format!("expected true or false, found {}", show(other)),
                );
                None
            }
        }
    }

    /// A list of strings (a YAML list, or one string).
    pub fn string_list(&mut self, key: &str) -> Option<Vec<String>> {
        match self.raw(key)? {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.problem(
                            &format!("{key}[{i}]"),
                            format!("expected a string, found {}", kind(other)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    key,
                    format!("expected a list of strings, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of nested maps (e.g. a list of keys, each with its fields).
    pub fn list_of_maps(&mut self, key: &str) -> Option<Vec<&'a Map<String, Value>>> {
        match self.raw(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(m) => out.push(m),
                        other => self.problem(
                            &format!("{key}[{i}]"),
                            format!("expected a map, found {}", kind(other)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    key,
                    format!("expected a list of maps, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A nested map.
    pub fn map(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.raw(key)? {
            Value::Object(m) => Some(m),
            other => {
                self.problem(key, format!("expected a map, found {}", kind(other)));
                None
            }
        }
    }

    /// A secret, given inline as `key`, as a file path in `key_file`, or as
    /// the name of an environment variable in `key_env` (at most one).
    pub fn secret(&mut self, key: &str) -> Option<Secret> {
        let inline = self.string(key);
        let file_key = format!("{key}_file");
        let env_key = format!("{key}_env");
        let file = self.string(&file_key);
        let env = self.string(&env_key);
        let given = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given > 1 {
            self.problem(
                key,
                format!("give the secret only one way: {key}, {file_key} or {env_key}"),
            );
            return None;
        }
        if let Some(v) = inline {
            return Some(Secret::new(v));
        }
        if let Some(file) = file {
            let path = self.resolve_path(&file);
            return match std::fs::read_to_string(&path) {
                Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_string())),
                Err(e) => {
                    self.problem(&file_key, format!("cannot read {path:?}: {e}"));
                    None
                }
            };
        }
        if let Some(var) = env {
            return match std::env::var(&var) {
                Ok(s) => Some(Secret::new(s)),
                Err(_) => {
                    self.problem(&env_key, format!("environment variable {var:?} is not set"));
                    None
                }
            };
        }
        None
    }

    /// An integer within `range` (the problem names the range).
    pub fn u64_in(&mut self, key: &str, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
        let n = self.u64(key)?;
        if range.contains(&n) {
            Some(n)
        } else {
            self.problem(
                key,
                format!(
                    "{n} is out of range: use {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }

    /// One of `choices` (name, value), matched without regard to case; the
    /// problem lists the accepted names.
    pub fn one_of<T: Clone>(&mut self, key: &str, choices: &[(&str, T)]) -> Option<T> {
        let given = self.string(key)?;
        if let Some((_, v)) = choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(given.trim()))
        {
            return Some(v.clone());
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.problem(
            key,
            format!("{given:?} is not accepted: use one of {}", names.join(", ")),
        );
        None
    }

    /// An `http://` or `https://` URL, parsed with `url::Url` (a trailing
    /// `/` is dropped from a bare host).
    pub fn http_url(&mut self, key: &str) -> Option<url::Url> {
        let text = self.string(key)?;
        match parse_http_url(&text) {
            Ok(url) => Some(url),
            Err(why) => {
                self.problem(key, why);
                None
            }
        }
    }

    /// An id and its secret that go together (`s3_access_key` +
    /// `s3_secret_key`): both or neither; one alone is a problem at `id_key`.
    pub fn key_pair(&mut self, id_key: &str, secret_key: &str) -> Option<(String, Secret)> {
        let id = self.string(id_key);
        let secret = self.secret(secret_key);
        match (id, secret) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => {
                self.problem(
                    id_key,
                    format!("{id_key} and {secret_key} go together; give both or neither"),
                );
                None
            }
        }
    }

    /// A filesystem path, resolved against the base directory when
    /// relative (see [`Params::with_base_dir`]).
    pub fn path(&mut self, key: &str) -> Option<PathBuf> {
        let file = self.string(key)?;
        Some(self.resolve_path(file))
    }

    /// [`Params::finish`], then the value a reader returned: how every
    /// driver's `from_params` ends. A reader that returned `None` without
    /// recording a problem is reported as one (never a panic).
    ///
    /// # Errors
    /// Every problem found, when there is any.
    pub fn finish_with<T>(self, parsed: Option<T>) -> Result<T, ConfigErrors> {
        let path = self.path.clone();
        self.finish()?;
        parsed.ok_or_else(|| {
            let mut errs = ConfigErrors::default();
            errs.push(path, "incomplete configuration");
            errs
        })
    }

    /// Reports unknown keys (with the accepted keys) and returns all
    /// problems recorded.
    ///
    /// # Errors
    /// Every problem found, when there is any.
    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        let accepted: Vec<&str> = self.asked.iter().map(String::as_str).collect();
        let accepted = accepted.join(", ");
        for key in self.map.keys() {
            if !self.asked.contains(key) {
                let path = format!("{}.{key}", self.path);
                self.problems
                    .push(path, format!("unknown key; accepted keys: {accepted}"));
            }
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems)
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem_and_unknown_keys() {
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"a": "x", "n": "nope", "b": [1], "typo": 1, "s": "inline", "s_env": "X"}"#,
        )
        .unwrap();
        let mut p = Params::new("loc", &map);
        assert_eq!(p.string("a").as_deref(), Some("x"));
        assert_eq!(p.u64("n"), None);
        assert_eq!(p.bool("b"), None);
        assert!(p.required_string("needed").is_none());
        assert!(p.secret("s").is_none());
        let errs = p.finish().unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 5, "{text}");
        assert!(text.contains("loc.n: expected a non-negative integer, found \"nope\""));
        assert!(text.contains("loc.b: expected true or false"));
        assert!(text.contains("loc.needed: required key is missing"));
        assert!(text.contains("loc.s: give the secret only one way"));
        assert!(text
            .contains("loc.typo: unknown key; accepted keys: a, b, n, needed, s, s_env, s_file"));
    }

    #[test]
    fn required_key_present_without_value_is_a_problem_not_a_panic() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"a": null, "b": "", "c": "  ", "d": "ok"}"#).unwrap();
        let mut p = Params::new("loc", &map);
        assert_eq!(p.required_string("a"), None);
        assert_eq!(p.required_string("b"), None);
        assert_eq!(p.required_string("c"), None);
        assert_eq!(p.required_string("d").as_deref(), Some("ok"));
        let errs = p.finish().unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 3, "{text}");
        for k in ["a", "b", "c"] {
            assert!(
                text.contains(&format!("loc.{k}: required key has no value")),
                "{text}"
            );
        }
        assert!(
            !text.contains("unknown key"),
            "null keys count as asked: {text}"
        );
    }

    #[test]
    fn non_finite_numbers_are_refused_with_their_key() {
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"nan": "NaN", "inf": "inf", "big": "1e400", "neg": "-infinity", "ok": "2.5", "n": 1e300}"#,
        )
        .unwrap();
        let mut p = Params::new("loc", &map);
        for k in ["nan", "inf", "big", "neg"] {
            assert_eq!(p.f64(k), None, "{k}");
        }
        assert_eq!(p.f64("ok"), Some(2.5));
        assert_eq!(p.f64("n"), Some(1e300), "large but finite is a number");
        let errs = p.finish().unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 4, "{text}");
        for k in ["nan", "inf", "big", "neg"] {
            assert!(
                text.contains(&format!("loc.{k}: expected a finite number")),
                "{text}"
            );
        }
    }

    #[test]
    fn relative_file_names_resolve_against_the_base_dir() {
        let dir =
            std::env::temp_dir().join(format!("stowage-params-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret.txt"), "from-file\n").unwrap();
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"key": "keys/cf.pem", "abs": "/etc/abs.pem", "s_file": "secret.txt"}"#,
        )
        .unwrap();
        let mut p = Params::new("loc", &map).with_base_dir(&dir);
        assert_eq!(p.base_dir(), Some(dir.as_path()));
        assert_eq!(p.path("key"), Some(dir.join("keys/cf.pem")));
        assert_eq!(p.path("abs"), Some(PathBuf::from("/etc/abs.pem")));
        assert_eq!(
            p.secret("s").map(|s| s.expose().to_string()).as_deref(),
            Some("from-file")
        );
        assert_eq!(p.resolve_path("x"), dir.join("x"));
        p.finish().unwrap();

        let mut p = Params::new("loc", &map);
        assert_eq!(
            p.path("key"),
            Some(PathBuf::from("keys/cf.pem")),
            "without a base: the current directory"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn helpers_name_what_is_wrong() {
        let map: Map<String, Value> = serde_json::from_str(
            r#"{"n": 70, "mode": "Fast", "bad_mode": "warp", "u": "https://h:9000/", "v": "ftp://h", "w": "not a url", "ak": "x"}"#,
        )
        .unwrap();
        let mut p = Params::new("loc", &map);
        assert_eq!(p.u64_in("n", 1..=64), None);
        assert_eq!(p.one_of("mode", &[("fast", 1), ("slow", 2)]), Some(1));
        assert_eq!(p.one_of("bad_mode", &[("fast", 1), ("slow", 2)]), None);
        assert_eq!(p.http_url("u").unwrap().port(), Some(9000));
        assert!(p.http_url("v").is_none() && p.http_url("w").is_none());
        assert!(p.key_pair("ak", "sk").is_none());
        let text = p.finish().unwrap_err().to_string();
        assert!(
            text.contains("loc.n: 70 is out of range: use 1 to 64"),
            "{text}"
        );
        assert!(text.contains("use one of fast, slow"), "{text}");
        assert!(text.contains("loc.v:") && text.contains("loc.w:"), "{text}");
        assert!(text.contains("loc.ak: ak and sk go together"), "{text}");
    }

    #[test]
    fn params_debug_shows_key_names_only() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"s3_secret_key": "hunter2", "s3_bucket": "b"}"#).unwrap();
        let mut p = Params::new("loc", &map);
        let _ = p.u64("s3_secret_key");
        let debug = format!("{p:?}");
        assert!(
            debug.contains("s3_secret_key") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn a_configurations_own_check_adds_only_keys_not_reported() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"n": "x"}"#).unwrap();
        let mut p = Params::new("loc", &map);
        assert_eq!(p.u64("n"), None);
        let mut own = ConfigErrors::default();
        own.push("n", "again");
        own.check_count("c", "count", 0, 1..=4);
        own.check_size("s", "size", 1 << 20, 5 << 20..=5 << 30);
        own.check_duration("d", "timeout", Duration::ZERO, Duration::from_secs(60));
        p.extend_unreported(own);
        let text = p.finish().unwrap_err().to_string();
        assert!(!text.contains("again"), "{text}");
        assert!(text.contains("loc.c: count is 0: use 1 to 4"), "{text}");
        assert!(
            text.contains("loc.s: size is 1 MiB: use 5 MiB to 5 GiB"),
            "{text}"
        );
        assert!(text.contains("loc.d: timeout is 0ns"), "{text}");
        assert!(parse_http_url("x y")
            .unwrap_err()
            .contains("\"x y\" is not a URL"));
        assert!(parse_http_url(" https://h:9000 ").is_ok());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
