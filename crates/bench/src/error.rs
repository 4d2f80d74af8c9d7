//! Why a benchmark run failed.

/// A failed operation, connection or argument.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] synod_client::ClientError),
    #[error("Redis protocol: {0}")]
    Resp(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("{0}")]
    Workload(String),
    #[error("a client task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
