//! `synod status` against three real `synod kv serve` processes: one line per replica with
//! its log position, and "unreachable" (exit non-zero when nobody answers) once they are gone.

mod support;

use std::time::{Duration, Instant};

use support::{applied, free_ports, loopback_list, path, run, stderr, stdout, Server};

#[test]
fn status_reports_every_replica_and_says_which_are_unreachable() {
    let ports = free_ports(3);
    let peers = loopback_list(&ports);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut replicas: Vec<Server> = (0..3)
        .map(|i| {
            let data = dir.path().join(format!("r{i}"));
            let id = i.to_string();
            let args = [
                "kv",
                "serve",
                "--id",
                &id,
                "--peers",
                &peers,
                "--data",
                path(&data),
                "--bootstrap",
            ];
            Server::start(&args, &format!("kv replica {i} listening on "))
        })
        .collect();
    let put = run(&["kv", "put", "--servers", &peers, "k", "v"]);
    assert!(put.status.success(), "put failed: {}", stderr(&put));

    // A replica that was still starting when the put was decided learns of it from the
    // leader's next heartbeat, so wait (bounded) until every replica has applied it. The put
    // may take more than one instance (a hedged retry of it, decided again and ignored as a
    // duplicate, or a no-op), so "level" is every replica at the same applied instance.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let status = run(&["status", "--servers", &peers]);
        assert!(
            status.status.success(),
            "status failed: {}",
            stderr(&status)
        );
        let text = stdout(&status);
        let applied: Vec<Option<u64>> = support::replica_lines(&text)
            .into_iter()
            .map(applied)
            .collect();
        let level =
            applied.len() == 3 && applied[0].is_some() && applied.iter().all(|a| *a == applied[0]);
        if level || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "one line per replica, then the membership: {text}"
    );
    assert_eq!(
        lines[3],
        "membership: epoch 0 (in effect) voters [n0,n1,n2] learners []"
    );
    for (i, line) in lines[..3].iter().enumerate() {
        assert!(line.contains(&format!("replica={i}/3 voting")), "{line}");
        assert!(line.contains("member=voter"), "{line}");
        assert!(
            applied(line).is_some(),
            "every replica learns of the put and applies it: {line}"
        );
        assert!(line.contains("durable_bytes="), "{line}");
    }
    // Each replica says whether it leads; two leaders at once would mean two stable ballots.
    assert!(text.matches("voting leader").count() <= 1, "{text}");
    let get = run(&["kv", "get", "--servers", &peers, "k"]);
    assert_eq!(stdout(&get), "v", "the put took effect: {}", stderr(&get));

    replicas.remove(2).kill9();
    let status = run(&["status", "--servers", &peers]);
    assert!(status.status.success());
    let text = stdout(&status);
    assert_eq!(text.matches("unreachable").count(), 1, "{text}");

    replicas.clear();
    let status = run(&["status", "--servers", &peers, "--timeout", "0.5"]);
    assert!(
        !status.status.success(),
        "nobody answered, yet it succeeded"
    );
    assert_eq!(stdout(&status).matches("unreachable").count(), 3);
}
