//! The course's MapReduce scenarios on the deterministic simulator, with real map and reduce
//! functions on temporary directories. Every scenario compares the output byte for byte with
//! the sequential runner's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use synod_mapreduce::coordinator::{Coordinator, CoordinatorConfig, Status};
use synod_mapreduce::executor::LocalExecutor;
use synod_mapreduce::msg::{MrMsg, TaskSpec};
use synod_mapreduce::worker::{WorkerConfig, WorkerEnd, WorkerNode};
use synod_mapreduce::{plan, run_sequential, App, AppSpec, JobConfig, JobPlan, MapInput, Registry};
use synod_node::NodeId;
use synod_sim::Simulator;

const COORD: NodeId = NodeId(0);

/// The course's test application: whitespace-separated tokens, counted. Over the numbers
/// 0..99999 every token appears exactly once, so any lost or doubled record shows.
struct Tokens;

impl App for Tokens {
    fn map(&self, input: &MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
        for t in input
            .contents
            .split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
        {
            emit(t, b"1");
        }
    }
    fn reduce(&self, _: &[u8], values: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        values.count().to_string().into_bytes()
    }
}

fn registry() -> Registry {
    Registry::builtin().with("tokens", |_| Ok(Arc::new(Tokens)))
}

type Worker = WorkerNode<LocalExecutor>;

struct Cluster {
    sim: Simulator<MrMsg>,
    dir: tempfile::TempDir,
    plan: JobPlan,
    expected: PathBuf,
}

fn coordinator_config() -> CoordinatorConfig {
    CoordinatorConfig {
        tick: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(2),
        max_task_failures: 4,
        backup_min_age: Duration::from_secs(5),
    }
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        tick: Duration::from_millis(20),
        heartbeat_interval: Duration::from_millis(250),
        fetch_retry: Duration::from_secs(1),
        fetch_timeout: Duration::from_secs(3),
        chunk: 16 * 1024,
    }
}

impl Cluster {
    /// The numbers 0..99999 as input, `maps` × `reduces` tasks, the sequential reference
    /// computed up front, and a coordinator started.
    fn new(seed: u64, maps: u32, reduces: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("numbers.txt");
        let text: String = (0..100_000).map(|i| format!("{i}\n")).collect();
        std::fs::write(&input, text).unwrap();
        let job = |out: &str| {
            let mut cfg = JobConfig::new(
                AppSpec::new("tokens"),
                vec![input.clone()],
                dir.path().join(out),
            );
            cfg.maps = Some(maps);
            cfg.reduces = reduces;
            plan(&cfg, &registry()).unwrap()
        };
        let (reference, app) = job("expected");
        run_sequential(app.as_ref(), &reference).unwrap();
        let (plan, _) = job("out");
        let mut sim = Simulator::new(seed);
        let p = plan.clone();
        sim.add_node(COORD, move || {
            Coordinator::new(p.clone(), coordinator_config())
        });
        Cluster {
            sim,
            expected: reference.spec.output,
            dir,
            plan,
        }
    }

    /// Adds worker `id` whose every task takes `task_time` of virtual time. Each start
    /// (including restarts) gets a fresh work directory: a crash loses the local disk.
    fn add_worker(&mut self, id: u64, task_time: Duration) {
        let base = self.dir.path().join(format!("worker-{id}"));
        let mut life = 0;
        self.sim.add_node(NodeId(id), move || {
            life += 1;
            let dir = base.join(life.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let exec =
                LocalExecutor::inline(dir, registry(), Box::new(move |_: &TaskSpec| task_time));
            WorkerNode::new(COORD, String::new(), worker_config(), exec)
        });
    }

    fn status(&self) -> Status {
        self.sim.node::<Coordinator>(COORD).unwrap().status()
    }

    fn tasks_done(&self, id: u64) -> u64 {
        self.sim
            .node::<Worker>(NodeId(id))
            .map_or(0, |w| w.tasks_run())
    }

    fn run_to_completion(&mut self, limit: Duration) -> Status {
        self.sim.require(limit, "job completion", |s| {
            s.node::<Coordinator>(COORD).unwrap().status().finished()
        });
        let status = self.status();
        assert_eq!(status.phase, "done", "{status:#?}");
        // Workers learn the job is over.
        self.sim.run_for(Duration::from_secs(1));
        status
    }

    /// The output equals the sequential run's, file by file, byte for byte.
    fn check_output(&self) {
        synod_mapreduce::output::finish(&self.plan.spec.output, self.plan.spec.reduces).unwrap();
        let list = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        let names = list(&self.expected);
        assert_eq!(names.len(), self.plan.spec.reduces as usize);
        assert_eq!(list(&self.plan.spec.output), names);
        let mut lines = 0;
        for n in &names {
            let want = std::fs::read(self.expected.join(n)).unwrap();
            assert_eq!(
                std::fs::read(self.plan.spec.output.join(n)).unwrap(),
                want,
                "{n} differs"
            );
            lines += want.iter().filter(|&&b| b == b'\n').count();
        }
        assert_eq!(lines, 100_000, "every number exactly once");
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn basic_two_workers_100_maps_50_reduces() {
    let mut c = Cluster::new(1, 100, 50);
    c.add_worker(1, SECOND);
    c.add_worker(2, SECOND);
    let status = c.run_to_completion(Duration::from_secs(600));
    c.check_output();
    assert_eq!((status.maps.done, status.reduces.done), (100, 50));
    assert!(
        c.tasks_done(1) > 20 && c.tasks_done(2) > 20,
        "both workers did work: {status:#?}"
    );
    assert_eq!(
        status.reexecutions + status.lost_workers + status.backups,
        0,
        "{:#?}",
        status.events
    );
    for id in [1, 2] {
        assert_eq!(
            c.sim.node::<Worker>(NodeId(id)).unwrap().end(),
            Some(&WorkerEnd::JobOver { error: None })
        );
    }
}

#[test]
fn one_worker_fails_after_10_tasks() {
    let mut c = Cluster::new(2, 100, 50);
    c.add_worker(1, SECOND);
    c.add_worker(2, SECOND);
    c.sim.require(
        Duration::from_secs(300),
        "worker 1 to finish 10 tasks",
        |s| {
            s.node::<Worker>(NodeId(1))
                .is_some_and(|w| w.tasks_run() >= 10)
        },
    );
    c.sim.crash(NodeId(1));
    let status = c.run_to_completion(Duration::from_secs(600));
    c.check_output();
    assert_eq!(status.lost_workers, 1);
    assert!(
        status.reexecutions >= 10,
        "its map outputs were re-run: {status:#?}"
    );
}

#[test]
fn many_workers_fail_repeatedly_while_new_ones_join() {
    let mut c = Cluster::new(3, 100, 50);
    let mut next_id = 1;
    let mut alive: Vec<u64> = Vec::new();
    for _ in 0..3 {
        c.add_worker(next_id, SECOND);
        alive.push(next_id);
        next_id += 1;
    }
    let mut rounds = 0;
    while !c.status().finished() && rounds < 200 {
        rounds += 1;
        c.sim.run_for(Duration::from_secs(4));
        // Crash one or two workers, restart some crashed ones (a restart is a new worker
        // to the coordinator), and bring in a brand-new one.
        use rand::Rng;
        let kill = c.sim.rng().gen_range(1..=2usize).min(alive.len());
        for _ in 0..kill {
            let i = c.sim.rng().gen_range(0..alive.len());
            let id = alive.swap_remove(i);
            c.sim.crash(NodeId(id));
            if c.sim.rng().gen_bool(0.5) {
                c.sim.restart(NodeId(id));
                alive.push(id);
            }
        }
        c.add_worker(next_id, SECOND);
        alive.push(next_id);
        next_id += 1;
    }
    let status = c.run_to_completion(Duration::from_secs(600));
    c.check_output();
    assert!(status.lost_workers >= 10, "{status:#?}");
    assert!(status.reexecutions > 0);
}

#[test]
fn map_worker_lost_after_its_maps_completed() {
    let mut c = Cluster::new(4, 20, 10);
    for id in 1..=3 {
        c.add_worker(id, SECOND);
    }
    c.sim
        .require(Duration::from_secs(300), "the reduce phase", |s| {
            s.node::<Coordinator>(COORD).unwrap().status().phase == "reduce"
        });
    // Worker 3 holds map outputs no reducer has fully fetched yet.
    let maps_on_3 = c.tasks_done(3);
    assert!(maps_on_3 > 0);
    c.sim.crash(NodeId(3));
    let status = c.run_to_completion(Duration::from_secs(600));
    c.check_output();
    assert_eq!(status.lost_workers, 1);
    assert!(status.reexecutions >= maps_on_3, "{status:#?}");
    assert!(
        status
            .events
            .iter()
            .any(|e| e.contains("output lost with worker n3")),
        "{:#?}",
        status.events
    );
}

#[test]
fn straggler_gets_a_backup_task() {
    let mut c = Cluster::new(5, 20, 4);
    c.add_worker(1, SECOND);
    c.add_worker(2, SECOND);
    c.add_worker(3, Duration::from_secs(1000));
    let status = c.run_to_completion(Duration::from_secs(200));
    c.check_output();
    assert!(status.backups >= 1, "{status:#?}");
    assert!(
        c.sim.now() < Duration::from_secs(100),
        "the straggler did not hold the job up: {:?}",
        c.sim.now()
    );
    // The straggler's own attempt never finished; its late result would be ignored.
    assert_eq!(c.tasks_done(3), 0);
}

#[test]
fn a_worker_of_another_version_is_rejected() {
    let mut c = Cluster::new(6, 4, 2);
    c.sim.call::<Coordinator, _>(COORD, |node, ctx| {
        use synod_node::Node;
        node.on_message(
            ctx,
            NodeId(9),
            MrMsg::Register {
                version: "synod-mapreduce/0.0.0/0".into(),
                addr: String::new(),
            },
        );
    });
    assert!(c.status().workers.is_empty());
    assert!(c
        .status()
        .events
        .iter()
        .any(|e| e.contains("rejected worker n9")));
}

#[test]
fn same_seed_same_run() {
    // Under a faulty network, so that the seed decides a lot. (Message digests would differ
    // only because each run has its own temporary paths inside the job spec.)
    let run = |seed| {
        let mut c = Cluster::new(seed, 10, 3);
        c.sim.set_network(synod_sim::NetConfig {
            drop: 0.1,
            duplicate: 0.1,
            ..synod_sim::NetConfig::reliable()
        });
        c.add_worker(1, SECOND);
        c.add_worker(2, SECOND);
        let status = c.run_to_completion(Duration::from_secs(600));
        (c.sim.now(), c.sim.sim_stats().steps, status)
    };
    assert_eq!(run(7), run(7));
}

#[test]
fn lossy_duplicating_reordering_network_still_gives_the_exact_output() {
    // Every kind of message gets lost somewhere: assignments, reports, welcomes, chunks.
    for seed in synod_sim::seeds(3) {
        let mut c = Cluster::new(seed, 20, 5);
        c.sim.set_network(synod_sim::NetConfig {
            drop: 0.2,
            duplicate: 0.1,
            long_delay_prob: 0.05,
            long_delay: (Duration::from_millis(200), Duration::from_secs(2)),
            ..synod_sim::NetConfig::reliable()
        });
        for id in 1..=3 {
            c.add_worker(id, SECOND);
        }
        let under_faults = c.sim.run_until(Duration::from_secs(600), |s| {
            s.node::<Coordinator>(COORD).unwrap().status().finished()
        });
        assert!(
            under_faults,
            "the job finishes despite the faults (seed {seed})"
        );
        c.sim.heal_all();
        c.run_to_completion(Duration::from_secs(600));
        c.check_output();
    }
}

/// Panics on every record: each attempt fails, and the job fails with the reason.
struct Broken;

impl App for Broken {
    fn map(&self, _: &MapInput<'_>, _: &mut dyn FnMut(&[u8], &[u8])) {
        panic!("cannot parse record");
    }
    fn reduce(&self, _: &[u8], _: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        Vec::new()
    }
}

#[test]
fn a_task_that_keeps_failing_fails_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\n").unwrap();
    let reg = || Registry::builtin().with("broken", |_| Ok(Arc::new(Broken)));
    let mut cfg = JobConfig::new(AppSpec::new("broken"), vec![input], dir.path().join("out"));
    cfg.maps = Some(2);
    let (p, _) = plan(&cfg, &reg()).unwrap();
    let mut sim = Simulator::<MrMsg>::new(9);
    sim.add_node(COORD, move || {
        Coordinator::new(p.clone(), coordinator_config())
    });
    for id in 1..=2u64 {
        let wdir = dir.path().join(format!("w{id}"));
        std::fs::create_dir_all(&wdir).unwrap();
        sim.add_node(NodeId(id), move || {
            let exec = LocalExecutor::inline(wdir.clone(), reg(), Box::new(|_: &TaskSpec| SECOND));
            WorkerNode::new(COORD, String::new(), worker_config(), exec)
        });
    }
    sim.require(Duration::from_secs(60), "job end", |s| {
        s.node::<Coordinator>(COORD).unwrap().status().finished()
    });
    let status = sim.node::<Coordinator>(COORD).unwrap().status();
    assert_eq!(status.phase, "failed");
    let err = status.error.unwrap();
    assert!(
        err.contains("failed 4 times") && err.contains("cannot parse record"),
        "{err}"
    );
    sim.run_for(SECOND);
    match sim.node::<Worker>(NodeId(1)).unwrap().end() {
        Some(WorkerEnd::JobOver { error: Some(e) }) => assert!(e.contains("cannot parse record")),
        other => panic!("worker should know the job failed: {other:?}"),
    }
}

#[test]
fn map_output_unreachable_from_a_reducer_is_recomputed() {
    // Worker 3 stays alive for the coordinator, but worker 1 cannot reach it: worker 1's
    // reduce attempts report the fetch failures, and the maps are re-run where reachable.
    let mut c = Cluster::new(10, 12, 6);
    for id in 1..=3 {
        c.add_worker(id, SECOND);
    }
    c.sim
        .require(Duration::from_secs(300), "the reduce phase", |s| {
            s.node::<Coordinator>(COORD).unwrap().status().phase == "reduce"
        });
    c.sim.block_link(NodeId(1), NodeId(3));
    c.sim.block_link(NodeId(3), NodeId(1));
    let status = c.run_to_completion(Duration::from_secs(900));
    c.check_output();
    assert_eq!(status.lost_workers, 0);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.contains("unreachable for worker n1")),
        "{:#?}",
        status.events
    );
}
