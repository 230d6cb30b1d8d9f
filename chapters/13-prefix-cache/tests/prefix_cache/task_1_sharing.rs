//! Task 1: block hashes, finding a prompt's cached blocks, registering full blocks.

use crate::harness::{filled_table_in_pool, tokens, BLOCK};
use prefix_cache::{block_hash, PrefixCache};
use rstest::rstest;

#[test]
fn task_1_a_block_hash_depends_on_its_tokens_and_its_prefix() {
    let block = tokens(100, BLOCK);
    let first = block_hash(None, &block);
    assert_eq!(
        first,
        block_hash(None, &block),
        "the same block hashes the same"
    );
    let mut other = block.clone();
    other[BLOCK - 1] += 1;
    assert_ne!(first, block_hash(None, &other), "one token differs");
    let second = block_hash(Some(first), &block);
    assert_ne!(
        second, first,
        "the same tokens after a prefix are another block"
    );
    assert_ne!(
        second,
        block_hash(Some(block_hash(None, &other)), &block),
        "the same tokens after another prefix are another block"
    );
}

#[rstest]
#[case::two_full_blocks_then_more(40, 45, 2, 32)]
#[case::only_the_first_block(40, 20, 1, 16)]
#[case::a_partial_block_is_not_shared(40, 47, 2, 32)]
#[case::the_whole_prompt_keeps_one_token_to_run(32, 32, 2, 31)]
#[case::shorter_than_a_block(40, 10, 0, 0)]
fn task_1_lookup_finds_the_registered_blocks_of_a_prefix(
    #[case] first_length: usize,
    #[case] second_length: usize,
    #[case] shared_blocks: usize,
    #[case] cached_tokens: usize,
) {
    let mut cache = PrefixCache::new(1, 16);
    let first = tokens(1, first_length);
    let table = filled_table_in_pool(&mut cache, &first, 1);
    // The second prompt starts like the first (as far as both go), then goes its own way.
    let mut second = tokens(1, second_length.min(first_length));
    second.extend(tokens(300, second_length.saturating_sub(first_length)));
    let found = cache.lookup(&second);
    assert_eq!(
        found.blocks(),
        &table.blocks()[..shared_blocks],
        "lookup of {second_length} tokens sharing {first_length}"
    );
    assert_eq!(
        found.len(),
        cached_tokens,
        "tokens the found blocks hold (at most the prompt's length - 1)"
    );
    for &block in found.blocks() {
        assert_eq!(
            cache.refs(block),
            1,
            "block {block}: the lookup takes a reference"
        );
    }
}

#[test]
fn task_1_the_same_tokens_after_another_prefix_are_not_found() {
    let mut cache = PrefixCache::new(1, 16);
    let mut first = tokens(1, BLOCK);
    first.extend(tokens(200, BLOCK));
    filled_table_in_pool(&mut cache, &first, 2);
    let mut second = tokens(50, BLOCK); // another first block
    second.extend(tokens(200, BLOCK + 1)); // the same second block
    let found = cache.lookup(&second);
    assert!(
        found.blocks().is_empty(),
        "found {:?} after a different first block",
        found.blocks()
    );
    assert_eq!(found.len(), 0);
}

#[test]
fn task_1_commit_registers_only_full_blocks_and_each_content_once() {
    let mut cache = PrefixCache::new(1, 16);
    let prompt = tokens(1, 40);
    let first = filled_table_in_pool(&mut cache, &prompt, 3);
    let registered: Vec<bool> = first
        .blocks()
        .iter()
        .map(|&b| cache.is_registered(b))
        .collect();
    assert_eq!(
        registered,
        [true, true, false],
        "40 tokens: two full blocks and a partial one"
    );
    // The same content computed again by another request: the first blocks keep the hashes.
    let second = filled_table_in_pool(&mut cache, &prompt, 4);
    for &block in second.blocks() {
        assert!(
            !cache.is_registered(block),
            "block {block} repeats registered content: it stays private"
        );
    }
    let found = cache.lookup(&prompt);
    assert_eq!(
        found.blocks(),
        &first.blocks()[..2],
        "lookups find the first copy"
    );
}
