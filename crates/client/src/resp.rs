//! The clients as [`Backend`]s of the Redis-protocol front, so a server's `--resp` port
//! forwards Redis commands through the same at-most-once client a program would use.

use synod_kvpaxos::{KvOp, KvReply};
use synod_net::limits;
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

/// What a command is told whose batch was given up before it was answered (see
/// `coalesce`): its outcome is unknown.
pub(crate) fn abandoned() -> Result<Reply, BackendError> {
    Err(BackendError::Unavailable(
        "the batch carrying the command was given up; it may or may not have been applied".into(),
    ))
}

impl Backend for KvClient {
    /// A single command leaves with the other single commands of its kind in flight (reads,
    /// answered after one barrier without a log entry, or writes, one log entry), as one
    /// batch: a front's many connections share requests.
    async fn run(&self, command: Command) -> Result<Reply, BackendError> {
        let batch = |commands: Vec<Command>| async move {
            match <[Command; 1]>::try_from(commands) {
                Ok([command]) => vec![self.redis(command).await.map_err(backend_error)],
                Err(commands) => self.run_batch(commands).await,
            }
        };
        self.together
            .run(command.writes(), command, batch, abandoned)
            .await
    }

    /// One request, one log entry, per run of commands whose keys and values fit
    /// [`limits::BATCH_BYTES`] together (and as much of it as the reply could carry, then
    /// the rest, in order). A request refused whole at the edge (one of its values too
    /// large, or the store full) is run again one command at a time, so each gets its own
    /// answer: the reads and small writes still succeed.
    async fn run_batch(&self, commands: Vec<Command>) -> Vec<Result<Reply, BackendError>> {
        let mut answers = Vec::with_capacity(commands.len());
        let mut rest = commands.as_slice();
        while !rest.is_empty() {
            let ops = rest[..within_batch_bytes(rest)]
                .iter()
                .cloned()
                .map(KvOp::Redis)
                .collect();
            match self.call_batch(ops).await {
                Ok(replies) => {
                    let done = replies.len();
                    answers.extend(replies.into_iter().map(answer));
                    rest = &rest[done..];
                }
                Err(ClientError::TooLarge(_) | ClientError::OutOfMemory { .. }) => {
                    // Alone, not through `run`: this may be a batch of `run`'s own.
                    for command in rest {
                        answers.push(self.redis(command.clone()).await.map_err(backend_error));
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

/// How many of `commands`, from the first, one request carries: at least one, and more
/// while their keys and values fit [`limits::BATCH_BYTES`] together.
fn within_batch_bytes(commands: &[Command]) -> usize {
    let mut bytes = 0;
    let fitting = commands
        .iter()
        .take_while(|command| {
            bytes += command.payload_bytes();
            bytes <= limits::BATCH_BYTES
        })
        .count();
    fitting.max(1)
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
