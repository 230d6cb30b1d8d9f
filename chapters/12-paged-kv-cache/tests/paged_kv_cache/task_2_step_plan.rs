//! Task 2: the step plan: where new tokens go, where keys are read from, what each token sees.

use crate::harness::{grow, int_values, pool_with_holes};
use mlx_rs::{Array, Dtype};
use paged_kv_cache::{BlockTable, PagePool, StepPlan, BLOCK_SIZE};
use rstest::rstest;
use test_support::expect_ok as ok;

/// Tables of these lengths in a pool with holes, each with room for `new_tokens` more.
fn tables(lengths: &[usize], new_tokens: usize, seed: u64) -> (PagePool, Vec<BlockTable>) {
    let mut pool = pool_with_holes(1, 24, seed);
    let tables = lengths
        .iter()
        .map(|&length| {
            let mut table = BlockTable::new();
            grow(&mut table, &mut pool, length);
            ok(table.reserve(&mut pool, new_tokens), "BlockTable::reserve");
            table
        })
        .collect();
    (pool, tables)
}

fn plan(tables: &[BlockTable], new_tokens: usize) -> StepPlan {
    let rows: Vec<&BlockTable> = tables.iter().collect();
    ok(StepPlan::new(&rows, new_tokens), "StepPlan::new")
}

/// The slot of `position`, from the rule: block `position / BLOCK_SIZE` of the table, at
/// `position % BLOCK_SIZE` in it.
fn slot_of(table: &BlockTable, position: usize) -> i32 {
    let block = table.blocks()[position / BLOCK_SIZE as usize] as i32;
    block * BLOCK_SIZE + (position % BLOCK_SIZE as usize) as i32
}

#[rstest]
#[case::decode_one_token(&[5, 16, 33, 0], 1, 1)]
#[case::a_chunk_across_blocks(&[14, 3], 5, 2)]
#[case::a_prompt_of_several_blocks(&[0], 40, 3)]
#[case::rows_of_equal_length(&[7, 7, 7], 2, 4)]
fn task_2_slots_follow_the_block_tables(
    #[case] lengths: &[usize],
    #[case] new_tokens: usize,
    #[case] seed: u64,
) {
    let (_pool, tables) = tables(lengths, new_tokens, seed);
    let plan = plan(&tables, new_tokens);
    let longest = lengths.iter().max().unwrap() + new_tokens;
    let mut write = Vec::new();
    let mut read = Vec::new();
    for table in &tables {
        let end = table.len() + new_tokens;
        write.extend((table.len()..end).map(|position| slot_of(table, position)));
        read.push(
            (0..end)
                .map(|position| slot_of(table, position))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        plan.write_slots().shape(),
        &[write.len() as i32],
        "write_slots is [B * L]"
    );
    assert_eq!(
        int_values(plan.write_slots()),
        write,
        "write_slots for rows of {lengths:?} + {new_tokens}"
    );
    assert_eq!(
        plan.read_slots().shape(),
        &[tables.len() as i32, longest as i32],
        "read_slots is [B, S], S = the longest row after the step"
    );
    let got = int_values(plan.read_slots());
    for (row, expected) in read.iter().enumerate() {
        // Past a row's end any slot will do: the mask hides it.
        let row_slots = &got[row * longest..row * longest + expected.len()];
        assert_eq!(
            row_slots, expected,
            "read_slots of row {row} (length {} + {new_tokens})",
            lengths[row]
        );
    }
    let positions: Vec<i32> = lengths.iter().map(|&length| length as i32).collect();
    assert_eq!(
        plan.positions(),
        positions,
        "each row's first new token is at its length"
    );
}

/// Row by row, each new token's view of the keys: `0` it sees, `x` hidden.
fn render_mask(mask: &Array) -> Vec<String> {
    let &[batch, heads, queries, keys] = mask.shape() else {
        panic!("the mask should be [B, 1, L, S], got {:?}", mask.shape());
    };
    assert_eq!(heads, 1, "one mask for every head: [B, 1, L, S]");
    let values = ok(mask.as_dtype(Dtype::Float32), "as_dtype");
    ok(values.eval(), "the mask evaluates");
    let values = values.as_slice::<f32>();
    (0..batch as usize)
        .map(|row| {
            (0..queries as usize)
                .map(|query| {
                    let start = (row * queries as usize + query) * keys as usize;
                    values[start..start + keys as usize]
                        .iter()
                        .map(|&value| {
                            if value == 0.0 {
                                '0'
                            } else if value == f32::NEG_INFINITY {
                                'x'
                            } else {
                                '?'
                            }
                        })
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[rstest]
#[case::two_new_tokens(&[3, 1], 2, &["0000x 00000", "00xxx 000xx"])]
#[case::decoding_rows_of_three_lengths(&[4, 0, 2], 1, &["00000", "0xxxx", "000xx"])]
#[case::a_row_across_a_block(&[17, 15], 1, &["000000000000000000", "0000000000000000xx"])]
fn task_2_the_mask_hides_other_rows_padding_and_the_future(
    #[case] lengths: &[usize],
    #[case] new_tokens: usize,
    #[case] expected: &[&str],
) {
    let (_pool, tables) = tables(lengths, new_tokens, 5);
    let plan = plan(&tables, new_tokens);
    let mask = plan.mask().expect("rows of different lengths need a mask");
    assert_eq!(
        render_mask(mask),
        expected,
        "the mask for rows of {lengths:?} + {new_tokens}"
    );
}

#[rstest]
#[case::one_row(&[9], 3)]
#[case::rows_of_equal_length(&[5, 5], 1)]
fn task_2_rows_of_equal_length_need_no_mask(#[case] lengths: &[usize], #[case] new_tokens: usize) {
    let (_pool, tables) = tables(lengths, new_tokens, 6);
    assert!(
        plan(&tables, new_tokens).mask().is_none(),
        "rows of {lengths:?} + {new_tokens}: the causal rule is enough"
    );
}

#[derive(Debug, Clone, Copy)]
enum BadPlan {
    NoRows,
    NoTokens,
    NotReserved,
}

#[rstest]
#[case::no_rows(BadPlan::NoRows)]
#[case::no_tokens(BadPlan::NoTokens)]
#[case::a_table_not_reserved(BadPlan::NotReserved)]
fn task_2_a_plan_that_cannot_be_made_is_an_error(#[case] bad: BadPlan) {
    let mut pool = PagePool::new(1, 4);
    let mut table = BlockTable::new();
    grow(&mut table, &mut pool, 16); // one full block, no room for more
    let result = match bad {
        BadPlan::NoRows => StepPlan::new(&[], 1),
        BadPlan::NoTokens => StepPlan::new(&[&table], 0),
        BadPlan::NotReserved => StepPlan::new(&[&table], 1),
    };
    assert!(result.is_err(), "{bad:?}: StepPlan::new should fail");
}
