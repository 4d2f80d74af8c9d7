//! The size and connection limits every server that stores values takes as flags (`kv`,
//! `shardkv` and `pb serve`): the largest value, from which the other sizes derive
//! (`synod_node::limits`), and the bounds of the RESP port (`synod_resp::RespLimits`).
//! docs/running.md, "Limits", lists them.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use synod_node::limits::{Limits, DEFAULT_MAX_VALUE_BYTES};
use synod_resp::RespLimits;

#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Largest value a client may store, in bytes (1024 to 67108864). Larger ones are refused
    /// at once with "value too large (N > limit)" and never applied. Give every replica of a
    /// cluster the same one.
    #[arg(long, env = "SYNOD_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
    /// RESP connections served at once; one more is answered "-ERR max number of clients
    /// reached" and closed. [default: 1024]
    #[arg(long, env = "SYNOD_RESP_MAX_CLIENTS")]
    pub resp_max_clients: Option<usize>,
    /// Seconds after which a RESP connection that sends nothing, or takes none of its
    /// replies, is closed; 0 never closes one. [default: 300]
    #[arg(long, env = "SYNOD_RESP_IDLE_TIMEOUT")]
    pub resp_idle_timeout: Option<u64>,
    /// Bytes of unfinished RESP commands held across all connections; past it, connections
    /// with large commands wait. At least twice the largest command. [default: 256 MiB]
    #[arg(long, env = "SYNOD_RESP_MAX_BUFFERED_BYTES")]
    pub resp_max_buffered_bytes: Option<usize>,
    /// Bytes of replies waiting on one RESP connection before they are written and the
    /// connection stops reading. [default: 1 MiB]
    #[arg(long, env = "SYNOD_RESP_MAX_OUTPUT_BYTES")]
    pub resp_max_output_bytes: Option<usize>,
}

impl LimitArgs {
    /// The size policy these flags give.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        Limits::new(self.max_value_bytes).context("--max-value-bytes")
    }

    /// The RESP port's bounds these flags give.
    pub fn resp(&self) -> anyhow::Result<RespLimits> {
        let limits = self.limits()?;
        let mut resp = RespLimits::new(&limits);
        if let Some(clients) = self.resp_max_clients {
            anyhow::ensure!(clients > 0, "--resp-max-clients must be at least 1");
            resp.max_clients = clients;
        }
        if let Some(seconds) = self.resp_idle_timeout {
            resp.idle_timeout = (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        if let Some(bytes) = self.resp_max_buffered_bytes {
            let least = 2 * limits.max_command();
            anyhow::ensure!(
                bytes >= least,
                "--resp-max-buffered-bytes must be at least {least} (twice the largest command)"
            );
            resp.max_buffered = bytes;
        }
        if let Some(bytes) = self.resp_max_output_bytes {
            anyhow::ensure!(bytes > 0, "--resp-max-output-bytes must be at least 1");
            resp.max_output = bytes;
        }
        Ok(resp)
    }
}
