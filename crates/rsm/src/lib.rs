//! A Paxos-replicated state machine: the machinery every replicated service of synod shares.
//!
//! A service supplies a deterministic [`StateMachine`] (apply a command, get a reply; serde
//! for snapshots). [`Rsm`] does the rest, embedding a [`synod_paxos::Paxos`] peer:
//!
//! - **Ordering.** A client request becomes an [`Entry::Client`] proposed in a free Paxos
//!   instance; every replica applies decided instances strictly in order, so all of them go
//!   through the same states. A replica answers a client only once its command has been
//!   applied, so a replica cut off from a majority answers nothing (never stale data).
//! - **Batching and pipelining.** Requests that arrive while a replica's proposals are in
//!   flight share one instance ([`Entry::Batch`], applied entry by entry in order), and a
//!   replica keeps a small window of instances in flight at once, so one Paxos round (and
//!   its fsyncs) serves many clients.
//! - **At most once.** Requests carry (client id, sequence number); a replicated, bounded
//!   [`Sessions`] table (chosen per command by the state machine, so it can travel with the
//!   data it guards) answers retries from memory instead of applying them again.
//! - **Internal commands.** A replica may propose commands of its own ([`Rsm::propose`]),
//!   for example a shard group moving to the next configuration; they are applied in log
//!   order like everything else and must be idempotent, because several replicas may propose
//!   the same one.
//! - **Holes.** A replica whose next instance stays undecided while later ones exist proposes
//!   a no-op there, which either learns the decided entry or fills the hole.
//! - **Forgetting and compaction.** After applying an instance the replica calls `done`, so
//!   Paxos frees instances every replica has applied; the durable log is compacted by writing
//!   snapshots (state machine + Paxos state) as it grows, in the background: the replica
//!   hands storage a clone of its state ([`synod_node::Storage::begin_snapshot`]) and keeps
//!   applying; storage cuts the log only once that snapshot is durable. Snapshots are due
//!   by log size relative to the last snapshot, so their amortized cost per byte written
//!   does not grow with the state.
//! - **Catching up.** A replica whose peers forgot instances it still needs fetches a
//!   snapshot of the state machine from one of them, in chunks that each fit a frame,
//!   resuming after a lost connection, installed atomically once complete (`transfer`).
//! - **Reads without log entries.** A command the state machine can answer without changing
//!   anything ([`StateMachine::read`]), from a client that has a session, waits for a Paxos
//!   read barrier (a majority's highest known instance) and for the log to be applied that
//!   far, then is answered from local state: linearizable, no instance used, and never
//!   answered by a replica cut off from a majority.
//! - **Membership changes.** The group's configuration (voters and learners) is part of the
//!   replicated state: an [`Entry::Reconfigure`] decided at instance `i` governs the
//!   instances from `i + α` on, α being [`LEADER_WINDOW`] (`synod_paxos::Config`). A new
//!   replica ([`Rsm::joining`]) starts as a learner that knows nothing, fetches a snapshot
//!   (which carries the configurations) and follows the log; once promoted it votes. A
//!   replica removed from the configuration stops voting and serving.
//! - **Status.** Any client may ask any replica for a [`StatusReport`], answered locally.
//!
//! Every message of a service built on this crate is an [`RsmMsg`] (or, for services with
//! messages of their own, an enum whose first two variants mirror [`StatusMsg`]), so
//! `synod status` can talk to any of them.

pub mod clerk;
mod guard;
mod replica;
mod sessions;
mod status;
mod transfer;
mod wrap;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use synod_paxos::{Config, ConfigError, PaxosMsg};

pub use replica::{Commands, Rsm, ELECTION_TIMEOUT, LEADER_WINDOW, TICK, TIMER, WINDOW};
pub use sessions::{Session, Sessions, Verdict, MAX_SESSIONS};
pub use status::{
    voter_shortage, CatchUp, Role, SnapshotStatus, SnapshotTaken, StatusMsg, StatusReport,
    VoterShortage,
};
pub use transfer::SnapshotId;
pub use wrap::Wrap;

/// What the replicated log may carry: serializable, comparable, debuggable, and sendable to
/// the thread that writes a background snapshot.
pub trait Data: Clone + Eq + Debug + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Eq + Debug + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// The application state a service replicates. It must be deterministic: the same commands
/// in the same order give the same state and replies on every replica (ordered maps only, no
/// clock, no randomness).
///
/// Snapshots are taken off the apply path: the replica clones the state and a storage thread
/// serializes the clone. A state whose clone is O(1) (a persistent map, as `KvState`'s) keeps
/// the apply path's cost of a snapshot independent of the state's size.
pub trait StateMachine:
    Default + Clone + Debug + Send + Serialize + DeserializeOwned + 'static
{
    /// What clients ask for.
    type Command: Data;
    /// What replicas propose on their own (use `()` for none).
    type Internal: Data;
    /// The answer to a command.
    type Reply: Data;

    /// Applies a client command decided at log instance `at` that the session table says is
    /// new (or that no table guards).
    fn apply(&mut self, at: u64, cmd: &Self::Command) -> Self::Reply;

    /// Applies an internal command decided at `at`. Must be idempotent.
    fn apply_internal(&mut self, at: u64, op: &Self::Internal);

    /// The session table that deduplicates `cmd`, or `None` if no table guards it right now
    /// (shardkv: the shard is not served here, and `apply` will say so without changing
    /// anything).
    fn sessions(&self, cmd: &Self::Command) -> Option<&Sessions<Self::Reply>>;

    /// Mutable access to the same table as [`sessions`](Self::sessions).
    fn sessions_mut(&mut self, cmd: &Self::Command) -> Option<&mut Sessions<Self::Reply>>;

    /// The reply for a command whose client's session was evicted: nothing was applied, and
    /// the client must start a new session.
    fn expired() -> Self::Reply;

    /// Rebuilds indexes that are not serialized, after loading a snapshot.
    fn reindex(&mut self);

    /// The size of the state in bytes, for the status report and for snapshot scheduling.
    /// The default serializes nothing but walks the whole state; a large state should keep
    /// a running count instead.
    fn state_bytes(&self) -> u64 {
        postcard::experimental::serialized_size(self).map_or(0, |n| n as u64)
    }

    /// The reply to `cmd` if it changes nothing (a read), so that it can be answered
    /// without a log entry once a read barrier says the state is recent enough; `None` (the
    /// default) logs it like any command.
    fn read(&self, _cmd: &Self::Command) -> Option<Self::Reply> {
        None
    }

    /// Whether clients may send several commands as one request ([`RsmMsg::Batch`]): one
    /// log entry ([`Entry::Commands`]), applied in order with nothing in between, under one
    /// sequence number. A replica ignores batches for a state machine that says no.
    const BATCHES: bool = false;

    /// The one reply to a batch, from the replies of its commands in order. Called only when
    /// [`BATCHES`](Self::BATCHES) is true; the session table remembers it like any reply, so
    /// a retried batch gets every command's answer again. There may be fewer replies than
    /// commands: a batch stops before a read whose reply would take the batch's replies past
    /// [`MAX_BATCH_REPLY_BYTES`] (or just after a write that does), and the commands from
    /// there on are not applied (the client sends them again, as its next request).
    fn batch_reply(_replies: Vec<Self::Reply>) -> Self::Reply {
        Self::expired()
    }

    /// Whether a batch stops after the command answered `reply`: the commands after it are
    /// neither applied nor answered, and the client sends them again as its next request.
    /// Deterministic, as every replica must stop at the same command. The sharded KV stops
    /// at a command of a shard the group does not serve, so that a batch spanning shards is
    /// applied as a prefix, never with a hole: the client resends the rest in order, to
    /// their owner. The default, never, suits a state machine that serves every command.
    fn ends_batch(_reply: &Self::Reply) -> bool {
        false
    }

    /// The bytes a reply carries that grow with the state (a value read, or taken by a
    /// write such as Redis's GETDEL): what bounds a batch's reply. The default, 0, suits
    /// replies of a bounded size.
    fn reply_bytes(_reply: &Self::Reply) -> usize {
        0
    }

    /// Whether `cmd` changes nothing, so that a batch over its reply budget may stop
    /// *before* it, dropping its reply as if it had not run. A batch stops *after* any other
    /// command that takes it over the budget, keeping the reply: the command was applied,
    /// and a client that never saw its reply would send it again. The default, no, is
    /// always safe.
    fn reads_only(_cmd: &Self::Command) -> bool {
        false
    }
}

/// Bytes of replies ([`StateMachine::reply_bytes`]) past which a batch stops before its next
/// read (or after its next write), so that a batch's reply, which the session table keeps,
/// stays within about one log entry's size plus one value.
pub const MAX_BATCH_REPLY_BYTES: usize = synod_node::limits::BATCH_BYTES;

/// Most commands one [`RsmMsg::Batch`] may carry; a replica ignores a longer one. Its bytes
/// are bounded by the frame it travels in, and so by the size policy.
pub const MAX_BATCH_COMMANDS: usize = 1024;

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Entry<C, I> {
    /// Fills a hole in the log; changes nothing.
    Noop,
    Client {
        client: u64,
        seq: u64,
        op: C,
    },
    Internal(I),
    /// Several entries decided together in one instance, applied in this order as if each
    /// had an instance of its own (each client entry goes through its session table).
    Batch(Vec<Entry<C, I>>),
    /// One client request of several commands ([`RsmMsg::Batch`]): applied in order with
    /// nothing in between, at most once as a whole under (client, seq), with one reply
    /// ([`StateMachine::batch_reply`]).
    Commands {
        client: u64,
        seq: u64,
        ops: Vec<C>,
    },
    /// A membership change: decided at instance `i`, it governs the instances from
    /// `i + α` ([`LEADER_WINDOW`]) on, if the group's state admits it then
    /// ([`synod_paxos::Schedule::add`]); otherwise it changes nothing.
    Reconfigure(Config),
}

/// The log entry type of a state machine.
pub type EntryOf<S> = Entry<<S as StateMachine>::Command, <S as StateMachine>::Internal>;

/// Every message of a replicated state machine's cluster. The first two variants are the
/// same as [`StatusMsg`]'s, so their encoding is too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RsmMsg<C, I, R> {
    /// From anyone: please send your [`StatusReport`].
    StatusQuery,
    Status(StatusReport),
    /// Between replicas: their Paxos peers' messages.
    Paxos(PaxosMsg<Entry<C, I>>),
    /// From a client. Sequence numbers start at 1 and a client has one request outstanding.
    Request {
        client: u64,
        seq: u64,
        op: C,
    },
    /// To a client.
    Reply {
        seq: u64,
        reply: R,
    },
    /// From a replica that needs the state after instance `next - 1` (its peers forgot the
    /// instances in between): please send the chunk at `offset` of snapshot `id`, or the
    /// start of your current one if you no longer have it (or `resume` is `None`).
    SnapshotRequest {
        next: u64,
        resume: Option<(SnapshotId, u64)>,
    },
    /// Bytes `offset..offset + data.len()` of the serialized state machine `id` (see the
    /// `transfer` module).
    SnapshotChunk {
        id: SnapshotId,
        offset: u64,
        data: Vec<u8>,
    },
    /// From a client: several commands as one request, applied in order as one log entry
    /// ([`Entry::Commands`]) and answered with one [`RsmMsg::Reply`]. At most
    /// [`MAX_BATCH_COMMANDS`] of them, for a state machine that allows batches
    /// ([`StateMachine::BATCHES`]). A batch of reads only is answered without a log entry,
    /// as a single read is.
    Batch {
        client: u64,
        seq: u64,
        ops: Vec<C>,
    },
    /// From an operator (`synod kv member ...`): please have the group change to `config`
    /// (its epoch one more than the current one). Answered with [`RsmMsg::Reconfigured`]
    /// once the change is decided, or refused.
    Reconfigure {
        config: Config,
    },
    /// To the operator: the change was decided and will be in effect from instance `from`
    /// (the schedule now ends with it), or why not.
    Reconfigured {
        result: Result<u64, ConfigError>,
    },
}

/// Whom a message may come from, for a server that screens its clients
/// (`synod_net::ClientGuard`); what each kind needs of a user is the service's to say.
#[derive(Debug, PartialEq, Eq)]
pub enum Sender<'a, C> {
    /// Any client that authenticated: a status query.
    Anyone,
    /// A user allowed these commands: a request's one, or a batch's.
    Commands(&'a [C]),
    /// A user allowed everything: a membership change.
    Administrator,
    /// Only a replica of the cluster: Paxos, snapshots, and what servers send clients.
    Member,
}

impl<C, I, R> RsmMsg<C, I, R> {
    /// Whom this message may come from (see [`Sender`]).
    pub fn sender(&self) -> Sender<'_, C> {
        match self {
            RsmMsg::StatusQuery => Sender::Anyone,
            RsmMsg::Request { op, .. } => Sender::Commands(std::slice::from_ref(op)),
            RsmMsg::Batch { ops, .. } => Sender::Commands(ops),
            RsmMsg::Reconfigure { .. } => Sender::Administrator,
            RsmMsg::Status(_)
            | RsmMsg::Reconfigured { .. }
            | RsmMsg::Paxos(_)
            | RsmMsg::Reply { .. }
            | RsmMsg::SnapshotRequest { .. }
            | RsmMsg::SnapshotChunk { .. } => Sender::Member,
        }
    }

    /// The answer to this message, from a client, when a server refuses it before it reaches
    /// the replica (a request its user may not make, say): `reply`, under the request's
    /// sequence number, to a request or a batch; a refusal saying `why` to a membership
    /// change; `None` to a message nobody waits on.
    pub fn refused(&self, reply: R, why: String) -> Option<Self> {
        match self {
            RsmMsg::Request { seq, .. } | RsmMsg::Batch { seq, .. } => {
                Some(RsmMsg::Reply { seq: *seq, reply })
            }
            RsmMsg::Reconfigure { .. } => Some(RsmMsg::Reconfigured {
                result: Err(ConfigError::Refused(why)),
            }),
            _ => None,
        }
    }
}

/// The message type of a state machine's cluster.
pub type MsgOf<S> =
    RsmMsg<<S as StateMachine>::Command, <S as StateMachine>::Internal, <S as StateMachine>::Reply>;
