//! The clients as [`Backend`]s of the Redis-protocol front, so a server's `--resp` port
//! forwards Redis commands through the same at-most-once client a program would use.

use synod_kvpaxos::{KvOp, KvReply};
use synod_resp::{Backend, BackendError, Command, Reply};

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
    async fn run(&self, command: Command) -> Result<Reply, BackendError> {
        self.redis(command).await.map_err(backend_error)
    }

    /// One request, one log entry, for the whole batch (or for as much of it as the reply
    /// could carry, then the rest, in order). A batch refused whole at the edge (one of its
    /// values too large, or the store full) is run again one command at a time, so each
    /// gets its own answer: the reads and small writes still succeed.
    async fn run_batch(&self, commands: Vec<Command>) -> Vec<Result<Reply, BackendError>> {
        let mut answers = Vec::with_capacity(commands.len());
        let mut rest = commands.as_slice();
        while !rest.is_empty() {
            let ops = rest.iter().cloned().map(KvOp::Redis).collect();
            match self.call_batch(ops).await {
                Ok(replies) => {
                    let done = replies.len();
                    answers.extend(replies.into_iter().map(answer));
                    rest = &rest[done..];
                }
                Err(ClientError::TooLarge(_) | ClientError::OutOfMemory { .. }) => {
                    for command in rest {
                        answers.push(self.run(command.clone()).await);
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

    async fn replication(&self) -> Vec<(String, String)> {
        self.replication_info().await
    }
}

/// The answer to one command in a batch's reply.
fn answer(reply: KvReply) -> Result<Reply, BackendError> {
    match reply {
        KvReply::Redis(reply) => Ok(reply),
        KvReply::TooLarge(refused) => Err(BackendError::TooLarge(refused.to_string())),
        other => Err(BackendError::Unavailable(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

impl Backend for PbClient {
    async fn run(&self, command: Command) -> Result<Reply, BackendError> {
        self.redis(command).await.map_err(backend_error)
    }
}
