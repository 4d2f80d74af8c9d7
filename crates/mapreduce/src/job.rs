//! A job: what the user asked for ([`JobConfig`]), checked and planned into what every
//! process needs to run it ([`JobSpec`] plus one [`Split`] per map task).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::app::{App, AppSpec};
use crate::apps::Registry;
use crate::error::{MrError, Result};
use crate::split::{open_inputs, plan_splits, InputFile, Split};

/// Default map split size when the user does not choose M.
const DEFAULT_SPLIT_BYTES: u64 = 32 << 20;
/// Default memory budget for one task's sorting and merging.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;

/// A job as the user describes it.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub app: AppSpec,
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    /// Number of map tasks; `None` picks one from the input size.
    pub maps: Option<u32>,
    pub reduces: u32,
    pub memory_budget: u64,
    /// Replace part files already in the output directory.
    pub force: bool,
}

impl JobConfig {
    pub fn new(app: AppSpec, inputs: Vec<PathBuf>, output: PathBuf) -> Self {
        JobConfig {
            app,
            inputs,
            output,
            maps: None,
            reduces: 8,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            force: false,
        }
    }
}

/// What every worker needs to know about the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub app: AppSpec,
    pub inputs: Vec<InputFile>,
    pub maps: u32,
    pub reduces: u32,
    /// Absolute path of the output directory.
    pub output: PathBuf,
    pub memory_budget: u64,
}

/// A checked job: its spec and the input split of each map task.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub spec: JobSpec,
    pub splits: Vec<Split>,
}

/// Checks `config` (application, inputs, counts, output directory) and plans the splits.
/// Nothing is written unless everything else is valid; then the output directory is created
/// (or cleared of old parts with `force`).
pub fn plan(config: &JobConfig, registry: &Registry) -> Result<(JobPlan, Arc<dyn App>)> {
    if config.reduces == 0 {
        return Err(MrError::InvalidJob(
            "the number of reduce tasks must be at least 1".into(),
        ));
    }
    if config.maps == Some(0) {
        return Err(MrError::InvalidJob(
            "the number of map tasks must be at least 1".into(),
        ));
    }
    let app = registry.build(&config.app)?;
    let inputs = open_inputs(&config.inputs)?;
    let total: u64 = inputs.iter().map(|f| f.size).sum();
    let maps = config
        .maps
        .unwrap_or_else(|| total.div_ceil(DEFAULT_SPLIT_BYTES).clamp(16, 100_000) as u32);
    let splits = plan_splits(&inputs, maps, app.needs_line_numbers())?;
    let output = crate::output::prepare(&config.output, config.force)?;
    let spec = JobSpec {
        app: config.app.clone(),
        inputs,
        maps,
        reduces: config.reduces,
        output,
        memory_budget: config.memory_budget.max(1 << 20),
    };
    Ok((JobPlan { spec, splits }, app))
}
