//! MapReduce for synod (issue 4): an application trait and built-in applications, a
//! sequential runner, and a fault-tolerant coordinator and workers.
//!
//! - [`App`] is what a job computes; [`apps`] has `wc`, `ii` and `grep`, and [`Registry`]
//!   names applications so that workers in other processes can build the same one.
//! - [`job::plan`] checks a [`JobConfig`] and cuts the input into map splits;
//!   [`run_sequential`] runs the job in one process.
//! - [`task`] runs one map or reduce task on local files, with external sorting under a
//!   memory budget ([`sort`]).
//! - [`coordinator::Coordinator`] and [`worker::WorkerNode`] are the distributed mode's
//!   deterministic cores (`synod_node::Node`), exchanging [`msg::MrMsg`]; workers run tasks
//!   through an [`executor::Executor`].
//! - [`service`] runs them over TCP with synod-net, with a status page.
//!
//! See `docs/mapreduce.md` for the guarantees and the failure handling.

pub mod app;
pub mod apps;
pub mod coordinator;
pub mod error;
pub mod executor;
pub mod job;
pub mod msg;
pub mod output;
pub mod partition;
pub mod record;
pub mod sequential;
pub mod service;
pub mod sort;
pub mod split;
pub mod task;
pub mod worker;

pub use app::{App, AppSpec, MapInput};
pub use apps::Registry;
pub use error::{MrError, Result};
pub use job::{plan, JobConfig, JobPlan, JobSpec};
pub use sequential::run_sequential;
