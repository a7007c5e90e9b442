//! The library's error type. Each variant knows which exit code it maps to, so the CLI edge can stay
//! a thin `anyhow` wrapper while scripts still get the documented exit codes.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is wrong. The message already names the file, line and key.
    #[error("{0}")]
    Config(String),

    /// The command line asks for something that cannot be done (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// An input file could not be found, opened, or decoded.
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },

    /// Writing results failed. The I/O error is the source: `{:#}` at the CLI edge prints it once
    /// after the path (putting it in this message as well printed it twice).
    #[error("writing {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Encoding Parquet failed.
    #[error("writing {path}: {reason}")]
    Parquet { path: PathBuf, reason: String },

    /// The run finished its work, but the input had more problems than the user allowed.
    #[error("{0}")]
    InputProblems(String),

    /// A checkpoint cannot be used.
    #[error("{0}")]
    Checkpoint(String),

    /// `--resume` was refused: nothing in the out dir was touched (exit code 2).
    #[error("{0}")]
    Resume(String),

    /// The run held more memory than `--memory-limit` allows (exit code 1).
    #[error("{0}")]
    MemoryLimit(String),

    /// Stopped by a signal after a final checkpoint.
    #[error("{0}")]
    Interrupted(String),
}

impl Error {
    /// Exit codes are part of the interface (README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Resume(_) => 2,
            Error::InputProblems(_) => 3,
            Error::Interrupted(_) => 130,
            _ => 1,
        }
    }

    pub fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn output(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Output {
            path: path.into(),
            source,
        }
    }
}
