//! In-process connections: a [`crate::Client`] in the same process as a node it connects to
//! reaches that node through the node's inbox, not through TCP.
//!
//! [`crate::run_node`] registers a *route* under its listening address for as long as it
//! serves; `Client::connect` to that address finds the route and opens a local connection:
//! the client gets a fresh client [`NodeId`] from the same counter as TCP clients, announces
//! itself in the inbox as a TCP connection task would (`ClientUp`, then its messages, then
//! `ClientDown` when dropped), and receives the node's replies on its own queue. The node
//! cannot tell the difference, and neither can the client's user: the messages are encoded
//! and decoded as on the wire (so the same size limits apply), only the sockets, the
//! handshake and the connection task are gone.
//!
//! This is what lets a server's Redis-protocol front hand its commands to its own replica
//! in-process: the front's client names the replica by address like any other, and reaches
//! it without leaving the process.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_node::NodeId;
use tokio::sync::mpsc;

use crate::codec::{decode_msg, encode_frame, HEADER_LEN};
use crate::driver::Event;
use crate::error::NetError;

/// How a client in this process reaches a node: its inbox, and the counter its client ids
/// come from.
pub(crate) struct Route<M> {
    pub(crate) server: NodeId,
    pub(crate) inbox: mpsc::Sender<Event<M>>,
    pub(crate) next_client: Arc<AtomicU64>,
    /// Replies queued for one client before more are dropped (as for a TCP client).
    pub(crate) send_queue: usize,
}

impl<M> Clone for Route<M> {
    fn clone(&self) -> Self {
        Route {
            server: self.server,
            inbox: self.inbox.clone(),
            next_client: self.next_client.clone(),
            send_queue: self.send_queue,
        }
    }
}

/// The nodes this process serves, by listening address. A value is a `Route<M>` for the
/// node's message type `M`; a client of another type finds none and uses TCP.
static ROUTES: LazyLock<Mutex<HashMap<SocketAddr, Box<dyn Any + Send>>>> =
    LazyLock::new(Default::default);

/// A route registered while it lives: dropping it removes the route.
pub(crate) struct Registration {
    addr: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut routes) = ROUTES.lock() {
            routes.remove(&self.addr);
        }
    }
}

/// Makes `route` the way clients of this process reach `addr`, until the registration is
/// dropped. `None` if the registry is unusable (a thread panicked holding it): clients then
/// use TCP, as they would without it.
pub(crate) fn register<M: Send + 'static>(
    addr: SocketAddr,
    route: Route<M>,
) -> Option<Registration> {
    let mut routes = ROUTES.lock().ok()?;
    routes.insert(addr, Box::new(route));
    Some(Registration { addr })
}

/// The route to the node of message type `M` this process serves at `addr`, if any.
pub(crate) fn route<M: 'static>(addr: SocketAddr) -> Option<Route<M>> {
    let routes = ROUTES.lock().ok()?;
    routes.get(&addr)?.downcast_ref::<Route<M>>().cloned()
}

/// One in-process client connection.
pub(crate) struct LocalConn<M> {
    id: NodeId,
    inbox: mpsc::Sender<Event<M>>,
    replies: mpsc::Receiver<Bytes>,
}

impl<M: Serialize + DeserializeOwned + Send + 'static> LocalConn<M> {
    /// Announces a new client to the node behind `route`.
    pub(crate) async fn open(route: Route<M>) -> Result<Self, NetError> {
        let id = NodeId(route.next_client.fetch_add(1, Ordering::Relaxed));
        let (outbox, replies) = mpsc::channel(route.send_queue);
        route
            .inbox
            .send(Event::ClientUp { id, outbox })
            .await
            .map_err(|_| NetError::Closed)?;
        Ok(LocalConn {
            id,
            inbox: route.inbox,
            replies,
        })
    }

    /// Hands `msg` to the node, as the wire would: encoded within `max_frame`, decoded.
    pub(crate) async fn send(&mut self, msg: &M, max_frame: usize) -> Result<(), NetError> {
        let frame = encode_frame(msg, max_frame)?;
        let msg = decode_msg(&frame[HEADER_LEN..])?;
        let from = self.id;
        self.inbox
            .send(Event::Message { from, msg })
            .await
            .map_err(|_| NetError::Closed)
    }

    /// The node's next message to this client; [`NetError::Closed`] once the node stopped.
    pub(crate) async fn recv(&mut self) -> Result<M, NetError> {
        let frame = self.replies.recv().await.ok_or(NetError::Closed)?;
        Ok(decode_msg(&frame[HEADER_LEN..])?)
    }
}

impl<M> Drop for LocalConn<M> {
    fn drop(&mut self) {
        // Never waits. Should the inbox be full, the node forgets the client all the same the
        // first time it has something for it, when it finds the reply queue closed.
        let _ = self.inbox.try_send(Event::ClientDown { id: self.id });
    }
}
