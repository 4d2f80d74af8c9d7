//! TLS for synod's TCP connections (rustls, with the `ring` provider): who may be a peer, and
//! how clients know they reach a server of the cluster.
//!
//! Every member of a cluster holds a certificate from the cluster's own CA whose subject
//! alternative names include its *member name*, `replica-<id>.<scope>.synod` ([`member_name`]),
//! where the scope tells apart the clusters (or replica groups) that share a CA: a
//! replicated service uses its cluster id. A member's certificate serves both ways, as a
//! server certificate when it accepts and as a client certificate when it connects.
//!
//! - An outbound peer link connects with TLS and checks that the server's certificate names
//!   the member it meant to reach ([`PeerTls::connect`]).
//! - An accepting server requires that a connection announcing itself as peer `n` in its
//!   handshake came over TLS with a client certificate from the CA that names member `n`
//!   ([`PeerTls::check_member`]): holding *a* cluster certificate is not enough to speak
//!   for another member. Plain connections are refused to peers; to clients they are
//!   refused too unless [`crate::NetOptions::plain_clients`] allows them.
//! - Clients ([`ClientTls`]) verify the server's certificate against the CA and the address
//!   they connect to (so a member certificate also names its hosts: `127.0.0.1` for a local
//!   cluster), and present a certificate of their own if they have one.
//!
//! Integrity comes with TLS: a frame altered or replayed on the wire fails its record's
//! authentication and ends the connection.
//!
//! [`ClusterCa`] issues the certificates (rcgen), for `synod up` and `synod certs`.
//!
//! Clients are built in many places (every service's clerk, the CLIs, the servers' own
//! fronts), so the TLS setting of a process's clients is installed once, process-wide,
//! with [`use_for_clients`], as `local` keeps the routes of in-process servers: a clerk needs
//! no TLS argument to connect like the rest of its process.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use synod_node::NodeId;
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use crate::error::NetError;

/// The first byte of a TLS connection (a handshake record); a plain synod connection starts
/// with the magic `S` instead, so a server tells the two apart by peeking at it.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{0}: holds no certificate")]
    NoCertificate(PathBuf),
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid CA certificate: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("{0:?} is not a valid DNS name")]
    Name(String),
}

/// Where a member's (or a client's) TLS material is: its certificate (chain), its private
/// key, and the cluster CA's certificate, all PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The member name of server `id` in `scope`: what its certificate must name.
pub fn member_name(scope: &str, id: NodeId) -> String {
    format!("replica-{}.{scope}.synod", id.0)
}

/// rustls's `ring` provider: the brief's choice over aws-lc, whose build needs cmake. rustls
/// deprecates it for lacking post-quantum key exchange, which is the price.
///
/// Its cipher suites are reordered to prefer AES-128-GCM (rustls lists AES-256-GCM first):
/// with AES-NI it takes fewer rounds per block for a security margin that is ample, and
/// every request and reply is sealed and opened once per hop.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

fn pem_error(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem_error(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(pem_error(path))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_chain(path)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// A member's TLS: accepts connections (asking for, and verifying, client certificates)
/// and connects to other members, checking who they are.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    scope: Arc<str>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Loads a member's certificate, key and CA; `scope` is the middle of member names.
    pub fn load(files: &TlsFiles, scope: &str) -> Result<Self, TlsError> {
        let name = member_name(scope, NodeId(0));
        if ServerName::try_from(name.as_str()).is_err() {
            return Err(TlsError::Name(name));
        }
        let chain = load_chain(&files.cert)?;
        let key = load_key(&files.key)?;
        let roots = load_roots(&files.ca)?;
        // Clients need no certificate to connect (the handshake tells them from peers); a
        // peer without one is refused after the handshake, with the reason logged.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            scope: scope.into(),
        })
    }

    /// Accepts TLS connections with this member's certificate: for its other ports (RESP).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The same identity as a client's TLS, for the clients a member runs (its RESP
    /// front's clerk): they present the member's certificate.
    pub fn as_client(&self) -> ClientTls {
        ClientTls {
            connector: self.connector.clone(),
        }
    }

    /// Connects to member `to` over `stream`, which fails unless its certificate names it.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        to: NodeId,
    ) -> Result<client::TlsStream<TcpStream>, NetError> {
        let name = member_name(&self.scope, to);
        let name = ServerName::try_from(name.clone()).map_err(|_| TlsError::Name(name))?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(NetError::TlsHandshake)
    }

    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<server::TlsStream<TcpStream>, NetError> {
        self.acceptor
            .accept(stream)
            .await
            .map_err(NetError::TlsHandshake)
    }

    /// Whether a connection whose verified client certificate is `cert` may speak as
    /// member `claimed`: only if the certificate names it.
    pub(crate) fn check_member(
        &self,
        cert: Option<&CertificateDer<'_>>,
        claimed: NodeId,
    ) -> Result<(), NetError> {
        let Some(cert) = cert else {
            return Err(NetError::NotMember {
                claimed,
                reason: "it presented no certificate".into(),
            });
        };
        let name = member_name(&self.scope, claimed);
        let subject =
            ServerName::try_from(name.as_str()).map_err(|_| TlsError::Name(name.clone()))?;
        webpki::EndEntityCert::try_from(cert)
            .and_then(|cert| cert.verify_is_valid_for_subject_name(&subject))
            .map_err(|e| NetError::NotMember {
                claimed,
                reason: format!("its certificate does not name {name} ({e})"),
            })
    }
}

/// A client's TLS: the CA to verify servers with, and the client's own certificate if it
/// has one.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts servers with a certificate from the CA in `ca`, presenting no certificate.
    pub fn trusting(ca: &Path) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(load_roots(ca)?)
            .with_no_client_auth();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects over `stream` to the server at `ip`, whose certificate must name that
    /// address.
    pub async fn connect(
        &self,
        stream: TcpStream,
        ip: IpAddr,
    ) -> Result<client::TlsStream<TcpStream>, NetError> {
        self.connector
            .connect(ServerName::IpAddress(ip.into()), stream)
            .await
            .map_err(NetError::TlsHandshake)
    }
}

static CLIENT_TLS: OnceLock<ClientTls> = OnceLock::new();

/// Makes every [`crate::Client`] of this process connect with `tls`. Set once, before the
/// first connection; a second call is refused (returns `false`) so that no connection
/// made in between could have used another setting.
pub fn use_for_clients(tls: ClientTls) -> bool {
    CLIENT_TLS.set(tls).is_ok()
}

/// The TLS of this process's clients, if any was installed.
pub(crate) fn for_clients() -> Option<&'static ClientTls> {
    CLIENT_TLS.get()
}

/// A cluster's certificate authority: issues member certificates (rcgen, ECDSA P-256).
///
/// Its certificate's subject is fixed, so the CA can be rebuilt from its key alone to issue
/// more certificates later (`synod certs`): only its key is secret.
pub struct ClusterCa {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
}

/// A certificate and its private key, PEM.
pub struct IssuedPem {
    pub cert: String,
    pub key: String,
}

const CA_NAME: &str = "synod cluster CA";

impl ClusterCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self, TlsError> {
        Self::from_key(rcgen::KeyPair::generate()?)
    }

    /// The CA whose key is `key_pem` (as [`ClusterCa::key_pem`] wrote it).
    pub fn from_key_pem(key_pem: &str) -> Result<Self, TlsError> {
        Self::from_key(rcgen::KeyPair::from_pem(key_pem)?)
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Self, TlsError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, CA_NAME);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        Ok(ClusterCa { key, params })
    }

    /// The CA's certificate, PEM: what every member and client trusts.
    pub fn cert_pem(&self) -> Result<String, TlsError> {
        Ok(self.params.self_signed(&self.key)?.pem())
    }

    /// The CA's private key, PEM: keep it secret (mode 0600).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for member `id` of `scope`, valid as server and client, that also
    /// names `hosts` (addresses or DNS names clients connect to).
    pub fn issue_member(
        &self,
        scope: &str,
        id: NodeId,
        hosts: &[String],
    ) -> Result<IssuedPem, TlsError> {
        let mut names = vec![member_name(scope, id)];
        names.extend(hosts.iter().cloned());
        self.issue(&member_name(scope, id), names)
    }

    /// A certificate naming `names` (DNS names or IP addresses), valid as server and client.
    pub fn issue(&self, common_name: &str, names: Vec<String>) -> Result<IssuedPem, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
