//! Task 2: references, releasing, eviction of the least recently used, reserving with eviction.

use crate::harness::{filled_table, tokens, BLOCK};
use prefix_cache::{BlockTable, PoolError, PrefixCache};
use test_support::expect_ok as ok;

#[test]
fn task_2_reserve_counts_one_reference_per_new_block() {
    let mut cache = PrefixCache::new(1, 8);
    let mut table = BlockTable::new();
    ok(cache.reserve(&mut table, 20), "PrefixCache::reserve");
    assert_eq!(table.blocks().len(), 2);
    for &block in table.blocks() {
        assert_eq!(cache.refs(block), 1, "block {block} of a new table");
    }
    assert_eq!(cache.available(), 6);
}

#[test]
fn task_2_release_keeps_registered_blocks_and_frees_the_rest() {
    let mut cache = PrefixCache::new(1, 8);
    let table = filled_table(&mut cache, &tokens(1, 40), 1); // 2 full blocks + 1 partial
    let blocks = table.blocks().to_vec();
    ok(cache.release(table), "PrefixCache::release");
    assert_eq!(
        cache.pool().num_free(),
        6,
        "the partial block goes back to the pool"
    );
    assert_eq!(
        cache.num_evictable(),
        2,
        "the two registered blocks stay, evictable"
    );
    for &block in &blocks {
        assert_eq!(cache.refs(block), 0);
    }
    assert_eq!(cache.available(), 8, "evictable blocks count as available");
    let found = cache.lookup(&tokens(1, 40));
    assert_eq!(
        found.blocks(),
        &blocks[..2],
        "released blocks are still found"
    );
    assert_eq!(
        cache.num_evictable(),
        0,
        "a block found again is no longer evictable"
    );
    assert_eq!(cache.refs(blocks[0]), 1);
}

#[test]
fn task_2_a_shared_block_survives_until_its_last_reference() {
    let mut cache = PrefixCache::new(1, 8);
    let prompt = tokens(1, 33);
    let first = filled_table(&mut cache, &prompt, 2);
    let second = cache.lookup(&prompt); // shares the two full blocks
    let shared = first.blocks()[0];
    assert_eq!(cache.refs(shared), 2);
    ok(cache.release(first), "release the first");
    assert_eq!(cache.refs(shared), 1, "the second still holds it");
    assert_eq!(
        cache.num_evictable(),
        0,
        "a block someone holds is not evictable"
    );
    ok(cache.release(second), "release the second");
    assert_eq!(cache.refs(shared), 0);
    assert_eq!(cache.num_evictable(), 2);
}

#[test]
fn task_2_eviction_takes_the_least_recently_released_block_first() {
    let mut cache = PrefixCache::new(1, 3);
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| tokens(100 * i + 1, BLOCK)).collect();
    let tables: Vec<BlockTable> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| filled_table(&mut cache, p, i as u64))
        .collect();
    // Released in the order 1, 0, 2: block of prompt 1 is the least recently used.
    let mut tables: Vec<Option<BlockTable>> = tables.into_iter().map(Some).collect();
    for index in [1, 0, 2] {
        ok(
            cache.release(tables[index].take().unwrap()),
            "PrefixCache::release",
        );
    }
    assert_eq!(cache.pool().num_free(), 0);
    ok(cache.make_free(1), "make_free(1)");
    assert_eq!(cache.stats().evictions, 1);
    assert_eq!(cache.pool().num_free(), 1);
    let with_extra = |prompt: &Vec<u32>| [prompt.as_slice(), &[7]].concat();
    assert!(
        cache.lookup(&with_extra(&prompts[1])).blocks().is_empty(),
        "prompt 1's block was evicted (least recently released)"
    );
    assert_eq!(
        cache.lookup(&with_extra(&prompts[0])).blocks().len(),
        1,
        "prompt 0's block is still cached"
    );
    assert_eq!(
        cache.lookup(&with_extra(&prompts[2])).blocks().len(),
        1,
        "prompt 2's block is still cached"
    );
}

#[test]
fn task_2_a_request_for_more_than_is_available_evicts_nothing() {
    let mut cache = PrefixCache::new(1, 4);
    let held = filled_table(&mut cache, &tokens(1, 2 * BLOCK), 1); // 2 blocks held
    let released = filled_table(&mut cache, &tokens(500, BLOCK), 2); // 1 block
    ok(cache.release(released), "PrefixCache::release");
    assert_eq!(
        cache.make_free(3),
        Err(PoolError::Exhausted {
            requested: 3,
            free: 2,
            total: 4
        }),
        "1 free + 1 evictable"
    );
    assert_eq!(
        cache.num_evictable(),
        1,
        "a refused make_free evicts nothing"
    );
    let mut table = BlockTable::new();
    assert!(
        cache.reserve(&mut table, 3 * BLOCK).is_err(),
        "3 blocks of 2 available"
    );
    assert_eq!(
        table,
        BlockTable::new(),
        "a refused reserve changes nothing"
    );
    ok(
        cache.reserve(&mut table, 2 * BLOCK),
        "2 blocks: one free, one evicted",
    );
    assert_eq!(cache.stats().evictions, 1);
    drop(held);
}

#[test]
fn task_2_dropping_a_reference_nobody_holds_is_an_error() {
    let mut cache = PrefixCache::new(1, 4);
    let table = filled_table(&mut cache, &tokens(1, 5), 1);
    let block = table.blocks()[0];
    ok(cache.release(table), "PrefixCache::release");
    assert_eq!(
        cache.drop_ref(block),
        Err(PoolError::NotInUse { block, total: 4 })
    );
    assert_eq!(
        cache.drop_ref(99),
        Err(PoolError::NotInUse {
            block: 99,
            total: 4
        })
    );
}
