//! What the coordinator tells people and tests about the job: a [`Status`] snapshot, built
//! on demand and pushed to an [`Observer`] after every change.

use serde::Serialize;

use super::{Coordinator, Kind, Task};

/// Task counts of one phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub idle: usize,
    pub running: usize,
    pub done: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkerStatus {
    pub id: String,
    pub addr: String,
    pub alive: bool,
    pub last_heartbeat_ms_ago: u64,
    pub task: Option<String>,
    pub tasks_done: u64,
}

/// A snapshot of the job for people (status page, progress bar) and tests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// `map`, `reduce`, `done` or `failed`.
    pub phase: &'static str,
    pub error: Option<String>,
    pub elapsed_ms: u64,
    pub maps: Counts,
    pub reduces: Counts,
    pub workers: Vec<WorkerStatus>,
    /// Tasks put back to idle after having run (lost worker, lost output, failed attempt).
    pub reexecutions: u64,
    pub backups: u64,
    pub task_failures: u64,
    pub lost_workers: u64,
    pub duplicates_ignored: u64,
    /// Recent failures and recoveries, oldest first.
    pub events: Vec<String>,
}

impl Status {
    pub fn finished(&self) -> bool {
        matches!(self.phase, "done" | "failed")
    }
}

/// Called with a fresh [`Status`] after every input that may have changed it.
pub type Observer = Box<dyn FnMut(&Status) + Send>;

impl Coordinator {
    pub fn status(&self) -> Status {
        let counts = |tasks: &[Task]| Counts {
            total: tasks.len(),
            idle: tasks.iter().filter(|t| t.idle()).count(),
            running: tasks
                .iter()
                .filter(|t| t.done.is_none() && !t.attempts.is_empty())
                .count(),
            done: tasks.iter().filter(|t| t.done.is_some()).count(),
        };
        let phase = match (&self.error, self.finished) {
            (Some(_), _) => "failed",
            (None, true) => "done",
            _ if Self::all_done(&self.maps) => "reduce",
            _ => "map",
        };
        Status {
            phase,
            error: self.error.clone(),
            elapsed_ms: self.now.saturating_sub(self.started).as_millis() as u64,
            maps: counts(&self.maps),
            reduces: counts(&self.reduces),
            workers: self
                .workers
                .iter()
                .map(|(id, w)| WorkerStatus {
                    id: id.to_string(),
                    addr: w.addr.clone(),
                    alive: w.alive,
                    last_heartbeat_ms_ago: self.now.saturating_sub(w.last_seen).as_millis() as u64,
                    task: w
                        .running
                        .and_then(|a| self.attempts.get(&a))
                        .map(|(k, i)| match k {
                            Kind::Map => format!("map {i}"),
                            Kind::Reduce => format!("reduce {i}"),
                        }),
                    tasks_done: w.tasks_done,
                })
                .collect(),
            reexecutions: self.counters.reexecutions,
            backups: self.counters.backups,
            task_failures: self.counters.task_failures,
            lost_workers: self.counters.lost_workers,
            duplicates_ignored: self.counters.duplicates_ignored,
            events: self.events.iter().cloned().collect(),
        }
    }

    pub(super) fn notify(&mut self) {
        if let Some(mut obs) = self.observer.take() {
            obs(&self.status());
            self.observer = Some(obs);
        }
    }
}
