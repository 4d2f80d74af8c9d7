//! The coordinator as a real server: the [`Coordinator`] core on synod-net, a status feed for
//! the status page and progress bars, and the final check of the output directory.

use std::time::Duration;

use synod_net::tls::PeerTls;
use synod_net::{Listen, NodeConfig};
use tokio::sync::watch;

use crate::coordinator::{Coordinator, CoordinatorConfig, Status};
use crate::error::{MrError, Result};
use crate::job::JobPlan;

/// Serves `plan` on `listen` until the job is complete or has failed, publishing every status
/// change on `status`. On success the output directory holds exactly the part files; on
/// failure it holds none of them and the error says why. With `tls`, only workers with a
/// certificate from the same CA are admitted (see [`super::serve_job_node`]).
pub async fn serve(
    plan: JobPlan,
    listen: Listen,
    cfg: CoordinatorConfig,
    status: watch::Sender<Option<Status>>,
    tls: Option<PeerTls>,
) -> Result<Status> {
    let output = plan.spec.output.clone();
    let reduces = plan.spec.reduces;
    let feed = status.clone();
    let core = Coordinator::new(plan, cfg).with_observer(Box::new(move |s: &Status| {
        feed.send_replace(Some(s.clone()));
    }));
    let mut rx = status.subscribe();
    let finished = async move {
        // Ends when the job is over, or if every status sender is gone (cannot happen while
        // the core runs, which holds one).
        let _ = rx
            .wait_for(|s| s.as_ref().is_some_and(Status::finished))
            .await;
        // A moment for the final messages to workers to be queued; the server flushes its
        // queues when it stops.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let config = NodeConfig::new(super::COORDINATOR_ID, listen);
    super::serve_job_node(core, config, finished, tls)
        .await
        .map_err(|e| MrError::Net(e.to_string()))?;
    let last = status.borrow().clone();
    match last {
        Some(s) if s.phase == "done" => {
            crate::output::finish(&output, reduces)?;
            Ok(s)
        }
        other => {
            let _ = crate::output::discard(&output);
            let reason = other
                .and_then(|s| s.error)
                .unwrap_or_else(|| "the coordinator stopped".into());
            Err(MrError::JobFailed(reason))
        }
    }
}
