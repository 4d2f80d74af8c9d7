//! One request, sent to server after server until one answers: the retry schedule shared by
//! the Paxos KV and sharded KV clients.
//!
//! The request goes to the first server of an order; if no answer came within a step
//! ([`STEP`] for a small request, longer for a big one), it also goes to the next one, and so on, while the earlier tries keep waiting. The first
//! answer wins and the other tries are dropped. A try whose connection fails (or whose
//! connect takes longer than a step) gives way to the next server at once, and its server
//! is tried again a step later, so a server back from a partition is found again while the
//! request still waits.
//!
//! Why overlap instead of move on: a server that does not answer quickly is often only
//! slow, not gone. A follower holds a request while its leader fails over (0.3-0.9 s) and
//! answers once a new leader decides it; a replica back from a partition answers once it
//! has caught up. Giving up on it for the next server meant that an answer arriving just
//! after the attempt's end was thrown away, and, when the next server was the one cut off
//! or stopped, a whole second attempt was lost too (1.6 s of measured unavailability).
//! Sending the same request twice is safe: it carries the same (client, sequence number),
//! and the replicated session table applies it at most once.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use synod_net::Client;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a request waits on the servers tried so far before it also goes to the next:
/// longer than a healthy cluster takes to answer (milliseconds), shorter than a leader's
/// failover, so a request held by a follower during one also reaches the other servers.
pub(crate) const STEP: Duration = Duration::from_millis(300);

/// A connection kept between requests, with the address it goes to.
pub(crate) type Conn<M> = Option<(String, Client<M>)>;

/// `servers` in the order a request tries them: the one `conn` goes to (the server that
/// answered last, if it is one of them), then `preferred`, then the rest in their order.
pub(crate) fn order<M>(
    conn: &Conn<M>,
    servers: &[String],
    preferred: Option<&String>,
) -> Vec<String> {
    let last = conn
        .as_ref()
        .map(|(addr, _)| addr)
        .filter(|a| servers.contains(a));
    let mut order: Vec<String> = Vec::with_capacity(servers.len());
    for addr in last.into_iter().chain(preferred).chain(servers) {
        if !order.contains(addr) {
            order.push(addr.clone());
        }
    }
    order
}

/// Sends `msg` to the servers in `order` as described in the module docs, one more every
/// `step`, until `deadline`.
/// `conn` is reused for its server, and holds the connection of the server that answered
/// afterwards. `wanted` picks the answer out of what comes back (late answers to earlier
/// requests are skipped). `None` if no server answered in time.
pub(crate) async fn first_answer<M, T, F>(
    conn: &mut Conn<M>,
    order: &[String],
    msg: &M,
    step: Duration,
    deadline: Instant,
    wanted: F,
) -> Option<T>
where
    M: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(M) -> Option<T> + Clone + Send + Sync + 'static,
{
    assert!(!order.is_empty(), "a request needs a server to go to");
    assert!(
        step >= STEP,
        "a step is never shorter than a small request's"
    );
    let mut kept = conn.take();
    let mut tries = JoinSet::new();
    // Per server in `order`: whether a try is in flight, and when it may be tried (again).
    let mut busy = vec![false; order.len()];
    let mut free_at = vec![Instant::now(); order.len()];
    let mut turn = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // One more try, at the next server in turn that has none in flight.
        let free = (0..order.len())
            .map(|k| (turn + k) % order.len())
            .find(|&i| !busy[i] && free_at[i] <= now);
        if let Some(i) = free {
            busy[i] = true;
            turn = i + 1;
            let addr = order[i].clone();
            let reuse = kept.take_if(|(a, _)| *a == addr).map(|(_, client)| client);
            let one = ask(addr, reuse, msg.clone(), deadline, wanted.clone());
            tries.spawn(async move { (i, one.await) });
        }
        let next_step = deadline.min(now + step);
        if tries.is_empty() {
            // Every server failed a moment ago: wait until one may be tried again.
            let soonest = free_at.iter().min().copied().unwrap_or(next_step);
            tokio::time::sleep_until(next_step.min(soonest)).await;
            continue;
        }
        match tokio::time::timeout_at(next_step, tries.join_next()).await {
            Ok(Some(Ok((i, Some((client, answer)))))) => {
                *conn = Some((order[i].clone(), client));
                return Some(answer);
            }
            // That try's connection failed: the next server's turn at once, and this one's
            // again a step later.
            Ok(Some(Ok((i, None)))) => {
                busy[i] = false;
                free_at[i] = Instant::now() + step;
            }
            // `ask` does not panic, and the set is not empty.
            Ok(Some(Err(_)) | None) => unreachable!("a try panicked or vanished"),
            // Nobody answered within the step: one more server.
            Err(_) => {}
        }
    }
}

/// One try at `addr`: connects (unless given a connection; a connect is bounded by [`STEP`],
/// since a server whose host answers no SYN that long is cut off, whatever the request's size), sends, and waits for the
/// wanted answer until `deadline`. Gives the connection back with the answer; `None` if the
/// connection failed.
async fn ask<M, T, F>(
    addr: String,
    reuse: Option<Client<M>>,
    msg: M,
    deadline: Instant,
    wanted: F,
) -> Option<(Client<M>, T)>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
    F: Fn(M) -> Option<T>,
{
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut client = match reuse {
        Some(client) => client,
        None => Client::connect(addr.as_str(), left().min(STEP))
            .await
            .ok()?,
    };
    client.send(&msg).await.ok()?;
    loop {
        let reply = client.recv(left()).await.ok()?;
        if let Some(answer) = wanted(reply) {
            return Some((client, answer));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde::Deserialize;
    use synod_net::{run_node, NodeConfig};
    use synod_node::{Context, Node, NodeId, TimerToken};
    use tokio::net::TcpListener;

    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    enum Msg {
        Ask,
        Answer(String),
    }

    /// A server that answers every `Ask` with its name after `delay`, or never.
    struct Answerer {
        name: &'static str,
        delay: Option<Duration>,
        asked: Vec<NodeId>,
    }

    impl Node for Answerer {
        type Msg = Msg;

        fn on_start(&mut self, _ctx: &mut dyn Context<Msg>) {}

        fn on_message(&mut self, ctx: &mut dyn Context<Msg>, from: NodeId, msg: Msg) {
            if let (Msg::Ask, Some(delay)) = (msg, self.delay) {
                self.asked.push(from);
                ctx.set_timer(delay, self.asked.len() as TimerToken - 1);
            }
        }

        fn on_timer(&mut self, ctx: &mut dyn Context<Msg>, token: TimerToken) {
            ctx.send(self.asked[token as usize], Msg::Answer(self.name.into()));
        }
    }

    async fn serve(listener: TcpListener, name: &'static str, delay: Option<Duration>) {
        let node = Answerer {
            name,
            delay,
            asked: Vec::new(),
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

    fn answer(msg: Msg) -> Option<String> {
        match msg {
            Msg::Answer(name) => Some(name),
            Msg::Ask => None,
        }
    }

    // The clock is real: the bounds leave whole steps of slack for a loaded machine, and
    // what they tell apart are whole steps.

    #[tokio::test]
    async fn a_slow_server_still_answers_after_the_next_one_was_tried() {
        let slow = server("slow", Some(STEP * 2)).await;
        let silent = server("silent", None).await;
        let start = Instant::now();
        let deadline = start + STEP * 10;
        let mut conn = None;
        let order = [slow.clone(), silent];
        let got = first_answer(&mut conn, &order, &Msg::Ask, STEP, deadline, answer).await;
        assert_eq!(got.as_deref(), Some("slow"));
        assert!(start.elapsed() < STEP * 4, "{:?}", start.elapsed());
        assert_eq!(conn.map(|(addr, _)| addr), Some(slow));
    }

    #[tokio::test]
    async fn the_next_server_is_asked_a_step_later_while_the_first_stays_silent() {
        let silent = server("silent", None).await;
        let prompt = server("prompt", Some(Duration::ZERO)).await;
        let start = Instant::now();
        let mut conn = None;
        let order = [silent, prompt];
        let got = first_answer(
            &mut conn,
            &order,
            &Msg::Ask,
            STEP,
            start + STEP * 10,
            answer,
        )
        .await;
        assert_eq!(got.as_deref(), Some("prompt"));
        assert!(start.elapsed() >= STEP, "asked before a step passed");
        assert!(start.elapsed() < STEP * 3, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_server_that_refused_is_asked_again_once_it_listens() {
        // A port nobody listens on yet: connects are refused until the server starts.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        drop(listener);
        let start = Instant::now();
        let later = async move {
            tokio::time::sleep(STEP * 2).await;
            serve(
                TcpListener::bind(addr).await.unwrap(),
                "late",
                Some(Duration::ZERO),
            )
            .await;
        };
        let ask = async {
            let mut conn = None;
            let order = [addr.to_string()];
            first_answer(
                &mut conn,
                &order,
                &Msg::Ask,
                STEP,
                start + STEP * 10,
                answer,
            )
            .await
        };
        let ((), got) = tokio::join!(later, ask);
        assert_eq!(got.as_deref(), Some("late"));
    }

    #[tokio::test]
    async fn nobody_answering_ends_at_the_deadline() {
        let silent = server("silent", None).await;
        let start = Instant::now();
        let mut conn = None;
        let order = [silent];
        let got = first_answer(&mut conn, &order, &Msg::Ask, STEP, start + STEP * 2, answer).await;
        assert_eq!(got, None);
        assert!(start.elapsed() >= STEP * 2);
    }

    #[test]
    fn the_order_is_last_answered_then_preferred_then_the_rest() {
        let servers: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let none: Conn<Msg> = None;
        assert_eq!(order(&none, &servers, None), ["a", "b", "c"]);
        assert_eq!(order(&none, &servers, Some(&servers[2])), ["c", "a", "b"]);
    }
}
