//! The client's logic as a sans-IO core, shared by the simulated clients and the TCP client.
//!
//! A [`Clerk`] runs one operation at a time. It tells its driver what to send and where
//! ([`Outgoing`]); the driver delivers the answers ([`Clerk::on_message`]) and reports silence
//! after [`RETRY_INTERVAL`] ([`Clerk::on_timeout`]). The clerk caches the primary and asks the
//! view service only when the primary seems wrong: it answered [`PbError::WrongServer`] or did
//! not answer in time. A retry reuses the sequence number, so a write is applied at most once.

use std::time::Duration;

use synod_node::NodeId;
use synod_viewservice::{ViewMsg, PING_INTERVAL};

use synod_node::limits::TooLarge;

use crate::{Msg, Op, PbError, PbMsg, Reply, Request};

/// How long the driver waits for an answer before calling [`Clerk::on_timeout`]. After a
/// `WrongServer` the clerk also waits this long before asking the view service again, so a
/// view change in progress is not met with a storm of requests.
pub const RETRY_INTERVAL: Duration = PING_INTERVAL;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    ViewService,
    /// A KV server: its node id (in a simulation) and the address it announced (over TCP).
    Server {
        id: NodeId,
        addr: String,
    },
}

/// A message the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Target,
    pub msg: Msg,
}

/// What the driver does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this, keep waiting.
    Send(Outgoing),
    /// The operation completed: the value for a Get, empty for a write.
    Done(Reply),
    /// The operation was refused for its size; nothing of it was applied.
    Refused(TooLarge),
    /// Nothing to do until the next message or the timeout.
    Wait,
}

/// A client of the primary/backup service.
#[derive(Debug, Clone)]
pub struct Clerk {
    client: u64,
    seq: u64,
    primary: Option<(NodeId, String)>,
    current: Option<Op>,
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
        }
    }

    pub fn client_id(&self) -> u64 {
        self.client
    }

    /// Whether an operation is in progress.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// Begins `op`, replacing any operation in progress (whose outcome then stays unknown).
    pub fn start(&mut self, op: Op) -> Outgoing {
        self.seq += 1;
        self.current = Some(op);
        self.next_send()
    }

    fn next_send(&self) -> Outgoing {
        match (&self.primary, &self.current) {
            (Some((id, addr)), Some(op)) => Outgoing {
                to: Target::Server {
                    id: *id,
                    addr: addr.clone(),
                },
                msg: Msg::Service(PbMsg::Request(Request {
                    client: self.client,
                    seq: self.seq,
                    op: op.clone(),
                })),
            },
            _ => Outgoing {
                to: Target::ViewService,
                msg: Msg::View(ViewMsg::Get),
            },
        }
    }

    /// An answer arrived (from anyone: stale and foreign answers are ignored).
    pub fn on_message(&mut self, msg: Msg) -> Step {
        if self.current.is_none() {
            return Step::Wait;
        }
        match msg {
            Msg::Service(PbMsg::Reply { seq, result }) if seq == self.seq => match result {
                Ok(value) => {
                    self.current = None;
                    Step::Done(value)
                }
                Err(PbError::WrongServer) => {
                    self.primary = None;
                    Step::Wait
                }
                Err(PbError::TooLarge(refused)) => {
                    self.current = None;
                    Step::Refused(refused)
                }
            },
            Msg::View(ViewMsg::Reply(reply)) if self.primary.is_none() => {
                match reply.view.primary {
                    Some(id) => {
                        self.primary = Some((id, reply.primary_addr));
                        Step::Send(self.next_send())
                    }
                    None => Step::Wait,
                }
            }
            _ => Step::Wait,
        }
    }

    /// Nothing useful arrived for [`RETRY_INTERVAL`]: the primary seems wrong (or the view
    /// service's answer was lost), so ask the view service. `None` if idle.
    pub fn on_timeout(&mut self) -> Option<Outgoing> {
        self.current.as_ref()?;
        self.primary = None;
        Some(self.next_send())
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn caches_the_primary_and_asks_again_only_when_it_seems_wrong() {
        let mut clerk = Clerk::new(7);
        let first = clerk.start(Op::Get { key: "k".into() });
        assert_eq!(first.to, Target::ViewService);
        let Step::Send(request) = clerk.on_message(view_reply(3)) else {
            panic!("should send the request");
        };
        assert_eq!(
            request.to,
            Target::Server {
                id: NodeId(3),
                addr: "host:3".into()
            }
        );
        assert_eq!(
            clerk.on_message(reply(1, Ok(Reply::Bulk(Some(b"v".to_vec()))))),
            Step::Done(Reply::Bulk(Some(b"v".to_vec())))
        );
        // The next operation goes straight to the cached primary.
        let second = clerk.start(Op::Put {
            key: "k".into(),
            value: "w".into(),
        });
        assert!(matches!(second.to, Target::Server { .. }));
        // A stale answer is ignored; a refusal makes the clerk wait, then ask the view service.
        assert_eq!(
            clerk.on_message(reply(1, Ok(Reply::Bulk(Some(b"old".to_vec()))))),
            Step::Wait
        );
        assert_eq!(
            clerk.on_message(reply(2, Err(PbError::WrongServer))),
            Step::Wait
        );
        assert_eq!(clerk.on_timeout().unwrap().to, Target::ViewService);
        // The retry carries the same sequence number.
        let Step::Send(retry) = clerk.on_message(view_reply(4)) else {
            panic!("should send the request");
        };
        assert_eq!(retry.msg, second.msg);
        assert_eq!(
            clerk.on_message(reply(2, Ok(Reply::Ok))),
            Step::Done(Reply::Ok)
        );
        assert!(clerk.on_timeout().is_none(), "idle clerks send nothing");
    }
}
