//! `synod kv member` against three real `synod kv serve` processes under a recorded
//! Redis-protocol load: a replica is removed through the log while clients write and read
//! through every front (the removed one's included), the list shows it `removed`, and the
//! whole history, with final reads, is linearizable.

mod support;

use std::time::{Duration, Instant};

use support::{free_ports, load, loopback_list, run, start_kv_replica, stderr, stdout};

#[test]
fn removing_a_replica_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let peers = loopback_list(&ports[..3]);
    let fronts = ports[3..].to_vec();
    let _replicas: Vec<_> = (0..3)
        .map(|i| start_kv_replica(i, &peers, dir.path(), fronts[i], Some("--bootstrap")))
        .collect();

    let listed = run(&["kv", "member", "list", "--servers", &peers]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stdout(&listed).starts_with("membership: epoch 0 (in effect) voters [n0,n1,n2]"),
        "{}",
        stdout(&listed)
    );

    let start = Instant::now();
    let mut removal = None;
    let mut history = load::run_while(4, &fronts, None, start, || {
        std::thread::sleep(Duration::from_secs(1));
        let began = Instant::now();
        removal = Some(run(&[
            "kv",
            "member",
            "remove",
            "--servers",
            &peers,
            "--timeout",
            "10",
            "n2",
        ]));
        eprintln!("member remove under load took {:?}", began.elapsed());
        std::thread::sleep(Duration::from_secs(2));
    });
    let removal = removal.expect("ran");
    assert!(removal.status.success(), "{}", stderr(&removal));
    assert!(
        stdout(&removal).starts_with("removed n2: epoch 1 decided"),
        "{}",
        stdout(&removal)
    );

    // Once the removal is in effect everywhere, replica 2 says it is removed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let listed = run(&["kv", "member", "list", "--servers", &peers]);
        let text = stdout(&listed);
        if text.contains("id=n2 removed") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.starts_with("membership: epoch 1 (in effect) voters [n0,n1] learners []"),
        "{text}"
    );
    assert!(
        text.contains("id=n0 voter") && text.contains("id=n1 voter"),
        "{text}"
    );
    assert!(text.contains("id=n2 removed"), "{text}");

    load::final_reads(&mut history, &fronts, None, 4, start);
    load::assert_linearizable(&history, 50);
}
