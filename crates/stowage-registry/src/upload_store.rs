//! The embedded store of blob uploads in progress: one small JSON file per
//! upload (repository + the trait's serializable [`UploadState`]), replaced
//! atomically, so an upload survives a restart of the server and can be
//! finished by another process sharing the directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use stowage::UploadState;

use crate::errors::{ErrorCode, RegistryError};

/// An upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The repository it was started in.
    pub repository: String,
    /// Where it stands.
    pub state: UploadState,
}

/// Upload records under one directory.
#[derive(Debug, Clone)]
pub struct UploadStore {
    dir: PathBuf,
}

fn io_error(what: &str, e: std::io::Error) -> RegistryError {
    RegistryError::new(ErrorCode::Unknown, format!("upload store: {what}: {e}"))
}

impl UploadStore {
    /// A store under `dir` (created when missing).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, id: &str) -> Option<PathBuf> {
        let ok = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| self.dir.join(format!("{id}.json")))
    }

    /// The record of upload `id` in `repository`.
    ///
    /// # Errors
    /// `BLOB_UPLOAD_UNKNOWN` when there is none (or it belongs to another
    /// repository).
    pub async fn get(&self, repository: &str, id: &str) -> Result<UploadRecord, RegistryError> {
        let unknown = || {
            RegistryError::new(
                ErrorCode::BlobUploadUnknown,
                format!("no upload {id:?} in {repository}"),
            )
        };
        let file = self.file(id).ok_or_else(unknown)?;
        let text = match tokio::fs::read_to_string(&file).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(io_error("read", e)),
        };
        let record: UploadRecord = serde_json::from_str(&text).map_err(|e| {
            RegistryError::new(ErrorCode::BlobUploadInvalid, format!("upload record: {e}"))
        })?;
        record
            .state
            .check()
            .map_err(|e| RegistryError::new(ErrorCode::BlobUploadInvalid, e.to_string()))?;
        if record.repository != repository {
            return Err(unknown());
        }
        Ok(record)
    }

    /// Saves a record (write to a temporary file, then rename).
    ///
    /// # Errors
    /// I/O failures.
    pub async fn put(&self, record: &UploadRecord) -> Result<(), RegistryError> {
        let file = self.file(&record.state.id).expect("state ids are hex");
        let tmp = file.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let json = serde_json::to_vec(record).expect("records serialize");
        tokio::fs::write(&tmp, json)
            .await
            .map_err(|e| io_error("write", e))?;
        tokio::fs::rename(&tmp, &file)
            .await
            .map_err(|e| io_error("rename", e))
    }

    /// Forgets an upload.
    ///
    /// # Errors
    /// I/O failures other than "already gone".
    pub async fn remove(&self, id: &str) -> Result<(), RegistryError> {
        let Some(file) = self.file(id) else {
            return Ok(());
        };
        match tokio::fs::remove_file(&file).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", e)),
        }
    }

    /// Records untouched for longer than `older_than` (their states), for
    /// cleanup.
    pub fn stale(&self, older_than: Duration) -> Vec<UploadRecord> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > older_than);
            if !old {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                if let Ok(record) = serde_json::from_str::<UploadRecord>(&text) {
                    out.push(record);
                }
            }
        }
        out
    }
}
