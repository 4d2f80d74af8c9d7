//! Running a job over TCP with synod-net: the coordinator as a synod-net server
//! ([`coordinator::serve`]) with an optional status page ([`http`]), workers as clients of it
//! that also serve their map output to each other ([`worker::run`]), and a whole job on one
//! machine with worker processes ([`local::run`]).

pub mod coordinator;
pub mod http;
pub mod local;
pub mod worker;

/// The coordinator's server id; workers connect to it as clients.
pub const COORDINATOR_ID: synod_node::NodeId = synod_node::NodeId(0);
