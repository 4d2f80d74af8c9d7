//! What a model tells the checker: which nodes exist and how each of their lives starts,
//! what the environment may do (inputs), which faults are allowed, and the invariants.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use synod_node::NodeId;

use crate::world::{Actor, Budget, Envelope, Life, World};

/// A bounded configuration of one protocol, run on its real cores.
pub trait Model {
    type Msg: Clone + Hash + Eq + Debug + 'static;
    /// What the invariants remember across steps.
    type Ghost: Clone + Hash + Debug;

    fn name(&self) -> String;
    /// The nodes the world runs, in slot order; each is started at the beginning.
    fn nodes(&self) -> Vec<NodeId>;
    /// The node of `slot` for a new life.
    fn make(&self, slot: usize, life: Life) -> Box<dyn Actor<Self::Msg>>;
    fn budget(&self) -> Budget;
    fn ghost(&self) -> Self::Ghost;
    /// How far the clock moves, at least, when a timer fires. Large enough that the
    /// timeouts the cores compare against (retries, elections) can pass in a few firings.
    fn time_step(&self) -> Duration;

    /// Brings the freshly started world to the model's starting point (a leader elected,
    /// say) with deterministic steps that are not explored and cost no budget.
    fn setup(&self, _world: &mut World<Self::Msg, Self::Ghost>) {}

    /// How many inputs the environment has; each happens at most once, in any order.
    fn inputs(&self) -> usize {
        0
    }
    fn input_enabled(&self, _world: &World<Self::Msg, Self::Ghost>, _input: usize) -> bool {
        true
    }
    fn input(&self, _world: &mut World<Self::Msg, Self::Ghost>, _input: usize) {}
    /// The slot whose node input `input` acts on; `None` for a client's request put into
    /// flight (it touches only the clients' history).
    fn input_slot(&self, _input: usize) -> Option<usize> {
        None
    }
    fn describe_input(&self, input: usize) -> String {
        format!("input {input}")
    }

    /// Whether the timers of `slot` may fire now.
    fn timer_enabled(&self, _world: &World<Self::Msg, Self::Ghost>, _slot: usize) -> bool {
        true
    }
    /// Called just before a timer of `slot` fires: a model encodes timing assumptions here
    /// (what must have happened by the time a timeout expires).
    fn before_timer(&self, _world: &mut World<Self::Msg, Self::Ghost>, _slot: usize) {}
    /// Whether `slot` may crash, or lose its disk.
    fn crashable(&self, _slot: usize) -> bool {
        true
    }
    fn wipeable(&self, _slot: usize) -> bool {
        true
    }

    /// A message to no node of the world (a reply to a client) was delivered.
    fn on_external(&self, _world: &mut World<Self::Msg, Self::Ghost>, _env: Envelope<Self::Msg>) {}

    /// The invariants, checked after every step; may update the ghost state.
    fn check(&self, world: &mut World<Self::Msg, Self::Ghost>) -> Result<(), String>;
}
