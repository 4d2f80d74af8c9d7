//! What the TCP tests share: the log capture by which they assert why a connection ended.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(1);

/// Warnings and errors logged by the current thread's tasks, for asserting *why* a
/// connection was closed.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a logged line contains every one of `needles`.
    pub async fn wait_for(&self, needles: &[&str]) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let text = self.text();
            if text.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no log line with {needles:?}; logs:\n{}", self.text());
    }
}
