//! nats.conf parsing.
//!
//! [`parse_file`] / [`parse_str`] turn nats-server's config format into a
//! [`Value`] tree with positions; [`apply`] maps a tree onto [`Options`];
//! [`load_file`] does both.

mod accounts_block;
pub mod cluster;
pub mod duration;
mod jetstream;
pub mod lexer;
mod operator;
mod options_map;
pub mod parser;
mod read;
mod security;
mod tls_block;
pub mod value;
mod whole_file;

use std::path::Path;

pub use options_map::{apply, NOT_SUPPORTED_KEYS};
pub use value::{to_conf_string, Entry, Kind, Map, Pos, Value};

use crate::options::Options;

/// Everything that can go wrong reading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("error opening config file {path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid nats.conf syntax.
    #[error("{pos}: {msg}")]
    Syntax {
        /// Where.
        pos: Pos,
        /// What.
        msg: String,
    },
    /// A `$VAR` could not be resolved.
    #[error("{pos}: variable reference for '{name}' {reason}")]
    Variable {
        /// Where the reference is.
        pos: Pos,
        /// The variable name (without `$`).
        name: String,
        /// Why it failed.
        reason: String,
    },
    /// An included file failed.
    #[error("{pos}: error parsing include file '{path}': {source}")]
    Include {
        /// Where the include is.
        pos: Pos,
        /// The include path as written.
        path: String,
        /// The error inside it.
        #[source]
        source: Box<ConfigError>,
    },
    /// A nats-server option this broker does not implement yet.
    #[error("{pos}: \"{key}\" is not supported yet")]
    Unsupported {
        /// Position of the key.
        pos: Pos,
        /// The key as written.
        key: String,
    },
    /// A key nats-server does not know: an error, as nats-server makes it.
    #[error("{pos}: {prefix}unknown field {key:?}")]
    UnknownField {
        /// Position of the key.
        pos: Pos,
        /// The key as written.
        key: String,
        /// nats-server's block-specific lead-in (`error parsing tls config, `), or empty.
        prefix: &'static str,
    },
    /// A known option with a bad value.
    #[error("{pos}: {msg}")]
    Value {
        /// Position of the key.
        pos: Pos,
        /// The key as written.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// The file defines nothing (nats-server refuses such a file).
    #[error("{file}: config has no values or is empty")]
    Empty {
        /// The file.
        file: String,
    },
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parse config text (`file` names it in positions; includes are relative to the current directory).
pub fn parse_str(input: &str, file: &str) -> Result<Map, ConfigError> {
    parser::parse_str(input, file, Path::new(""), &process_env)
}

/// Read and parse a config file; `$VAR`s fall back to the process environment.
pub fn parse_file(path: impl AsRef<Path>) -> Result<Map, ConfigError> {
    parser::parse_file(path.as_ref(), &process_env)
}

/// Load a config file onto default [`Options`]; returns the options and warnings.
pub fn load_file(path: impl AsRef<Path>) -> Result<(Options, Vec<String>), ConfigError> {
    let path = path.as_ref();
    let map = parse_file(path)?;
    if map.is_empty() {
        return Err(ConfigError::Empty {
            file: path.display().to_string(),
        });
    }
    let mut opts = Options {
        config_file: Some(path.to_path_buf()),
        ..Options::default()
    };
    let warnings = apply(&map, &mut opts)?;
    Ok((opts, warnings))
}
