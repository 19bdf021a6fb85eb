//! Heap allocations per parsed message: a small constant for input without escaped text, growing
//! at most logarithmically with the number of items/commands (Vec doubling). Own test binary
//! because it installs a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

#[path = "syncml/gen.rs"]
mod gen;

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on several threads; count only our own).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs_for_parse(input: &[u8]) -> usize {
    let before = ALLOCS.with(Cell::get);
    let m = winmdm::syncml::parse(input).expect("parses");
    let after = ALLOCS.with(Cell::get);
    drop(m);
    after - before
}

fn log2(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()) as usize
}

#[test]
fn constant_allocations_for_small_messages() {
    let first = gen::first_package();
    let n = allocs_for_parse(first.as_bytes());
    println!("first package ({} B): {n} allocations", first.len());
    assert!(n <= 6, "first package: {n} allocations");
    let reply = gen::get_reply(50);
    let n = allocs_for_parse(reply.as_bytes());
    println!(
        "reply to 50 Gets ({} B, 101 commands): {n} allocations",
        reply.len()
    );
    assert!(n <= 2 * log2(101) + 4, "get reply: {n} allocations");
}

#[test]
fn allocations_grow_logarithmically_with_items_and_commands() {
    for items in [1, 10, 100, 1_000, 10_000] {
        let doc = gen::plain_results(1, items);
        let n = allocs_for_parse(doc.as_bytes());
        println!("1 Results x {items} items: {n} allocations");
        assert!(n <= log2(items) + 4, "{items} items: {n} allocations");
    }
    for cmds in [1, 10, 100, 1_000, 5_000] {
        let doc = gen::plain_results(cmds, 1);
        let n = allocs_for_parse(doc.as_bytes());
        println!("{cmds} Results x 1 item: {n} allocations");
        assert!(n <= log2(cmds + 1) + 4, "{cmds} commands: {n} allocations");
    }
}

#[test]
fn escaped_text_costs_one_allocation_per_value() {
    let doc = gen::plain_results(1, 10).replace("VMware, Inc.", "VMware &amp; Co.");
    let plain = allocs_for_parse(gen::plain_results(1, 10).as_bytes());
    let escaped = allocs_for_parse(doc.as_bytes());
    let values = doc.matches("&amp;").count();
    assert!(values > 0);
    assert_eq!(escaped, plain + values, "one String per unescaped value");
}
