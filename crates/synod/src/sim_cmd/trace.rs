//! What a viewer run records: every simulator event (through the simulator's recording hook,
//! [`synod_sim::Simulator::set_observer`]), the decisions the scenario sees the cores make, and
//! the scenario's own narration, as the JSON the viewer page embeds.
//!
//! Everything recorded is a pure function of the scenario and the seed: times are virtual,
//! and messages are described by their `Debug` text, so one seed gives byte-identical output.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::rc::Rc;

use serde::Serialize;
use synod_sim::{NodeId, Observed, SimClock, Simulator};

/// Events kept at most: a scenario that produced more stops recording (and says so) rather
/// than growing without bound.
pub const MAX_EVENTS: usize = 50_000;

/// A message's text is cut to this many characters in the page.
const DETAIL_CHARS: usize = 240;

/// One event of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    /// Virtual time in microseconds.
    pub t: u64,
    /// `send`, `deliver`, `drop`, `timer`, `start`, `restart`, `crash`, `partition`, `fault`,
    /// `decision` or `note`.
    pub kind: &'static str,
    /// The node the event happens on (the sender of a send, the receiver of a delivery or a
    /// drop); `None` for events of the whole run (partitions, notes).
    pub node: Option<u64>,
    /// The other end of a message.
    pub peer: Option<u64>,
    /// Names one copy of a message across its send and its delivery or drop.
    pub msg: Option<u64>,
    /// A short label: the message's kind (`View.Ping`, `Ctl.Paxos.Accept`), a drop's reason, a decision.
    pub label: String,
    /// Longer text: the message itself, cut to a few hundred characters.
    pub detail: String,
}

/// A node as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceNode {
    pub id: u64,
    pub name: String,
}

/// How many events of each kind a run recorded.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub events: usize,
    pub send: usize,
    pub deliver: usize,
    pub drop: usize,
    pub timer: usize,
    pub start: usize,
    pub restart: usize,
    pub crash: usize,
    pub partition: usize,
    pub fault: usize,
    pub decision: usize,
    pub note: usize,
}

impl Counts {
    fn of(events: &[TraceEvent]) -> Counts {
        let mut counts = Counts {
            events: events.len(),
            ..Counts::default()
        };
        for event in events {
            let slot = match event.kind {
                "send" => &mut counts.send,
                "deliver" => &mut counts.deliver,
                "drop" => &mut counts.drop,
                "timer" => &mut counts.timer,
                "start" => &mut counts.start,
                "restart" => &mut counts.restart,
                "crash" => &mut counts.crash,
                "partition" => &mut counts.partition,
                "fault" => &mut counts.fault,
                "decision" => &mut counts.decision,
                _ => &mut counts.note,
            };
            *slot += 1;
        }
        counts
    }
}

/// A whole recorded run: what `synod sim --json` prints and the viewer page embeds.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub scenario: String,
    pub seed: u64,
    pub about: String,
    pub nodes: Vec<TraceNode>,
    pub counts: Counts,
    /// The run produced more than [`MAX_EVENTS`] events; the rest were not recorded.
    pub truncated: bool,
    pub events: Vec<TraceEvent>,
}

/// The recording in progress, shared by the simulator's observer and the scenario.
#[derive(Clone)]
pub struct Recorder {
    clock: SimClock,
    inner: Rc<RefCell<Recording>>,
}

#[derive(Default)]
struct Recording {
    events: Vec<TraceEvent>,
    truncated: bool,
}

impl Recorder {
    /// Starts recording every event of `sim`.
    pub fn attach<M: Clone + Debug + Serialize + 'static>(sim: &mut Simulator<M>) -> Recorder {
        let recorder = Recorder {
            clock: sim.clock(),
            inner: Rc::default(),
        };
        let hook = recorder.clone();
        sim.set_observer(move |event| hook.observed(event));
        recorder
    }

    fn observed<M: Debug>(&self, event: Observed<'_, M>) {
        match event {
            Observed::Start { node, restart } => {
                let kind = if restart { "restart" } else { "start" };
                self.push(kind, Some(node), None, None, kind.to_owned(), String::new());
            }
            Observed::Crash { node } => self.push(
                "crash",
                Some(node),
                None,
                None,
                "crash".into(),
                String::new(),
            ),
            Observed::Send {
                msg_id,
                from,
                to,
                msg,
            } => self.message("send", from, to, msg_id, msg),
            Observed::Deliver {
                msg_id,
                from,
                to,
                msg,
            } => self.message("deliver", to, from, msg_id, msg),
            Observed::Drop {
                msg_id,
                from,
                to,
                reason,
            } => self.push(
                "drop",
                Some(to),
                Some(from),
                Some(msg_id),
                format!("lost: {reason:?}"),
                String::new(),
            ),
            Observed::Timer { node, token } => self.push(
                "timer",
                Some(node),
                None,
                None,
                format!("timer {token}"),
                String::new(),
            ),
            Observed::Links { blocked } => {
                self.push("partition", None, None, None, links(blocked), String::new())
            }
            Observed::Faults { node, faults } => {
                let label = if faults.deaf {
                    "deaf".to_owned()
                } else if faults.drop_incoming > 0.0 || faults.drop_outgoing > 0.0 {
                    "unreliable".to_owned()
                } else {
                    "reliable".to_owned()
                };
                self.push(
                    "fault",
                    Some(node),
                    None,
                    None,
                    label,
                    format!("{faults:?}"),
                )
            }
        }
    }

    fn message<M: Debug>(&self, kind: &'static str, at: NodeId, other: NodeId, id: u64, msg: &M) {
        let text = format!("{msg:?}");
        self.push(
            kind,
            Some(at),
            Some(other),
            Some(id),
            message_kind(&text),
            cut(&text),
        );
    }

    /// Records what a node decided (a Paxos value, a view, a configuration).
    pub fn decision(&self, node: NodeId, label: String) {
        self.push("decision", Some(node), None, None, label, String::new());
    }

    /// Records a line of the scenario's narration ("peers 0 and 4 go deaf").
    pub fn note(&self, text: &str) {
        self.push("note", None, None, None, text.to_owned(), String::new());
    }

    fn push(
        &self,
        kind: &'static str,
        node: Option<NodeId>,
        peer: Option<NodeId>,
        msg: Option<u64>,
        label: String,
        detail: String,
    ) {
        let mut recording = self.inner.borrow_mut();
        if recording.events.len() >= MAX_EVENTS {
            recording.truncated = true;
            return;
        }
        recording.events.push(TraceEvent {
            t: self.clock.nanos() / 1_000,
            kind,
            node: node.map(|n| n.0),
            peer: peer.map(|n| n.0),
            msg,
            label,
            detail,
        });
    }

    /// The recording so far, as the trace of `scenario`.
    pub fn finish(&self, scenario: &str, seed: u64, about: &str, nodes: Vec<TraceNode>) -> Trace {
        let recording = self.inner.borrow();
        Trace {
            scenario: scenario.to_owned(),
            seed,
            about: about.to_owned(),
            nodes,
            counts: Counts::of(&recording.events),
            truncated: recording.truncated,
            events: recording.events.clone(),
        }
    }
}

/// The kind of a message from its `Debug` text: the chain of variant names down to the first
/// one with fields, `Paxos(Prepare { .. })` → `Paxos.Prepare`.
pub fn message_kind(debug: &str) -> String {
    let mut kind = String::new();
    let mut rest = debug;
    loop {
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        if !kind.is_empty() {
            kind.push('.');
        }
        kind.push_str(name);
        match rest[name_len..].strip_prefix('(') {
            Some(inner) => rest = inner,
            None => break,
        }
    }
    if kind.is_empty() {
        kind.push_str("message");
    }
    kind
}

/// The first [`DETAIL_CHARS`] characters of `text`.
fn cut(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The cut links, two-way pairs written once: `cut 0↔3 0↔4 1→2`, or `healed`.
fn links(blocked: &BTreeSet<(NodeId, NodeId)>) -> String {
    if blocked.is_empty() {
        return "healed: every link is up".to_owned();
    }
    let mut parts = Vec::new();
    for &(from, to) in blocked {
        let back = blocked.contains(&(to, from));
        if !back {
            parts.push(format!("{}→{}", from.0, to.0));
        } else if from < to {
            parts.push(format!("{}↔{}", from.0, to.0));
        }
    }
    format!("cut {}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_kind_follows_nested_variants() {
        assert_eq!(
            message_kind("Paxos(Prepare { seq: 1, ballot: 2 })"),
            "Paxos.Prepare"
        );
        assert_eq!(message_kind("View(Ping { viewnum: 0 })"), "View.Ping");
        assert_eq!(message_kind("Service(Reply { seq: 1 })"), "Service.Reply");
        assert_eq!(message_kind("Tick"), "Tick");
        assert_eq!(message_kind("(1, 2)"), "message");
    }

    #[test]
    fn links_write_two_way_cuts_once() {
        let blocked: BTreeSet<(NodeId, NodeId)> = [(0, 3), (3, 0), (1, 2)]
            .into_iter()
            .map(|(a, b)| (NodeId(a), NodeId(b)))
            .collect();
        assert_eq!(links(&blocked), "cut 0↔3 1→2");
        assert_eq!(links(&BTreeSet::new()), "healed: every link is up");
    }
}
