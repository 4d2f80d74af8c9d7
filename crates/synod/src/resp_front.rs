//! How a server stops, and the Redis-protocol front it may run beside itself
//! (`--resp ADDR`): one stop signal for the node and its front, so both end gracefully
//! together (the front stops accepting, its connections end, then the process exits).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use std::time::Instant;

use synod_resp::security::RespSecurity;
use synod_resp::{Backend, BackendError, Command, Reply, RespLimits};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The stop signal of a server: SIGTERM or Ctrl-C (or [`Stop::stop`]), seen by every part
/// that waits on it.
#[derive(Clone)]
pub struct Stop {
    sender: Arc<watch::Sender<bool>>,
    stopped: watch::Receiver<bool>,
}

impl Stop {
    /// Installs the signal handlers now, so a server that calls this before its readiness
    /// line cannot be killed by a signal that arrives in between.
    pub fn on_signal() -> Stop {
        let signal = synod_net::shutdown_signal();
        let (sender, stopped) = watch::channel(false);
        let stop = Stop {
            sender: Arc::new(sender),
            stopped,
        };
        let on_signal = stop.clone();
        tokio::spawn(async move {
            signal.await;
            on_signal.stop();
        });
        stop
    }

    /// Stops every part now: when one part ends on its own, the others must not wait for a
    /// signal.
    pub fn stop(&self) {
        self.sender.send_replace(true);
    }

    /// Resolves once the server is told to stop.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            // An error means the sender is gone, which also means stop.
            let _ = stopped.wait_for(|&stop| stop).await;
        }
    }

    /// Runs `node` (a server that ends once told to stop), then stops every other part.
    pub async fn ending_all<T>(&self, node: impl Future<Output = T>) -> T {
        let result = node.await;
        self.stop();
        result
    }
}

type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A RESP front bound to its port, not yet serving.
pub struct Front {
    addr: SocketAddr,
    serve: Box<dyn FnOnce(Stop) -> Serving + Send>,
}

impl Front {
    /// Binds `addr` and builds the front's backend with `make`; nothing is served until
    /// [`Front::serve`].
    pub async fn bind<B: Backend>(
        addr: SocketAddr,
        limits: RespLimits,
        make: impl FnOnce() -> anyhow::Result<B>,
    ) -> anyhow::Result<Front> {
        Self::bind_secured(addr, limits, RespSecurity::default(), make).await
    }

    /// [`Front::bind`], for a port with TLS or access control.
    pub async fn bind_secured<B: Backend>(
        addr: SocketAddr,
        limits: RespLimits,
        security: RespSecurity,
        make: impl FnOnce() -> anyhow::Result<B>,
    ) -> anyhow::Result<Front> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for RESP on {addr}"))?;
        let addr = listener.local_addr()?;
        let backend = Arc::new(Metered(make()?));
        Ok(Front {
            addr,
            serve: Box::new(move |stop: Stop| {
                Box::pin(synod_resp::serve_resp_secured(
                    listener,
                    backend,
                    limits,
                    security,
                    stop.wait(),
                ))
            }),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves RESP clients until `stop`.
    pub async fn serve(self, stop: Stop) {
        tracing::info!(addr = %self.addr, "RESP front listening");
        (self.serve)(stop).await;
    }
}

/// Serves `front`, if there is one, until `stop`.
pub async fn serve(front: Option<Front>, stop: Stop) {
    if let Some(front) = front {
        front.serve(stop).await;
    }
}

/// A front's backend that records each command's count, errors and latency, and each
/// batch's size, in the process's metrics (docs/running.md, "Metrics").
struct Metered<B>(B);

impl<B: Backend> Metered<B> {
    async fn timed<T>(
        command: &'static str,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let started = Instant::now();
        let result = call.await;
        synod_metrics::global().record_request(command, started.elapsed(), result.is_ok());
        result
    }
}

impl<B: Backend> Backend for Metered<B> {
    fn run(&self, command: Command) -> impl Future<Output = Result<Reply, BackendError>> + Send {
        Self::timed(command.name(), self.0.run(command))
    }

    async fn run_batch(&self, commands: Vec<Command>) -> Vec<Result<Reply, BackendError>> {
        let names: Vec<&'static str> = commands.iter().map(Command::name).collect();
        let metrics = synod_metrics::global();
        metrics.request_batch.observe(commands.len() as f64);
        let started = Instant::now();
        let answers = self.0.run_batch(commands).await;
        // Every command of a batch waited for the whole batch.
        let took = started.elapsed();
        for (name, answer) in names.into_iter().zip(&answers) {
            metrics.record_request(name, took, answer.is_ok());
        }
        answers
    }

    fn replication(&self) -> impl Future<Output = Vec<(String, String)>> + Send {
        self.0.replication()
    }
}
