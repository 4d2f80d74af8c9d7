//! What a client's message to a shard controller needs of its user's permissions, and the
//! reply to one refused: the screening a controller whose clients authenticate applies
//! (`synod_net::ClientGuard`, through `synod_shardkv::guard`, since a sharded cluster's
//! controllers speak its message type) before a request reaches the log.
//!
//! A query reads the configuration, which holds no keys or values: any authenticated user
//! may ask (the sharded KV's clients must, to find a key's group). A change (Join, Leave,
//! Move, Servers) decides which servers hold the cluster's data, so it needs a user allowed
//! everything ([`Need::Administer`]), as a membership change of the Paxos KV does.

use synod_auth::{Denied, Need};
use synod_rsm::Sender;

use crate::{CtlMsg, CtlOp, CtlReply};

/// What `msg`, from a client, needs: a query or status query nothing (past authentication),
/// a change of the configuration or of the controllers' membership a user allowed
/// everything, and the replicas' own messages (Paxos, snapshots, replies) a member.
pub fn needs(msg: &CtlMsg) -> Need<'static> {
    match msg.sender() {
        Sender::Anyone => Need::Nothing,
        Sender::Commands(ops) => match ops.iter().all(|op| op_needs(op) == Need::Nothing) {
            true => Need::Nothing,
            false => Need::Administer,
        },
        Sender::Administrator => Need::Administer,
        Sender::Member => Need::Member,
    }
}

fn op_needs(op: &CtlOp) -> Need<'static> {
    match op {
        CtlOp::Query { .. } => Need::Nothing,
        CtlOp::Join { .. } | CtlOp::Leave { .. } | CtlOp::Move { .. } | CtlOp::Servers { .. } => {
            Need::Administer
        }
    }
}

/// The reply to a request refused for `denied`; `None` for a message nobody waits on.
pub fn refusal(msg: &CtlMsg, denied: Denied) -> Option<CtlMsg> {
    let why = denied.to_string();
    msg.refused(CtlReply::Denied(denied), why)
}

#[cfg(test)]
mod tests {
    use synod_auth::{Activity, Permissions};
    use synod_rsm::RsmMsg;

    use super::*;

    fn request(op: CtlOp) -> CtlMsg {
        RsmMsg::Request {
            client: 1,
            seq: 7,
            op,
        }
    }

    #[test]
    fn queries_need_nothing_and_changes_a_user_allowed_everything() {
        assert_eq!(needs(&request(CtlOp::Query { num: -1 })), Need::Nothing);
        assert_eq!(needs(&RsmMsg::StatusQuery), Need::Nothing);
        let changes = [
            CtlOp::Join {
                gid: 1,
                servers: vec!["127.0.0.1:1".into()],
            },
            CtlOp::Leave { gid: 1 },
            CtlOp::Move { shard: 0, gid: 1 },
            CtlOp::Servers {
                gid: 1,
                servers: vec!["127.0.0.1:2".into()],
            },
        ];
        for op in changes.clone() {
            assert_eq!(needs(&request(op)), Need::Administer);
        }
        let queries: CtlMsg = RsmMsg::Batch {
            client: 1,
            seq: 8,
            ops: vec![CtlOp::Query { num: 1 }, CtlOp::Query { num: 2 }],
        };
        assert_eq!(needs(&queries), Need::Nothing);
        let mixed: CtlMsg = RsmMsg::Batch {
            client: 1,
            seq: 8,
            ops: vec![CtlOp::Query { num: 1 }, changes[1].clone()],
        };
        assert_eq!(needs(&mixed), Need::Administer);
        let forged: CtlMsg = RsmMsg::Reply {
            seq: 1,
            reply: CtlReply::SessionExpired,
        };
        assert_eq!(needs(&forged), Need::Member);
    }

    #[test]
    fn a_refused_change_is_answered_denied_under_its_sequence_number() {
        let everything_on_app = Permissions {
            read: true,
            write: true,
            keys: vec!["app:*".into()],
        };
        let join = request(CtlOp::Leave { gid: 100 });
        let denied = everything_on_app
            .allow("app", &needs(&join))
            .expect_err("only a user allowed every key administers");
        assert_eq!(
            denied,
            Denied::Kind {
                user: "app".into(),
                what: Activity::Administer
            }
        );
        assert_eq!(
            refusal(&join, denied.clone()),
            Some(RsmMsg::Reply {
                seq: 7,
                reply: CtlReply::Denied(denied)
            })
        );
        assert_eq!(
            Permissions::all().allow("default", &needs(&join)),
            Ok(()),
            "requirepass's user administers"
        );
        assert_eq!(refusal(&RsmMsg::StatusQuery, Denied::MemberOnly), None);
    }
}
