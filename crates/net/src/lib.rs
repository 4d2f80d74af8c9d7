//! synod over TCP: the wire codec, a server driver that runs any [`synod_node::Node`] as a
//! real server, and a small client.
//!
//! - [`codec`]: the wire format (handshake with magic and version, length-prefixed postcard
//!   frames with a size limit) and nothing else.
//! - [`run_node`]: serve a protocol core until a shutdown future resolves; see the `server`,
//!   `driver` and `link` module docs for the task layout.
//! - [`Client`]: connect, send, receive, call with a timeout; in-process (through the
//!   node's inbox, see the `local` module) when this process serves the address.
//!
//! ```no_run
//! # use synod_net::{run_node, shutdown_signal, NodeConfig};
//! # async fn demo<N>(node: N) -> Result<(), synod_net::NetError>
//! # where N: synod_node::Node + Send,
//! #       N::Msg: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {
//! let config = NodeConfig::new(synod_node::NodeId(1), "127.0.0.1:7001".parse::<std::net::SocketAddr>().unwrap());
//! let storage = Box::new(synod_storage::MemStorage::default());
//! run_node(node, config, storage, shutdown_signal()).await
//! # }
//! ```

mod client;
pub mod codec;
mod commit;
mod config;
mod conn;
mod driver;
mod error;
mod link;
mod liveness;
mod local;
mod server;
pub mod tls;

pub use client::Client;
pub use codec::{
    Admission, Credentials, FrameError, Hello, CLIENT_MAX_FRAME, DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
};
pub use config::{Listen, NetOptions, NodeConfig};
pub use error::NetError;
pub use liveness::LinkTiming;
pub use server::{run_guarded_node, run_node, shutdown_signal, ClientGuard};
pub use synod_node::limits;
