//! Peer links with mutual TLS, over real sockets on 127.0.0.1: members talk; a plain peer, a
//! peer with another CA's certificate, a member claiming to be another and a plain client
//! are each refused, and the refusal logged; a byte flipped on the wire ends the connection
//! instead of being delivered. A server with users admits a client with a user's valid
//! credentials only, and refuses (and logs) a request outside the user's permissions.
//!
//! Every client of this test process trusts the cluster CA ([`synod_net::tls::use_for_clients`]
//! is process-wide); the attackers below build their own connections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use synod_auth::{AuthFailure, Credentials, Need, Users};
use synod_net::codec::{encode_frame, encode_hello, Hello};
use synod_net::tls::{member_name, ClientTls, ClusterCa, IssuedPem, PeerTls, TlsFiles};
use synod_net::{
    run_guarded_node, Client, ClientGuard, NetError, NetOptions, NodeConfig, DEFAULT_MAX_FRAME,
};
use synod_node::{Context, Node, NodeId};
use synod_storage::MemStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod support;
use support::{Logs, WAIT};

/// The scope of this test cluster's member names.
const SCOPE: &str = "test";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    /// Client to A: A pings its partner, which pongs back; A passes the `Pong` on.
    Relay(u64),
    Ping(u64),
    Pong(u64),
    /// A guarded server's answer to a request its client's user may not make.
    Refused,
}

/// Relays a client's `Relay` to its partner as a `Ping` and the `Pong` back.
struct Relay {
    partner: NodeId,
    waiting: Option<NodeId>,
}

impl Node for Relay {
    type Msg = Msg;

    fn on_start(&mut self, _ctx: &mut dyn Context<Msg>) {}

    fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
        match msg {
            Msg::Relay(k) => {
                self.waiting = Some(from);
                ctx.send(self.partner, Msg::Ping(k));
            }
            Msg::Ping(k) => ctx.send(from, Msg::Pong(k)),
            Msg::Pong(k) => {
                if let Some(client) = self.waiting.take() {
                    ctx.send(client, Msg::Pong(k));
                }
            }
            Msg::Refused => {}
        }
    }

    fn on_timer(&mut self, _ctx: &mut dyn Context<Msg>, _token: synod_node::TimerToken) {}
}

/// The cluster's CA and its files, for the whole test process.
struct Pki {
    ca: ClusterCa,
    dir: tempfile::TempDir,
}

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let ca = ClusterCa::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem().unwrap()).unwrap();
    assert!(synod_net::tls::use_for_clients(
        ClientTls::trusting(&dir.path().join("ca.pem")).unwrap()
    ));
    Pki { ca, dir }
});

fn ca_path() -> PathBuf {
    PKI.dir.path().join("ca.pem")
}

/// Writes `issued` as `name-N.pem` and `name-N.key` beside the CA, N fresh for each call
/// (tests run in parallel and each issues its own), and names the three files.
fn files(name: &str, issued: &IssuedPem) -> TlsFiles {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let dir = PKI.dir.path();
    std::fs::write(dir.join(format!("{name}.pem")), &issued.cert).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &issued.key).unwrap();
    TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ca: ca_path(),
    }
}

/// Member `id`'s certificate from the cluster CA, for 127.0.0.1.
fn member(id: u64) -> IssuedPem {
    PKI.ca
        .issue_member(SCOPE, NodeId(id), &["127.0.0.1".to_string()])
        .unwrap()
}

fn tls_options(id: u64) -> NetOptions {
    let files = files(&format!("member-{id}"), &member(id));
    NetOptions {
        handshake_timeout: WAIT,
        connect_timeout: WAIT,
        backoff_min: std::time::Duration::from_millis(10),
        backoff_max: std::time::Duration::from_millis(50),
        flush_timeout: std::time::Duration::from_millis(300),
        tls: Some(PeerTls::load(&files, SCOPE).unwrap()),
        ..NetOptions::default()
    }
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), NetError>>,
}

impl Server {
    /// Member `id`, whose partner is member `partner` at `partner_addr`.
    async fn start(id: u64, listener: TcpListener, partner: u64, partner_addr: SocketAddr) -> Self {
        Self::start_guarded(id, listener, partner, partner_addr, None).await
    }

    /// [`Server::start`], admitting and screening clients with `guard`.
    async fn start_guarded(
        id: u64,
        listener: TcpListener,
        partner: u64,
        partner_addr: SocketAddr,
        guard: Option<ClientGuard<Msg>>,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let mut config = NodeConfig::new(NodeId(id), listener);
        config.peers = [(NodeId(partner), partner_addr)].into();
        config.net = tls_options(id);
        let node = Relay {
            partner: NodeId(partner),
            waiting: None,
        };
        let (stop, stopped) = oneshot::channel();
        let storage = Box::new(MemStorage::new());
        let stopping = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(run_guarded_node(node, config, storage, stopping, guard));
        Server { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        timeout(WAIT, self.task).await.unwrap().unwrap().unwrap();
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Members 1 and 2, partners of each other.
async fn pair() -> (Server, Server) {
    let (l1, l2) = (bind().await, bind().await);
    let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    let b = Server::start(2, l2, 1, a1).await;
    let a = Server::start(1, l1, 2, a2).await;
    (a, b)
}

async fn relayed(addr: SocketAddr, k: u64) -> Result<Msg, NetError> {
    let mut client = Client::<Msg>::connect(addr, WAIT).await?;
    client.call(&Msg::Relay(k), WAIT).await
}

#[tokio::test(flavor = "current_thread")]
async fn members_talk_over_mutual_tls_and_clients_connect_with_tls() {
    let (a, b) = pair().await;
    assert_eq!(relayed(a.addr, 7).await.unwrap(), Msg::Pong(7));
    assert_eq!(relayed(b.addr, 8).await.unwrap(), Msg::Pong(8));
    a.stop().await;
    b.stop().await;
}

/// A relay writes the key `relay`; the members' own messages need a member.
fn relay_needs(msg: &Msg) -> Need<'_> {
    match msg {
        Msg::Relay(_) => Need::Write(vec![b"relay"]),
        Msg::Ping(_) | Msg::Pong(_) | Msg::Refused => Need::Member,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_guarded_server_admits_its_users_only_and_holds_them_to_their_permissions() {
    let (logs, _guard) = Logs::capture();
    let users = Users::parse_acl(
        "user default on >default-secret-8 ~* +@all\nuser reader on >reader-secret-7 ~* +@read",
    )
    .unwrap();
    let guard = ClientGuard {
        access: synod_auth::Access::new(users),
        needs: relay_needs,
        refusal: |_, _| Some(Msg::Refused),
    };
    let (l1, l2) = (bind().await, bind().await);
    let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    let b = Server::start(2, l2, 1, a1).await;
    let a = Server::start_guarded(1, l1, 2, a2, Some(guard)).await;
    let connect = |credentials: Option<Credentials>| async move {
        Client::<Msg>::connect_as(a1, WAIT, credentials.as_ref()).await
    };
    let refusal = |result: Result<Client<Msg>, NetError>| match result {
        Err(NetError::AuthRefused(failure)) => failure,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("admitted"),
    };
    assert_eq!(refusal(connect(None).await), AuthFailure::Required);
    let wrong = Credentials::new("reader", "default-secret-8");
    assert_eq!(refusal(connect(Some(wrong)).await), AuthFailure::WrongPass);
    let mut reader = connect(Some(Credentials::new("reader", "reader-secret-7")))
        .await
        .unwrap();
    assert_eq!(
        reader.call(&Msg::Relay(1), WAIT).await.unwrap(),
        Msg::Refused
    );
    // A member's message from a user is refused with no answer, and goes no further.
    reader.send(&Msg::Ping(2)).await.unwrap();
    let mut writer = connect(Some(Credentials::new("default", "default-secret-8")))
        .await
        .unwrap();
    assert_eq!(
        writer.call(&Msg::Relay(3), WAIT).await.unwrap(),
        Msg::Pong(3)
    );
    for line in [
        "native client refused: no credentials",
        "native authentication failed",
        "reason=user reader may not write",
        "reason=only members of the cluster may send this message",
    ] {
        logs.wait_for(&[line]).await;
    }
    assert!(!logs.text().contains("-secret-"), "{}", logs.text());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn connections_are_sealed_with_aes_128_gcm() {
    let (a, b) = pair().await;
    let tls = ClientTls::trusting(&ca_path()).unwrap();
    let stream = TcpStream::connect(a.addr).await.unwrap();
    let secured = tls.connect(stream, a.addr.ip()).await.unwrap();
    let suite = secured.get_ref().1.negotiated_cipher_suite();
    assert_eq!(
        suite.map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    a.stop().await;
    b.stop().await;
}

/// Connects to `addr` as a client of TLS `config` and announces itself as peer `claimed`,
/// then sends it a `Ping`; returns what the connection read before it ended.
async fn claim_over_tls(addr: SocketAddr, config: rustls::ClientConfig, claimed: u64) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    let Ok(mut tls) = connector.connect(name, stream).await else {
        return Vec::new();
    };
    claim(&mut tls, claimed).await
}

async fn claim<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S, claimed: u64) -> Vec<u8> {
    let mut hello = encode_hello(Hello::Peer(NodeId(claimed))).to_vec();
    hello.extend_from_slice(&encode_frame(&Msg::Ping(1), DEFAULT_MAX_FRAME).unwrap());
    let _ = stream.write_all(&hello).await;
    let _ = stream.flush().await;
    let mut read = Vec::new();
    let _ = timeout(WAIT, stream.read_to_end(&mut read)).await.unwrap();
    read
}

/// A client configuration builder trusting the cluster CA.
#[allow(deprecated)]
fn trusting_the_ca() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>
{
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_path()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
}

/// A client configuration trusting the cluster CA and presenting `cert`.
fn presenting(cert: &IssuedPem) -> rustls::ClientConfig {
    trusting_the_ca()
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).unwrap(),
        )
        .unwrap()
}

/// Whether `read` holds no more than the server's own handshake: nothing was answered.
fn only_a_hello(read: &[u8]) -> bool {
    read.len() <= synod_net::codec::HELLO_LEN
}

#[tokio::test(flavor = "current_thread")]
async fn a_plain_peer_is_refused_and_logged() {
    let (logs, _guard) = Logs::capture();
    let (a, b) = pair().await;
    let mut plain = TcpStream::connect(b.addr).await.unwrap();
    let read = claim(&mut plain, 1).await;
    assert!(only_a_hello(&read), "{read:?}");
    logs.wait_for(&["refused a plain connection from a peer", "requires TLS"])
        .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_plain_client_is_refused_and_logged() {
    let (logs, _guard) = Logs::capture();
    let (a, b) = pair().await;
    let mut plain = TcpStream::connect(b.addr).await.unwrap();
    let mut hello = encode_hello(Hello::Client).to_vec();
    hello.extend_from_slice(&encode_frame(&Msg::Relay(1), DEFAULT_MAX_FRAME).unwrap());
    plain.write_all(&hello).await.unwrap();
    let mut read = Vec::new();
    timeout(WAIT, plain.read_to_end(&mut read))
        .await
        .unwrap()
        .unwrap();
    assert!(only_a_hello(&read), "{read:?}");
    logs.wait_for(&["refused a plain connection from a client"])
        .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_peer_with_another_cas_certificate_is_refused_and_logged() {
    let (logs, _guard) = Logs::capture();
    let (a, b) = pair().await;
    // A certificate naming member 1, but from a CA of its own.
    let forged = ClusterCa::generate()
        .unwrap()
        .issue_member(SCOPE, NodeId(1), &["127.0.0.1".to_string()])
        .unwrap();
    let read = claim_over_tls(b.addr, presenting(&forged), 1).await;
    assert!(read.is_empty(), "{read:?}");
    logs.wait_for(&["closing connection", "TLS handshake failed"])
        .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_member_impersonating_another_is_refused_and_logged() {
    let (logs, _guard) = Logs::capture();
    let (a, b) = pair().await;
    // Member 3's genuine certificate, used to claim to be member 1.
    let read = claim_over_tls(b.addr, presenting(&member(3)), 1).await;
    assert!(only_a_hello(&read), "{read:?}");
    let expected = format!("does not name {}", member_name(SCOPE, NodeId(1)));
    logs.wait_for(&["refused a peer claiming to be n1", &expected])
        .await;
    // A client certificate that does not name the member is no better than none.
    let client_only = PKI
        .ca
        .issue("a client", vec!["client.test.synod".into()])
        .unwrap();
    let read = claim_over_tls(b.addr, presenting(&client_only), 1).await;
    assert!(only_a_hello(&read), "{read:?}");
    logs.wait_for(&["refused a peer claiming to be n1", "does not name"])
        .await;
    // And a TLS connection that presents none at all, claiming to be a peer.
    let anonymous = trusting_the_ca().with_no_client_auth();
    let read = claim_over_tls(b.addr, anonymous, 1).await;
    assert!(only_a_hello(&read), "{read:?}");
    logs.wait_for(&[
        "refused a peer claiming to be n1",
        "presented no certificate",
    ])
    .await;
    a.stop().await;
    b.stop().await;
}

/// Forwards bytes between a client and `to`; once `corrupt` is set, flips the last byte of
/// the next chunk going to `to` (once).
async fn proxy(listener: TcpListener, to: SocketAddr, corrupt: Arc<AtomicBool>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let corrupt = corrupt.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(to).await else {
                return;
            };
            let (mut in_read, mut in_write) = inbound.into_split();
            let (mut out_read, mut out_write) = outbound.into_split();
            let forward = async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match in_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if corrupt.swap(false, Ordering::SeqCst) {
                        buf[n - 1] ^= 0x01;
                    }
                    if out_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            let back = async move {
                let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
            };
            tokio::join!(forward, back);
        });
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_byte_flipped_on_the_wire_is_refused_and_logged() {
    let (logs, _guard) = Logs::capture();
    let proxy_listener = bind().await;
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let corrupt = Arc::new(AtomicBool::new(false));
    // Member 1's link to member 2 goes through the proxy; the proxy forwards to member 2.
    let (l1, l2) = (bind().await, bind().await);
    let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    tokio::spawn(proxy(proxy_listener, a2, corrupt.clone()));
    let b = Server::start(2, l2, 1, a1).await;
    let a = Server::start(1, l1, 2, proxy_addr).await;
    assert_eq!(relayed(a.addr, 1).await.unwrap(), Msg::Pong(1));
    corrupt.store(true, Ordering::SeqCst);
    // The next record from 1 to 2 (a probe or this relay's ping) arrives altered: member 2
    // must refuse it and drop the connection, not act on it.
    let _ = relayed(a.addr, 2).await;
    logs.wait_for(&["closing connection", "cannot decrypt peer's message"])
        .await;
    assert!(
        !corrupt.load(Ordering::SeqCst),
        "the proxy corrupted a record"
    );
    // The link reconnects and works again.
    let deadline = tokio::time::Instant::now() + WAIT * 5;
    let mut k = 3;
    while relayed(a.addr, k).await.ok() != Some(Msg::Pong(k)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never came back"
        );
        k += 1;
    }
    a.stop().await;
    b.stop().await;
}
