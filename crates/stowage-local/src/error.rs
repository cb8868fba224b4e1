//! The one conversion from `object_store` errors into stowage errors.

use stowage_core::Error;

pub(crate) const DRIVER: &str = "local";

pub(crate) fn from_object_store(e: object_store::Error, path: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound {
            path: path.to_string(),
            source: Some(Box::new(e)),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::PermissionDenied {
            driver: DRIVER,
            message: format!("{path}: {e}"),
            operation: None,
            source: Some(Box::new(e)),
        },
        other => Error::backend(DRIVER, false, format!("{path}: operation failed"), other),
    }
}
