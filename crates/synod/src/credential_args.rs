//! The credentials flags of native clients (`synod kv get/put/append`, `synod status`):
//! `--user` and `--password-file`, or the environment (`SYNOD_USER`, and `SYNOD_PASSWORD`
//! or `SYNOD_PASSWORD_FILE`). A password is never a flag, so it stays out of the process
//! list. A replica with users (`--requirepass-file`, `--acl-file`) admits no native client
//! without them (docs/running.md, "Security").

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use synod_net::Credentials;

/// The variable that may hold the password itself.
const PASSWORD_VAR: &str = "SYNOD_PASSWORD";

#[derive(Args, Debug, Default, Clone)]
pub struct CredentialArgs {
    /// Authenticate as this user (default: `default`, requirepass's user) when a password
    /// is given.
    #[arg(long, env = "SYNOD_USER")]
    pub user: Option<String>,
    /// Authenticate with the password in this file (`synod up` writes the cluster's to
    /// DIR/tls/resp-password); or set SYNOD_PASSWORD.
    #[arg(long, env = "SYNOD_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// The credentials these flags and the environment give, if any.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        let password = match &self.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --password-file {}", path.display()))?;
                Some(text.trim_end_matches(['\n', '\r']).to_owned())
            }
            None => std::env::var(PASSWORD_VAR).ok(),
        };
        match (password, &self.user) {
            (Some(password), user) => Ok(Some(Credentials::new(
                user.as_deref().unwrap_or("default"),
                password,
            ))),
            (None, Some(_)) => bail!("--user needs a password: --password-file or {PASSWORD_VAR}"),
            (None, None) => Ok(None),
        }
    }
}
