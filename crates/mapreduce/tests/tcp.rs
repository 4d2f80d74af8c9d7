//! The coordinator and workers over real TCP (synod-net), in one process: a peer of another
//! version is turned away with a reason, and two real workers finish the job.

use std::time::Duration;

use synod_mapreduce::coordinator::CoordinatorConfig;
use synod_mapreduce::msg::{MrMsg, VERSION};
use synod_mapreduce::service::coordinator::serve;
use synod_mapreduce::service::worker::{run, WorkerOptions};
use synod_mapreduce::{plan, AppSpec, JobConfig, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_versions_are_rejected_and_real_workers_finish_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "one two two\nthree three three\n").unwrap();
    let mut cfg = JobConfig::new(AppSpec::new("wc"), vec![input], dir.path().join("out"));
    cfg.maps = Some(3);
    cfg.reduces = 2;
    let (plan, _) = plan(&cfg, &Registry::builtin()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, _rx) = tokio::sync::watch::channel(None);
    let job = tokio::spawn(serve(
        plan,
        listener.into(),
        CoordinatorConfig::default(),
        tx,
        None,
    ));

    let mut old = synod_net::Client::<MrMsg>::connect(addr.as_str(), Duration::from_secs(5))
        .await
        .unwrap();
    let reply = old
        .call(
            &MrMsg::Register {
                version: "synod-mapreduce/0.0.1/0".into(),
                addr: String::new(),
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    match reply {
        MrMsg::Rejected { reason } => assert!(reason.contains(VERSION), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    let worker = |i: usize| WorkerOptions {
        coordinator: addr.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir: dir.path().join(format!("w{i}")),
        cfg: Default::default(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    };
    let (a, b) = tokio::join!(
        run(worker(0), Registry::builtin()),
        run(worker(1), Registry::builtin())
    );
    assert_eq!((a.unwrap(), b.unwrap()), (None, None));
    let status = job.await.unwrap().unwrap();
    assert_eq!(status.phase, "done");
    let mut lines: Vec<String> = (0..2)
        .flat_map(|r| {
            std::fs::read_to_string(dir.path().join(format!("out/part-{r:05}")))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(lines, ["one\t1", "three\t3", "two\t2"]);
}

/// Panics on one record of the input.
struct PanicsOnBoom;

impl synod_mapreduce::App for PanicsOnBoom {
    fn map(&self, input: &synod_mapreduce::MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
        for line in input.contents.split(|&b| b == b'\n') {
            assert!(
                line != b"boom",
                "cannot handle record {:?}",
                String::from_utf8_lossy(line)
            );
            emit(line, b"");
        }
    }
    fn reduce(&self, _: &[u8], _: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_panics_fails_the_job_with_the_reason_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "fine\nboom\nfine\n").unwrap();
    let registry = || Registry::builtin().with("panics", |_| Ok(std::sync::Arc::new(PanicsOnBoom)));
    let out = dir.path().join("out");
    let mut cfg = JobConfig::new(AppSpec::new("panics"), vec![input], out.clone());
    cfg.maps = Some(2);
    let (plan, _) = plan(&cfg, &registry()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, _rx) = tokio::sync::watch::channel(None);
    let job = tokio::spawn(serve(
        plan,
        listener.into(),
        CoordinatorConfig::default(),
        tx,
        None,
    ));
    let opts = WorkerOptions {
        coordinator: addr,
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir: dir.path().join("w"),
        cfg: Default::default(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    };
    let worker_saw = run(opts, registry()).await.unwrap();
    let err = job.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("failed 4 times") && err.contains("cannot handle record \"boom\""),
        "{err}"
    );
    assert!(worker_saw.is_some_and(|e| e.contains("boom")));
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no partial output"
    );
}
