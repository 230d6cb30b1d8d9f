//! Task 1: the pool's allocator and a block table growing and shrinking with it.

use crate::harness::{distinct, grow, Seeded};
use paged_kv_cache::{BlockTable, PagePool, PoolError, BLOCK_SIZE};
use rstest::rstest;
use test_support::expect_ok as ok;

const LAYERS: usize = 2;
const BLOCK: usize = BLOCK_SIZE as usize;

#[rstest]
#[case::one_block(8, &[1])]
#[case::several_requests(8, &[3, 2, 3])]
#[case::the_whole_pool(5, &[5])]
#[case::nothing(4, &[0, 2])]
fn task_1_allocate_gives_distinct_free_blocks(#[case] total: usize, #[case] counts: &[usize]) {
    let mut pool = PagePool::new(LAYERS, total);
    let mut taken = Vec::new();
    for &count in counts {
        let blocks = ok(pool.allocate(count), "PagePool::allocate");
        assert_eq!(
            blocks.len(),
            count,
            "allocate({count}) should give {count} blocks, gave {blocks:?}"
        );
        taken.extend(blocks);
    }
    assert!(
        taken.iter().all(|&block| (block as usize) < total),
        "every block should be in 0..{total}, got {taken:?}"
    );
    assert_eq!(
        distinct(&taken).len(),
        taken.len(),
        "no block may be handed out twice: {taken:?}"
    );
    assert_eq!(
        pool.num_free(),
        total - taken.len(),
        "free blocks after allocating {taken:?}"
    );
    assert_eq!(pool.num_used(), taken.len());
}

#[test]
fn task_1_an_exhausted_pool_is_an_error_that_takes_nothing() {
    let mut pool = PagePool::new(LAYERS, 4);
    ok(pool.allocate(3), "allocate(3) of 4");
    assert_eq!(
        pool.allocate(2),
        Err(PoolError::Exhausted {
            requested: 2,
            free: 1,
            total: 4
        }),
        "allocate(2) with one block free"
    );
    assert_eq!(pool.num_free(), 1, "a failed allocate must take no block");
    ok(pool.allocate(1), "allocate(1) of the last block");
    assert_eq!(
        pool.allocate(1),
        Err(PoolError::Exhausted {
            requested: 1,
            free: 0,
            total: 4
        }),
        "allocate(1) of a full pool"
    );
}

#[rstest]
fn task_1_freed_blocks_are_reused(#[values(1, 2, 3)] seed: u64) {
    let mut pool = PagePool::new(LAYERS, 12);
    let mut blocks = ok(pool.allocate(12), "allocate the whole pool");
    Seeded::new(seed).shuffle(&mut blocks);
    let freed = &blocks[..5];
    ok(pool.free(freed), "PagePool::free");
    assert_eq!(pool.num_free(), 5);
    let again = ok(pool.allocate(5), "allocate(5) after freeing 5");
    assert_eq!(
        distinct(&again),
        distinct(freed),
        "the only free blocks are those just freed"
    );
    assert_eq!(pool.num_free(), 0);
}

#[derive(Debug, Clone, Copy)]
enum BadFree {
    Twice,
    OutsideThePool,
    NamedTwiceInOneCall,
}

#[rstest]
#[case::twice(BadFree::Twice)]
#[case::outside_the_pool(BadFree::OutsideThePool)]
#[case::named_twice_in_one_call(BadFree::NamedTwiceInOneCall)]
fn task_1_freeing_a_block_not_in_use_is_an_error_that_frees_nothing(#[case] bad: BadFree) {
    let mut pool = PagePool::new(LAYERS, 6);
    let blocks = ok(pool.allocate(4), "allocate(4)");
    let (a, b) = (blocks[0], blocks[1]);
    let (call, culprit) = match bad {
        BadFree::Twice => {
            ok(pool.free(&[a]), "the first free");
            (vec![b, a], a)
        }
        BadFree::OutsideThePool => (vec![b, 99], 99),
        BadFree::NamedTwiceInOneCall => (vec![b, b], b),
    };
    let free_before = pool.num_free();
    assert_eq!(
        pool.free(&call),
        Err(PoolError::NotInUse {
            block: culprit,
            total: 6
        }),
        "{bad:?}: free({call:?})"
    );
    assert_eq!(
        pool.num_free(),
        free_before,
        "{bad:?}: a failed free must free nothing"
    );
    ok(pool.free(&[b]), "freeing the block that was still in use");
}

#[rstest]
#[case::one_token_at_a_time(&[1; 40])]
#[case::a_prompt_then_decoding(&[15, 1, 1, 1, 20])]
#[case::exactly_whole_blocks(&[16, 16, 32])]
#[case::nothing_new(&[0, 5, 0])]
fn task_1_reserve_grows_by_whole_blocks(#[case] steps: &[usize]) {
    let mut pool = PagePool::new(LAYERS, 64);
    // Two sequences grow in turn, so that each takes blocks while the other holds some.
    let (mut first, mut second) = (BlockTable::new(), BlockTable::new());
    for &count in steps {
        for table in [&mut first, &mut second] {
            let before = table.blocks().to_vec();
            ok(table.reserve(&mut pool, count), "BlockTable::reserve");
            let needed = (table.len() + count).div_ceil(BLOCK);
            assert_eq!(
                table.blocks().len(),
                needed,
                "after reserving {count} more for a table of {} tokens: blocks {:?}",
                table.len(),
                table.blocks()
            );
            assert_eq!(
                &table.blocks()[..before.len()],
                before,
                "reserve keeps the blocks a table has"
            );
            assert!(
                table.len() + count <= table.capacity(),
                "reserve makes room for the new tokens"
            );
            table.advance(count);
        }
    }
    let all: Vec<_> = first
        .blocks()
        .iter()
        .chain(second.blocks())
        .copied()
        .collect();
    assert_eq!(
        distinct(&all).len(),
        all.len(),
        "two tables share no block: {all:?}"
    );
    assert_eq!(
        pool.num_used(),
        all.len(),
        "the pool counts every block the tables hold"
    );
}

#[test]
fn task_1_a_reserve_the_pool_cannot_meet_changes_nothing() {
    let mut pool = PagePool::new(LAYERS, 3);
    let (mut first, mut second) = (BlockTable::new(), BlockTable::new());
    grow(&mut first, &mut pool, 20); // 2 blocks
    assert_eq!(
        second.reserve(&mut pool, 40),
        Err(PoolError::Exhausted {
            requested: 3,
            free: 1,
            total: 3
        }),
        "40 tokens need 3 blocks, 1 is free"
    );
    assert_eq!(
        second,
        BlockTable::new(),
        "the failed reserve must leave the table empty"
    );
    assert_eq!(pool.num_free(), 1, "the failed reserve must take no block");
    ok(first.reserve(&mut pool, 13), "20 + 13 tokens fit 3 blocks");
    assert_eq!(first.blocks().len(), 3);
}

#[rstest]
#[case::within_the_last_block(33, 3)]
#[case::at_a_block_boundary(32, 2)]
#[case::one_past_a_boundary(17, 2)]
#[case::one_block(16, 1)]
#[case::everything(0, 0)]
#[case::nothing(40, 3)]
fn task_1_truncate_frees_whole_blocks_past_the_length(
    #[case] length: usize,
    #[case] blocks: usize,
) {
    let mut pool = PagePool::new(LAYERS, 8);
    let mut table = BlockTable::new();
    grow(&mut table, &mut pool, 40);
    let before = table.blocks().to_vec();
    ok(table.truncate(&mut pool, length), "BlockTable::truncate");
    assert_eq!(table.len(), length);
    assert_eq!(
        table.blocks(),
        &before[..blocks],
        "truncate({length}) keeps the first {blocks} blocks"
    );
    assert_eq!(
        pool.num_free(),
        8 - blocks,
        "the blocks past them go back to the pool"
    );
    grow(&mut table, &mut pool, 40 - length);
    assert_eq!(
        table.blocks().len(),
        3,
        "the table grows again after a truncate"
    );
}

#[test]
fn task_1_truncate_beyond_the_length_is_an_error() {
    let mut pool = PagePool::new(LAYERS, 4);
    let mut table = BlockTable::new();
    grow(&mut table, &mut pool, 20);
    let before = table.clone();
    assert_eq!(
        table.truncate(&mut pool, 21),
        Err(PoolError::BadLength {
            length: 20,
            requested: 21
        })
    );
    assert_eq!(table, before, "a failed truncate changes nothing");
    assert_eq!(pool.num_free(), 2);
}
