//! What the tests of every task share: tables filled with tokens, requests, a driver for the
//! scheduler, and the dense reference.

use mlx_rs::{Array, Dtype};
use paged_kv_cache::StepPlan;
use prefix_cache::{
    generate, greedy, BlockTable, CachedModel, Event, FinishReason, GenerationOptions, Model,
    PagedConfig, PagedScheduler, PrefixCache, Request, SamplingParams, SchedulerConfig, Tokenizer,
};
use std::{collections::BTreeMap, path::Path};
use test_support::{expect_ok as ok, fixture_path, random_array};

/// Blocks hold this many tokens.
pub const BLOCK: usize = prefix_cache::BLOCK_SIZE as usize;

/// `count` distinct token ids from `first` on.
pub fn tokens(first: u32, count: usize) -> Vec<u32> {
    (first..first + count as u32).collect()
}

/// A table of `tokens.len()` positions reserved through the prefix cache (one reference per
/// block), its keys and values written as seeded random numbers into layer 0's pages, and its
/// full blocks registered.
pub fn filled_table(cache: &mut PrefixCache, tokens: &[u32], seed: u64) -> BlockTable {
    let mut table = BlockTable::new();
    ok(
        cache.reserve(&mut table, tokens.len()),
        "PrefixCache::reserve",
    );
    fill(cache, table, tokens, seed)
}

/// [`filled_table`] with blocks taken from the pool by chapter 12's `BlockTable::reserve`: no
/// reference counted (task 1 comes before references).
pub fn filled_table_in_pool(cache: &mut PrefixCache, tokens: &[u32], seed: u64) -> BlockTable {
    let mut table = BlockTable::new();
    ok(
        table.reserve(cache.pool_mut(), tokens.len()),
        "BlockTable::reserve",
    );
    fill(cache, table, tokens, seed)
}

fn fill(cache: &mut PrefixCache, mut table: BlockTable, tokens: &[u32], seed: u64) -> BlockTable {
    write_random(cache, &table, tokens.len(), seed);
    table.advance(tokens.len());
    cache.commit(&table, tokens);
    table
}

/// Writes `count` seeded random keys and values at `table`'s next positions in layer 0.
pub fn write_random(cache: &mut PrefixCache, table: &BlockTable, count: usize, seed: u64) -> Array {
    let keys = random_array(&[1, 2, count as i32, 8], Dtype::Float32, seed);
    let plan = ok(StepPlan::new(&[table], count), "StepPlan::new");
    let pages = &mut cache.pool_mut().layers_mut()[0];
    ok(pages.write(&keys, &keys, &plan), "LayerPages::write");
    keys
}

/// Layer 0's keys of `table`'s first `length` positions, `[1, H_kv, length, D]`, read through a
/// one-token plan (the table must have room for it).
pub fn read_keys(cache: &mut PrefixCache, table: &BlockTable) -> Array {
    let plan = ok(StepPlan::new(&[table], 1), "StepPlan::new");
    let (keys, _) = ok(
        cache.pool_mut().layers_mut()[0].gather(&plan),
        "LayerPages::gather",
    );
    use mlx_rs::ops::indexing::IndexOp;
    keys.index((.., .., ..table.len() as i32, ..))
}

pub fn load_model(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

pub fn tokenizer_at(dir: &Path) -> Tokenizer {
    ok(Tokenizer::load(dir), "Tokenizer::load")
}

/// A greedy request that stops only at `max_new_tokens`.
pub fn request(id: u64, prompt: &[u32], max_new_tokens: usize) -> Request {
    Request {
        id,
        prompt: prompt.to_vec(),
        max_new_tokens,
        sampling: SamplingParams::default(),
        stop_token_ids: Vec::new(),
        constraint: None,
        logprobs: None,
    }
}

pub fn paged_config(num_blocks: usize, prefix_caching: bool) -> PagedConfig {
    PagedConfig {
        scheduler: SchedulerConfig {
            max_running: 8,
            token_budget: 64,
            prefill_chunk: 24,
        },
        num_blocks,
        prefix_caching,
    }
}

/// What a request produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub tokens: Vec<u32>,
    pub finished: Option<FinishReason>,
}

/// Far more steps than any test needs: a scheduler that takes more never finishes.
const MAX_STEPS: usize = 600;

/// Runs `scheduler` until it is idle; `arrivals` are added before the step of their index.
pub fn drive(
    scheduler: &mut PagedScheduler,
    arrivals: Vec<(usize, Request)>,
    mut after_step: impl FnMut(&PagedScheduler, &[Event]),
) -> BTreeMap<u64, Outcome> {
    let mut outcomes: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut arrivals = arrivals.into_iter().peekable();
    for step in 0..MAX_STEPS {
        while let Some((_, request)) = arrivals.next_if(|(at, _)| *at <= step) {
            outcomes.entry(request.id).or_default();
            ok(scheduler.add(request), "PagedScheduler::add");
        }
        if scheduler.is_idle() && arrivals.peek().is_none() {
            return outcomes;
        }
        let events = ok(scheduler.step(), &format!("PagedScheduler::step {step}"));
        for event in &events {
            match *event {
                Event::Token { id, token, .. } => {
                    let outcome = outcomes.get_mut(&id).expect("an added request");
                    assert!(
                        outcome.finished.is_none(),
                        "request {id} got a token after it finished"
                    );
                    outcome.tokens.push(token);
                }
                Event::Finished { id, reason } => {
                    outcomes.get_mut(&id).expect("an added request").finished = Some(reason);
                }
            }
        }
        after_step(scheduler, &events);
    }
    panic!("the scheduler was not idle after {MAX_STEPS} steps");
}

/// Chapter 8's dense cache generating `prompt` alone, greedy: the reference for prompts
/// transformers did not run.
pub fn alone(model: &Model, model_name: &str, prompt: &[u32], max_new_tokens: usize) -> Vec<u32> {
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    let options = GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: true,
    };
    ok(
        generate(
            &mut CachedModel::new(model),
            &tokenizer,
            prompt,
            &options,
            &mut greedy,
            &mut |_| {},
        ),
        "generate with chapter 8's cache",
    )
    .tokens
}
