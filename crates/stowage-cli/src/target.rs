//! `cp` arguments: `LOCATION:PATH` names storage, anything else the local
//! disk (`-` for stdin/stdout).

use std::path::PathBuf;

use stowage::StowageConfig;

/// One end of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A local file, or stdin/stdout for `-`.
    Local(PathBuf),
    /// A path in a configured location.
    Storage { location: String, path: String },
}

impl Target {
    /// Parses an argument: a configured location name before the first `:`
    /// makes it a storage target.
    pub(crate) fn parse(arg: &str, config: &StowageConfig) -> Self {
        if let Some((location, path)) = arg.split_once(':') {
            if config.locations.iter().any(|l| l.name == location) {
                return Self::Storage {
                    location: location.to_string(),
                    path: path.to_string(),
                };
            }
        }
        Self::Local(PathBuf::from(arg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_prefix_makes_a_storage_target() {
        let cfg = StowageConfig::embedded_default();
        assert_eq!(
            Target::parse("local:a/b:c", &cfg),
            Target::Storage {
                location: "local".into(),
                path: "a/b:c".into()
            }
        );
        assert_eq!(
            Target::parse("other:x", &cfg),
            Target::Local("other:x".into())
        );
        assert_eq!(Target::parse("./f", &cfg), Target::Local("./f".into()));
    }
}
