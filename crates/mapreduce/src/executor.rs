//! Task execution behind a small trait, so the worker core stays free of I/O.
//!
//! [`LocalExecutor`] runs tasks with [`crate::task`] on a local work directory. Over TCP it
//! runs each task on its own thread (the worker keeps heartbeating meanwhile); under the
//! simulator it runs the task at once and releases the result after a virtual delay, which
//! keeps runs deterministic and lets tests make one worker a straggler.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apps::Registry;
use crate::job::JobSpec;
use crate::msg::{AttemptId, TaskSpec};
use crate::record::Run;
use crate::split::Split;
use crate::task::{run_map, run_reduce, MapOutput};

/// What a finished attempt produced: partition sizes for a map, nothing for a reduce.
pub type Outcome = Result<Option<Vec<u64>>, String>;

/// Runs tasks and keeps their map outputs for reducers to fetch.
pub trait Executor: Send + 'static {
    fn start_map(
        &mut self,
        now: Duration,
        job: &JobSpec,
        attempt: AttemptId,
        index: u32,
        split: &Split,
    );
    fn start_reduce(
        &mut self,
        now: Duration,
        job: &JobSpec,
        attempt: AttemptId,
        partition: u32,
        runs: Vec<Run>,
    );
    /// A finished attempt, if one is ready at `now`.
    fn poll(&mut self, now: Duration) -> Option<(AttemptId, Outcome)>;
    /// Partition `partition` of this worker's output of map `map` (attempt `attempt`).
    fn map_run(&self, map: u32, attempt: AttemptId, partition: u32) -> Option<Run>;
    /// Up to `max` bytes of `run` from `offset`.
    fn read(&self, run: &Run, offset: u64, max: usize) -> Result<Vec<u8>, String>;
    /// Appends fetched bytes of `map`'s output for reduce attempt `attempt`; returns the run
    /// received so far.
    fn store_fetched(&mut self, attempt: AttemptId, map: u32, data: &[u8]) -> Result<Run, String>;
    /// Forgets every map output and fetched file (the worker starts over).
    fn reset(&mut self);
}

/// Map outputs by (map task, attempt), shared with a TCP fetch server.
pub type OutputIndex = Arc<Mutex<BTreeMap<(u32, AttemptId), MapOutput>>>;

/// Reads up to `max` bytes of `run` from `offset`.
pub fn read_run(run: &Run, offset: u64, max: usize) -> Result<Vec<u8>, String> {
    let len = run.len();
    let n = len.saturating_sub(offset).min(max as u64) as usize;
    let mut f =
        std::fs::File::open(&run.path).map_err(|e| format!("{}: {e}", run.path.display()))?;
    f.seek(SeekFrom::Start(run.start.saturating_add(offset)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf)
        .map_err(|e| format!("{}: {e}", run.path.display()))?;
    Ok(buf)
}

/// Looks up one partition of a map output in an index.
pub fn lookup(index: &OutputIndex, map: u32, attempt: AttemptId, partition: u32) -> Option<Run> {
    index.lock().ok()?.get(&(map, attempt))?.run(partition)
}

/// How long a simulated task takes, by worker-independent task description.
pub type DelayFn = Box<dyn FnMut(&TaskSpec) -> Duration + Send>;

/// Called from a task's thread when its result is ready, so a driver can wake the worker.
pub type Wake = Box<dyn Fn() + Send + Sync>;

enum Mode {
    Threads {
        wake: Arc<Wake>,
    },
    /// Results become visible after a virtual delay.
    Inline {
        delay: DelayFn,
    },
}

type Finished = (AttemptId, Outcome, Option<(u32, MapOutput)>);

/// The standard executor: real tasks on a local work directory.
pub struct LocalExecutor {
    dir: PathBuf,
    registry: Registry,
    index: OutputIndex,
    fetched: BTreeMap<(AttemptId, u32), Run>,
    mode: Mode,
    tx: Sender<Finished>,
    rx: Receiver<Finished>,
    /// Inline results waiting for their time.
    ready: Vec<(Duration, Finished)>,
    next_file: u64,
}

impl LocalExecutor {
    /// Runs each task on its own thread, calling `wake` when a result is ready.
    pub fn threaded(dir: PathBuf, registry: Registry, wake: Wake) -> Self {
        Self::new(
            dir,
            registry,
            Mode::Threads {
                wake: Arc::new(wake),
            },
        )
    }

    /// Runs tasks synchronously; a result is released `delay(task)` after the task started.
    pub fn inline(dir: PathBuf, registry: Registry, delay: DelayFn) -> Self {
        Self::new(dir, registry, Mode::Inline { delay })
    }

    fn new(dir: PathBuf, registry: Registry, mode: Mode) -> Self {
        let (tx, rx) = channel();
        LocalExecutor {
            dir,
            registry,
            index: OutputIndex::default(),
            fetched: BTreeMap::new(),
            mode,
            tx,
            rx,
            ready: Vec::new(),
            next_file: 0,
        }
    }

    /// The map outputs, for a fetch server running beside the worker.
    pub fn index(&self) -> OutputIndex {
        self.index.clone()
    }

    fn fresh(&mut self, what: &str) -> PathBuf {
        self.next_file += 1;
        self.dir.join(format!("{what}-{}", self.next_file))
    }

    fn launch(
        &mut self,
        now: Duration,
        spec: TaskSpec,
        work: impl FnOnce() -> Finished + Send + 'static,
    ) {
        match &mut self.mode {
            Mode::Threads { wake } => {
                let (tx, wake) = (self.tx.clone(), wake.clone());
                std::thread::spawn(move || {
                    // The receiver only goes away with the executor; nothing to report then.
                    let _ = tx.send(work());
                    wake();
                });
            }
            Mode::Inline { delay } => {
                let at = now + delay(&spec);
                self.ready.push((at, work()));
            }
        }
    }
}

fn scratch(dir: &PathBuf) -> Result<tempfile::TempDir, String> {
    tempfile::tempdir_in(dir)
        .map_err(|e| format!("cannot create scratch directory in {}: {e}", dir.display()))
}

impl Executor for LocalExecutor {
    fn start_map(
        &mut self,
        now: Duration,
        job: &JobSpec,
        attempt: AttemptId,
        index: u32,
        split: &Split,
    ) {
        let registry = self.registry.clone();
        let (job2, split2) = (job.clone(), split.clone());
        let out = self.fresh("map");
        let dir = self.dir.clone();
        let spec = TaskSpec::Map {
            index,
            split: Split::default(),
        };
        self.launch(now, spec, move || {
            let result = (|| {
                let app = registry.build(&job2.app).map_err(|e| e.to_string())?;
                let tmp = scratch(&dir)?;
                run_map(app.as_ref(), &job2, index, &split2, tmp.path(), &out)
                    .map_err(|e| e.to_string())
            })();
            match result {
                Ok(o) => {
                    let sizes = o.offsets.windows(2).map(|w| w[1] - w[0]).collect();
                    (attempt, Ok(Some(sizes)), Some((index, o)))
                }
                Err(e) => (attempt, Err(e), None),
            }
        });
    }

    fn start_reduce(
        &mut self,
        now: Duration,
        job: &JobSpec,
        attempt: AttemptId,
        partition: u32,
        runs: Vec<Run>,
    ) {
        let registry = self.registry.clone();
        let job2 = job.clone();
        let dir = self.dir.clone();
        let tag = format!("{}-{attempt}", std::process::id());
        let spec = TaskSpec::Reduce {
            partition,
            sources: Vec::new(),
        };
        self.launch(now, spec, move || {
            let result = (|| {
                let app = registry.build(&job2.app).map_err(|e| e.to_string())?;
                let tmp = scratch(&dir)?;
                run_reduce(app.as_ref(), &job2, partition, runs, tmp.path(), &tag)
                    .map_err(|e| e.to_string())
            })();
            (attempt, result.map(|()| None), None)
        });
        // Fetched copies are merged by now (inline) or owned by the thread's runs (threads):
        // forget them here; the files are removed with the work directory.
        self.fetched.retain(|(a, _), _| *a != attempt);
    }

    fn poll(&mut self, now: Duration) -> Option<(AttemptId, Outcome)> {
        let finished = match &self.mode {
            Mode::Threads { .. } => self.rx.try_recv().ok()?,
            Mode::Inline { .. } => {
                let i = self.ready.iter().position(|(at, _)| *at <= now)?;
                self.ready.remove(i).1
            }
        };
        let (attempt, outcome, output) = finished;
        if let (Some((map, out)), Ok(mut index)) = (output, self.index.lock()) {
            index.insert((map, attempt), out);
        }
        Some((attempt, outcome))
    }

    fn map_run(&self, map: u32, attempt: AttemptId, partition: u32) -> Option<Run> {
        lookup(&self.index, map, attempt, partition)
    }

    fn read(&self, run: &Run, offset: u64, max: usize) -> Result<Vec<u8>, String> {
        read_run(run, offset, max)
    }

    fn store_fetched(&mut self, attempt: AttemptId, map: u32, data: &[u8]) -> Result<Run, String> {
        let run = match self.fetched.get(&(attempt, map)) {
            Some(r) => r.clone(),
            None => Run::whole(self.fresh("fetch"), 0),
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&run.path)
            .map_err(|e| format!("{}: {e}", run.path.display()))?;
        f.write_all(data)
            .map_err(|e| format!("{}: {e}", run.path.display()))?;
        let run = Run::whole(run.path, run.end + data.len() as u64);
        self.fetched.insert((attempt, map), run.clone());
        Ok(run)
    }

    fn reset(&mut self) {
        if let Ok(mut index) = self.index.lock() {
            for (_, out) in std::mem::take(&mut *index) {
                let _ = std::fs::remove_file(&out.path);
            }
        }
        for (_, run) in std::mem::take(&mut self.fetched) {
            let _ = std::fs::remove_file(&run.path);
        }
        self.ready.clear();
    }
}
