//! Task 3: a private copy of a shared block before writing into it.

use crate::harness::{filled_table, read_keys, tokens, write_random, BLOCK};
use mlx_rs::ops::indexing::IndexOp;
use prefix_cache::PrefixCache;
use test_support::{assert_allclose, expect_ok as ok, Tolerance};

const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

#[test]
fn task_3_writing_into_a_shared_block_copies_it_first() {
    let mut cache = PrefixCache::new(1, 8);
    let prompt = tokens(1, 2 * BLOCK);
    let mut first = filled_table(&mut cache, &prompt, 1); // two full, registered blocks
    ok(cache.reserve(&mut first, 1), "room to read the first table");
    let first_keys = read_keys(&mut cache, &first);
    // The whole prompt is cached: the second request keeps 31 tokens and must run the 32nd,
    // which goes into the shared second block.
    let mut second = cache.lookup(&prompt);
    assert_eq!(second.len(), 2 * BLOCK - 1);
    let shared = second.blocks()[1];
    ok(
        cache.make_writable(&mut second),
        "PrefixCache::make_writable",
    );
    let own = second.blocks()[1];
    assert_ne!(
        own, shared,
        "the second table gets its own copy of block {shared}"
    );
    assert_eq!(
        second.blocks()[0],
        first.blocks()[0],
        "the block it does not write stays shared"
    );
    assert_eq!(
        (cache.refs(own), cache.refs(shared)),
        (1, 1),
        "references after the copy"
    );
    assert!(
        !cache.is_registered(own),
        "a copy is private until it is full and committed"
    );
    let copied = read_keys(&mut cache, &second);
    assert_allclose(
        &copied,
        &first_keys.index((.., .., ..2 * BLOCK as i32 - 1, ..)),
        EXACT,
        "the copy's keys",
    );
    // Writing the last token into the copy leaves the original as it was.
    write_random(&mut cache, &second, 1, 99);
    assert_allclose(
        &read_keys(&mut cache, &first),
        &first_keys,
        EXACT,
        "the shared block after the other request wrote into its copy",
    );
}

#[test]
fn task_3_a_private_block_is_written_in_place() {
    let mut cache = PrefixCache::new(1, 8);
    let mut table = filled_table(&mut cache, &tokens(1, 20), 1); // block 2 of 2 is partial, private
    let before = table.blocks().to_vec();
    ok(
        cache.make_writable(&mut table),
        "PrefixCache::make_writable",
    );
    assert_eq!(table.blocks(), before, "nothing to copy");
    let mut full = filled_table(&mut cache, &tokens(100, BLOCK), 2); // full: the next token opens a new block
    let before = full.blocks().to_vec();
    ok(cache.make_writable(&mut full), "PrefixCache::make_writable");
    assert_eq!(
        full.blocks(),
        before,
        "no block holds the next token yet: nothing to copy"
    );
}

#[test]
fn task_3_a_registered_block_is_copied_even_with_one_reference() {
    let mut cache = PrefixCache::new(1, 8);
    let prompt = tokens(1, BLOCK);
    let first = filled_table(&mut cache, &prompt, 1);
    let registered = first.blocks()[0];
    ok(cache.release(first), "PrefixCache::release");
    let mut again = cache.lookup(&prompt); // 15 tokens in the registered block, refs 1
    assert_eq!(cache.refs(registered), 1);
    ok(
        cache.make_writable(&mut again),
        "PrefixCache::make_writable",
    );
    assert_ne!(
        again.blocks()[0],
        registered,
        "registered content must not change: copy it"
    );
    assert_eq!(
        cache.num_evictable(),
        1,
        "the original goes back to being evictable"
    );
}
