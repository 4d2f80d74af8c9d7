//! The search: depth first from the initial world over every enabled action, with two
//! reductions that keep it exhaustive:
//!
//! - **State caching.** Every world is fingerprinted; one that was already expanded with at
//!   least as many steps left, and with no more actions asleep, is not expanded again.
//! - **Sleep sets** (Godefroid's partial-order reduction). Two actions are *independent*
//!   when they touch different nodes and different messages: delivering a message to n1 and
//!   another to n2 lead to the same world in either order. After the search has explored
//!   action `a` from a world, it puts `a` to sleep in the sibling branches whose first action
//!   is independent of it, since every schedule there that takes `a` is a reordering of one
//!   already explored. Timers (they move the clock), wipes (they end an epoch), and two
//!   actions that spend the same fault budget are dependent on everything they might affect.
//!
//! The invariants must not depend on the order of independent steps; the models' are
//! written over what every node has done so far, so they do not.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::model::Model;
use crate::world::{Life, World};

/// One step the checker can take. Messages are named by their content key, so an action
/// means the same thing in every world where it is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Deliver the message with this key.
    Deliver(u64),
    /// Lose it (costs a drop).
    Drop(u64),
    /// Make a second copy of it (costs a duplicate).
    Duplicate(u64),
    /// Fire the earliest timer of a slot (costs a timer firing).
    Timer(usize),
    /// Crash a slot's node, losing what it had not synced (costs a crash).
    Crash(usize),
    /// Restart a crashed node on its disk.
    Restart(usize),
    /// Crash a node, throw its disk away and start it again (costs a wipe).
    Wipe(usize),
    /// The environment's input `k`.
    Input(usize),
}

/// What an action touches, for independence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touches {
    /// Everything: the clock or the epoch.
    All,
    /// One node (and the messages it sends), perhaps one message, perhaps a fault budget.
    Parts {
        slot: Option<usize>,
        message: Option<u64>,
        budget: Option<u8>,
    },
}

/// How far to search.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Steps from the initial world.
    pub depth: usize,
    /// Stop after this many distinct worlds, even if the depth is not covered.
    pub max_states: usize,
}

/// A schedule that breaks an invariant, step by step from the initial world.
#[derive(Debug, Clone)]
pub struct Counterexample {
    pub violation: String,
    pub steps: Vec<String>,
}

/// What a search did and found.
#[derive(Debug, Clone)]
pub struct Report {
    pub model: String,
    /// Steps taken (transitions computed), revisits included.
    pub explored: u64,
    /// Distinct worlds seen.
    pub distinct: usize,
    /// The deepest step taken.
    pub depth: usize,
    pub elapsed: Duration,
    /// Whether every world within the depth bound was covered (not cut by `max_states`).
    pub complete: bool,
    pub violation: Option<Counterexample>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} states explored, {} distinct, depth {}{}, {:.2?}",
            self.model,
            self.explored,
            self.distinct,
            self.depth,
            if self.complete {
                ""
            } else {
                " (cut by the state limit)"
            },
            self.elapsed
        )?;
        match &self.violation {
            None => writeln!(f, "no invariant violated"),
            Some(c) => {
                writeln!(
                    f,
                    "VIOLATION after {} steps: {}",
                    c.steps.len(),
                    c.violation
                )?;
                for (i, step) in c.steps.iter().enumerate() {
                    writeln!(f, "  {:>3}. {step}", i + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// Explores `model` within `bounds`.
pub fn explore<M: Model>(model: &M, bounds: Bounds) -> Report {
    let began = Instant::now();
    let (root, checked) = initial(model);
    let mut search = Search {
        model,
        bounds,
        seen: HashMap::new(),
        path: Vec::new(),
        explored: 0,
        depth: 0,
        complete: true,
        violation: checked.err(),
    };
    if search.violation.is_none() {
        search.visit(&root, bounds.depth, Vec::new());
    }
    let violation = search.violation.take().map(|violation| Counterexample {
        violation,
        steps: describe(model, &search.path),
    });
    Report {
        model: model.name(),
        explored: search.explored,
        distinct: search.seen.len(),
        depth: search.depth,
        elapsed: began.elapsed(),
        complete: search.complete,
        violation,
    }
}

struct Search<'m, M: Model> {
    model: &'m M,
    bounds: Bounds,
    /// Per world expanded: the most steps it was expanded with and the actions that were
    /// asleep then (fewer asleep means more explored).
    seen: HashMap<u64, (usize, Vec<Action>)>,
    /// The actions from the initial world to the current one (to the violation, at the end).
    path: Vec<Action>,
    explored: u64,
    depth: usize,
    complete: bool,
    violation: Option<String>,
}

impl<M: Model> Search<'_, M> {
    /// Expands `world` with `left` steps to go and `sleep` asleep. Returns false to stop.
    fn visit(
        &mut self,
        world: &World<M::Msg, M::Ghost>,
        left: usize,
        mut sleep: Vec<Action>,
    ) -> bool {
        let fp = world.fingerprint();
        match self.seen.get_mut(&fp) {
            Some((done_left, done_sleep))
                if *done_left >= left && done_sleep.iter().all(|a| sleep.contains(a)) =>
            {
                return true;
            }
            Some((done_left, done_sleep)) => {
                *done_left = (*done_left).max(left);
                done_sleep.retain(|a| sleep.contains(a));
            }
            None => {
                if self.seen.len() >= self.bounds.max_states {
                    self.complete = false;
                    return false;
                }
                self.seen.insert(fp, (left, sleep.clone()));
            }
        }
        if left == 0 {
            return true;
        }
        self.depth = self.depth.max(self.path.len() + 1);
        for action in enabled(self.model, world) {
            if sleep.contains(&action) {
                continue;
            }
            let mut child = world.clone();
            let touches = touches_in(self.model, world, action);
            let checked = apply(self.model, &mut child, action);
            self.explored += 1;
            self.path.push(action);
            if let Err(violation) = checked {
                self.violation = Some(violation);
                return false;
            }
            let child_sleep: Vec<Action> = sleep
                .iter()
                .copied()
                .filter(|&b| independent(touches, touches_in(self.model, world, b)))
                .collect();
            if !self.visit(&child, left - 1, child_sleep) {
                return false;
            }
            self.path.pop();
            sleep.push(action);
        }
        true
    }
}

/// What `action` touches in `world` (where it is enabled).
fn touches_in<M: Model>(model: &M, world: &World<M::Msg, M::Ghost>, action: Action) -> Touches {
    let to = |key: u64| {
        world
            .find(key)
            .and_then(|i| world.slot_of(world.net[i].to))
            // A message to no node (a client) touches the clients' history.
            .unwrap_or(world.slots.len())
    };
    let parts = |slot, message, budget| Touches::Parts {
        slot,
        message,
        budget,
    };
    match action {
        Action::Deliver(key) => parts(Some(to(key)), Some(key), None),
        Action::Drop(key) => parts(None, Some(key), Some(0)),
        Action::Duplicate(key) => parts(None, Some(key), Some(1)),
        Action::Crash(slot) => parts(Some(slot), None, Some(2)),
        Action::Restart(slot) => parts(Some(slot), None, None),
        Action::Input(input) => parts(
            Some(model.input_slot(input).unwrap_or(world.slots.len())),
            None,
            None,
        ),
        Action::Timer(_) | Action::Wipe(_) => Touches::All,
    }
}

fn independent(a: Touches, b: Touches) -> bool {
    let (
        Touches::Parts {
            slot: sa,
            message: ma,
            budget: ba,
        },
        Touches::Parts {
            slot: sb,
            message: mb,
            budget: bb,
        },
    ) = (a, b)
    else {
        return false;
    };
    apart(sa, sb) && apart(ma, mb) && apart(ba, bb)
}

/// Whether two optional parts are known to differ (or one is not touched at all).
fn apart<T: PartialEq>(x: Option<T>, y: Option<T>) -> bool {
    x.is_none() || y.is_none() || x != y
}

/// The initial world: every node started in its first life.
fn initial<M: Model>(model: &M) -> (World<M::Msg, M::Ghost>, Result<(), String>) {
    let mut world = World::new(&model.nodes(), model.budget(), model.ghost());
    for slot in 0..world.slots.len() {
        world.start(slot, model.make(slot, Life::First));
    }
    model.setup(&mut world);
    let checked = model.check(&mut world);
    (world, checked)
}

/// Every action enabled in `world`, in a fixed order.
pub fn enabled<M: Model>(model: &M, world: &World<M::Msg, M::Ghost>) -> Vec<Action> {
    let mut actions = Vec::new();
    let budget = world.budget;
    for (i, env) in world.net.iter().enumerate() {
        if i > 0 && world.net[i - 1].key == env.key {
            continue;
        }
        actions.push(Action::Deliver(env.key));
        if budget.drops > 0 {
            actions.push(Action::Drop(env.key));
        }
        if budget.duplicates > 0 {
            actions.push(Action::Duplicate(env.key));
        }
    }
    for slot in 0..world.slots.len() {
        if !world.is_up(slot) {
            actions.push(Action::Restart(slot));
            continue;
        }
        if budget.timers > 0
            && !world.slots[slot].timers.is_empty()
            && model.timer_enabled(world, slot)
        {
            actions.push(Action::Timer(slot));
        }
        if budget.crashes > 0 && model.crashable(slot) {
            actions.push(Action::Crash(slot));
        }
        if budget.wipes > 0 && model.wipeable(slot) {
            actions.push(Action::Wipe(slot));
        }
    }
    for input in 0..model.inputs() {
        if world.inputs_done & (1 << input) == 0 && model.input_enabled(world, input) {
            actions.push(Action::Input(input));
        }
    }
    actions
}

/// Takes `action` (enabled) in `world` and checks the invariants.
pub fn apply<M: Model>(
    model: &M,
    world: &mut World<M::Msg, M::Ghost>,
    action: Action,
) -> Result<(), String> {
    let index = |world: &World<M::Msg, M::Ghost>, key| {
        world
            .find(key)
            .expect("an enabled action names a message in flight")
    };
    match action {
        Action::Deliver(key) => {
            let i = index(world, key);
            if let Some(env) = world.deliver(i) {
                model.on_external(world, env);
            }
        }
        Action::Drop(key) => {
            world.budget.drops -= 1;
            let i = index(world, key);
            world.net.remove(i);
        }
        Action::Duplicate(key) => {
            world.budget.duplicates -= 1;
            let i = index(world, key);
            world.duplicate(i);
        }
        Action::Timer(slot) => {
            world.budget.timers -= 1;
            model.before_timer(world, slot);
            world.fire_timer(slot, model.time_step());
        }
        Action::Crash(slot) => {
            world.budget.crashes -= 1;
            world.crash(slot);
        }
        Action::Restart(slot) => world.start(slot, model.make(slot, Life::Restart)),
        Action::Wipe(slot) => {
            world.budget.wipes -= 1;
            world.wipe(slot);
            world.start(slot, model.make(slot, Life::Wiped));
        }
        Action::Input(input) => {
            world.inputs_done |= 1 << input;
            model.input(world, input);
        }
    }
    model.check(world)
}

/// Replays `path` from the initial world, describing each step before it is taken.
fn describe<M: Model>(model: &M, path: &[Action]) -> Vec<String> {
    let (mut world, _) = initial(model);
    let mut steps = Vec::new();
    for &action in path {
        let name = |slot: usize| world.slots[slot].id.to_string();
        let text = match action {
            Action::Deliver(key) | Action::Drop(key) | Action::Duplicate(key) => {
                let e = &world.net[world.find(key).expect("replayed message in flight")];
                let verb = match action {
                    Action::Deliver(_) => "deliver",
                    Action::Drop(_) => "drop",
                    _ => "duplicate",
                };
                format!("{verb} {} -> {}: {:?}", e.from, e.to, e.msg)
            }
            Action::Timer(slot) => format!("timer fires on {}", name(slot)),
            Action::Crash(slot) => format!("crash {}", name(slot)),
            Action::Restart(slot) => format!("restart {} on its disk", name(slot)),
            Action::Wipe(slot) => format!("{} loses its disk and restarts", name(slot)),
            Action::Input(input) => model.describe_input(input),
        };
        let checked = apply(model, &mut world, action);
        steps.push(text);
        if checked.is_err() {
            break;
        }
    }
    steps
}
