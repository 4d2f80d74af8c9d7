//! What a client's message to a KV replica needs of its user's permissions, and the reply to
//! one refused: the screening a replica whose clients authenticate applies
//! (`synod_net::ClientGuard`) before a request reaches the log.

use synod_auth::{Denied, Need};
use synod_rsm::RsmMsg;

use crate::{KvMsg, KvOp, KvReply};

/// What `msg`, from a client, needs: a request needs to read or write its keys, a status
/// query nothing, and the replicas' own messages (Paxos, snapshots) a member.
pub fn needs(msg: &KvMsg) -> Need<'_> {
    match msg {
        RsmMsg::StatusQuery => Need::Nothing,
        RsmMsg::Request { op, .. } => ops_need(std::slice::from_ref(op)),
        RsmMsg::Batch { ops, .. } => ops_need(ops),
        RsmMsg::Status(_)
        | RsmMsg::Paxos(_)
        | RsmMsg::Reply { .. }
        | RsmMsg::SnapshotRequest { .. }
        | RsmMsg::SnapshotChunk { .. } => Need::Member,
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
    match msg {
        RsmMsg::Request { seq, .. } | RsmMsg::Batch { seq, .. } => Some(RsmMsg::Reply {
            seq: *seq,
            reply: KvReply::Denied(denied),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use synod_auth::Permissions;
    use synod_keyspace::Command;

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
        assert_eq!(needs(&RsmMsg::StatusQuery), Need::Nothing);
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
}
