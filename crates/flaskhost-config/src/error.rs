//! [`ConfigError`]: every way loading the configuration can fail, each naming the option,
//! where its value came from and what is wrong with it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::options::{env_var_for, option_info};

/// Where a value, or an unknown key, came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// flaskhost's built-in default.
    Default,
    /// A config file, by path.
    File(PathBuf),
    /// An environment variable, by name (`FLASKHOST_TIMEOUT`, `VIRTUAL_ENV`).
    Env(String),
    /// A command-line flag, by name (`--timeout`).
    Cli(String),
    /// Not known; only possible if figment loses a value's tag.
    Unknown,
}

impl fmt::Display for Origin {
    /// Formats the origin as the end of a sentence: "invalid value for `x` {origin}".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("from the built-in default"),
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(var) => write!(f, "from environment variable {var}"),
            Origin::Cli(flag) => write!(f, "from command-line flag {flag}"),
            Origin::Unknown => f.write_str("from an unknown source"),
        }
    }
}

/// A configuration error. The binary exits with 64 (`EX_USAGE`) on any of these.
///
/// Every message names the option (and, for the environment, the variable), where the value
/// came from and what is wrong, so that it can be printed as-is. Causes are part of the
/// message rather than an error `source()`, so printing the chain does not repeat them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key that is not an option, in the config file or a `FLASKHOST_*` variable.
    #[error("unknown option `{key}` {origin}{}", Suggestion(.suggestion, .origin))]
    UnknownKey {
        /// The key as written, converted to kebab-case for environment variables.
        key: String,
        /// Where the key was found.
        origin: Origin,
        /// The closest option, if one is close enough to be a likely typo.
        suggestion: Option<&'static str>,
    },

    /// A value that does not parse or is out of range.
    #[error("invalid value for `{key}` {origin}: {reason}")]
    InvalidValue {
        /// The option, kebab-case.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong, quoting the value and showing accepted forms.
        reason: String,
    },

    /// A required option that no source gives.
    #[error("missing required option `{key}`: {}", HowToSet(.key))]
    MissingRequired {
        /// The option, kebab-case.
        key: &'static str,
    },

    /// A config file that was named explicitly (`--config`, `FLASKHOST_CONFIG`) but does not
    /// exist. A missing `./flaskhost.toml` is not an error: it is only used if it exists.
    #[error("config file {} does not exist (named {origin})", path.display())]
    FileNotFound {
        /// The path as given.
        path: PathBuf,
        /// What named the file.
        origin: Origin,
    },

    /// A config file that exists but cannot be read.
    #[error("cannot read config file {}: {error}", path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error; already part of the message.
        error: io::Error,
    },

    /// A config file that is not valid TOML.
    #[error("cannot parse config file {}{}: {message}", path.display(), At(.line, .column))]
    FileInvalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the error, when the parser reports one.
        line: Option<usize>,
        /// The 1-based column of the error, when the parser reports one.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
}

impl ConfigError {
    /// The option this error is about, kebab-case, when there is one.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::InvalidValue { key, .. } => {
                Some(key)
            }
            ConfigError::MissingRequired { key } => Some(key),
            ConfigError::FileNotFound { .. }
            | ConfigError::FileUnreadable { .. }
            | ConfigError::FileInvalid { .. } => None,
        }
    }

    /// Where the faulty value or key came from, when the error is about one.
    #[must_use]
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::UnknownKey { origin, .. } | ConfigError::InvalidValue { origin, .. } => {
                Some(origin)
            }
            _ => None,
        }
    }
}

/// "; did you mean ...?" in the spelling of the source the unknown key came from.
struct Suggestion<'a>(&'a Option<&'static str>, &'a Origin);

impl fmt::Display for Suggestion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (*self.0, self.1) {
            (None, _) => Ok(()),
            (Some(key), Origin::Env(_)) => {
                write!(f, "; did you mean {} (`{key}`)?", env_var_for(key))
            }
            (Some(key), Origin::Cli(_)) => write!(f, "; did you mean --{key}?"),
            (Some(key), _) => write!(f, "; did you mean `{key}`?"),
        }
    }
}

/// The three ways to set an option, with an example from the option table.
struct HowToSet<'a>(&'a str);

impl fmt::Display for HowToSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.0;
        write!(
            f,
            "set it with --{key}, {}, or in flaskhost.toml",
            env_var_for(key)
        )?;
        if let Some(info) = option_info(key) {
            write!(f, " (example: {})", info.example)?;
        }
        Ok(())
    }
}

/// " at line L, column C" when known.
struct At<'a>(&'a Option<usize>, &'a Option<usize>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (*self.0, *self.1) {
            (Some(line), Some(column)) => write!(f, " at line {line}, column {column}"),
            (Some(line), None) => write!(f, " at line {line}"),
            _ => Ok(()),
        }
    }
}

/// The option key closest to `unknown`, if it is close enough to be a typo: at most one edit
/// per three characters (at least one), counting a swap of neighbours as one edit.
pub(crate) fn suggest(unknown: &str) -> Option<&'static str> {
    let normalized = unknown.to_ascii_lowercase().replace('_', "-");
    let limit = (normalized.chars().count() / 3).max(1);
    crate::OPTIONS
        .iter()
        .map(|info| (edit_distance(&normalized, info.key), info.key))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Optimal-string-alignment distance: Levenshtein plus transposition of adjacent characters,
/// so `wrokers` is one edit from `workers`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j] is the distance between a[..i] and b[..j]; three rows suffice because a
    // transposition looks back two rows.
    let mut two_back: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(two_back[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut two_back, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("workers", "workers"), 0);
        assert_eq!(edit_distance("wrokers", "workers"), 1);
        assert_eq!(edit_distance("worker", "workers"), 1);
        assert_eq!(edit_distance("", "app"), 3);
        assert_eq!(edit_distance("timeout", "timout"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("wrokers"), Some("workers"));
        assert_eq!(suggest("queue_size"), Some("queue-size"));
        assert_eq!(suggest("thread"), Some("threads"));
        assert_eq!(suggest("max-body"), None);
        assert_eq!(suggest("foo"), None);
        assert_eq!(suggest("x"), None);
    }

    #[test]
    fn messages_name_key_and_origin() {
        let error = ConfigError::UnknownKey {
            key: "wrokers".into(),
            origin: Origin::File("/etc/flaskhost.toml".into()),
            suggestion: Some("workers"),
        };
        assert_eq!(
            error.to_string(),
            "unknown option `wrokers` in /etc/flaskhost.toml; did you mean `workers`?"
        );
        let error = ConfigError::UnknownKey {
            key: "wrokers".into(),
            origin: Origin::Env("FLASKHOST_WROKERS".into()),
            suggestion: Some("workers"),
        };
        assert_eq!(
            error.to_string(),
            "unknown option `wrokers` from environment variable FLASKHOST_WROKERS; \
             did you mean FLASKHOST_WORKERS (`workers`)?"
        );
        let error = ConfigError::MissingRequired { key: "app" };
        assert_eq!(
            error.to_string(),
            "missing required option `app`: set it with --app, FLASKHOST_APP, or in \
             flaskhost.toml (example: app = \"wsgi:application\")"
        );
        let error = ConfigError::FileInvalid {
            path: "f.toml".into(),
            line: Some(3),
            column: Some(7),
            message: "expected `=`".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot parse config file f.toml at line 3, column 7: expected `=`"
        );
    }
}
