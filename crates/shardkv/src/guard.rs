//! What a client's message to a sharded cluster's server needs of its user's permissions,
//! and the reply to one refused: the screening a group server or a controller whose clients
//! authenticate applies (`synod_net::ClientGuard`) before the message reaches its node.
//!
//! A group's request needs to read or write its keys (as the Paxos KV's,
//! [`synod_kvpaxos::guard::needs`]); a controller's query needs nothing past authentication
//! and its changes a user allowed everything ([`synod_shardctl::guard`]); the servers' own
//! messages (Paxos, status reports, shard pushes and their acknowledgements, leader hints)
//! need a member, that is a client with a certificate from the cluster's CA, which is never
//! screened: a group's RESP front reaches other groups and the controllers that way.

use synod_auth::{Denied, Need};

use crate::{ShardMsg, ShardReply};

/// What `msg`, from a client, needs (see the module's docs). One function serves group
/// servers and controllers alike: each ignores the other's messages.
pub fn needs(msg: &ShardMsg) -> Need<'_> {
    match msg {
        ShardMsg::StatusQuery => Need::Nothing,
        ShardMsg::Group(msg) => synod_kvpaxos::guard::needs(msg),
        ShardMsg::Ctl(msg) => synod_shardctl::guard::needs(msg),
        ShardMsg::Status(_)
        | ShardMsg::Push { .. }
        | ShardMsg::PushAck { .. }
        | ShardMsg::Leader(_) => Need::Member,
    }
}

/// The reply to a message refused for `denied`; `None` for a message nobody waits on.
pub fn refusal(msg: &ShardMsg, denied: Denied) -> Option<ShardMsg> {
    match msg {
        ShardMsg::Group(msg) => {
            let why = denied.to_string();
            msg.refused(ShardReply::Denied(denied), why)
                .map(ShardMsg::Group)
        }
        ShardMsg::Ctl(msg) => synod_shardctl::guard::refusal(msg, denied).map(ShardMsg::Ctl),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use synod_auth::{Activity, Permissions};
    use synod_keyspace::Command;
    use synod_kvpaxos::KvOp;
    use synod_rsm::RsmMsg;
    use synod_shardctl::{CtlOp, CtlReply};

    use super::*;

    fn group_request(op: KvOp) -> ShardMsg {
        ShardMsg::Group(RsmMsg::Request {
            client: 3,
            seq: 9,
            op,
        })
    }

    fn user(read: bool, write: bool, keys: &str) -> Permissions {
        Permissions {
            read,
            write,
            keys: vec![keys.into()],
        }
    }

    #[test]
    fn group_requests_need_their_keys_and_the_servers_messages_a_member() {
        let get = group_request(KvOp::Get { key: b"k".to_vec() });
        assert_eq!(needs(&get), Need::Read(vec![b"k".as_slice()]));
        let mset = group_request(KvOp::Redis(Command::MSet {
            pairs: vec![(b"{t}a".to_vec(), b"1".to_vec())],
            only_if_none: false,
        }));
        assert_eq!(needs(&mset), Need::Write(vec![b"{t}a".as_slice()]));
        assert_eq!(needs(&ShardMsg::StatusQuery), Need::Nothing);
        let push = ShardMsg::Push {
            num: 2,
            shard: 0,
            data: crate::Shard::default(),
            from: Vec::new(),
        };
        for forged in [
            push,
            ShardMsg::PushAck { num: 2, shard: 0 },
            ShardMsg::Leader("127.0.0.1:1".into()),
            ShardMsg::Group(RsmMsg::SnapshotRequest {
                next: 1,
                resume: None,
            }),
        ] {
            assert_eq!(needs(&forged), Need::Member, "{forged:?}");
            assert_eq!(
                Permissions::all().allow("default", &needs(&forged)),
                Err(Denied::MemberOnly)
            );
        }
    }

    #[test]
    fn controller_queries_need_nothing_and_changes_a_user_allowed_everything() {
        let ctl = |op| {
            ShardMsg::Ctl(RsmMsg::Request {
                client: 3,
                seq: 1,
                op,
            })
        };
        assert_eq!(needs(&ctl(CtlOp::Query { num: -1 })), Need::Nothing);
        let join = ctl(CtlOp::Join {
            gid: 7,
            servers: vec!["127.0.0.1:1".into()],
        });
        assert_eq!(needs(&join), Need::Administer);
        let reader = user(true, false, "*");
        let denied = reader.allow("reader", &needs(&join)).unwrap_err();
        assert_eq!(
            denied,
            Denied::Kind {
                user: "reader".into(),
                what: Activity::Administer
            }
        );
        assert_eq!(
            refusal(&join, denied.clone()),
            Some(ShardMsg::Ctl(RsmMsg::Reply {
                seq: 1,
                reply: CtlReply::Denied(denied)
            }))
        );
    }

    #[test]
    fn refused_group_requests_are_answered_denied_under_their_number() {
        let put = group_request(KvOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        let reader = user(true, false, "*");
        let denied = reader.allow("reader", &needs(&put)).unwrap_err();
        assert_eq!(
            denied,
            Denied::Kind {
                user: "reader".into(),
                what: Activity::Write
            }
        );
        let cache = user(true, true, "cache:*");
        assert_eq!(
            cache.allow("cache", &needs(&put)),
            Err(Denied::Key {
                user: "cache".into()
            })
        );
        assert_eq!(
            refusal(&put, denied.clone()),
            Some(ShardMsg::Group(RsmMsg::Reply {
                seq: 9,
                reply: ShardReply::Denied(denied)
            }))
        );
        let ack = ShardMsg::PushAck { num: 1, shard: 0 };
        assert_eq!(refusal(&ack, Denied::MemberOnly), None);
    }
}
