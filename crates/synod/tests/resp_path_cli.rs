//! The path from a Redis client to consensus, with real `synod kv serve` processes: a
//! replica's RESP front hands its commands to its own replica in-process (no TCP client
//! connection anywhere), the replica forwards them to the leader over its peer link, and a
//! pipeline's commands take effect in the order sent and are answered in that order.

mod support;

use support::resp::{concurrent_incrs, Reply, Resp};
use support::{free_ports, kv_replica_args, loopback_list, Server};

/// Replica `id`, logging the network layer's debug lines (which say when a TCP client
/// connects) so the test can tell how commands reached it.
fn start(id: usize, peers: &str, dir: &std::path::Path, resp: u16) -> Server {
    let args = kv_replica_args(id, peers, dir, resp, Some("--bootstrap"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_logged_env(
        &args,
        &[("RUST_LOG", "info,synod_net=debug")],
        &format!("kv replica {id} listening on "),
    )
}

#[test]
fn a_fronts_commands_reach_the_leader_in_process_without_a_third_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let replicas: Vec<Server> = (0..3)
        .map(|i| start(i, &peers, dir.path(), ports[3 + i]))
        .collect();
    let mut replicas = replicas.into_iter();
    let (first, second, third) = (
        replicas.next().expect("0"),
        replicas.next().expect("1"),
        replicas.next().expect("2"),
    );
    // The third process is gone: the leader is replica 0 or 1, and whichever it is, a
    // command from replica 0's front reaches it directly.
    third.kill9();

    let mut resp = Resp::connect(&format!("127.0.0.1:{}", ports[3])).expect("front");
    let set = |i: usize| {
        ["SET", "k"]
            .map(str::to_owned)
            .into_iter()
            .chain([i.to_string()])
    };
    for i in 0..20 {
        let args: Vec<String> = set(i).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            resp.call(&args).expect("answered"),
            Reply::Simple("OK".into())
        );
    }
    // A pipeline: each command sees the effect of the ones before it, and the replies come
    // back in order.
    let replies = resp
        .pipeline(&[
            &["SET", "p", "a"],
            &["GET", "p"],
            &["APPEND", "p", "b"],
            &["GET", "p"],
            &["PING"],
            &["APPEND", "p", "c"],
            &["GET", "k"],
            &["GET", "p"],
        ])
        .expect("answered");
    assert_eq!(
        replies,
        [
            Reply::Simple("OK".into()),
            Reply::Bulk(Some("a".into())),
            Reply::Integer(2),
            Reply::Bulk(Some("ab".into())),
            Reply::Simple("PONG".into()),
            Reply::Integer(3),
            Reply::Bulk(Some("19".into())),
            Reply::Bulk(Some("abc".into())),
        ]
    );

    // No replica saw a TCP client: the front's commands entered replica 0 through its
    // inbox, and went on to the leader (if that is replica 1) over the peer link.
    for (i, replica) in [(0, &first), (1, &second)] {
        let logs = replica.logs();
        assert!(
            logs.contains("serving"),
            "replica {i} logged nothing at all: {logs}"
        );
        assert!(
            !logs.contains("client connected"),
            "replica {i} had a TCP client: {logs}"
        );
    }
}

/// Many connections, each with one command in flight, through two fronts: their single
/// commands leave in shared batches (one request for the reads, one for the writes, per
/// front and round trip), and each still takes effect exactly once and answers for itself.
/// Every `INCR` of a shared counter answers a different value, together exactly 1..=N, and a
/// `GET` that starts after an `INCR` answered sees at least that value.
#[test]
fn concurrent_connections_share_batches_and_each_command_takes_effect_once() {
    const CONNECTIONS: usize = 24;
    const INCRS: usize = 25;
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let _replicas: Vec<Server> = (0..3)
        .map(|i| start(i, &peers, dir.path(), ports[3 + i]))
        .collect();
    let fronts: Vec<String> = ports[3..5]
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let all = concurrent_incrs(&fronts, None, CONNECTIONS, INCRS, "counter");
    let expected: Vec<i64> = (1..=(CONNECTIONS * INCRS) as i64).collect();
    assert_eq!(
        all, expected,
        "every INCR applied once, each answered its own value"
    );
    let mut resp = Resp::connect(&format!("127.0.0.1:{}", ports[5])).expect("front");
    assert_eq!(
        resp.call(&["GET", "counter"]).expect("GET"),
        Reply::Bulk(Some((CONNECTIONS * INCRS).to_string()))
    );
}
