//! Group commit in the TCP driver: a node that syncs before every answer never has an
//! answer leave before its record is durable, even when the driver coalesces the syncs of
//! a burst of requests into one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_net::{run_node, Client, NodeConfig};
use synod_node::{Context, Node, NodeId, Recovered, Storage, StorageError, TimerToken};
use synod_storage::MemStorage;
use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    /// Client: record this; answered with `Recorded(records so far)` once durable.
    Record,
    Recorded(u64),
}

/// Appends and syncs a record per request, then answers.
struct Journal {
    records: u64,
}

impl Node for Journal {
    type Msg = Msg;

    fn on_start(&mut self, _ctx: &mut dyn Context<Msg>) {}

    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        if msg != Msg::Record {
            return;
        }
        let durable = ctx
            .storage()
            .append(b"record")
            .and_then(|()| ctx.storage().persist_before_send());
        if durable.is_ok() {
            self.records += 1;
            ctx.send(from, Msg::Recorded(self.records));
        }
    }

    fn on_timer(&mut self, _ctx: &mut dyn Context<Msg>, _token: TimerToken) {}
}

/// Memory storage that publishes how many records are durable and how many syncs it did.
struct Probe {
    inner: MemStorage,
    appended: u64,
    durable: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl Storage for Probe {
    fn append(&mut self, record: &[u8]) -> Result<(), StorageError> {
        self.appended += 1;
        self.inner.append(record)
    }
    fn persist_before_send(&mut self) -> Result<(), StorageError> {
        self.inner.persist_before_send()?;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.durable.store(self.appended, Ordering::SeqCst);
        Ok(())
    }
    fn install_snapshot(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        self.inner.install_snapshot(snapshot)
    }
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner.recover()
    }
}

#[tokio::test]
async fn answers_leave_only_after_their_records_are_durable() {
    const REQUESTS: u64 = 300;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let durable = Arc::new(AtomicU64::new(0));
    let syncs = Arc::new(AtomicU64::new(0));
    let storage = Probe {
        inner: MemStorage::new(),
        appended: 0,
        durable: durable.clone(),
        syncs: syncs.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run_node(
        Journal { records: 0 },
        NodeConfig::new(NodeId(1), listener),
        Box::new(storage),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client: Client<Msg> = Client::connect(addr, Duration::from_secs(1)).await.unwrap();
    // All requests at once: they reach the node as bursts.
    for _ in 0..REQUESTS {
        client.send(&Msg::Record).await.unwrap();
    }
    let mut last = 0;
    while last < REQUESTS {
        let Msg::Recorded(n) = client.recv(Duration::from_secs(5)).await.unwrap() else {
            panic!("unexpected message");
        };
        assert!(
            durable.load(Ordering::SeqCst) >= n,
            "answer {n} arrived before its record was synced"
        );
        assert!(n > last, "answers in order");
        last = n;
    }
    assert!(syncs.load(Ordering::SeqCst) <= REQUESTS);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
