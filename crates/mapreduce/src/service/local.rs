//! A whole job on this machine: the coordinator in this process and worker processes it
//! starts, all talking TCP over the loopback interface exactly as they would across machines.
//! Any local user can reach a loopback port, so a caller that can give its workers
//! certificates (`synod mr run` does, from a CA made for the run) passes the coordinator's
//! TLS too: then only its own workers are admitted.

use std::path::Path;
use std::time::Duration;

use synod_net::tls::PeerTls;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::coordinator::{CoordinatorConfig, Status};
use crate::error::{MrError, Result};
use crate::job::JobPlan;

/// Builds the command that starts one worker, given the coordinator's address and the
/// worker's work directory. `synod mr run` uses `synod mr worker`; a program with its own
/// applications uses itself.
pub type WorkerCommand = Box<dyn Fn(&str, &Path) -> Command + Send>;

/// Runs `plan` with `workers` worker processes, publishing status on `status`. With `tls`,
/// the coordinator admits only workers with a certificate from its CA (the worker command
/// gives them theirs), over TLS.
pub async fn run(
    plan: JobPlan,
    workers: usize,
    cfg: CoordinatorConfig,
    worker_command: WorkerCommand,
    status: watch::Sender<Option<Status>>,
    tls: Option<PeerTls>,
) -> Result<Status> {
    if workers == 0 {
        return Err(MrError::InvalidJob(
            "the number of workers must be at least 1".into(),
        ));
    }
    let output = plan.spec.output.clone();
    let reduces = plan.spec.reduces;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| MrError::Net(format!("cannot listen on the loopback interface: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| MrError::Net(e.to_string()))?
        .to_string();
    let work = tempfile::Builder::new()
        .prefix(".synod-work-")
        .tempdir_in(&output)
        .map_err(MrError::io("cannot create a work directory in", &output))?;
    let mut children: Vec<Child> = Vec::with_capacity(workers);
    for i in 0..workers {
        let mut cmd = worker_command(&addr, &work.path().join(format!("w{i}")));
        cmd.kill_on_drop(true);
        match cmd.spawn() {
            Ok(c) => children.push(c),
            Err(e) => {
                let _ = crate::output::discard(&output);
                return Err(MrError::Net(format!("cannot start worker process: {e}")));
            }
        }
    }
    let job = super::coordinator::serve(plan, listener.into(), cfg, status, tls);
    tokio::pin!(job);
    let all_exited = async {
        let mut last = None;
        for c in children.iter_mut() {
            last = c.wait().await.ok();
        }
        last
    };
    let result = tokio::select! {
        r = &mut job => r,
        last = all_exited => {
            // Workers exit as soon as they hear the job is over, possibly before the
            // coordinator has wound down; only a job still unfinished after that is lost.
            match tokio::time::timeout(Duration::from_secs(3), &mut job).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = crate::output::discard(&output);
                    let how = last.map_or("unknown".to_string(), |s| s.to_string());
                    Err(MrError::JobFailed(format!("all {workers} workers exited before the job finished (last exit: {how})")))
                }
            }
        }
    };
    // Workers exit once told the job is over; do not wait long for one that hangs.
    for mut c in children {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
    // A losing attempt may have written after the coordinator's cleanup; its process is
    // gone now, so clean up once more.
    match &result {
        Ok(_) => crate::output::finish(&output, reduces)?,
        Err(_) => {
            let _ = crate::output::discard(&output);
        }
    }
    drop(work);
    result
}
