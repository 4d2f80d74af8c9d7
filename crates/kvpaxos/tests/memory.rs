//! The memory a replica's state needs per byte of keys and values, measured with a counting
//! allocator (docs/running.md, "Memory and state size"): about 1.1× at rest, an O(1) clone
//! for a background snapshot, and at most about 2× while every key is rewritten during one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use synod_kvpaxos::{KvOp, KvState};
use synod_rsm::StateMachine;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::SeqCst);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEYS: usize = 20_000;
const VALUE_BYTES: usize = 1024;

fn put(state: &mut KvState, i: usize, fill: char) {
    let op = KvOp::Put {
        key: format!("key{i:012}").into(),
        value: fill.to_string().repeat(VALUE_BYTES).into(),
    };
    state.apply(i as u64, &op);
}

/// One test only: the allocator's count is process-wide, and tests in one binary run in
/// parallel.
#[test]
fn a_replica_state_needs_about_one_byte_per_byte_at_rest_and_two_at_most_during_a_snapshot() {
    let before = LIVE.load(Ordering::SeqCst);
    let mut state = KvState::default();
    for i in 0..KEYS {
        put(&mut state, i, 'a');
    }
    let data = state.data_bytes() as f64;
    assert_eq!(state.data_bytes() as usize, KEYS * (15 + VALUE_BYTES));
    let at_rest = (LIVE.load(Ordering::SeqCst) - before) as f64 / data;
    assert!(
        at_rest < 1.2,
        "{at_rest:.2} bytes of memory per byte of state at rest"
    );

    let snapshot = state.clone();
    let with_clone = (LIVE.load(Ordering::SeqCst) - before) as f64 / data;
    assert!(
        with_clone - at_rest < 0.01,
        "a clone for a background snapshot shares the map: {at_rest:.3} -> {with_clone:.3}"
    );
    for i in 0..KEYS {
        put(&mut state, i, 'b');
    }
    let rewritten = (LIVE.load(Ordering::SeqCst) - before) as f64 / data;
    assert!(
        rewritten < 2.4,
        "{rewritten:.2} bytes per byte with every key rewritten during a snapshot"
    );
    drop(snapshot);
    let after = (LIVE.load(Ordering::SeqCst) - before) as f64 / data;
    assert!(
        after < 1.2,
        "{after:.2} bytes per byte once the snapshot is written"
    );
    println!("memory per byte of state: at rest {at_rest:.3}, during a snapshot with every key rewritten {rewritten:.3}");
}
