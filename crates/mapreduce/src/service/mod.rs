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

use std::future::Future;

use synod_net::tls::PeerTls;
use synod_net::{run_guarded_node, ClientGuard, NetError, NodeConfig};
use synod_node::Node;

/// Serves one of a job's servers (the coordinator, a worker's fetch server). With `tls`
/// (a certificate from the job's CA, as `synod certs` issues them), it speaks TLS only and
/// admits only clients with a certificate from the same CA: the coordinator and the
/// workers authenticate each other as a cluster's replicas do, and TLS authenticates every
/// frame. Without, anyone who reaches the port takes part.
pub(crate) async fn serve_job_node<N>(
    node: N,
    mut config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    tls: Option<PeerTls>,
) -> Result<(), NetError>
where
    N: Node<Msg = crate::msg::MrMsg> + Send,
{
    let guard = tls.is_some().then(ClientGuard::members_only);
    config.net.tls = tls;
    let storage = Box::new(synod_storage::MemStorage::default());
    run_guarded_node(node, config, storage, shutdown, guard).await
}
