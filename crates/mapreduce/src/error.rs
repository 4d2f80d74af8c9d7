//! The one error type of the MapReduce library.

use std::path::PathBuf;

/// Everything that can go wrong in a job, as a value. Messages are written for the person who
/// ran the job: they name the file, the task or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum MrError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("input file {} cannot be read", path.display())]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "input file {} has a line at offset {offset} longer than {limit} bytes, the most a map task \
         holds at once (half its memory budget; raise --memory-mb)",
        path.display()
    )]
    LineTooLong {
        path: PathBuf,
        offset: u64,
        limit: usize,
    },
    #[error("output directory {} is not empty (use --force to replace its part files)", .0.display())]
    OutputNotEmpty(PathBuf),
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("unknown application {0:?} (built in: wc, ii, grep)")]
    UnknownApp(String),
    #[error("application error: {0}")]
    App(String),
    #[error("corrupt intermediate file {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("job failed: {0}")]
    JobFailed(String),
    #[error("network: {0}")]
    Net(String),
}

impl MrError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| MrError::Io { what, path, source }
    }
}

pub type Result<T, E = MrError> = std::result::Result<T, E>;
