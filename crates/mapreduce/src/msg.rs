//! The messages between the coordinator and the workers, and between workers fetching map
//! output from each other: one serde enum, carried by the simulator or by synod-net.

use serde::{Deserialize, Serialize};
use synod_node::NodeId;

use crate::job::JobSpec;
use crate::split::Split;

/// The build a worker must match to join a job: workers of another version are turned away
/// with a clear message instead of running tasks they might compute differently.
pub const VERSION: &str = concat!("synod-mapreduce/", env!("CARGO_PKG_VERSION"), "/1");

/// Identifies one execution of one task; unique within a job. A task re-run after a failure,
/// or run twice as a backup, gets a fresh id, so late reports of an old attempt are recognised.
pub type AttemptId = u64;

/// What a worker is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskSpec {
    Map {
        index: u32,
        split: Split,
    },
    Reduce {
        partition: u32,
        sources: Vec<MapSource>,
    },
}

impl TaskSpec {
    pub fn describe(&self) -> String {
        match self {
            TaskSpec::Map { index, .. } => format!("map {index}"),
            TaskSpec::Reduce { partition, .. } => format!("reduce {partition}"),
        }
    }
}

/// Where a reduce task finds one map task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSource {
    pub map: u32,
    pub attempt: AttemptId,
    pub worker: NodeId,
    /// The worker's fetch address over TCP (empty in the simulator).
    pub addr: String,
    /// Bytes of this map's output in the reduce task's partition.
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MrMsg {
    // ---- worker → coordinator
    /// A worker (re)starting: it holds no map output from any earlier life.
    Register {
        version: String,
        addr: String,
    },
    /// Sent periodically: what the worker is running, and whether it has the job spec (a lost
    /// welcome is sent again).
    Heartbeat {
        running: Option<AttemptId>,
        welcomed: bool,
    },
    /// A map attempt finished; `sizes[r]` is the byte length of partition `r`.
    MapDone {
        attempt: AttemptId,
        sizes: Vec<u64>,
    },
    ReduceDone {
        attempt: AttemptId,
    },
    /// The attempt failed on its own (bad input, application panic): counts towards failing
    /// the job.
    TaskFailed {
        attempt: AttemptId,
        reason: String,
    },
    /// A reduce attempt could not fetch `map`'s output from where it was said to be.
    FetchFailed {
        attempt: AttemptId,
        map: u32,
        map_attempt: AttemptId,
    },

    // ---- coordinator → worker
    Welcome {
        job: Box<JobSpec>,
    },
    /// The worker may not join (another version); it should exit with this reason.
    Rejected {
        reason: String,
    },
    Assign {
        attempt: AttemptId,
        task: TaskSpec,
    },
    /// The coordinator does not know this worker (it was declared dead): it must drop its
    /// state and register again.
    Reregister,
    /// The job is over; `error` is `None` when it succeeded.
    Finished {
        error: Option<String>,
    },

    // ---- worker ↔ worker
    Fetch {
        map: u32,
        map_attempt: AttemptId,
        partition: u32,
        offset: u64,
    },
    Chunk {
        map: u32,
        map_attempt: AttemptId,
        partition: u32,
        offset: u64,
        data: Vec<u8>,
        eof: bool,
    },
    /// The asked-for map output is not here (the worker restarted, or never had it).
    NoSuchOutput {
        map: u32,
        map_attempt: AttemptId,
    },
}

impl MrMsg {
    /// The answer to `Fetch { map, map_attempt, partition, offset }`, given the length of the
    /// requested run and the bytes read from `offset`, or `None` if this worker lacks it.
    pub fn fetch_reply(
        map: u32,
        map_attempt: AttemptId,
        partition: u32,
        offset: u64,
        found: Option<(u64, Vec<u8>)>,
    ) -> MrMsg {
        match found {
            None => MrMsg::NoSuchOutput { map, map_attempt },
            Some((len, data)) => MrMsg::Chunk {
                map,
                map_attempt,
                partition,
                offset,
                eof: offset.saturating_add(data.len() as u64) >= len,
                data,
            },
        }
    }
}
