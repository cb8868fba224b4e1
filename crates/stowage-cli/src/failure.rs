//! A command's failure: a message and an exit code.

/// Exit code of a failed operation.
pub(crate) const OPERATION_FAILED: u8 = 1;
/// Exit code of a usage or configuration error.
pub(crate) const USAGE: u8 = 2;

/// Why a command failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: USAGE,
            message: message.into(),
        }
    }

    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            code: OPERATION_FAILED,
            message: message.into(),
        }
    }
}

impl From<stowage::Error> for Failure {
    fn from(e: stowage::Error) -> Self {
        let code = match e.kind() {
            stowage::ErrorKind::InvalidConfig | stowage::ErrorKind::InvalidPath => USAGE,
            _ => OPERATION_FAILED,
        };
        Self {
            code,
            message: e.chain(),
        }
    }
}
