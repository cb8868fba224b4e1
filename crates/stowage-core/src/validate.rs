//! `validate()`: what a driver checks about itself, reported step by step.

use std::fmt;

use bytes::Bytes;

use crate::{Error, PutOptions, Storage, StorageExt, StoragePath};

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckStatus {
    /// It worked.
    Ok,
    /// It works, but not the preferred way (e.g. falling back).
    Degraded,
    /// It failed.
    Failed,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failed => "FAILED",
        })
    }
}

/// One step of a validation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it went.
    pub status: CheckStatus,
    /// Details: what was seen, or precisely what failed.
    pub detail: String,
}

/// The result of [`Storage::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationReport {
    /// The driver.
    pub driver: &'static str,
    /// The steps, in order.
    pub checks: Vec<Check>,
    /// Facts worth showing (bucket, role, credential expiry, key id, ...).
    pub facts: Vec<(String, String)>,
}

impl ValidationReport {
    /// An empty report.
    pub fn new(driver: &'static str) -> Self {
        Self {
            driver,
            checks: Vec::new(),
            facts: Vec::new(),
        }
    }

    /// Whether no check failed.
    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Failed)
    }

    /// Adds a check.
    pub fn check(
        &mut self,
        name: impl Into<String>,
        status: CheckStatus,
        detail: impl Into<String>,
    ) {
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }

    /// Adds a failed check for `error`.
    pub fn fail(&mut self, name: impl Into<String>, error: &Error) {
        self.check(name, CheckStatus::Failed, error.chain());
    }

    /// Adds a fact.
    pub fn fact(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.facts.push((key.into(), value.into()));
    }

    /// Puts `other`'s checks and facts before this report's.
    pub fn prepend(&mut self, mut other: ValidationReport) {
        other.checks.append(&mut self.checks);
        other.facts.append(&mut self.facts);
        self.checks = other.checks;
        self.facts = other.facts;
    }
}

/// Writes, stats, reads back and deletes a probe object, stopping at the
/// first failing step (and still trying to delete the probe).
pub async fn probe<S: Storage + ?Sized>(storage: &S) -> ValidationReport {
    let mut report = ValidationReport::new(storage.driver());
    let path = StoragePath::parse(format!(
        "_stowage_validate/{}",
        uuid::Uuid::new_v4().simple()
    ))
    .expect("valid probe path");
    let body = Bytes::from(format!("stowage validation probe {path}\n").repeat(16));

    match storage
        .put(&path, body.clone(), PutOptions::default())
        .await
    {
        Ok(_) => report.check("write probe object", CheckStatus::Ok, path.to_string()),
        Err(e) => {
            report.fail("write probe object", &e);
            return report;
        }
    }
    let steps_ok = async {
        match storage.stat(&path).await {
            Ok(m) if m.size == body.len() as u64 => report.check(
                "stat probe object",
                CheckStatus::Ok,
                format!("{} bytes", m.size),
            ),
            Ok(m) => {
                report.check(
                    "stat probe object",
                    CheckStatus::Failed,
                    format!("size is {}, wrote {}", m.size, body.len()),
                );
                return false;
            }
            Err(e) => {
                report.fail("stat probe object", &e);
                return false;
            }
        }
        match storage.get_bytes(&path).await {
            Ok(b) if b == body => {
                report.check("read probe object", CheckStatus::Ok, "content matches")
            }
            Ok(_) => {
                report.check(
                    "read probe object",
                    CheckStatus::Failed,
                    "content differs from what was written",
                );
                return false;
            }
            Err(e) => {
                report.fail("read probe object", &e);
                return false;
            }
        }
        true
    }
    .await;
    match storage.delete(&path).await {
        Ok(()) => match storage.exists(&path).await {
            Ok(false) => report.check("delete probe object", CheckStatus::Ok, ""),
            Ok(true) => report.check(
                "delete probe object",
                CheckStatus::Failed,
                "still there after delete",
            ),
            Err(e) => report.fail("delete probe object", &e),
        },
        Err(e) => report.fail("delete probe object", &e),
    }
    let _ = steps_ok;
    report
}
