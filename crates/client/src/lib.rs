//! Typed async clients for synod's key/value services over TCP.
//!
//! - [`KvClient`]: the Paxos-replicated KV (`synod kv serve`). Give it every replica's
//!   address; it tries them in turn, each while the earlier ones may still answer, until one
//!   does.
//! - [`PbClient`]: the primary/backup KV (`synod pb serve`). Give it the view service's
//!   address; it asks the view service who the primary is.
//! - [`shardkv::ShardKvClient`] and [`shardkv::CtlClient`]: the sharded KV and its
//!   controller.
//!
//! None of them decides anything itself: each runs its service's sans-I/O clerk
//! (`synod_node::clerk::Clerk`, the same core the simulator's suites run) through one
//! driver (the `driver` module: connections, timers, the [`Connection`]/[`Dialer`]
//! transport), and shares one policy (the `pool` module: [`DEFAULT_TIMEOUT`] and the session
//! pool). The primary/backup client still carries its clerk's messages with a loop of its
//! own.
//!
//! Both are *at most once*: every write carries a (client id, sequence number) and is retried
//! under the same number until a server answers, so a retry is never applied twice. Both are
//! cheap to share (`&self` methods): concurrent callers get separate sessions from a pool, so
//! one client serves many tasks at once. Both also implement [`synod_resp::Backend`], which is
//! how the servers' `--resp` fronts serve `redis-cli`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), synod_client::ClientError> {
//! use synod_client::KvClient;
//! let kv = KvClient::connect(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])?;
//! kv.put("greeting", "hello").await?;
//! let len = kv.append("greeting", ", world").await?;
//! assert_eq!(len, 12);
//! assert_eq!(kv.get("greeting").await?, b"hello, world");
//! # Ok(()) }
//! ```

mod coalesce;
mod driver;
mod error;
mod kv;
mod pb;
mod pool;
mod resp;
pub mod shardkv;

pub use driver::{Connection, Dialer};
pub use error::ClientError;
pub use kv::KvClient;
pub use pb::PbClient;
pub use pool::DEFAULT_TIMEOUT;
