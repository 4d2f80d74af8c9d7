//! The security flags of a RESP port (`kv serve`, `shardkv serve`): `--requirepass` or
//! `--acl-file` (docs/running.md, "Security"), and `--resp-tls`.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_resp::auth::{Access, Users};
use synod_resp::security::RespSecurity;

use crate::tls_args::ServerTlsArgs;

#[derive(Args, Debug, Default, Clone)]
pub struct RespSecurityArgs {
    /// Clients of the RESP port must `AUTH` with the password in this file (the `default`
    /// user, allowed everything), as with Redis's requirepass. A file, not a flag, so the
    /// password is not in the process list.
    #[arg(long, env = "SYNOD_REQUIREPASS_FILE", conflicts_with = "acl_file")]
    pub requirepass_file: Option<PathBuf>,
    /// Clients of the RESP port must `AUTH` as one of the users in this file, each held to
    /// its permissions; Redis's ACL file form (`user NAME on >PASSWORD ~PATTERN +@read`).
    #[arg(long, env = "SYNOD_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
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
        let users = match (&self.requirepass_file, &self.acl_file) {
            (Some(path), _) => {
                let text = read(path)?;
                let password = text.trim_end_matches(['\n', '\r']);
                if password.is_empty() {
                    bail!("--requirepass-file {} is empty", path.display());
                }
                Some(Users::require_pass(password))
            }
            (None, Some(path)) => Some(
                Users::parse_acl(&read(path)?)
                    .with_context(|| format!("--acl-file {}", path.display()))?,
            ),
            (None, None) => None,
        };
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
            access: users.map(Access::new),
        })
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
