//! Pieces every driver's configuration uses: a parameter reader that
//! collects all problems with their key paths, and a secret type that never
//! prints its value.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// One problem in a configuration, with the full key path it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug)]
pub struct Params<'a> {
    path: String,
    map: &'a Map<String, Value>,
    asked: BTreeSet<String>,
    problems: ConfigErrors,
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

    /// A required string value; records "missing" when absent.
    pub fn required_string(&mut self, key: &str) -> Option<String> {
        let v = self.string(key);
        if v.is_none() && !self.map.contains_key(key) {
            self.problem(key, "required key is missing");
        }
        v
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

    /// A number (a number or a numeric string).
    pub fn f64(&mut self, key: &str) -> Option<f64> {
        match self.raw(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
            other => {
                self.problem(key, format!("expected a number, found {}", show(other)));
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
        if let Some(path) = file {
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

    /// A filesystem path.
    pub fn path(&mut self, key: &str) -> Option<PathBuf> {
        self.string(key).map(PathBuf::from)
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
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
