//! What a client's message to a KV replica needs of its user's permissions, and the reply to
//! one refused: the screening a replica whose clients authenticate applies
//! (`synod_net::ClientGuard`) before a request reaches the log. [`needs`] holds for any
//! replicated state machine of [`KvOp`]s, so the sharded KV's groups screen with it too.

use synod_auth::{Denied, Need};
use synod_rsm::{RsmMsg, Sender};

use crate::{KvMsg, KvOp, KvReply};

/// What `msg`, from a client, needs: a request needs to read or write its keys, a status
/// query nothing, a membership change a user allowed everything, and the replicas' own
/// messages (Paxos, snapshots, the answer to a membership change) a member.
pub fn needs<I, R>(msg: &RsmMsg<KvOp, I, R>) -> Need<'_> {
    match msg.sender() {
        Sender::Anyone => Need::Nothing,
        Sender::Commands(ops) => ops_need(ops),
        Sender::Administrator => Need::Administer,
        Sender::Member => Need::Member,
    }
}

/// A batch needs to write all its keys if any of its operations writes.
fn ops_need(ops: &[KvOp]) -> Need<'_> {
    let keys = ops.iter().flat_map(KvOp::keys).collect();
    if ops.iter().any(KvOp::writes) {
        Need::Write(keys)
    } else {
        Need::Read(keys)
    }
}

/// The reply to a request refused for `denied`; `None` for a message nobody waits on.
pub fn refusal(msg: &KvMsg, denied: Denied) -> Option<KvMsg> {
    let why = denied.to_string();
    msg.refused(KvReply::Denied(denied), why)
}

#[cfg(test)]
mod tests {
    use synod_auth::Permissions;
    use synod_keyspace::Command;
    use synod_paxos::ConfigError;

    use super::*;

    fn request(op: KvOp) -> KvMsg {
        RsmMsg::Request {
            client: 1,
            seq: 4,
            op,
        }
    }

    #[test]
    fn requests_need_their_keys_and_replica_messages_a_member() {
        let get = request(KvOp::Get { key: b"k".to_vec() });
        assert_eq!(needs(&get), Need::Read(vec![b"k".as_slice()]));
        let del = request(KvOp::Redis(Command::Del {
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        }));
        assert_eq!(
            needs(&del),
            Need::Write(vec![b"a".as_slice(), b"b".as_slice()])
        );
        let batch: KvMsg = RsmMsg::Batch {
            client: 1,
            seq: 5,
            ops: vec![
                KvOp::Get { key: b"r".to_vec() },
                KvOp::Put {
                    key: b"w".to_vec(),
                    value: b"v".to_vec(),
                },
            ],
        };
        assert_eq!(
            needs(&batch),
            Need::Write(vec![b"r".as_slice(), b"w".as_slice()])
        );
        assert_eq!(needs::<(), KvReply>(&RsmMsg::StatusQuery), Need::Nothing);
        let forged: KvMsg = RsmMsg::SnapshotRequest {
            next: 1,
            resume: None,
        };
        assert_eq!(needs(&forged), Need::Member);
    }

    #[test]
    fn a_refused_request_is_answered_under_its_sequence_number() {
        let reader = Permissions {
            read: true,
            write: false,
            keys: vec!["*".into()],
        };
        let put = request(KvOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        let denied = reader.allow("reader", &needs(&put)).unwrap_err();
        assert_eq!(
            refusal(&put, denied.clone()),
            Some(RsmMsg::Reply {
                seq: 4,
                reply: KvReply::Denied(denied)
            })
        );
    }

    #[test]
    fn a_membership_change_needs_a_user_allowed_everything_and_is_refused_as_a_change() {
        let change: KvMsg = RsmMsg::Reconfigure {
            config: synod_paxos::Config::initial(vec![synod_node::NodeId(0)]),
        };
        assert_eq!(needs(&change), Need::Administer);
        let writer = Permissions {
            read: true,
            write: true,
            keys: vec!["app:*".into()],
        };
        let denied = writer.allow("app", &needs(&change)).unwrap_err();
        assert_eq!(
            refusal(&change, denied),
            Some(RsmMsg::Reconfigured {
                result: Err(ConfigError::Refused(
                    "user app may not change the cluster's configuration".into()
                ))
            })
        );
        let answer: KvMsg = RsmMsg::Reconfigured { result: Ok(9) };
        assert_eq!(needs(&answer), Need::Member);
    }
}
