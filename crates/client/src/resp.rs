//! The clients as [`Backend`]s of the Redis-protocol front, so a server's `--resp` port
//! forwards `GET`/`SET`/`APPEND` through the same at-most-once client a program would use.

use synod_kvpaxos::{KvOp, KvReply};
use synod_resp::{run_one, Answer, Backend, BackendError, Op};

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

    /// One request, one log entry, for the whole batch (or for as much of it as the reply
    /// could carry, then the rest, in order). A batch refused whole at the edge (one of its
    /// values too large, or the store full) is run again one operation at a time, so each
    /// gets its own answer: the reads and small writes still succeed.
    async fn run_batch(&self, ops: Vec<Op>) -> Vec<Result<Answer, BackendError>> {
        let mut answers = Vec::with_capacity(ops.len());
        let mut rest = ops.as_slice();
        while !rest.is_empty() {
            let kv_ops = rest.iter().cloned().map(kv_op).collect();
            match self.call_batch(kv_ops).await {
                Ok(replies) => {
                    let done = replies.len();
                    answers.extend(rest.iter().zip(replies).map(answer));
                    rest = &rest[done..];
                }
                Err(ClientError::TooLarge(_) | ClientError::OutOfMemory { .. }) => {
                    for op in rest {
                        answers.push(run_one(self, op.clone()).await);
                    }
                    break;
                }
                Err(e) => {
                    let e = backend_error(e);
                    answers.extend(rest.iter().map(|_| Err(e.clone())));
                    break;
                }
            }
        }
        answers
    }
}

pub(crate) fn kv_op(op: Op) -> KvOp {
    match op {
        Op::Get { key } => KvOp::Get { key },
        Op::Set { key, value } => KvOp::Put { key, value },
        Op::Append { key, value } => KvOp::Append { key, value },
    }
}

/// The answer to `op` in a batch's reply.
fn answer((op, reply): (&Op, KvReply)) -> Result<Answer, BackendError> {
    match (op, reply) {
        (Op::Get { .. }, KvReply::Value(value)) => Ok(Answer::Value(Some(value))),
        (Op::Set { .. }, KvReply::Written { .. }) => Ok(Answer::Set),
        (Op::Append { .. }, KvReply::Written { len }) => Ok(Answer::Appended(Some(len))),
        (_, KvReply::TooLarge(refused)) => Err(BackendError::TooLarge(refused.to_string())),
        (_, other) => Err(BackendError::Unavailable(format!(
            "unexpected reply {other:?}"
        ))),
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
