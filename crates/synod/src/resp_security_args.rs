//! The security flags of a replica's client ports: its users (`--requirepass-file` or
//! `--acl-file`, [`UserArgs`]), which guard its native port (`kv`, `shardctl` and `shardkv
//! serve`) and its RESP port alike, and `--resp-tls` (docs/running.md, "Security").

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_auth::{Denied, Need};
use synod_net::ClientGuard;
use synod_resp::auth::{Access, Users};
use synod_resp::security::RespSecurity;

use crate::tls_args::ServerTlsArgs;

/// Who may use a replica's client ports.
#[derive(Args, Debug, Default, Clone)]
pub struct UserArgs {
    /// Clients must authenticate with the password in this file (the `default` user, allowed
    /// everything): RESP clients with `AUTH`, as with Redis's requirepass, native clients
    /// with --password-file. A file, not a flag, so the password is not in the process list.
    #[arg(long, env = "SYNOD_REQUIREPASS_FILE", conflicts_with = "acl_file")]
    pub requirepass_file: Option<PathBuf>,
    /// Clients must authenticate as one of the users in this file, each held to its
    /// permissions; Redis's ACL file form (`user NAME on >PASSWORD ~PATTERN +@read`).
    #[arg(long, env = "SYNOD_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
}

impl UserArgs {
    /// The users these flags give, if any, with their bound on failed authentications (one
    /// per server: its ports share it).
    pub fn access(&self) -> anyhow::Result<Option<Arc<Access>>> {
        let users = match (&self.requirepass_file, &self.acl_file) {
            (Some(path), _) => {
                let text = read(path)?;
                let password = text.trim_end_matches(['\n', '\r']);
                if password.is_empty() {
                    bail!("--requirepass-file {} is empty", path.display());
                }
                Users::require_pass(password)
            }
            (None, Some(path)) => Users::parse_acl(&read(path)?)
                .with_context(|| format!("--acl-file {}", path.display()))?,
            (None, None) => return Ok(None),
        };
        Ok(Some(Access::new(users)))
    }
}

/// The guard of a replica's native port when it has users (`access`): clients are admitted
/// as those users or as members (by a certificate from the cluster's CA), and each message
/// of a user is screened with `needs` and answered with `refusal` when refused. Users need
/// the replica's TLS (`tls`): its own clients (its RESP front's) reach the other servers
/// as members, by its certificate, and passwords must not cross plain TCP.
pub fn native_guard<M>(
    access: Option<Arc<Access>>,
    tls: &ServerTlsArgs,
    needs: fn(&M) -> Need<'_>,
    refusal: fn(&M, Denied) -> Option<M>,
) -> anyhow::Result<Option<ClientGuard<M>>> {
    let Some(access) = access else {
        return Ok(None);
    };
    if tls.tls_cert.is_none() {
        bail!(
            "--requirepass-file and --acl-file guard the native port too, which takes \
             --tls-cert, --tls-key and --tls-ca: replicas (their RESP fronts) reach one \
             another as members by their certificates, and passwords must not cross plain TCP"
        );
    }
    Ok(Some(ClientGuard {
        access,
        needs,
        refusal,
    }))
}

#[derive(Args, Debug, Default, Clone)]
pub struct RespSecurityArgs {
    #[command(flatten)]
    pub users: UserArgs,
    /// Serve the RESP port over TLS only, with this server's --tls-cert (so
    /// `redis-cli --tls --cacert CA` connects).
    #[arg(long, env = "SYNOD_RESP_TLS")]
    pub resp_tls: bool,
    /// With --resp-tls, serve plain RESP too, to clients that do not open with TLS.
    #[arg(long, requires = "resp_tls")]
    pub resp_plain_too: bool,
}

impl RespSecurityArgs {
    /// The RESP port's security these flags (and the server's TLS flags) give.
    pub fn security(&self, tls: &ServerTlsArgs, token: &str) -> anyhow::Result<RespSecurity> {
        let tls = if self.resp_tls {
            match tls.load(token)? {
                Some(tls) => Some(tls.acceptor()),
                None => bail!("--resp-tls needs --tls-cert, --tls-key and --tls-ca"),
            }
        } else {
            None
        };
        Ok(RespSecurity {
            tls,
            plain_too: self.resp_plain_too,
            access: self.users.access()?,
        })
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
