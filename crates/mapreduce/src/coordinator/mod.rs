//! The coordinator: a deterministic, I/O-free state machine ([`synod_node::Node`]) that
//! hands out tasks, watches workers, and re-executes what failures lose.
//!
//! - Workers register, then heartbeat. A worker silent for `heartbeat_timeout` is declared
//!   dead: its running attempts go back to idle, and so do the map tasks it completed, unless
//!   every reduce task is already done (their output lived on its local disk).
//! - A reduce attempt that cannot fetch a map output reports it; that map task is re-run.
//! - Each phase's tail gets backup attempts: once no task of the phase is waiting, an idle
//!   worker receives a second copy of the longest-running task, if it has run for at least
//!   `backup_min_age` and twice the median of the phase's completed tasks. The first
//!   completion wins; every later report of the task is ignored.
//! - A task that fails by itself (its application panicked, its input vanished)
//!   `max_task_failures` times fails the job with the last reason.
//!
//! The coordinator is not replicated: if it dies the job is lost and must be started again.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use synod_node::{Context, Node, NodeId, TimerToken};

use crate::job::{JobPlan, JobSpec};
use crate::msg::{AttemptId, MapSource, MrMsg, TaskSpec, VERSION};
use crate::split::Split;

mod status;
pub use status::{Counts, Observer, Status, WorkerStatus};

const TICK: TimerToken = 1;
/// Most recent events kept for the status page.
const EVENTS_KEPT: usize = 200;

/// Timing and retry policy.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// How often liveness and backups are checked.
    pub tick: Duration,
    /// Silence after which a worker is declared dead.
    pub heartbeat_timeout: Duration,
    /// Self-inflicted failures of one task that fail the job.
    pub max_task_failures: u32,
    /// Minimum running time before a task gets a backup attempt.
    pub backup_min_age: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            tick: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_secs(5),
            max_task_failures: 4,
            backup_min_age: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Map,
    Reduce,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    worker: NodeId,
    started: Duration,
}

#[derive(Debug, Default)]
struct Task {
    /// Running attempts (more than one while a backup runs).
    attempts: BTreeMap<AttemptId, Attempt>,
    /// The winning attempt, once there is one.
    done: Option<(AttemptId, NodeId)>,
    /// For maps: partition sizes of the winning attempt.
    sizes: Vec<u64>,
    duration: Option<Duration>,
    failures: u32,
}

impl Task {
    fn idle(&self) -> bool {
        self.done.is_none() && self.attempts.is_empty()
    }
}

#[derive(Debug)]
struct Worker {
    addr: String,
    alive: bool,
    last_seen: Duration,
    running: Option<AttemptId>,
    /// Since when its heartbeats have disagreed with `running`.
    suspect_since: Option<Duration>,
    tasks_done: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reexecutions: u64,
    backups: u64,
    task_failures: u64,
    lost_workers: u64,
    duplicates_ignored: u64,
}

/// The coordinator of one job.
pub struct Coordinator {
    job: JobSpec,
    splits: Vec<Split>,
    cfg: CoordinatorConfig,
    maps: Vec<Task>,
    reduces: Vec<Task>,
    attempts: BTreeMap<AttemptId, (Kind, u32)>,
    workers: BTreeMap<NodeId, Worker>,
    next_attempt: AttemptId,
    started: Duration,
    now: Duration,
    error: Option<String>,
    finished: bool,
    counters: Counters,
    events: VecDeque<String>,
    observer: Option<Observer>,
}

impl Coordinator {
    pub fn new(plan: JobPlan, cfg: CoordinatorConfig) -> Self {
        let tasks = |n: u32| (0..n).map(|_| Task::default()).collect();
        Coordinator {
            maps: tasks(plan.spec.maps),
            reduces: tasks(plan.spec.reduces),
            job: plan.spec,
            splits: plan.splits,
            cfg,
            attempts: BTreeMap::new(),
            workers: BTreeMap::new(),
            next_attempt: 1,
            started: Duration::ZERO,
            now: Duration::ZERO,
            error: None,
            finished: false,
            counters: Counters::default(),
            events: VecDeque::new(),
            observer: None,
        }
    }

    /// Asks for a [`Status`] after every change (the TCP driver feeds its status page and
    /// progress bar from this).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn task(&mut self, kind: Kind, i: u32) -> &mut Task {
        match kind {
            Kind::Map => &mut self.maps[i as usize],
            Kind::Reduce => &mut self.reduces[i as usize],
        }
    }

    fn all_done(tasks: &[Task]) -> bool {
        tasks.iter().all(|t| t.done.is_some())
    }

    fn event(&mut self, what: String) {
        let at = self.now.saturating_sub(self.started).as_secs_f64();
        tracing::info!(target: "synod_mapreduce", "{what}");
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(format!("{at:.1}s {what}"));
    }

    /// Removes `attempt` from its task (the worker stopped running it, for whatever reason).
    /// Returns the task, or `None` for an attempt that is no longer current.
    fn end_attempt(&mut self, worker: NodeId, attempt: AttemptId) -> Option<(Kind, u32)> {
        if let Some(w) = self.workers.get_mut(&worker) {
            if w.running == Some(attempt) {
                w.running = None;
            }
        }
        let (kind, i) = self.attempts.remove(&attempt)?;
        self.task(kind, i).attempts.remove(&attempt);
        Some((kind, i))
    }

    /// Counts a re-execution when a task's last attempt ended without success. Nothing else
    /// is needed: an idle task is what the scheduler hands out next.
    fn note_if_requeued(&mut self, kind: Kind, i: u32) {
        if self.task(kind, i).idle() {
            self.counters.reexecutions += 1;
        }
    }

    fn lose_worker(&mut self, id: NodeId, why: &str) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if !w.alive {
            return;
        }
        w.alive = false;
        w.running = None;
        self.counters.lost_workers += 1;
        self.event(format!("worker {id} lost: {why}"));
        let orphaned: Vec<AttemptId> = self
            .attempts
            .keys()
            .copied()
            .filter(|a| {
                let (k, i) = self.attempts[a];
                let t = match k {
                    Kind::Map => &self.maps[i as usize],
                    Kind::Reduce => &self.reduces[i as usize],
                };
                t.attempts.get(a).is_some_and(|at| at.worker == id)
            })
            .collect();
        for a in orphaned {
            if let Some((k, i)) = self.end_attempt(id, a) {
                self.note_if_requeued(k, i);
            }
        }
        // Its completed map outputs were on its disk; reducers that have not finished may
        // still need them.
        if !Self::all_done(&self.reduces) {
            for i in 0..self.maps.len() {
                if self.maps[i].done.is_some_and(|(_, w)| w == id) {
                    self.maps[i].done = None;
                    self.counters.reexecutions += 1;
                    self.event(format!(
                        "map {i} output lost with worker {id}; re-running it"
                    ));
                }
            }
        }
    }

    fn median_duration(tasks: &[Task]) -> Duration {
        let mut d: Vec<Duration> = tasks.iter().filter_map(|t| t.duration).collect();
        d.sort();
        d.get(d.len() / 2).copied().unwrap_or_default()
    }

    /// The next task for worker `for_worker`: a waiting map, then (once every map is done) a
    /// waiting reduce, then a backup copy of a straggler. The bool says "backup".
    fn pick_task(&self, for_worker: NodeId) -> Option<(Kind, u32, bool)> {
        if let Some(i) = self.maps.iter().position(Task::idle) {
            return Some((Kind::Map, i as u32, false));
        }
        let (kind, tasks) = if Self::all_done(&self.maps) {
            if let Some(i) = self.reduces.iter().position(Task::idle) {
                return Some((Kind::Reduce, i as u32, false));
            }
            (Kind::Reduce, &self.reduces)
        } else {
            (Kind::Map, &self.maps)
        };
        let threshold = self
            .cfg
            .backup_min_age
            .max(2 * Self::median_duration(tasks));
        tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.done.is_none() && t.attempts.len() == 1)
            .filter_map(|(i, t)| {
                let a = t.attempts.values().next()?;
                let age = self.now.saturating_sub(a.started);
                (a.worker != for_worker && age >= threshold).then_some((age, i))
            })
            // Oldest first; among equals the lowest index, for determinism.
            .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)))
            .map(|(_, i)| (kind, i as u32, true))
    }

    fn schedule(&mut self, ctx: &mut dyn Context<MrMsg>) {
        if self.finished {
            return;
        }
        let idle: Vec<NodeId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive && w.running.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            let Some((kind, i, backup)) = self.pick_task(id) else {
                continue;
            };
            let attempt = self.next_attempt;
            self.next_attempt += 1;
            let spec = match kind {
                Kind::Map => TaskSpec::Map {
                    index: i,
                    split: self.splits[i as usize].clone(),
                },
                Kind::Reduce => TaskSpec::Reduce {
                    partition: i,
                    sources: self.sources(i),
                },
            };
            if backup {
                self.counters.backups += 1;
                self.event(format!(
                    "backup attempt of {} on worker {id}",
                    spec.describe()
                ));
            }
            let now = self.now;
            self.task(kind, i).attempts.insert(
                attempt,
                Attempt {
                    worker: id,
                    started: now,
                },
            );
            self.attempts.insert(attempt, (kind, i));
            if let Some(w) = self.workers.get_mut(&id) {
                w.running = Some(attempt);
                w.suspect_since = None;
            }
            ctx.send(
                id,
                MrMsg::Assign {
                    attempt,
                    task: spec,
                },
            );
        }
    }

    fn sources(&self, partition: u32) -> Vec<MapSource> {
        self.maps
            .iter()
            .enumerate()
            .filter_map(|(m, t)| {
                let (attempt, worker) = t.done?;
                Some(MapSource {
                    map: m as u32,
                    attempt,
                    worker,
                    addr: self
                        .workers
                        .get(&worker)
                        .map(|w| w.addr.clone())
                        .unwrap_or_default(),
                    len: t.sizes.get(partition as usize).copied().unwrap_or(0),
                })
            })
            .collect()
    }

    fn finish(&mut self, ctx: &mut dyn Context<MrMsg>, error: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        match &error {
            None => self.event("job complete".into()),
            Some(e) => self.event(format!("job failed: {e}")),
        }
        self.error = error.clone();
        for (id, w) in &self.workers {
            if w.alive {
                ctx.send(
                    *id,
                    MrMsg::Finished {
                        error: error.clone(),
                    },
                );
            }
        }
    }

    fn completed(
        &mut self,
        ctx: &mut dyn Context<MrMsg>,
        from: NodeId,
        attempt: AttemptId,
        sizes: Option<Vec<u64>>,
    ) {
        let started = self.attempts.get(&attempt).and_then(|&(k, i)| match k {
            Kind::Map => self.maps[i as usize]
                .attempts
                .get(&attempt)
                .map(|a| a.started),
            Kind::Reduce => self.reduces[i as usize]
                .attempts
                .get(&attempt)
                .map(|a| a.started),
        });
        let Some((kind, i)) = self.end_attempt(from, attempt) else {
            self.counters.duplicates_ignored += 1;
            return;
        };
        if let Some(w) = self.workers.get_mut(&from) {
            w.tasks_done += 1;
        }
        let now = self.now;
        let reduces = self.job.reduces as usize;
        let task = self.task(kind, i);
        if task.done.is_some() {
            self.counters.duplicates_ignored += 1;
            return;
        }
        if let Some(s) = &sizes {
            if s.len() != reduces {
                self.event(format!(
                    "map {i} reported {} partitions instead of {reduces}; re-running",
                    s.len()
                ));
                self.note_if_requeued(kind, i);
                return;
            }
        }
        task.done = Some((attempt, from));
        task.sizes = sizes.unwrap_or_default();
        task.duration = started.map(|s| now.saturating_sub(s));
        if kind == Kind::Map && Self::all_done(&self.maps) {
            self.event("every map task is done; reduce tasks can start".into());
        }
        if Self::all_done(&self.reduces) {
            self.finish(ctx, None);
        }
    }
}

impl Node for Coordinator {
    type Msg = MrMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<MrMsg>) {
        self.now = ctx.now();
        self.started = self.now;
        ctx.set_timer(self.cfg.tick, TICK);
        self.notify();
    }

    fn on_message(&mut self, ctx: &mut dyn Context<MrMsg>, from: NodeId, msg: MrMsg) {
        self.now = ctx.now();
        let known = self.workers.get(&from).is_some_and(|w| w.alive);
        match msg {
            MrMsg::Register { version, addr } => {
                if version != VERSION {
                    let reason = format!(
                        "worker version {version:?} does not match coordinator version {VERSION:?}"
                    );
                    self.event(format!("rejected worker {from}: {reason}"));
                    ctx.send(from, MrMsg::Rejected { reason });
                    return;
                }
                if known {
                    self.lose_worker(from, "it restarted");
                }
                self.workers.insert(
                    from,
                    Worker {
                        addr,
                        alive: true,
                        last_seen: self.now,
                        running: None,
                        suspect_since: None,
                        tasks_done: 0,
                    },
                );
                self.event(format!("worker {from} joined"));
                if self.finished {
                    ctx.send(
                        from,
                        MrMsg::Finished {
                            error: self.error.clone(),
                        },
                    );
                } else {
                    ctx.send(
                        from,
                        MrMsg::Welcome {
                            job: Box::new(self.job.clone()),
                        },
                    );
                }
            }
            _ if self.finished => ctx.send(
                from,
                MrMsg::Finished {
                    error: self.error.clone(),
                },
            ),
            MrMsg::Heartbeat { .. }
            | MrMsg::MapDone { .. }
            | MrMsg::ReduceDone { .. }
            | MrMsg::TaskFailed { .. }
            | MrMsg::FetchFailed { .. }
                if !known =>
            {
                ctx.send(from, MrMsg::Reregister);
            }
            MrMsg::Heartbeat { running, welcomed } => {
                let grace = self.cfg.heartbeat_timeout / 2;
                let now = self.now;
                let Some(w) = self.workers.get_mut(&from) else {
                    return;
                };
                w.last_seen = now;
                if !welcomed {
                    ctx.send(
                        from,
                        MrMsg::Welcome {
                            job: Box::new(self.job.clone()),
                        },
                    );
                }
                match w.running {
                    Some(a) if running != Some(a) => {
                        // The worker is not running what we gave it. If that lasts, the
                        // assignment or the worker's report of it was lost on the way (a
                        // report merely in flight arrives well within the grace period).
                        let since = *w.suspect_since.get_or_insert(now);
                        if now.saturating_sub(since) > grace {
                            w.suspect_since = None;
                            if let Some((k, i)) = self.end_attempt(from, a) {
                                self.event(format!(
                                    "attempt {a} on worker {from} went missing; re-queued"
                                ));
                                self.note_if_requeued(k, i);
                            }
                        }
                    }
                    _ => w.suspect_since = None,
                }
            }
            MrMsg::MapDone { attempt, sizes } => self.completed(ctx, from, attempt, Some(sizes)),
            MrMsg::ReduceDone { attempt } => self.completed(ctx, from, attempt, None),
            MrMsg::TaskFailed { attempt, reason } => {
                if let Some((k, i)) = self.end_attempt(from, attempt) {
                    let name = match k {
                        Kind::Map => format!("map {i}"),
                        Kind::Reduce => format!("reduce {i}"),
                    };
                    self.counters.task_failures += 1;
                    self.event(format!("{name} failed on worker {from}: {reason}"));
                    let max = self.cfg.max_task_failures;
                    let task = self.task(k, i);
                    task.failures += 1;
                    if task.failures >= max && task.done.is_none() {
                        let n = task.failures;
                        self.finish(
                            ctx,
                            Some(format!("{name} failed {n} times; last error: {reason}")),
                        );
                    } else {
                        self.note_if_requeued(k, i);
                    }
                }
            }
            MrMsg::FetchFailed {
                attempt,
                map,
                map_attempt,
            } => {
                if let Some((k, i)) = self.end_attempt(from, attempt) {
                    self.note_if_requeued(k, i);
                }
                if let Some(t) = self.maps.get_mut(map as usize) {
                    if t.done.is_some_and(|(a, _)| a == map_attempt) {
                        t.done = None;
                        self.counters.reexecutions += 1;
                        self.event(format!(
                            "map {map} output unreachable for worker {from}; re-running it"
                        ));
                    }
                }
            }
            // Messages meant for workers; a confused peer sent one here.
            MrMsg::Welcome { .. }
            | MrMsg::Rejected { .. }
            | MrMsg::Assign { .. }
            | MrMsg::Reregister
            | MrMsg::Finished { .. }
            | MrMsg::Fetch { .. }
            | MrMsg::Chunk { .. }
            | MrMsg::NoSuchOutput { .. } => {}
        }
        self.schedule(ctx);
        self.notify();
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<MrMsg>, token: TimerToken) {
        self.now = ctx.now();
        if token != TICK || self.finished {
            return;
        }
        let now = self.now;
        let silent: Vec<NodeId> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.alive && now.saturating_sub(w.last_seen) > self.cfg.heartbeat_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.lose_worker(id, "no heartbeat");
        }
        self.schedule(ctx);
        self.notify();
        ctx.set_timer(self.cfg.tick, TICK);
    }
}
