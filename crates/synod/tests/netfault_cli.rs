//! Faults on a real network, short: `scripts/netfault.py --short` runs the Paxos KV, then
//! the sharded KV, with every host in a network namespace of its own, under a RESP load, and
//! puts the cluster through each fault once for 8 s (partitions of the leader and of a
//! follower, a bridge, a lossy link, kill -9, SIGSTOP), each fault 2 s after the last heal.
//! The history must be linearizable and no fault may leave the majority side without a
//! successful operation for longer than [`MAX_GAP`], the lossy leader included (its
//! followers, which used to fall behind and fill their holes one proposal per 100 ms, now
//! learn missed decisions in bulk). The long run, with the table per fault kind, is the same
//! script without `--short` (docs/running.md, "Faults on a real network").
//!
//! It needs root, iproute2 and iptables; without them it fails and says so, unless
//! `SYNOD_SKIP_NETNS=1` says this machine cannot run it.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// The longest the majority side may go without a successful operation, in seconds. The
/// target is 1 s (docs/paxos.md, "Timings"); this allows for a loaded 2-core CI machine
/// running every process of the cluster, and still fails the multi-second outages of links
/// stuck in the kernel's retransmission backoff that the test is here to keep away.
const MAX_GAP: &str = "2.5";

/// The runs take the machine's cores: one at a time, so neither measures the other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn netfault(extra: &[&str]) {
    if std::env::var("SYNOD_SKIP_NETNS").is_ok_and(|v| v == "1") {
        eprintln!("SYNOD_SKIP_NETNS=1: skipping the network-namespace fault test");
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/netfault.py");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--short", "--max-gap", MAX_GAP])
        .args(["--synod", env!("CARGO_BIN_EXE_synod")])
        .arg("--dir")
        .arg(dir.path().join("run"))
        .args(extra)
        .output()
        .expect("running python3 scripts/netfault.py (is python3 installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The table is the point of the run: show it even when it passes.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scripts/netfault.py {extra:?} failed ({}):\n{stdout}\n{stderr}\n(set SYNOD_SKIP_NETNS=1 \
         only on a machine that cannot create network namespaces)",
        out.status
    );
    assert!(stdout.contains("check rc=0 linearizable"), "{stdout}");
}

#[test]
fn paxos_kv_rides_out_single_faults_on_a_real_network() {
    netfault(&[]);
}

#[test]
fn sharded_kv_rides_out_single_faults_on_a_real_network() {
    netfault(&["--sharded"]);
}
