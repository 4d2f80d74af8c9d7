//! The clients as [`Backend`]s of the Redis-protocol front, so a server's `--resp` port
//! forwards `GET`/`SET`/`APPEND` through the same at-most-once client a program would use.

use synod_resp::{Backend, BackendError};

use crate::{ClientError, KvClient, PbClient};

pub(crate) fn backend_error(e: ClientError) -> BackendError {
    match e {
        ClientError::Timeout(_) | ClientError::NoPrimary { .. } => {
            tracing::debug!(reason = %e, "RESP operation not answered");
            BackendError::Timeout
        }
        ClientError::TooLarge(refused) => BackendError::TooLarge(refused.to_string()),
        ClientError::OutOfMemory { .. } => BackendError::OutOfMemory,
        other => BackendError::Unavailable(other.to_string()),
    }
}

impl Backend for KvClient {
    async fn get(&self, key: String) -> Result<Option<String>, BackendError> {
        KvClient::get(self, key)
            .await
            .map(Some)
            .map_err(backend_error)
    }

    async fn put(&self, key: String, value: String) -> Result<(), BackendError> {
        KvClient::put(self, key, value).await.map_err(backend_error)
    }

    async fn append(&self, key: String, value: String) -> Result<Option<u64>, BackendError> {
        KvClient::append(self, key, value)
            .await
            .map(Some)
            .map_err(backend_error)
    }
}

/// The primary/backup service does not report an appended value's length, so `APPEND`
/// answers `+OK`.
impl Backend for PbClient {
    async fn get(&self, key: String) -> Result<Option<String>, BackendError> {
        PbClient::get(self, key)
            .await
            .map(Some)
            .map_err(backend_error)
    }

    async fn put(&self, key: String, value: String) -> Result<(), BackendError> {
        PbClient::put(self, key, value).await.map_err(backend_error)
    }

    async fn append(&self, key: String, value: String) -> Result<Option<u64>, BackendError> {
        PbClient::append(self, key, value)
            .await
            .map(|()| None)
            .map_err(backend_error)
    }
}
