//! `synod status` against three real `synod kv serve` processes: one line per replica with
//! its log position, and "unreachable" (exit non-zero when nobody answers) once they are gone.

mod support;

use std::time::{Duration, Instant};

use support::{free_ports, loopback_list, path, run, stderr, stdout, Server};

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
    // leader's next heartbeat, so wait (bounded) until every replica reports instance 0.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let status = run(&["status", "--servers", &peers]);
        assert!(
            status.status.success(),
            "status failed: {}",
            stderr(&status)
        );
        let text = stdout(&status);
        if text.lines().filter(|l| l.contains("max=0")).count() == 3 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per replica: {text}");
    for (i, line) in lines.iter().enumerate() {
        assert!(line.contains(&format!("replica={i}/3 voting")), "{line}");
        assert!(
            line.contains("max=0"),
            "every replica learns of the put: {line}"
        );
        assert!(line.contains("durable_bytes="), "{line}");
    }
    // The replica that proposed the put has applied it.
    assert!(text.contains("applied=0"), "{text}");
    // Each replica says whether it leads; two leaders at once would mean two stable ballots.
    assert!(text.matches("voting leader").count() <= 1, "{text}");

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
