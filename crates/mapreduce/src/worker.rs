//! The worker: a deterministic state machine ([`synod_node::Node`]) that registers with the
//! coordinator, heartbeats, runs the tasks it is given through an [`Executor`], fetches map
//! output for its reduce tasks from other workers in chunks, and serves its own map output.
//!
//! Fetches are retried when a chunk does not arrive in time; a source that stays silent for
//! `fetch_timeout`, or answers that it has no such output, is reported to the coordinator,
//! which re-runs that map task, and the reduce attempt is abandoned.

use std::time::Duration;

use synod_node::{Context, Node, NodeId, TimerToken};

use crate::executor::Executor;
use crate::job::JobSpec;
use crate::msg::{AttemptId, MapSource, MrMsg, TaskSpec, VERSION};
use crate::record::Run;

const TICK: TimerToken = 1;
/// A driver delivers this timer token when a task's result is ready, so the worker reports
/// it at once instead of at its next tick.
pub const WAKE: TimerToken = 2;

/// Timing of a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How often the executor is polled and fetches are checked.
    pub tick: Duration,
    pub heartbeat_interval: Duration,
    /// A chunk request not answered in this time is sent again.
    pub fetch_retry: Duration,
    /// A source that makes no progress for this long is reported as lost.
    pub fetch_timeout: Duration,
    /// Bytes per fetched chunk (must fit the transport's frame limit).
    pub chunk: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            tick: Duration::from_millis(20),
            heartbeat_interval: Duration::from_millis(500),
            fetch_retry: Duration::from_secs(2),
            fetch_timeout: Duration::from_secs(10),
            chunk: 1 << 20,
        }
    }
}

struct Source {
    src: MapSource,
    run: Option<Run>,
    got: u64,
    done: bool,
    last_progress: Duration,
    last_request: Duration,
}

struct Fetching {
    attempt: AttemptId,
    partition: u32,
    sources: Vec<Source>,
}

/// How the worker's participation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The job finished; `error` is its failure reason, if it failed.
    JobOver { error: Option<String> },
    /// The coordinator refused this worker.
    Rejected(String),
}

pub struct WorkerNode<E: Executor> {
    coordinator: NodeId,
    addr: String,
    cfg: WorkerConfig,
    exec: E,
    job: Option<JobSpec>,
    running: Option<AttemptId>,
    fetching: Option<Fetching>,
    early: Option<(AttemptId, TaskSpec)>,
    last_heartbeat: Duration,
    end: Option<WorkerEnd>,
    tasks_run: u64,
}

impl<E: Executor> WorkerNode<E> {
    /// A worker of the coordinator `coordinator`; `addr` is where other workers can fetch
    /// from it over TCP (empty in the simulator).
    pub fn new(coordinator: NodeId, addr: String, cfg: WorkerConfig, exec: E) -> Self {
        WorkerNode {
            coordinator,
            addr,
            cfg,
            exec,
            job: None,
            running: None,
            fetching: None,
            early: None,
            last_heartbeat: Duration::ZERO,
            end: None,
            tasks_run: 0,
        }
    }

    /// `Some` once the worker has nothing more to do.
    pub fn end(&self) -> Option<&WorkerEnd> {
        self.end.as_ref()
    }

    /// Attempts this worker finished (successfully or not).
    pub fn tasks_run(&self) -> u64 {
        self.tasks_run
    }

    fn register(&mut self, ctx: &mut dyn Context<MrMsg>) {
        self.job = None;
        self.running = None;
        self.fetching = None;
        self.early = None;
        self.exec.reset();
        ctx.send(
            self.coordinator,
            MrMsg::Register {
                version: VERSION.to_string(),
                addr: self.addr.clone(),
            },
        );
    }

    fn assign(&mut self, ctx: &mut dyn Context<MrMsg>, attempt: AttemptId, task: TaskSpec) {
        if self.job.is_none() {
            // Overtook the welcome on the network; run it once the welcome arrives.
            self.early = Some((attempt, task));
            return;
        }
        let (Some(job), None) = (&self.job, self.running) else {
            // Busy: the coordinator notices from our heartbeats.
            return;
        };
        let now = ctx.now();
        self.running = Some(attempt);
        match task {
            TaskSpec::Map { index, split } => self.exec.start_map(now, job, attempt, index, &split),
            TaskSpec::Reduce { partition, sources } => {
                let me = ctx.id();
                let sources: Vec<Source> = sources
                    .into_iter()
                    .map(|src| {
                        // Empty partitions need no fetch; our own output is read in place.
                        let local = if src.len == 0 {
                            Some(Run::whole(Default::default(), 0))
                        } else if src.worker == me
                            || (!self.addr.is_empty() && src.addr == self.addr)
                        {
                            self.exec.map_run(src.map, src.attempt, partition)
                        } else {
                            None
                        };
                        Source {
                            done: local.is_some(),
                            run: local,
                            src,
                            got: 0,
                            last_progress: now,
                            last_request: now,
                        }
                    })
                    .collect();
                for s in sources.iter().filter(|s| !s.done && !s.src.addr.is_empty()) {
                    ctx.add_peer(s.src.worker, &s.src.addr);
                }
                self.fetching = Some(Fetching {
                    attempt,
                    partition,
                    sources,
                });
                for s in self
                    .fetching
                    .iter()
                    .flat_map(|f| f.sources.iter())
                    .filter(|s| !s.done)
                {
                    ctx.send(s.src.worker, fetch_msg(&s.src, partition, 0));
                }
                self.maybe_reduce(ctx);
            }
        }
    }

    /// Starts the reduce once every source is complete.
    fn maybe_reduce(&mut self, ctx: &mut dyn Context<MrMsg>) {
        let ready = self
            .fetching
            .as_ref()
            .is_some_and(|f| f.sources.iter().all(|s| s.done));
        if !ready {
            return;
        }
        let (Some(f), Some(job)) = (self.fetching.take(), &self.job) else {
            return;
        };
        let runs = f
            .sources
            .into_iter()
            .filter_map(|s| s.run)
            .filter(|r| !r.is_empty())
            .collect();
        self.exec
            .start_reduce(ctx.now(), job, f.attempt, f.partition, runs);
    }

    fn fetch_failed(&mut self, ctx: &mut dyn Context<MrMsg>, map: u32, map_attempt: AttemptId) {
        let Some(f) = self.fetching.take() else {
            return;
        };
        self.running = None;
        ctx.send(
            self.coordinator,
            MrMsg::FetchFailed {
                attempt: f.attempt,
                map,
                map_attempt,
            },
        );
    }

    fn chunk(
        &mut self,
        ctx: &mut dyn Context<MrMsg>,
        map: u32,
        map_attempt: AttemptId,
        offset: u64,
        data: Vec<u8>,
        eof: bool,
    ) {
        let now = ctx.now();
        let Some(f) = self.fetching.as_mut() else {
            return;
        };
        let (attempt, partition) = (f.attempt, f.partition);
        let Some(s) = f
            .sources
            .iter_mut()
            .find(|s| s.src.map == map && s.src.attempt == map_attempt && !s.done)
        else {
            return;
        };
        if offset != s.got {
            return; // A duplicate or a reply to an earlier retry.
        }
        match self.exec.store_fetched(attempt, map, &data) {
            Ok(run) => s.run = Some(run),
            Err(reason) => {
                self.running = None;
                self.fetching = None;
                ctx.send(self.coordinator, MrMsg::TaskFailed { attempt, reason });
                return;
            }
        }
        s.got += data.len() as u64;
        s.last_progress = now;
        s.last_request = now;
        let complete = s.got == s.src.len;
        if complete {
            s.done = true;
        } else if eof || s.got > s.src.len {
            // The source's output is not the size the coordinator was told: not the output
            // we asked for. Treat it as lost, like a source that does not answer.
            self.fetch_failed(ctx, map, map_attempt);
            return;
        } else {
            ctx.send(s.src.worker, fetch_msg(&s.src, partition, s.got));
        }
        self.maybe_reduce(ctx);
    }

    fn serve(
        &mut self,
        ctx: &mut dyn Context<MrMsg>,
        from: NodeId,
        map: u32,
        map_attempt: AttemptId,
        partition: u32,
        offset: u64,
    ) {
        let found = self
            .exec
            .map_run(map, map_attempt, partition)
            .and_then(|run| {
                let data = self.exec.read(&run, offset, self.cfg.chunk).ok()?;
                Some((run.len(), data))
            });
        let reply = MrMsg::fetch_reply(map, map_attempt, partition, offset, found);
        ctx.send(from, reply);
    }

    fn tick(&mut self, ctx: &mut dyn Context<MrMsg>) {
        let now = ctx.now();
        while let Some((attempt, outcome)) = self.exec.poll(now) {
            if self.running != Some(attempt) {
                continue; // Abandoned after a re-registration.
            }
            self.running = None;
            self.tasks_run += 1;
            let msg = match outcome {
                Ok(Some(sizes)) => MrMsg::MapDone { attempt, sizes },
                Ok(None) => MrMsg::ReduceDone { attempt },
                Err(reason) => MrMsg::TaskFailed { attempt, reason },
            };
            ctx.send(self.coordinator, msg);
        }
        if now.saturating_sub(self.last_heartbeat) >= self.cfg.heartbeat_interval {
            self.last_heartbeat = now;
            ctx.send(
                self.coordinator,
                MrMsg::Heartbeat {
                    running: self.running,
                    welcomed: self.job.is_some(),
                },
            );
        }
        let mut lost = None;
        if let Some(f) = self.fetching.as_mut() {
            for s in f.sources.iter_mut().filter(|s| !s.done) {
                if now.saturating_sub(s.last_progress) >= self.cfg.fetch_timeout {
                    lost = Some((s.src.map, s.src.attempt));
                    break;
                }
                if now.saturating_sub(s.last_request) >= self.cfg.fetch_retry {
                    s.last_request = now;
                    ctx.send(s.src.worker, fetch_msg(&s.src, f.partition, s.got));
                }
            }
        }
        if let Some((map, attempt)) = lost {
            self.fetch_failed(ctx, map, attempt);
        }
    }
}

fn fetch_msg(src: &MapSource, partition: u32, offset: u64) -> MrMsg {
    MrMsg::Fetch {
        map: src.map,
        map_attempt: src.attempt,
        partition,
        offset,
    }
}

impl<E: Executor> Node for WorkerNode<E> {
    type Msg = MrMsg;

    fn on_start(&mut self, ctx: &mut dyn Context<MrMsg>) {
        self.register(ctx);
        ctx.set_timer(self.cfg.tick, TICK);
    }

    fn on_message(&mut self, ctx: &mut dyn Context<MrMsg>, from: NodeId, msg: MrMsg) {
        if self.end.is_some() {
            return;
        }
        match msg {
            MrMsg::Welcome { job } if from == self.coordinator => {
                self.job = Some(*job);
                if let Some((attempt, task)) = self.early.take() {
                    self.assign(ctx, attempt, task);
                }
            }
            MrMsg::Assign { attempt, task } if from == self.coordinator => {
                self.assign(ctx, attempt, task)
            }
            MrMsg::Reregister if from == self.coordinator => self.register(ctx),
            MrMsg::Rejected { reason } if from == self.coordinator => {
                self.end = Some(WorkerEnd::Rejected(reason))
            }
            MrMsg::Finished { error } if from == self.coordinator => {
                // Nobody will fetch our map output any more.
                self.exec.reset();
                self.end = Some(WorkerEnd::JobOver { error })
            }
            MrMsg::Fetch {
                map,
                map_attempt,
                partition,
                offset,
            } => self.serve(ctx, from, map, map_attempt, partition, offset),
            MrMsg::Chunk {
                map,
                map_attempt,
                offset,
                data,
                eof,
                ..
            } => self.chunk(ctx, map, map_attempt, offset, data, eof),
            MrMsg::NoSuchOutput { map, map_attempt } => {
                let ours = self.fetching.as_ref().is_some_and(|f| {
                    f.sources
                        .iter()
                        .any(|s| s.src.map == map && s.src.attempt == map_attempt)
                });
                if ours {
                    self.fetch_failed(ctx, map, map_attempt);
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut dyn Context<MrMsg>, token: TimerToken) {
        if self.end.is_some() {
            return;
        }
        match token {
            TICK => {
                self.tick(ctx);
                ctx.set_timer(self.cfg.tick, TICK);
            }
            // Not re-armed: the TICK chain keeps running on its own.
            WAKE => self.tick(ctx),
            _ => {}
        }
    }
}
