//! What `synod up` starts: the cluster layouts, the child processes each one needs, and the
//! ports they listen on, recorded in the cluster directory so a rerun finds them again.
//!
//! A new layout (the sharded KV, say) is a new [`Layout`] variant with its [`Layout::plan`]
//! arm: the supervisor, the printing and the readiness probe work on any [`Plan`].

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// Every process of a local cluster listens on loopback.
const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Which cluster to start.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// `replicas` Paxos KV replicas, each with a RESP port.
    Kv { replicas: usize },
    /// The view service and two primary/backup servers, each server with a RESP port.
    Pb,
}

/// One child process of the cluster.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// How `up` names it in what it prints: `replica 0`, `view service`, `server 1`.
    pub name: String,
    /// The `synod` arguments that run it.
    pub args: Vec<String>,
    /// Text in the stdout line by which it says it is listening (the start of it for synod's
    /// own servers; somewhere in a log line for Redis and etcd, which `synod bench` runs).
    pub ready: String,
    /// Its address for the other servers (and for native clients).
    pub peer: SocketAddr,
    /// Its Redis-protocol address, if it has one.
    pub resp: Option<SocketAddr>,
    /// Whether `up` may restart it after it dies. The view service keeps its state in
    /// memory only, so a restarted one would contradict the servers' views.
    pub restartable: bool,
}

/// The children of one cluster, in start order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub children: Vec<ChildSpec>,
}

impl Plan {
    /// Every RESP address, for the readiness probe and the `redis-cli` hint.
    pub fn resp_addrs(&self) -> Vec<SocketAddr> {
        self.children.iter().filter_map(|c| c.resp).collect()
    }
}

impl Layout {
    /// The name of the file in the cluster directory that records this layout's ports.
    fn ports_file(&self) -> &'static str {
        match self {
            Layout::Kv { .. } => "ports-kv.json",
            Layout::Pb => "ports-pb.json",
        }
    }

    fn ports_needed(&self) -> usize {
        match self {
            Layout::Kv { replicas } => 2 * replicas,
            Layout::Pb => 5,
        }
    }

    /// The children to start for a cluster in `dir`, on ports recorded there when they are
    /// free (so a rerun keeps the addresses clients know) and on fresh free ports otherwise.
    pub fn plan(&self, dir: &Path) -> anyhow::Result<Plan> {
        let ports = ports(&dir.join(self.ports_file()), self.ports_needed())?;
        let addr = |i: usize| SocketAddr::from((HOST, ports[i]));
        let children = match *self {
            Layout::Kv { replicas } => {
                let peers: Vec<String> = (0..replicas).map(|i| addr(i).to_string()).collect();
                let peers = peers.join(",");
                let mut children = Vec::with_capacity(replicas);
                for i in 0..replicas {
                    let data = path_arg(&dir.join(format!("replica-{i}")))?;
                    let resp = addr(replicas + i);
                    children.push(ChildSpec {
                        name: format!("replica {i}"),
                        args: strings(&[
                            "kv",
                            "serve",
                            "--id",
                            &i.to_string(),
                            "--peers",
                            &peers,
                            "--data",
                            &data,
                            "--resp",
                            &resp.to_string(),
                        ]),
                        ready: format!("kv replica {i} listening on"),
                        peer: addr(i),
                        resp: Some(resp),
                        restartable: true,
                    });
                }
                children
            }
            Layout::Pb => {
                let view = addr(0);
                let mut children = vec![ChildSpec {
                    name: "view service".into(),
                    args: strings(&["view", "serve", "--listen", &view.to_string()]),
                    ready: "view service listening on".into(),
                    peer: view,
                    resp: None,
                    restartable: false,
                }];
                for id in 1..=2 {
                    let (peer, resp) = (addr(id), addr(id + 2));
                    children.push(ChildSpec {
                        name: format!("server {id}"),
                        args: strings(&[
                            "pb",
                            "serve",
                            "--listen",
                            &peer.to_string(),
                            "--view",
                            &view.to_string(),
                            "--id",
                            &id.to_string(),
                            "--resp",
                            &resp.to_string(),
                        ]),
                        ready: "pb listening on".into(),
                        peer,
                        resp: Some(resp),
                        restartable: true,
                    });
                }
                children
            }
        };
        Ok(Plan { children })
    }
}

pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

pub(crate) fn path_arg(path: &Path) -> anyhow::Result<String> {
    match path.to_str() {
        Some(text) => Ok(text.to_owned()),
        None => bail!("the cluster directory {} is not UTF-8", path.display()),
    }
}

/// The ports recorded in `record` if there are `n` and all are free now, else `n` fresh free
/// ones (recorded for next time).
pub(crate) fn ports(record: &Path, n: usize) -> anyhow::Result<Vec<u16>> {
    let recorded: Option<Vec<u16>> = match std::fs::read_to_string(record) {
        Ok(text) => match serde_json::from_str::<Vec<u16>>(&text) {
            Ok(ports) if ports.len() == n => Some(ports),
            _ => {
                eprintln!(
                    "synod up: ignoring {}: not a list of {n} ports",
                    record.display()
                );
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", record.display())),
    };
    if let Some(ports) = recorded {
        let busy: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&p| TcpListener::bind((HOST, p)).is_err())
            .collect();
        if busy.is_empty() {
            return Ok(ports);
        }
        eprintln!("synod up: recorded ports {busy:?} are in use; choosing new ports");
    }
    // Hold every listener until all are bound, so the ports are distinct.
    let listeners = (0..n)
        .map(|_| TcpListener::bind((HOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free ports")?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    write_record(record, &ports)?;
    Ok(ports)
}

/// Writes the record atomically (temp file + rename), so a crash leaves the old or the new.
fn write_record(record: &Path, ports: &[u16]) -> anyhow::Result<()> {
    let tmp: PathBuf = record.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string(ports)?)
        .and_then(|()| std::fs::rename(&tmp, record))
        .with_context(|| format!("writing {}", record.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_reuses_free_recorded_ports_and_replaces_busy_ones() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::Kv { replicas: 3 };
        let first = layout.plan(dir.path()).unwrap();
        let again = layout.plan(dir.path()).unwrap();
        let peers = |p: &Plan| p.children.iter().map(|c| c.peer).collect::<Vec<_>>();
        assert_eq!(peers(&first), peers(&again));
        assert_eq!(first.resp_addrs(), again.resp_addrs());

        let _busy = TcpListener::bind(first.children[0].peer).unwrap();
        let moved = layout.plan(dir.path()).unwrap();
        assert_ne!(moved.children[0].peer, first.children[0].peer);
        assert_eq!(
            layout.plan(dir.path()).unwrap().resp_addrs(),
            moved.resp_addrs()
        );
    }
}
