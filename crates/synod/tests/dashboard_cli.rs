//! The dashboard of `synod up` in a real browser: Chromium, headless, loads the page, runs
//! its script against the live cluster, and the test reads the DOM it rendered. It checks
//! the page shows what the cluster reports (every replica up, the pids `up` printed, the
//! leader `synod status` names) and that it updates after a replica is killed (the fault is
//! listed, and the replica's new pid is shown once `up` restarted it).
//!
//! It needs `chromium` on the PATH (Debian's package; `.ci/run` installs it) and fails
//! saying so without it.

mod support;

use std::time::{Duration, Instant};

use support::browser::{attr, chromium, dump_dom};
use support::{path, run, signal_pid, stdout, Server};

/// A replica line of `up`: (index, peer address, pid).
fn parse_line(line: &str) -> (usize, String, u32) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let index = words[1].trim_end_matches(':').parse().unwrap();
    let after = |key: &str| words[words.iter().position(|w| *w == key).unwrap() + 1];
    (
        index,
        after("peer").to_owned(),
        after("pid").parse().unwrap(),
    )
}

/// Loads the page until `check` accepts its DOM (or a minute passes); returns that DOM.
fn wait_for_dom(browser: &str, url: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dom = dump_dom(browser, url);
        if check(&dom) {
            return dom;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what}:\n{dom}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_dashboard_shows_the_cluster_and_a_killed_replica() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let up = Server::start_logged_env(
        &["up", "--dir", path(dir.path())],
        &[("RUST_LOG", "warn")],
        "ready",
    );
    let replicas: Vec<(usize, String, u32)> = up.earlier.iter().map(|l| parse_line(l)).collect();
    assert_eq!(replicas.len(), 3, "{:?}", up.earlier);
    let url = up
        .next_line("dashboard: ", Duration::from_secs(10))
        .expect("up prints the dashboard's URL")
        .trim_start_matches("dashboard: ")
        .to_owned();

    // Every replica up with the pid `up` printed, and one leader.
    let dom = wait_for_dom(browser, &url, "every replica up with one leader", |dom| {
        let all_up = replicas.iter().all(|(i, _, pid)| {
            let id = format!("replica-{i}");
            attr(dom, &id, "data-state").as_deref() == Some("up")
                && attr(dom, &id, "data-pid") == Some(pid.to_string())
        });
        let leaders = (0..3)
            .filter(|i| {
                attr(dom, &format!("replica-{i}"), "data-role").as_deref() == Some("leader")
            })
            .count();
        all_up && leaders == 1
    });
    assert!(dom.contains("kv cluster"), "{dom}");
    // The leader it shows is the one the replicas report.
    let servers: Vec<&str> = replicas.iter().map(|(_, peer, _)| peer.as_str()).collect();
    // `up` secures the cluster: `synod status` trusts the CA it issued.
    let ca = dir.path().join("tls").join("ca.pem");
    let status_of_servers = || {
        stdout(&run(&[
            "status",
            "--servers",
            &servers.join(","),
            "--tls-ca",
            path(&ca),
            "--password-file",
            path(&dir.path().join("tls").join("resp-password")),
        ]))
    };
    let status = status_of_servers();
    let leader = (0..3)
        .find(|i| attr(&dom, &format!("replica-{i}"), "data-role").as_deref() == Some("leader"))
        .unwrap();
    let leader_line = status
        .lines()
        .find(|l| l.starts_with(&replicas[leader].1))
        .unwrap_or_else(|| panic!("no status line for the leader in {status}"));
    // Leadership can move between the two reads; the page must then show the move too.
    if !leader_line.contains("voting leader") {
        wait_for_dom(browser, &url, "the leader synod status names", |dom| {
            let named = (0..3).find(|i| {
                attr(dom, &format!("replica-{i}"), "data-role").as_deref() == Some("leader")
            });
            named.is_some_and(|i| {
                status_of_servers()
                    .lines()
                    .any(|l| l.starts_with(&replicas[i].1) && l.contains("voting leader"))
            })
        });
    }

    // Kill replica 1: the page lists the fault and shows the restarted replica's new pid.
    let (_, _, old_pid) = replicas[1];
    signal_pid(old_pid, "KILL");
    let again = up
        .next_line("replica 1:", Duration::from_secs(30))
        .expect("up restarts replica 1");
    let (_, _, new_pid) = parse_line(&again);
    assert_ne!(new_pid, old_pid);
    let killed = format!("replica 1 down: pid {old_pid} was killed by signal 9");
    wait_for_dom(browser, &url, "the kill and the new pid", |dom| {
        dom.contains(&killed)
            && attr(dom, "replica-1", "data-pid") == Some(new_pid.to_string())
            && attr(dom, "replica-1", "data-state").as_deref() == Some("up")
    });
    drop(up);
}
