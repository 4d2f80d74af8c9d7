//! The client's logic as a sans-IO core ([`synod_node::clerk::Clerk`]), shared by the
//! simulated clients and the TCP client (`synod-client`'s one driver).
//!
//! A [`Clerk`] runs one operation at a time. It tells its driver what to send and where,
//! with a timer of [`RETRY_INTERVAL`] for each send; the driver delivers the answers and the
//! timers. The clerk caches the primary and asks the view service only when the primary
//! seems wrong: it answered [`PbError::WrongServer`] or did not answer in time. A retry
//! reuses the sequence number, so a write is applied at most once.

use std::time::Duration;

use synod_node::clerk::{self, ClerkOutput};
use synod_node::limits::TooLarge;
use synod_node::{NodeId, TimerToken};
use synod_viewservice::{ViewMsg, PING_INTERVAL};

use crate::{Msg, Op, PbError, PbMsg, Reply, Request};

/// How long the clerk waits for an answer before it asks again. After a `WrongServer` it
/// also waits this long before asking the view service again, so a view change in progress
/// is not met with a storm of requests.
pub const RETRY_INTERVAL: Duration = PING_INTERVAL;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    ViewService,
    /// A KV server: its node id (in a simulation) and the address it announced (over TCP).
    Server {
        id: NodeId,
        addr: String,
    },
}

/// An operation's outcome: the service's reply; or the refusal of an operation too large
/// to apply (nothing of it was applied).
pub type PbReply = Result<Reply, TooLarge>;

/// What the clerk asks its driver to do.
pub type PbOutput = ClerkOutput<Target, Msg, PbReply>;

/// A client of the primary/backup service.
#[derive(Debug, Clone)]
pub struct Clerk {
    client: u64,
    seq: u64,
    primary: Option<(NodeId, String)>,
    current: Option<Op>,
    /// Numbers the sends: only the timer of the latest one asks again.
    attempt: TimerToken,
}

impl Clerk {
    /// A clerk with the given client id, which must be unique among all clients the service
    /// ever sees (draw it at random from 64 bits).
    pub fn new(client: u64) -> Self {
        Clerk {
            client,
            seq: 0,
            primary: None,
            current: None,
            attempt: 0,
        }
    }

    pub fn client_id(&self) -> u64 {
        self.client
    }

    /// The next message for the operation in progress, with its retry timer: the request
    /// to the cached primary, or a question to the view service when there is none.
    fn send(&mut self) -> Vec<PbOutput> {
        let (to, msg) = match (&self.primary, &self.current) {
            (Some((id, addr)), Some(op)) => (
                Target::Server {
                    id: *id,
                    addr: addr.clone(),
                },
                Msg::Service(PbMsg::Request(Request {
                    client: self.client,
                    seq: self.seq,
                    op: op.clone(),
                })),
            ),
            _ => (Target::ViewService, Msg::View(ViewMsg::Get)),
        };
        self.attempt += 1;
        vec![
            ClerkOutput::Send { to, msg },
            ClerkOutput::Timer {
                after: RETRY_INTERVAL,
                token: self.attempt,
            },
        ]
    }

    /// Ends the operation in progress with `reply`.
    fn done(&mut self, reply: PbReply) -> Vec<PbOutput> {
        self.current = None;
        vec![ClerkOutput::Done(reply)]
    }
}

impl clerk::Clerk for Clerk {
    type Server = Target;
    type Msg = Msg;
    type Op = Op;
    type Reply = PbReply;

    /// Begins `op`, replacing any operation in progress (whose outcome then stays unknown).
    fn start(&mut self, op: Op) -> Vec<PbOutput> {
        self.seq += 1;
        self.current = Some(op);
        self.send()
    }

    /// An answer arrived (from anyone: stale and foreign answers are ignored).
    fn on_message(&mut self, _from: &Target, msg: Msg) -> Vec<PbOutput> {
        if self.current.is_none() {
            return Vec::new();
        }
        match msg {
            Msg::Service(PbMsg::Reply { seq, result }) if seq == self.seq => match result {
                Ok(value) => self.done(Ok(value)),
                // Wait out the retry interval, then ask the view service.
                Err(PbError::WrongServer) => {
                    self.primary = None;
                    Vec::new()
                }
                Err(PbError::TooLarge(refused)) => self.done(Err(refused)),
            },
            Msg::View(ViewMsg::Reply(reply)) if self.primary.is_none() => {
                match reply.view.primary {
                    Some(id) => {
                        self.primary = Some((id, reply.primary_addr));
                        self.send()
                    }
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Nothing useful arrived for [`RETRY_INTERVAL`] after the latest send: the primary
    /// seems wrong (or the view service's answer was lost), so ask the view service. Stale
    /// timers, and timers of an idle clerk, do nothing.
    fn on_timeout(&mut self, token: TimerToken) -> Vec<PbOutput> {
        if self.current.is_none() || token != self.attempt {
            return Vec::new();
        }
        self.primary = None;
        self.send()
    }

    /// What was sent is lost; the retry timer of that send asks again.
    fn on_unreachable(&mut self, _server: &Target) -> Vec<PbOutput> {
        Vec::new()
    }

    fn busy(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use synod_node::clerk::Clerk as _;
    use synod_viewservice::{View, ViewReply};

    use super::*;

    fn view_reply(primary: u64) -> Msg {
        Msg::View(ViewMsg::Reply(ViewReply {
            view: View {
                num: 1,
                primary: Some(NodeId(primary)),
                backup: None,
            },
            primary_addr: format!("host:{primary}"),
            backup_addr: String::new(),
            acked: true,
        }))
    }

    fn reply(seq: u64, result: Result<Reply, PbError>) -> Msg {
        Msg::Service(PbMsg::Reply { seq, result })
    }

    /// The one message among `outputs`, which also hold its retry timer; and that timer.
    fn sent(outputs: Vec<PbOutput>) -> (Target, Msg, TimerToken) {
        match &outputs[..] {
            [ClerkOutput::Send { to, msg }, ClerkOutput::Timer { after, token }] => {
                assert_eq!(*after, RETRY_INTERVAL);
                (to.clone(), msg.clone(), *token)
            }
            other => panic!("expected one send and its timer, got {other:?}"),
        }
    }

    #[test]
    fn caches_the_primary_and_asks_again_only_when_it_seems_wrong() {
        let mut clerk = Clerk::new(7);
        let vs = Target::ViewService;
        let (to, _, _) = sent(clerk.start(Op::Get { key: "k".into() }));
        assert_eq!(to, vs);
        let (to, _, _) = sent(clerk.on_message(&vs, view_reply(3)));
        assert_eq!(
            to,
            Target::Server {
                id: NodeId(3),
                addr: "host:3".into()
            }
        );
        assert_eq!(
            clerk.on_message(&to, reply(1, Ok(Reply::Bulk(Some(b"v".to_vec()))))),
            vec![ClerkOutput::Done(Ok(Reply::Bulk(Some(b"v".to_vec()))))]
        );
        // The next operation goes straight to the cached primary.
        let (primary, request, timer) = sent(clerk.start(Op::Put {
            key: "k".into(),
            value: "w".into(),
        }));
        assert!(matches!(primary, Target::Server { .. }));
        // A stale answer is ignored; a refusal makes the clerk wait, then ask the view service.
        assert!(clerk
            .on_message(&primary, reply(1, Ok(Reply::Bulk(Some(b"old".to_vec())))))
            .is_empty());
        assert!(clerk
            .on_message(&primary, reply(2, Err(PbError::WrongServer)))
            .is_empty());
        assert!(clerk.on_timeout(timer - 1).is_empty(), "a stale timer");
        let (to, _, _) = sent(clerk.on_timeout(timer));
        assert_eq!(to, vs);
        // The retry carries the same sequence number.
        let (_, retry, timer) = sent(clerk.on_message(&vs, view_reply(4)));
        assert_eq!(retry, request);
        assert_eq!(
            clerk.on_message(&primary, reply(2, Ok(Reply::Ok))),
            vec![ClerkOutput::Done(Ok(Reply::Ok))]
        );
        assert!(
            clerk.on_timeout(timer).is_empty(),
            "idle clerks send nothing"
        );
    }
}
