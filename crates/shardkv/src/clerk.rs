//! The sharded KV's client logic as a sans-I/O core ([`ShardKvClerk`]), run by the
//! simulator's shardkv suites and by `synod-client`'s `ShardKvClient` alike.
//!
//! The clerk caches a configuration and sends each operation to a server of the group that
//! owns the key's shard, hedged as the replicated services' clerk is (one more of the
//! group's servers every step, the step growing with the request's size; see
//! `synod_rsm::clerk`). A `WrongGroup` answer, a group that stays silent for
//! [`GROUP_SILENCE`] after its last server was tried, or a shard no group owns means the
//! configuration may be stale: the clerk asks the controller for the latest (through its own
//! [`CtlClerk`], a session of its own) and tries again, after [`PAUSE`] if nothing newer
//! came, so that a shard in transit does not flood the controller's log with queries.
//!
//! At most once: requests are numbered per shard with [`Numbering`], because each shard's
//! session table moves with the shard; a request keeps its number across groups and retries.
//!
//! A batch ([`ShardKvClerk::start_batch`]: one request, one log entry unless it only reads,
//! commands applied in order) may span shards; [`crate::segment`] makes it one group's. It
//! is numbered, routed and deduplicated by its first command's shard; its reply is a
//! [`ShardReply::Batch`], which may answer only a prefix of its commands (never empty; the
//! caller sends the rest again). A batch whose first command is answered `WrongGroup` is
//! followed to the new owner like a single command; a batch answered `WrongGroup` further
//! on is done with the commands before that one (the group applied none from there on), and
//! its caller sends the rest again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use synod_kvpaxos::KvOp;
use synod_node::clerk::step_for;
use synod_node::clerk::{Clerk, ClerkOutput};
use synod_node::TimerToken;
use synod_rsm::{Commands, RsmMsg};
use synod_shardctl::{Config, CtlClerk, CtlOp, CtlReply, Gid};
use tracing::trace;

use crate::{Numbering, ShardMsg, ShardReply};

/// How long a group may leave a request unanswered, every server tried, before the clerk
/// asks the controller whether the group still owns the shard.
pub const GROUP_SILENCE: Duration = Duration::from_secs(2);

/// Pause before retrying when the controller has nothing newer (a shard in transit: its new
/// owner answers `WrongGroup` until the data arrives).
pub const PAUSE: Duration = Duration::from_millis(50);

/// Whom a [`ShardKvClerk`] talks to: a controller (an index into the controllers the driver
/// knows) or a group's server (its address, as the configuration lists it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShardServer {
    Controller(usize),
    Group(String),
}

/// What a [`ShardKvClerk`] asks of its driver.
pub type ShardOutput = ClerkOutput<ShardServer, ShardMsg, ShardReply>;

/// What the latest group timer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A step passed: one more server.
    Step,
    /// Every server was tried and the group stayed silent: ask the controller.
    Silence,
    /// The controller had nothing newer: try the group again.
    Pause,
}

/// Whether any of `op`'s commands writes (and so goes through the group's leader).
fn writes(op: &Commands<KvOp>) -> bool {
    op.iter().any(|op| !crate::reads_only(op))
}

/// How long a request waits on the servers tried so far: a batch's step covers all its
/// bytes, as the replicated services' clerk's does.
fn hedge_step(op: &Commands<KvOp>) -> Duration {
    step_for(op.iter().map(KvOp::payload_bytes).sum())
}

/// Whether `reply` says the group does not serve the shard the request is routed by.
fn wrong_group(reply: &ShardReply) -> bool {
    match reply {
        ShardReply::WrongGroup { .. } => true,
        ShardReply::Batch(replies) => replies.first().is_some_and(wrong_group),
        _ => false,
    }
}

/// The operation in progress.
#[derive(Debug, Clone)]
struct Pending {
    op: Commands<KvOp>,
    /// (shard, sequence number), once a configuration said how many shards there are.
    numbered: Option<(usize, u64)>,
    /// The group's servers in the order they are tried, and how many were tried.
    order: Vec<String>,
    tried: usize,
    /// The latest group timer; any other is stale.
    timer: TimerToken,
    wait: Wait,
    /// The group the request was last routed to.
    gid: Gid,
}

/// Which server of a group an operation tries first: the server itself, when the group has
/// it; else, of the group's servers on its host, the one at `index` (modulo their number), so
/// the fronts of one host spread over the group instead of all picking its first server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preference {
    pub server: SocketAddr,
    pub index: usize,
}

impl Preference {
    fn pick(self, servers: &[String]) -> Option<&String> {
        let addr = |s: &String| s.parse::<SocketAddr>().ok();
        if let Some(own) = servers.iter().find(|s| addr(s) == Some(self.server)) {
            return Some(own);
        }
        let on_host = || {
            servers
                .iter()
                .filter(|s| addr(s).is_some_and(|a| a.ip() == self.server.ip()))
        };
        // Without allocating: this runs for every operation a front sends.
        let count = on_host().count();
        on_host().nth(self.index % count.max(1))
    }
}

/// A client session of a sharded KV cluster: one operation at a time.
#[derive(Debug, Clone)]
pub struct ShardKvClerk {
    client: u64,
    numbering: Numbering,
    config: Config,
    ctl: CtlClerk,
    preferred: Option<Preference>,
    /// The group server that answered last, tried early in its group.
    last_answered: Option<String>,
    /// Each group's leader, as its servers said ([`ShardMsg::Leader`]): where writes go
    /// first, so they skip a follower's forwarding hop. Forgotten when it fails to answer.
    leaders: BTreeMap<Gid, String>,
    pending: Option<Pending>,
    timers: TimerToken,
}

/// Group timers are even, the controller clerk's odd, so neither mistakes the other's.
fn group_token(n: TimerToken) -> TimerToken {
    n * 2
}

fn ctl_token(token: TimerToken) -> TimerToken {
    token * 2 + 1
}

impl ShardKvClerk {
    /// A session with client id `client` (its controller session uses `client + 1`: draw ids
    /// at random and even) over `controllers` controllers, knowing `config` so far.
    ///
    /// # Panics
    /// If `controllers` is 0.
    pub fn new(client: u64, controllers: usize, config: Config) -> Self {
        ShardKvClerk {
            client,
            numbering: Numbering::default(),
            config,
            ctl: CtlClerk::new(client.wrapping_add(1), controllers),
            preferred: None,
            last_answered: None,
            leaders: BTreeMap::new(),
            pending: None,
            timers: 0,
        }
    }

    /// Makes every operation start at the owning group's server that `preferred` picks
    /// (after the server that answered the session last): a RESP front prefers its own
    /// server, reached in-process, and otherwise a server on its own host.
    pub fn prefer(&mut self, preferred: Option<Preference>) {
        self.preferred = preferred;
    }

    /// The configuration the clerk knows.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Learns `config` if it is newer than the one the clerk knows.
    pub fn learn(&mut self, config: &Config) {
        if config.num > self.config.num {
            self.config = config.clone();
        }
    }

    /// Sends the pending operation to its group, or asks the controller if nobody owns it.
    fn try_group(&mut self) -> Vec<ShardOutput> {
        let config = &self.config;
        let Some(p) = &mut self.pending else {
            return Vec::new();
        };
        if config.num == 0 {
            return self.query();
        }
        let (shard, _) = *p
            .numbered
            .get_or_insert_with(|| self.numbering.next(p.op.first(), config.shards.len()));
        let servers = config
            .shards
            .get(shard)
            .and_then(|gid| config.groups.get(gid))
            .filter(|servers| !servers.is_empty());
        let Some(servers) = servers else {
            return self.query();
        };
        let gid = config.shards[shard];
        p.gid = gid;
        let mut order: Vec<String> = Vec::with_capacity(servers.len());
        let last = self.last_answered.as_ref().filter(|a| servers.contains(a));
        let preferred = self.preferred.and_then(|p| p.pick(servers));
        // A write goes to the leader; a read to the preferred server (the front's own, in
        // process), since any replica answers a read after its own barrier.
        let leader = self.leaders.get(&gid).filter(|a| servers.contains(a));
        let first: Vec<&String> = if writes(&p.op) {
            leader.into_iter().chain(last).chain(preferred).collect()
        } else {
            preferred.into_iter().chain(last).collect()
        };
        // Positions of replicas that left the group are empty (`Config::servers_of`).
        let listed = servers.iter().filter(|a| !a.is_empty());
        for addr in first.into_iter().chain(listed) {
            if !order.contains(addr) {
                order.push(addr.clone());
            }
        }
        p.order = order;
        p.tried = 0;
        self.next_server()
    }

    /// Sends the request to the next server of the group, and starts a step (or, after the
    /// last one, the group's silence).
    fn next_server(&mut self) -> Vec<ShardOutput> {
        self.timers += 1;
        let token = self.timers;
        let client = self.client;
        let Some(p) = &mut self.pending else {
            return Vec::new();
        };
        let Some((_, seq)) = p.numbered else {
            return Vec::new();
        };
        let to = p.order[p.tried % p.order.len()].clone();
        p.tried += 1;
        let all_tried = p.tried >= p.order.len();
        let step = hedge_step(&p.op);
        let (wait, after) = if all_tried {
            (Wait::Silence, step + GROUP_SILENCE)
        } else {
            (Wait::Step, step)
        };
        p.wait = wait;
        p.timer = token;
        let msg = ShardMsg::Group(p.op.request(client, seq));
        vec![
            ClerkOutput::Send {
                to: ShardServer::Group(to),
                msg,
            },
            ClerkOutput::Timer {
                after,
                token: group_token(token),
            },
        ]
    }

    /// Asks the controller for the latest configuration, unless a query is in flight.
    fn query(&mut self) -> Vec<ShardOutput> {
        if self.ctl.busy() {
            return Vec::new();
        }
        let out = self.ctl.start(CtlOp::Query { num: -1 });
        self.ctl_outputs(out)
    }

    /// The controller clerk's outputs, as this clerk's.
    fn ctl_outputs(
        &mut self,
        outputs: Vec<ClerkOutput<usize, synod_shardctl::CtlMsg, CtlReply>>,
    ) -> Vec<ShardOutput> {
        let mut out = Vec::new();
        for output in outputs {
            match output {
                ClerkOutput::Send { to, msg } => out.push(ClerkOutput::Send {
                    to: ShardServer::Controller(to),
                    msg: ShardMsg::Ctl(msg),
                }),
                ClerkOutput::Timer { after, token } => out.push(ClerkOutput::Timer {
                    after,
                    token: ctl_token(token),
                }),
                ClerkOutput::Done(reply) => out.extend(self.on_config(reply)),
            }
        }
        out
    }

    fn on_config(&mut self, reply: CtlReply) -> Vec<ShardOutput> {
        let CtlReply::Config(latest) = reply else {
            // An expired controller session: a new one, and ask again.
            trace!(?reply, "the controller did not answer with a configuration");
            self.ctl = CtlClerk::new(self.ctl.client_id().wrapping_add(2), self.ctl_servers());
            return self.query();
        };
        if latest.num > self.config.num {
            self.config = latest;
            return self.try_group();
        }
        // Nothing newer: a shard in transit. Try the group again after a pause.
        self.timers += 1;
        let token = self.timers;
        let Some(p) = &mut self.pending else {
            return Vec::new();
        };
        p.wait = Wait::Pause;
        p.timer = token;
        vec![ClerkOutput::Timer {
            after: PAUSE,
            token: group_token(token),
        }]
    }

    fn ctl_servers(&self) -> usize {
        self.ctl.servers()
    }

    /// Starts several operations as one request ([`RsmMsg::Batch`]); see the module's doc.
    /// An empty batch starts nothing.
    pub fn start_batch(&mut self, ops: Vec<KvOp>) -> Vec<ShardOutput> {
        match ops.len() {
            0 => Vec::new(),
            1 => self.begin(Commands::One(ops.into_iter().next().expect("one"))),
            _ => self.begin(Commands::Many(ops)),
        }
    }

    fn begin(&mut self, op: Commands<KvOp>) -> Vec<ShardOutput> {
        self.pending = Some(Pending {
            op,
            numbered: None,
            order: Vec::new(),
            tried: 0,
            timer: 0,
            wait: Wait::Step,
            gid: 0,
        });
        self.try_group()
    }

    /// Forgets `addr` as its group's leader: it did not answer in time, or cannot be reached.
    fn forget_leader(&mut self, addr: &str) {
        self.leaders.retain(|_, leader| leader != addr);
    }
}

impl Clerk for ShardKvClerk {
    type Server = ShardServer;
    type Msg = ShardMsg;
    type Op = KvOp;
    type Reply = ShardReply;

    fn start(&mut self, op: KvOp) -> Vec<ShardOutput> {
        self.begin(Commands::One(op))
    }

    fn on_message(&mut self, from: &ShardServer, msg: ShardMsg) -> Vec<ShardOutput> {
        match (from, msg) {
            (ShardServer::Controller(i), ShardMsg::Ctl(msg)) => {
                let out = self.ctl.on_message(i, msg);
                self.ctl_outputs(out)
            }
            (ShardServer::Group(addr), ShardMsg::Group(RsmMsg::Reply { seq, reply })) => {
                let Some(p) = &self.pending else {
                    trace!(seq, "ignoring a reply: no operation in progress");
                    return Vec::new();
                };
                let wanted = p.numbered.is_some_and(|(shard, pseq)| {
                    seq == pseq && reply.shard().is_none_or(|s| s == shard)
                });
                if !wanted {
                    trace!(seq, "ignoring a reply to another request");
                    return Vec::new();
                }
                match reply {
                    wrong if wrong_group(&wrong) => self.query(),
                    ShardReply::Batch(mut replies) => {
                        // The commands from the first of a shard the group does not serve
                        // were not applied: the caller sends them again, and they find
                        // their owner then.
                        let answered = replies.iter().take_while(|r| !wrong_group(r)).count();
                        replies.truncate(answered);
                        self.pending = None;
                        self.last_answered = Some(addr.clone());
                        vec![ClerkOutput::Done(ShardReply::Batch(replies))]
                    }
                    done => {
                        self.pending = None;
                        self.last_answered = Some(addr.clone());
                        vec![ClerkOutput::Done(done)]
                    }
                }
            }
            (ShardServer::Group(_), ShardMsg::Leader(leader)) => {
                let Some(p) = &self.pending else {
                    trace!(leader, "ignoring a leader hint: no operation in progress");
                    return Vec::new();
                };
                let of_group = self
                    .config
                    .groups
                    .get(&p.gid)
                    .is_some_and(|servers| servers.contains(&leader));
                if of_group {
                    self.leaders.insert(p.gid, leader);
                } else {
                    trace!(
                        leader,
                        "ignoring a leader hint that names no server of the group"
                    );
                }
                Vec::new()
            }
            (from, other) => {
                trace!(?from, ?other, "ignoring a message that is not an answer");
                Vec::new()
            }
        }
    }

    fn on_timeout(&mut self, token: TimerToken) -> Vec<ShardOutput> {
        if token % 2 == 1 {
            let out = self.ctl.on_timeout(token / 2);
            return self.ctl_outputs(out);
        }
        let Some(p) = &self.pending else {
            trace!(token, "ignoring a timer: no operation in progress");
            return Vec::new();
        };
        if group_token(p.timer) != token {
            trace!(token, "ignoring a stale timer");
            return Vec::new();
        }
        match p.wait {
            Wait::Step => {
                if let Some(first) = p.order.first().cloned() {
                    self.forget_leader(&first);
                }
                self.next_server()
            }
            Wait::Silence => {
                // Keep the group's servers in play (a simulated network may have lost the
                // request) while the controller is asked.
                let mut out = self.next_server();
                out.extend(self.query());
                out
            }
            Wait::Pause => self.try_group(),
        }
    }

    fn on_unreachable(&mut self, server: &ShardServer) -> Vec<ShardOutput> {
        match server {
            ShardServer::Controller(i) => {
                let out = self.ctl.on_unreachable(i);
                self.ctl_outputs(out)
            }
            ShardServer::Group(addr) => {
                self.forget_leader(addr);
                let Some(p) = &self.pending else {
                    return Vec::new();
                };
                let latest = p.tried.checked_sub(1).map(|k| &p.order[k % p.order.len()]);
                if p.wait == Wait::Step && latest == Some(addr) {
                    // The latest try failed: the next server at once.
                    self.next_server()
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn busy(&self) -> bool {
        self.pending.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_front_prefers_its_own_server_else_its_index_among_its_hosts_servers() {
        let servers: Vec<String> = ["10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:3", "10.0.0.2:1"]
            .map(String::from)
            .to_vec();
        let pick = |server: &str, index| {
            let server = server.parse().unwrap();
            Preference { server, index }.pick(&servers).cloned()
        };
        assert_eq!(pick("10.0.0.1:2", 0).as_deref(), Some("10.0.0.1:2"));
        // Another group's front on the same host: its index spreads the fronts.
        assert_eq!(pick("10.0.0.1:9", 0).as_deref(), Some("10.0.0.1:1"));
        assert_eq!(pick("10.0.0.1:9", 2).as_deref(), Some("10.0.0.1:3"));
        assert_eq!(pick("10.0.0.1:9", 4).as_deref(), Some("10.0.0.1:2"));
        assert_eq!(pick("10.0.0.2:9", 7).as_deref(), Some("10.0.0.2:1"));
        assert_eq!(pick("10.0.0.3:9", 0), None, "no server on the front's host");
    }

    fn config(num: u64, gid: u64) -> Config {
        Config {
            num,
            shards: vec![gid; 2],
            groups: BTreeMap::from([(gid, vec![format!("g{gid}a"), format!("g{gid}b")])]),
        }
    }

    fn sends(out: &[ShardOutput]) -> Vec<ShardServer> {
        out.iter()
            .filter_map(|o| match o {
                ClerkOutput::Send { to, .. } => Some(to.clone()),
                _ => None,
            })
            .collect()
    }

    fn timers(out: &[ShardOutput]) -> Vec<TimerToken> {
        out.iter()
            .filter_map(|o| match o {
                ClerkOutput::Timer { token, .. } => Some(*token),
                _ => None,
            })
            .collect()
    }

    fn ctl_answer(seq: u64, config: Config) -> ShardMsg {
        ShardMsg::Ctl(RsmMsg::Reply {
            seq,
            reply: CtlReply::Config(config),
        })
    }

    fn group_answer(seq: u64, reply: ShardReply) -> ShardMsg {
        ShardMsg::Group(RsmMsg::Reply { seq, reply })
    }

    fn get() -> KvOp {
        KvOp::Get { key: "k".into() }
    }

    #[test]
    fn asks_the_controller_then_follows_a_wrong_group_to_the_new_owner() {
        let mut clerk = ShardKvClerk::new(10, 1, Config::initial(2));
        let out = clerk.start(get());
        assert_eq!(sends(&out), [ShardServer::Controller(0)]);
        let out = clerk.on_message(&ShardServer::Controller(0), ctl_answer(1, config(1, 100)));
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
        let from = ShardServer::Group("g100a".into());
        let shard = crate::key2shard("k", 2);
        let out = clerk.on_message(&from, group_answer(1, ShardReply::WrongGroup { shard }));
        assert_eq!(sends(&out), [ShardServer::Controller(0)], "asks again");
        let out = clerk.on_message(&ShardServer::Controller(0), ctl_answer(2, config(2, 101)));
        assert_eq!(
            sends(&out),
            [ShardServer::Group("g101a".into())],
            "the same request, at the new owner"
        );
        let value = ShardReply::Value {
            shard,
            value: "v".into(),
        };
        let out = clerk.on_message(
            &ShardServer::Group("g101a".into()),
            group_answer(1, value.clone()),
        );
        assert_eq!(out, [ClerkOutput::Done(value)]);
        assert!(!clerk.busy());
    }

    #[test]
    fn nothing_newer_from_the_controller_means_a_pause_then_the_group_again() {
        let mut clerk = ShardKvClerk::new(10, 1, config(1, 100));
        let out = clerk.start(get());
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
        let shard = crate::key2shard("k", 2);
        let wrong = group_answer(1, ShardReply::WrongGroup { shard });
        let out = clerk.on_message(&ShardServer::Group("g100a".into()), wrong);
        assert_eq!(sends(&out), [ShardServer::Controller(0)]);
        let out = clerk.on_message(&ShardServer::Controller(0), ctl_answer(1, config(1, 100)));
        assert!(sends(&out).is_empty(), "waits first");
        let pause = timers(&out);
        assert_eq!(pause.len(), 1);
        let out = clerk.on_timeout(pause[0]);
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
    }

    #[test]
    fn a_read_batch_is_done_with_the_reads_before_the_first_wrong_group() {
        let mut clerk = ShardKvClerk::new(10, 1, config(1, 100));
        let gets: Vec<KvOp> = ["a", "b", "c"]
            .map(|key| KvOp::Get { key: key.into() })
            .to_vec();
        let shard = |key| crate::key2shard(key, 2);
        let out = clerk.start_batch(gets);
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
        let value = |key| ShardReply::Value {
            shard: shard(key),
            value: "v".into(),
        };
        let replies = ShardReply::Batch(vec![
            value("a"),
            ShardReply::WrongGroup { shard: shard("b") },
            value("c"),
        ]);
        let out = clerk.on_message(
            &ShardServer::Group("g100a".into()),
            group_answer(1, replies),
        );
        assert_eq!(
            out,
            [ClerkOutput::Done(ShardReply::Batch(vec![value("a")]))]
        );
        assert!(!clerk.busy());

        // A batch refused from its first command on follows the shard, as one command does.
        let mut clerk = ShardKvClerk::new(12, 1, config(1, 100));
        let out = clerk.start_batch(vec![get(), get()]);
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
        let wrong = ShardReply::WrongGroup { shard: shard("k") };
        let replies = ShardReply::Batch(vec![wrong.clone(), wrong]);
        let out = clerk.on_message(
            &ShardServer::Group("g100a".into()),
            group_answer(1, replies),
        );
        assert_eq!(sends(&out), [ShardServer::Controller(0)]);
        assert!(clerk.busy());
    }

    #[test]
    fn writes_go_to_the_leader_a_server_named_until_it_fails_to_answer() {
        let mut clerk = ShardKvClerk::new(10, 1, config(1, 100));
        let put = || KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        };
        let shard = crate::key2shard("k", 2);
        let a = ShardServer::Group("g100a".into());
        let out = clerk.start(put());
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
        let hint = clerk.on_message(&a, ShardMsg::Leader("g100b".into()));
        assert!(hint.is_empty(), "a hint is no answer");
        let written = ShardReply::Written { shard, len: 1 };
        let out = clerk.on_message(&a, group_answer(1, written.clone()));
        assert_eq!(out, [ClerkOutput::Done(written.clone())]);
        let out = clerk.start(put());
        assert_eq!(
            sends(&out),
            [ShardServer::Group("g100b".into())],
            "the next write goes to the leader"
        );
        let out = clerk.on_timeout(timers(&out)[0]);
        assert_eq!(sends(&out), [ShardServer::Group("g100a".into())]);
        let out = clerk.on_message(&a, group_answer(2, written));
        assert!(matches!(out[..], [ClerkOutput::Done(_)]));
        let out = clerk.start(put());
        assert_eq!(
            sends(&out),
            [a],
            "a leader that did not answer in time is forgotten"
        );
    }

    #[test]
    fn a_silent_group_is_tried_server_by_server_then_the_controller_is_asked() {
        let mut clerk = ShardKvClerk::new(10, 1, config(1, 100));
        let out = clerk.start(get());
        let out = clerk.on_timeout(timers(&out)[0]);
        assert_eq!(sends(&out), [ShardServer::Group("g100b".into())]);
        let out = clerk.on_timeout(timers(&out)[0]);
        assert_eq!(
            sends(&out),
            [
                ShardServer::Group("g100a".into()),
                ShardServer::Controller(0)
            ],
            "after the silence, the group again and the controller"
        );
    }

    #[test]
    fn a_position_whose_replica_left_the_group_is_never_tried() {
        // Replica 0 left group 100 (`CtlOp::Servers` left its position empty).
        let mut left = config(1, 100);
        left.groups.insert(100, vec![String::new(), "g100b".into()]);
        let mut clerk = ShardKvClerk::new(10, 1, left);
        let out = clerk.start(get());
        assert_eq!(sends(&out), [ShardServer::Group("g100b".into())]);
        let out = clerk.on_timeout(timers(&out)[0]);
        assert_eq!(
            sends(&out),
            [
                ShardServer::Group("g100b".into()),
                ShardServer::Controller(0)
            ],
            "the one listed server again, and the controller"
        );
    }
}
