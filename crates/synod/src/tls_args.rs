//! The TLS flags of servers (`--tls-cert`, `--tls-key`, `--tls-ca`) and of clients
//! (`--tls-ca`), and the certificates `synod up` and `synod certs` issue for them
//! (docs/running.md, "Security").
//!
//! A cluster directory's TLS material (`synod up` keeps it in `DIR/tls`) is the CA's
//! certificate `ca.pem` and key `ca.key`, and each member's `member-ID.pem` and
//! `member-ID.key`. Private keys are written with mode 0600. A member's certificate names
//! `replica-ID.TOKEN.synod`, where TOKEN is the cluster token (`--cluster-token`): replicas
//! that talk to each other (a sharded cluster's controllers and groups) share the token and
//! have distinct ids.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use synod_net::tls::{ClientTls, ClusterCa, PeerTls, TlsFiles};
use synod_node::NodeId;

/// The TLS flags of a replica: with --tls-cert (which needs the other two) it speaks TLS,
/// without it plain TCP.
#[derive(Args, Debug, Default, Clone)]
pub struct ServerTlsArgs {
    /// This server's certificate (PEM) from the cluster CA, naming its member name
    /// `replica-ID.TOKEN.synod` (`synod certs member` issues one). With it, peers must
    /// prove who they are with theirs, and clients must connect with TLS.
    #[arg(long, env = "SYNOD_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SYNOD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA's certificate (PEM). Alone, without --tls-cert, it changes nothing:
    /// it shares its variable with the clients' --tls-ca, which a shell may have set.
    #[arg(long, env = "SYNOD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The member TLS these flags describe for the cluster `token`, if any, installed too
    /// as the TLS of this process's clients (its RESP front's clerk).
    pub fn peer_tls(&self, token: &str) -> anyhow::Result<Option<PeerTls>> {
        let Some(tls) = self.load(token)? else {
            return Ok(None);
        };
        if !synod_net::tls::use_for_clients(tls.as_client()) {
            bail!("TLS for this process's clients was set twice");
        }
        Ok(Some(tls))
    }

    /// The member TLS these flags describe for the cluster `token`, if any.
    pub fn load(&self, token: &str) -> anyhow::Result<Option<PeerTls>> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        Ok(Some(
            PeerTls::load(&files, token).context("loading the TLS flags")?,
        ))
    }
}

/// The TLS flag of a client command.
#[derive(Args, Debug, Default, Clone)]
pub struct ClientTlsArgs {
    /// Connect with TLS, trusting servers with a certificate from this CA (PEM): needed for
    /// a cluster whose servers have --tls-cert (`synod up` prints its path).
    #[arg(long, env = "SYNOD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Makes this process's clients use TLS if the flag asks for it.
    pub fn install(&self) -> anyhow::Result<()> {
        if let Some(ca) = &self.tls_ca {
            let tls =
                ClientTls::trusting(ca).with_context(|| format!("--tls-ca {}", ca.display()))?;
            if !synod_net::tls::use_for_clients(tls) {
                bail!("TLS for this process's clients was set twice");
            }
        }
        Ok(())
    }
}

/// `synod certs`: issue a cluster's certificates, for clusters that `synod up` does not
/// start (replicas on several hosts).
#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a cluster CA in DIR (`ca.pem`, and `ca.key`, mode 0600), unless DIR has one.
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue member ID's certificate from the CA in DIR (`member-ID.pem`, `member-ID.key`).
    Member {
        #[arg(long)]
        dir: PathBuf,
        /// The member's node id: its index in --peers for kv and shardctl replicas, or the
        /// new id of a kv replica that joins a running cluster (`kv serve --join`).
        #[arg(long)]
        id: u64,
        /// The cluster's --cluster-token.
        #[arg(long, default_value = crate::identity::DEFAULT_CLUSTER_TOKEN)]
        cluster_token: String,
        /// Addresses or DNS names clients reach it by, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        host: Vec<String>,
    },
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        CertsCommand::Ca { dir } => {
            ensure_ca(&dir)?;
            println!("{}", dir.join(CA_CERT).display());
        }
        CertsCommand::Member {
            dir,
            id,
            cluster_token,
            host,
        } => {
            let files = issue_member(&dir, &cluster_token, NodeId(id), &host)?;
            println!("{}", files.cert.display());
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The CA certificate's file name in a TLS directory.
pub const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// The CA in `dir`, created (with its directory) if there is none.
pub fn ensure_ca(dir: &Path) -> anyhow::Result<ClusterCa> {
    let key_path = dir.join(CA_KEY);
    if key_path.exists() {
        let pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        return ClusterCa::from_key_pem(&pem).with_context(|| key_path.display().to_string());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = ClusterCa::generate()?;
    write_secret(&key_path, &ca.key_pem())?;
    write_file(&dir.join(CA_CERT), &ca.cert_pem()?, 0o644)?;
    Ok(ca)
}

/// The files of member `id` in `dir`, issued from the CA there (created if missing) unless
/// they exist already.
pub fn issue_member(
    dir: &Path,
    token: &str,
    id: NodeId,
    hosts: &[String],
) -> anyhow::Result<TlsFiles> {
    let files = TlsFiles {
        cert: dir.join(format!("member-{}.pem", id.0)),
        key: dir.join(format!("member-{}.key", id.0)),
        ca: dir.join(CA_CERT),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let ca = ensure_ca(dir)?;
    let issued = ca.issue_member(token, id, hosts)?;
    write_secret(&files.key, &issued.key)?;
    write_file(&files.cert, &issued.cert, 0o644)?;
    Ok(files)
}

/// The password in `path`, generated (32 hex digits of randomness, mode 0600) if the file
/// does not exist.
pub fn ensure_password(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(text.trim_end().to_string());
    }
    let password = format!("{:032x}", rand::random::<u128>());
    write_secret(path, &format!("{password}\n"))?;
    Ok(password)
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    write_file(path, text, 0o600)
}

/// Writes a new file with permissions `mode` from its creation on, so a key is never
/// readable by others even for a moment.
fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The arguments that give a server the files `files`.
pub fn server_flags(files: &TlsFiles) -> anyhow::Result<Vec<String>> {
    let arg = crate::up_cmd::layout::path_arg;
    Ok(vec![
        "--tls-cert".into(),
        arg(&files.cert)?,
        "--tls-key".into(),
        arg(&files.key)?,
        "--tls-ca".into(),
        arg(&files.ca)?,
    ])
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn keys_are_private_and_a_rerun_reuses_the_ca_and_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = ["127.0.0.1".to_string()];
        let files = issue_member(dir.path(), "synod", NodeId(1), &hosts).unwrap();
        for key in [&files.key, &dir.path().join(CA_KEY)] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let ca_cert = std::fs::read(&files.ca).unwrap();
        let cert = std::fs::read(&files.cert).unwrap();
        // A second member from the same CA; the first member's files are kept.
        let other = issue_member(dir.path(), "synod", NodeId(2), &hosts).unwrap();
        assert_eq!(std::fs::read(&files.ca).unwrap(), ca_cert);
        assert_eq!(
            issue_member(dir.path(), "synod", NodeId(1), &hosts).unwrap(),
            files
        );
        assert_eq!(std::fs::read(&files.cert).unwrap(), cert);
        // Both load as members of the cluster.
        PeerTls::load(&files, "synod").unwrap();
        PeerTls::load(&other, "synod").unwrap();
    }
}
