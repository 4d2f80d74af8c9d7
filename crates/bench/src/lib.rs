//! Closed-loop benchmarks of key/value stores: synod's Paxos KV and sharded KV (native
//! client or Redis protocol), Redis and etcd, driven the same way so their figures compare.
//!
//! - [`Workload`]: how many clients, key and value sizes, key space, read ratio, how long.
//! - [`Store`]: one client connection that can get and put; [`KvStore`] and
//!   [`ShardKvStore`] (synod's native clients), [`RespConn`] (any Redis-protocol server)
//!   and [`EtcdConn`] (etcd v3 over gRPC, its own client interface) implement it.
//! - [`run`]: the closed loop — every client does one operation at a time, back to back —
//!   recording latencies in an HDR histogram; [`Summary`] and [`table`] print the results.
//!
//! `synod bench` is the command line on top of this crate (it also starts the servers).

mod error;
mod etcd;
mod load;
mod report;
mod resp;
mod store;
mod workload;

pub use error::BenchError;
pub use etcd::EtcdConn;
pub use load::{run, run_marked, Marker, Measurement};
pub use report::{split_line, table, Row, Summary};
pub use resp::RespConn;
pub use store::{KvStore, ShardKvStore, Store};
pub use workload::{parse_duration, Limit, Workload};
