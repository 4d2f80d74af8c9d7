//! How a server is set up: who it is, where it listens, who its peers are, and the limits
//! that keep one misbehaving connection from hurting the rest.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use synod_node::NodeId;
use tokio::net::TcpListener;

use crate::codec::DEFAULT_MAX_FRAME;
use crate::liveness::LinkTiming;

/// Where a server accepts connections.
#[derive(Debug)]
pub enum Listen {
    /// Bind this address when the server starts.
    Addr(SocketAddr),
    /// Use a listener the caller already bound, for example to port 0 so a test can learn the
    /// real port before the server runs.
    Bound(TcpListener),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Addr(addr)
    }
}

impl From<TcpListener> for Listen {
    fn from(listener: TcpListener) -> Self {
        Listen::Bound(listener)
    }
}

/// Everything `run_node` needs to know besides the node and its storage.
#[derive(Debug)]
pub struct NodeConfig {
    /// This server's id; must be below [`NodeId::FIRST_CLIENT`].
    pub id: NodeId,
    pub listen: Listen,
    /// Addresses of the other servers this node may send to. Messages to a server that is not
    /// listed here are dropped (and logged).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub net: NetOptions,
}

impl NodeConfig {
    /// A config with no peers and default [`NetOptions`].
    pub fn new(id: NodeId, listen: impl Into<Listen>) -> Self {
        NodeConfig {
            id,
            listen: listen.into(),
            peers: BTreeMap::new(),
            net: NetOptions::default(),
        }
    }
}

/// Limits and timings. The defaults suit a LAN cluster (round trips well under
/// `connect_timeout`); tests shrink the timeouts. docs/paxos.md, "Timings", says why each
/// peer-link timing is what it is.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Largest frame payload accepted or sent, in bytes. Larger inbound frames close the
    /// connection; larger outbound messages are dropped with a warning.
    pub max_frame: usize,
    /// How long a new connection may take to complete the handshake, in either direction.
    pub handshake_timeout: Duration,
    /// How long an outbound TCP connect may take. Short, because a SYN lost to a partition
    /// is retransmitted by the kernel only after a second: a fresh attempt soon after the
    /// partition heals gets through sooner. Raise it for round trips near it.
    pub connect_timeout: Duration,
    /// Inbound connections served at once; more are closed right after accept.
    pub max_connections: usize,
    /// Messages waiting for the node. When full, connection readers wait, which pushes back
    /// on senders through TCP flow control instead of growing memory.
    pub inbox_capacity: usize,
    /// Frames waiting to be written to one peer or client. When full, new ones are dropped:
    /// the protocols tolerate loss, and a node must never block on a slow receiver.
    pub send_queue: usize,
    /// First reconnect delay of a peer link; doubles per failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A peer link probes its connection this often (the server echoes each probe)...
    pub probe_every: Duration,
    /// ...and gives the connection up and connects afresh when a write stays unconfirmed
    /// by an echo this long.
    pub silence_limit: Duration,
    /// `TCP_USER_TIMEOUT` of peer sockets, both ends: the kernel gives a connection up when
    /// data it sent stays unacknowledged this long. A backstop behind `silence_limit`, and
    /// what ends the server side of a peer connection whose link went away unseen.
    pub tcp_user_timeout: Duration,
    /// TCP keepalive of peer sockets: idle time before the first keepalive probe and the
    /// interval between probes; the kernel gives up after `tcp_user_timeout`.
    pub keepalive: Duration,
    /// On shutdown, how long to keep writing already queued messages before giving up.
    pub flush_timeout: Duration,
    /// Whether a [`crate::Client`] in this process that connects to the node's address
    /// reaches it through its inbox instead of TCP (the `local` module): a server's own
    /// Redis-protocol front does. Off by default, so that tests of the TCP path test it.
    pub in_process: bool,
    /// TLS for peer links and the connections this server accepts (the `tls` module);
    /// `None`: plain TCP, every connection trusted.
    pub tls: Option<crate::tls::PeerTls>,
    /// With `tls`, whether clients may still connect without TLS. Peers never may.
    pub plain_clients: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(100),
            max_connections: 1024,
            inbox_capacity: 4096,
            send_queue: 1024,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            probe_every: Duration::from_millis(100),
            silence_limit: Duration::from_secs(1),
            tcp_user_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(1),
            in_process: false,
            tls: None,
            plain_clients: false,
        }
    }
}

impl NetOptions {
    /// The liveness timing of peer links.
    pub fn link_timing(&self) -> LinkTiming {
        LinkTiming {
            probe_every: self.probe_every,
            silence_limit: self.silence_limit,
        }
    }
}
