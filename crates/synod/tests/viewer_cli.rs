//! The protocol viewer, `synod sim`: the page it writes is the run the simulator reported
//! (`--json`), byte for byte the same for one seed, and a real browser (headless Chromium)
//! renders every node and event of it, steps through them and filters them as the address's
//! fragment asks (`#step=5&node=2`, the state the page's buttons and boxes write there), and
//! plays them.
//! `synod check --html` on a history the simulator wrote links to the viewer of that run.
//!
//! The browser test needs `chromium` on the PATH (Debian's package; `.ci/run` installs it)
//! and fails saying so without it.

mod support;

use serde_json::Value;
use support::browser::{attr, chromium, dump_dom, text};
use support::{path, run, stdout};

const SCENARIO: &str = "paxos-partition";
const SEED: &str = "4";

/// The run `synod sim --json` reports.
fn reported_run() -> Value {
    let out = run(&["sim", SCENARIO, "--seed", SEED, "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(&stdout(&out)).expect("--json prints one JSON document")
}

fn events(trace: &Value) -> &Vec<Value> {
    trace["events"].as_array().expect("events")
}

/// The indices of the events a filter keeps, in order.
fn kept(trace: &Value, keep: impl Fn(&Value) -> bool) -> Vec<usize> {
    events(trace)
        .iter()
        .enumerate()
        .filter(|(_, e)| keep(e))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn sim_lists_its_scenarios_and_refuses_unknown_ones() {
    let out = run(&["sim", "--list"]);
    assert!(out.status.success());
    let list = stdout(&out);
    for name in [
        "paxos-deaf",
        "paxos-partition",
        "view-change",
        "pb-failover",
        "shard-move",
        "random",
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(name) && l.len() > name.len() + 10),
            "{name} missing from:\n{list}"
        );
    }
    let out = run(&["sim", "no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2));
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert!(
        refusal.contains("paxos-deaf") && refusal.contains("random"),
        "{refusal}"
    );
    let out = run(&["sim", "paxos-deaf", "--history", "/dev/null"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a scenario without clients has no history"
    );
}

#[test]
fn same_seed_writes_the_same_page_and_the_summary_counts_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.html"),
        dir.path().join("b.html"),
        dir.path().join("c.html"),
    );
    let first = run(&["sim", SCENARIO, "--seed", SEED, "--html", path(&a)]);
    assert!(first.status.success(), "{first:?}");
    run(&["sim", SCENARIO, "--seed", SEED, "--html", path(&b)]);
    run(&["sim", SCENARIO, "--seed", "5", "--html", path(&c)]);
    let page = std::fs::read(&a).unwrap();
    assert_eq!(page, std::fs::read(&b).unwrap(), "one seed, two pages");
    assert_ne!(page, std::fs::read(&c).unwrap(), "two seeds, one page");
    let page = String::from_utf8(page).unwrap();
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "the page loads nothing from elsewhere"
    );

    let trace = reported_run();
    let counts = &trace["counts"];
    let summary = stdout(&first);
    let expected = format!(
        "{SCENARIO} seed {SEED}: {} nodes, {} events ({} sends, {} deliveries, {} drops",
        trace["nodes"].as_array().unwrap().len(),
        counts["events"],
        counts["send"],
        counts["deliver"],
        counts["drop"],
    );
    assert!(summary.starts_with(&expected), "{summary} vs {expected}");
    // A partition scenario records its partitions, the losses they cause, and decisions.
    for kind in ["partition", "drop", "decision"] {
        assert!(counts[kind].as_u64().unwrap() > 0, "no {kind}: {counts}");
    }
}

#[test]
fn the_viewer_renders_the_run_and_steps_and_filters_in_a_browser() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("viewer.html");
    let out = run(&["sim", SCENARIO, "--seed", SEED, "--html", path(&page)]);
    assert!(out.status.success(), "{out:?}");
    let trace = reported_run();
    let url = format!("file://{}", path(&page));
    let all = events(&trace).len();

    // Every node and every event the simulator reported, and the count of each kind.
    let dom = dump_dom(browser, &url);
    let nodes = trace["nodes"].as_array().unwrap();
    assert_eq!(text(&dom, "stat-nodes"), Some(nodes.len().to_string()));
    assert_eq!(text(&dom, "stat-events"), Some(all.to_string()));
    assert_eq!(text(&dom, "stat-shown"), Some(all.to_string()));
    assert_eq!(
        dom.matches("<g class=\"ev").count(),
        all,
        "one row per event"
    );
    assert_eq!(
        dom.matches("title=\"node ").count(),
        nodes.len(),
        "one lane per node"
    );
    for node in nodes {
        let name = node["name"].as_str().unwrap();
        assert!(
            dom.contains(&format!(">{name}</div>")),
            "no lane for {name}"
        );
    }
    for (kind, count) in trace["counts"].as_object().unwrap() {
        if kind != "events" {
            assert_eq!(
                attr(&dom, &format!("count-{kind}"), "data-count"),
                Some(count.to_string()),
                "{kind}"
            );
        }
    }
    assert_eq!(attr(&dom, "current", "data-index").as_deref(), Some("0"));

    // Step 5 among the events on node 2 (and the run's own, which belong to no node).
    let on_node_2 = kept(&trace, |e| e["node"].is_null() || e["node"] == 2);
    let dom = dump_dom(browser, &format!("{url}#step=5&node=2"));
    assert_eq!(text(&dom, "stat-shown"), Some(on_node_2.len().to_string()));
    assert_eq!(
        attr(&dom, "current", "data-index"),
        Some(on_node_2[5].to_string())
    );
    assert_eq!(
        text(&dom, "stat-step"),
        Some(format!("6 / {}", on_node_2.len()))
    );
    assert_eq!(dom.matches("title=\"node ").count(), 1, "one lane left");

    // Only decisions: the last step is the run's last decision.
    let decisions = kept(&trace, |e| e["kind"] == "decision");
    let last = decisions.len() - 1;
    let dom = dump_dom(browser, &format!("{url}#step={last}&kind=decision"));
    assert_eq!(text(&dom, "stat-shown"), Some(decisions.len().to_string()));
    assert_eq!(
        attr(&dom, "current", "data-index"),
        Some(decisions[last].to_string())
    );
    assert_eq!(
        attr(&dom, "current", "data-kind").as_deref(),
        Some("decision")
    );

    // Messages of one kind: the sends of Prepare.
    let prepares = kept(&trace, |e| {
        e["kind"] == "send" && e["label"].as_str().unwrap().contains("Prepare")
    });
    assert!(!prepares.is_empty());
    let dom = dump_dom(browser, &format!("{url}#step=1&kind=send&msg=Prepare"));
    assert_eq!(text(&dom, "stat-shown"), Some(prepares.len().to_string()));
    assert_eq!(
        attr(&dom, "current", "data-index"),
        Some(prepares[1].to_string())
    );

    // Playing steps on by itself: four events a second of the browser's (virtual) time.
    let dom = dump_dom(browser, &format!("{url}#kind=decision&play"));
    let step: usize = attr(&dom, "current", "data-index")
        .and_then(|i| decisions.iter().position(|&d| d.to_string() == i))
        .expect("the current event is a decision");
    assert!(step >= 2, "played only to decision {step}");
}

#[test]
fn check_links_a_simulator_history_to_the_viewer_of_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let out = run(&[
        "sim",
        "pb-failover",
        "--seed",
        "2",
        "--history",
        path(&history),
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines = std::fs::read_to_string(&history).unwrap();
    assert!(lines.lines().count() >= 7, "{lines}");
    assert!(lines
        .lines()
        .all(|l| l.contains("\"scenario\":\"pb-failover\"") && l.contains("\"seed\":2")));

    let report = dir.path().join("report.html");
    let out = run(&["check", path(&history), "--html", path(&report)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let viewer = dir.path().join("report.viewer.html");
    assert!(stdout(&out).contains(&format!("viewer written to {}", path(&viewer))));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("href=\"report.viewer.html\""), "{html}");
    assert!(html.contains("synod sim pb-failover --seed 2 --html report.viewer.html"));
    // The linked page is the viewer of that very run.
    let again = dir.path().join("again.html");
    run(&["sim", "pb-failover", "--seed", "2", "--html", path(&again)]);
    assert_eq!(
        std::fs::read(&viewer).unwrap(),
        std::fs::read(&again).unwrap()
    );

    // A history from elsewhere gets a report and no viewer.
    let plain = dir.path().join("plain.jsonl");
    std::fs::write(
        &plain,
        "{\"client\": 1, \"op\": \"put\", \"key\": \"k\", \"value\": \"v\", \"call\": 1, \"return\": 2}\n",
    )
    .unwrap();
    let plain_report = dir.path().join("plain.html");
    let out = run(&["check", path(&plain), "--html", path(&plain_report)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("viewer"));
    assert!(!dir.path().join("plain.viewer.html").exists());
}
