//! The one async driver that runs a client core (a [`Clerk`]) over real connections.
//!
//! The clerk decides whom to ask, when to ask again and when an operation is complete; the
//! driver only carries its outputs: it opens a connection per server (or reuses the one the
//! session kept), sends, turns each answer into [`Clerk::on_message`], a failed connect or a
//! broken connection into [`Clerk::on_unreachable`], and due timers into
//! [`Clerk::on_timeout`], until the clerk is done or the deadline passes. The simulator runs
//! the same clerks with simulated messages and virtual timers, so the retry logic tested
//! under its faults is the logic that runs here.
//!
//! Each try is a task that owns its connection: it connects if needed, sends, and waits for
//! one message, which it hands back with the connection; the driver feeds the message to the
//! clerk and, if the operation goes on, lets the connection wait for the next one. A live
//! connection does not lose what it carries, so a send to a server whose try is still
//! waiting *with the same message, unanswered* is not repeated: the request is already there
//! (a TCP connection breaks rather than drops, and a break is reported). A message the server
//! already answered is sent again when the clerk asks (a view service asked again whether
//! there is a primary yet must be asked, not skipped). A different message to that server (a
//! new controller query, say) cannot wait for the try to return, which may be never: that
//! try is aborted and the message goes on a new connection.
//!
//! Authentication is part of connection setup: a [`TcpDialer`] presents the client's
//! credentials on every connection it opens, and a server that refuses them ends the
//! operation at once ([`Stopped::Refused`]): no other server would take them either.
//!
//! The transport is two small traits, [`Connection`] (send and receive on one connection,
//! the shape of [`synod_net::Client`]) and [`Dialer`] (open one to a server), so a server can
//! be reached by anything with that shape.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_auth::AuthFailure;
use synod_net::{Client, Credentials, NetError};
use synod_node::clerk::{Clerk, ClerkOutput};
use synod_node::TimerToken;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, trace};

/// Longest wait for one connect and handshake: a server whose host answers no SYN that long
/// is cut off, and a request must not wait on it rather than go to the next server.
pub(crate) const CONNECT_LIMIT: Duration = Duration::from_millis(300);

/// One connection to a server: send a message, receive the next one.
pub trait Connection<M>: Send + 'static {
    fn send(&mut self, msg: &M) -> impl Future<Output = Result<(), NetError>> + Send;
    /// The next message, waiting at most `limit`.
    fn recv(&mut self, limit: Duration) -> impl Future<Output = Result<M, NetError>> + Send;
}

impl<M> Connection<M> for Client<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn send(&mut self, msg: &M) -> impl Future<Output = Result<(), NetError>> + Send {
        Client::send(self, msg)
    }

    fn recv(&mut self, limit: Duration) -> impl Future<Output = Result<M, NetError>> + Send {
        Client::recv(self, limit)
    }
}

/// Opens connections to the servers a clerk names.
pub trait Dialer<S> {
    type Msg;
    type Conn: Connection<Self::Msg>;
    /// A connection to `server`, within `limit`. The future owns what it needs, so it can run
    /// on a task of its own.
    fn dial(
        &self,
        server: &S,
        limit: Duration,
    ) -> impl Future<Output = Result<Self::Conn, NetError>> + Send + 'static;
}

/// TCP connections to servers named by their index into a list of `HOST:PORT` addresses,
/// presenting the client's credentials, if it has any.
pub(crate) struct TcpDialer<M> {
    addrs: Vec<String>,
    credentials: Option<Credentials>,
    _msg: PhantomData<fn(M) -> M>,
}

impl<M> TcpDialer<M> {
    pub(crate) fn new(addrs: Vec<String>) -> Self {
        TcpDialer {
            addrs,
            credentials: None,
            _msg: PhantomData,
        }
    }

    pub(crate) fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Presents `credentials` on every connection from now on.
    pub(crate) fn authenticate(&mut self, credentials: Credentials) {
        self.credentials = Some(credentials);
    }

    pub(crate) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
}

impl<M> Dialer<usize> for TcpDialer<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Msg = M;
    type Conn = Client<M>;

    fn dial(
        &self,
        server: &usize,
        limit: Duration,
    ) -> impl Future<Output = Result<Client<M>, NetError>> + Send + 'static {
        dial_addr(
            self.addrs.get(*server).cloned(),
            limit,
            self.credentials.clone(),
        )
    }
}

/// A TCP connection to `addr` within `limit`, presenting `credentials`; a server without an
/// address is unreachable.
pub(crate) async fn dial_addr<M>(
    addr: Option<String>,
    limit: Duration,
    credentials: Option<Credentials>,
) -> Result<Client<M>, NetError>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let addr = addr.ok_or(NetError::Closed)?;
    Client::connect_as(addr, limit, credentials.as_ref()).await
}

/// Why an operation ended without its reply.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// Its deadline passed; the last reason a server could not be reached, if one could
    /// not, so an operation that times out can tell "nobody listens" from "slow".
    Deadline(Option<String>),
    /// A server refused the client's credentials.
    Refused(AuthFailure),
}

/// The connections a session keeps between operations, by server.
type Kept<S, C> = HashMap<S, C>;

/// What one try hands back: its server, and its connection with the message it received.
type TryResult<S, C, M> = (S, Result<(C, M), NetError>);

/// One client id of a service: its clerk, one operation at a time, and the connections it
/// keeps between operations (to the server that answered the last one).
pub(crate) struct Session<K: Clerk, C> {
    pub(crate) clerk: K,
    kept: Kept<K::Server, C>,
}

impl<K, C> Session<K, C>
where
    K: Clerk,
    K::Server: Send + 'static,
    K::Msg: PartialEq + Clone + Send + 'static,
{
    pub(crate) fn new(clerk: K) -> Self {
        Session {
            clerk,
            kept: Kept::new(),
        }
    }

    /// Runs the operation `start` begins (see [`run`]) on this session's connections.
    pub(crate) async fn run<D>(
        &mut self,
        start: impl FnOnce(&mut K) -> Vec<ClerkOutput<K::Server, K::Msg, K::Reply>>,
        dialer: &D,
        deadline: Instant,
    ) -> Result<K::Reply, Stopped>
    where
        D: Dialer<K::Server, Msg = K::Msg, Conn = C>,
    {
        run(&mut self.clerk, start, &mut self.kept, dialer, deadline).await
    }

    /// Forgets the connections kept.
    pub(crate) fn disconnect(&mut self) {
        self.kept.clear();
    }
}

/// Runs the operation `start` begins on `clerk` (usually `|c| c.start(op)`) until it
/// completes (its reply), `deadline` passes, or a server refuses the client's credentials.
/// `kept` holds the session's connections: used when the clerk sends to their server, and
/// given the connection of the server that answered.
async fn run<K, D>(
    clerk: &mut K,
    start: impl FnOnce(&mut K) -> Vec<ClerkOutput<K::Server, K::Msg, K::Reply>>,
    kept: &mut Kept<K::Server, D::Conn>,
    dialer: &D,
    deadline: Instant,
) -> Result<K::Reply, Stopped>
where
    K: Clerk,
    K::Server: Send + 'static,
    K::Msg: PartialEq + Clone + Send + 'static,
    D: Dialer<K::Server, Msg = K::Msg>,
{
    let mut tries: JoinSet<TryResult<K::Server, D::Conn, K::Msg>> = JoinSet::new();
    // Per server with a try in flight: that try, and the last message sent on it while the
    // server has not answered it yet (`None` once it has: the try only listens).
    let mut waiting: HashMap<K::Server, (AbortHandle, Option<K::Msg>)> = HashMap::new();
    let mut timers: Vec<(Instant, TimerToken)> = Vec::new();
    let mut outputs: VecDeque<_> = start(clerk).into();
    let mut problem = None;
    loop {
        while let Some(output) = outputs.pop_front() {
            match output {
                ClerkOutput::Send { to, msg } => {
                    if let Some((try_there, unanswered)) = waiting.get(&to) {
                        if unanswered.as_ref() == Some(&msg) {
                            trace!(server = ?to, "not sent again: a try there still waits");
                            continue;
                        }
                        try_there.abort();
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let connect = dialer.dial(&to, left.min(CONNECT_LIMIT));
                    let conn = kept.remove(&to);
                    let try_there = tries.spawn(one_try(
                        to.clone(),
                        conn,
                        connect,
                        Some(msg.clone()),
                        deadline,
                    ));
                    waiting.insert(to, (try_there, Some(msg)));
                }
                ClerkOutput::Timer { after, token } => timers.push((Instant::now() + after, token)),
                ClerkOutput::Done(reply) => return Ok(reply),
            }
        }
        if Instant::now() >= deadline {
            return Err(Stopped::Deadline(problem));
        }
        let wake = timers
            .iter()
            .map(|&(at, _)| at)
            .min()
            .unwrap_or(deadline)
            .min(deadline);
        tokio::select! {
            Some(joined) = tries.join_next(), if !tries.is_empty() => {
                let Ok((server, result)) = joined else {
                    // A try aborted for a new message to its server (`one_try` does not
                    // panic): the new try carries on.
                    trace!("a try ended without its result");
                    continue;
                };
                match result {
                    Ok((conn, msg)) => {
                        let out = clerk.on_message(&server, msg);
                        if clerk.busy() {
                            // The operation goes on: this connection waits for more.
                            let never = std::future::pending();
                            let again =
                                tries.spawn(one_try(server.clone(), Some(conn), never, None, deadline));
                            // What was sent there is answered: asked again, it goes again.
                            if let Some(entry) = waiting.get_mut(&server) {
                                *entry = (again, None);
                            }
                        } else {
                            waiting.remove(&server);
                            kept.insert(server, conn);
                        }
                        outputs.extend(out);
                    }
                    Err(NetError::AuthRefused(failure)) => return Err(Stopped::Refused(failure)),
                    Err(e) => {
                        debug!(server = ?server, reason = %e, "server unreachable");
                        problem = Some(e.to_string());
                        waiting.remove(&server);
                        outputs.extend(clerk.on_unreachable(&server));
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) =
                    timers.into_iter().partition(|&(at, _)| at <= now);
                timers = later;
                for (_, token) in due {
                    outputs.extend(clerk.on_timeout(token));
                }
            }
        }
    }
}

/// One try at `server`: connects with `connect` unless given `conn`, sends `msg` if any, and
/// waits for the next message until `deadline`.
async fn one_try<S, C, M, F>(
    server: S,
    conn: Option<C>,
    connect: F,
    msg: Option<M>,
    deadline: Instant,
) -> TryResult<S, C, M>
where
    C: Connection<M>,
    F: Future<Output = Result<C, NetError>>,
{
    let result = async {
        let mut conn = match conn {
            Some(conn) => conn,
            None => connect.await?,
        };
        if let Some(msg) = msg {
            // A stopped server stops reading; its socket buffer must not hold us past the
            // deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, conn.send(&msg))
                .await
                .map_err(|_| NetError::Timeout {
                    what: "send",
                    after: left,
                })??;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = conn.recv(left).await?;
        Ok((conn, msg))
    }
    .await;
    (server, result)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use synod_kvpaxos::{KvClerk, KvMsg, KvOp, KvReply};
    use synod_net::{run_node, NodeConfig};
    use synod_node::clerk::STEP;
    use synod_node::{Context, Node, NodeId};
    use synod_rsm::RsmMsg;
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers every request numbered `from_seq` or more with its name after
    /// `delay`, or never.
    struct Answerer {
        name: &'static str,
        delay: Option<Duration>,
        asked: Vec<(NodeId, u64)>,
        from_seq: u64,
    }

    impl Node for Answerer {
        type Msg = KvMsg;

        fn on_start(&mut self, _ctx: &mut dyn Context<KvMsg>) {}

        fn on_message(&mut self, ctx: &mut dyn Context<KvMsg>, from: NodeId, msg: KvMsg) {
            if let (RsmMsg::Request { seq, .. }, Some(delay)) = (msg, self.delay) {
                if seq < self.from_seq {
                    return;
                }
                self.asked.push((from, seq));
                ctx.set_timer(delay, self.asked.len() as TimerToken - 1);
            }
        }

        fn on_timer(&mut self, ctx: &mut dyn Context<KvMsg>, token: TimerToken) {
            let (to, seq) = self.asked[token as usize];
            let reply = KvReply::Value(self.name.into());
            ctx.send(to, RsmMsg::Reply { seq, reply });
        }
    }

    async fn serve(listener: TcpListener, name: &'static str, delay: Option<Duration>) {
        let node = Answerer {
            name,
            delay,
            asked: Vec::new(),
            from_seq: 0,
        };
        let config = NodeConfig::new(NodeId(1), listener);
        let storage = Box::new(synod_storage::MemStorage::new());
        tokio::spawn(run_node(node, config, storage, std::future::pending()));
    }

    async fn server(name: &'static str, delay: Option<Duration>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        serve(listener, name, delay).await;
        addr
    }

    async fn ask(
        addrs: Vec<String>,
        limit: Duration,
    ) -> (Option<KvReply>, Kept<usize, Client<KvMsg>>) {
        let mut clerk = KvClerk::new(7, addrs.len());
        let dialer = TcpDialer::new(addrs);
        let mut kept = Kept::new();
        let op = KvOp::Get { key: "k".into() };
        let deadline = Instant::now() + limit;
        let reply = run(&mut clerk, |c| c.start(op), &mut kept, &dialer, deadline)
            .await
            .ok();
        (reply, kept)
    }

    fn value(name: &str) -> Option<KvReply> {
        Some(KvReply::Value(name.into()))
    }

    // The clock is real: the bounds leave whole steps of slack for a loaded machine, and
    // what they tell apart are whole steps.

    #[tokio::test]
    async fn a_slow_server_still_answers_after_the_next_one_was_tried() {
        let slow = server("slow", Some(STEP * 2)).await;
        let silent = server("silent", None).await;
        let start = Instant::now();
        let (got, kept) = ask(vec![slow, silent], STEP * 10).await;
        assert_eq!(got, value("slow"));
        assert!(start.elapsed() < STEP * 4, "{:?}", start.elapsed());
        assert!(kept.contains_key(&0), "the answering connection is kept");
    }

    #[tokio::test]
    async fn the_next_server_is_asked_a_step_later_while_the_first_stays_silent() {
        let silent = server("silent", None).await;
        let prompt = server("prompt", Some(Duration::ZERO)).await;
        let start = Instant::now();
        let (got, _) = ask(vec![silent, prompt], STEP * 10).await;
        assert_eq!(got, value("prompt"));
        assert!(start.elapsed() >= STEP, "asked before a step passed");
        assert!(start.elapsed() < STEP * 3, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn an_unreachable_server_gives_way_to_the_next_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = listener.local_addr().unwrap().to_string();
        drop(listener);
        let prompt = server("prompt", Some(Duration::ZERO)).await;
        let start = Instant::now();
        let (got, _) = ask(vec![refused, prompt], STEP * 10).await;
        assert_eq!(got, value("prompt"));
        assert!(start.elapsed() < STEP, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_server_that_refused_is_asked_again_once_it_listens() {
        // A port nobody listens on yet: connects are refused until the server starts.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        drop(listener);
        let later = async move {
            tokio::time::sleep(STEP * 2).await;
            let listener = TcpListener::bind(addr).await.unwrap();
            serve(listener, "late", Some(Duration::ZERO)).await;
        };
        let ((), (got, _)) = tokio::join!(later, ask(vec![addr.to_string()], STEP * 10));
        assert_eq!(got, value("late"));
    }

    /// A clerk that asks server 0 with request 1, and a step later with request 2 while the
    /// first still waits there (as a sharded clerk's second controller query does).
    struct Twice {
        done: bool,
    }

    impl Clerk for Twice {
        type Server = usize;
        type Msg = KvMsg;
        type Op = ();
        type Reply = KvReply;

        fn start(&mut self, (): ()) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            vec![
                ClerkOutput::Send {
                    to: 0,
                    msg: request(1),
                },
                ClerkOutput::Timer {
                    after: STEP,
                    token: 1,
                },
            ]
        }

        fn on_message(&mut self, _: &usize, msg: KvMsg) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            match msg {
                RsmMsg::Reply { seq: 2, reply } => {
                    self.done = true;
                    vec![ClerkOutput::Done(reply)]
                }
                _ => Vec::new(),
            }
        }

        fn on_timeout(&mut self, _: TimerToken) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            vec![ClerkOutput::Send {
                to: 0,
                msg: request(2),
            }]
        }

        fn on_unreachable(&mut self, _: &usize) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            Vec::new()
        }

        fn busy(&self) -> bool {
            !self.done
        }
    }

    fn request(seq: u64) -> KvMsg {
        RsmMsg::Request {
            client: 7,
            seq,
            op: KvOp::Get { key: "k".into() },
        }
    }

    /// Runs `clerk`'s one operation against the server at `addr` (its server 0), with ten
    /// steps to finish.
    async fn run_alone<K>(mut clerk: K, addr: String) -> Option<KvReply>
    where
        K: Clerk<Server = usize, Msg = KvMsg, Op = (), Reply = KvReply>,
    {
        let mut kept = Kept::new();
        let dialer = TcpDialer::new(vec![addr]);
        let deadline = Instant::now() + STEP * 10;
        run(&mut clerk, |c| c.start(()), &mut kept, &dialer, deadline)
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_new_message_to_a_server_whose_try_waits_goes_out_at_once() {
        // Answers request 2 only: request 1 leaves its try waiting for good.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let node = Answerer {
            name: "second",
            delay: Some(Duration::ZERO),
            asked: Vec::new(),
            from_seq: 2,
        };
        let config = NodeConfig::new(NodeId(1), listener);
        let storage = Box::new(synod_storage::MemStorage::new());
        tokio::spawn(run_node(node, config, storage, std::future::pending()));
        let start = Instant::now();
        let got = run_alone(Twice { done: false }, addr).await;
        assert_eq!(got, value("second"));
        assert!(start.elapsed() < STEP * 3, "{:?}", start.elapsed());
    }

    /// A clerk that asks server 0 the same question until the second answer, again each
    /// `ASK_AGAIN` (as a pb clerk asks the view service until it names a primary).
    struct UntilSecondAnswer {
        answers: usize,
    }

    const ASK_AGAIN: Duration = Duration::from_millis(50);

    impl UntilSecondAnswer {
        fn ask(&self) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            vec![
                ClerkOutput::Send {
                    to: 0,
                    msg: request(1),
                },
                ClerkOutput::Timer {
                    after: ASK_AGAIN,
                    token: 1,
                },
            ]
        }
    }

    impl Clerk for UntilSecondAnswer {
        type Server = usize;
        type Msg = KvMsg;
        type Op = ();
        type Reply = KvReply;

        fn start(&mut self, (): ()) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            self.ask()
        }

        fn on_message(&mut self, _: &usize, msg: KvMsg) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            let RsmMsg::Reply { reply, .. } = msg else {
                return Vec::new();
            };
            self.answers += 1;
            match self.answers {
                2 => vec![ClerkOutput::Done(reply)],
                _ => Vec::new(),
            }
        }

        fn on_timeout(&mut self, _: TimerToken) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            self.ask()
        }

        fn on_unreachable(&mut self, _: &usize) -> Vec<ClerkOutput<usize, KvMsg, KvReply>> {
            Vec::new()
        }

        fn busy(&self) -> bool {
            self.answers < 2
        }
    }

    #[tokio::test]
    async fn a_question_answered_already_is_sent_again_when_asked_again() {
        // The regression: the driver took the answered question for one still waiting and
        // never sent it again, so a pb client that asked the view service before the
        // primary's first ping waited out its whole timeout (pb_cli, under load).
        let prompt = server("prompt", Some(Duration::ZERO)).await;
        let start = Instant::now();
        let got = run_alone(UntilSecondAnswer { answers: 0 }, prompt).await;
        assert_eq!(got, value("prompt"));
        assert!(start.elapsed() < STEP * 3, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn nobody_answering_ends_at_the_deadline() {
        let silent = server("silent", None).await;
        let start = Instant::now();
        let (got, _) = ask(vec![silent], STEP * 2).await;
        assert_eq!(got, None);
        assert!(start.elapsed() >= STEP * 2);
    }
}
