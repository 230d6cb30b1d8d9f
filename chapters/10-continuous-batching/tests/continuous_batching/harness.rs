//! What the tasks' tests share: the batched cache driven by a list of operations (tasks 1 and 2),
//! the scheduler driven step by step (tasks 3 to 5), and the models they run.

use continuous_batching::{
    BatchKvCache, Event, FinishReason, LayerCache, Model, Offset, Request, SamplingParams,
    Scheduler, SchedulerConfig,
};
use mlx_rs::{ops, ops::indexing::IndexOp, Array, Dtype};
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};
use test_support::{
    expect_ok as ok, expect_ok, fixture_path, load_fixture, random_array, token_ids as ids,
};

pub fn load_model(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

fn concatenate(parts: &[Array], axis: i32) -> Array {
    expect_ok(ops::concatenate(parts, axis), "ops::concatenate")
}

// ---------------------------------------------------------------------------------------------
// The batched cache, driven by a list of operations (tasks 1 and 2)

/// Heads and head size of the keys in the cache tests.
pub const HEADS: i32 = 2;
pub const HEAD_DIM: i32 = 8;

#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// A sequence of this many tokens joins as the last row.
    Add(i32),
    /// Every row gets this many new tokens (`update_and_fetch`).
    Update(i32),
    /// This row leaves.
    Remove(usize),
}
use Op::{Add, Remove, Update};

/// A [`BatchKvCache`] with, beside it, every key and value each row was given, to build what it
/// should return with MLX's own concatenation.
pub struct Tracked {
    pub cache: BatchKvCache,
    pub dtype: Dtype,
    /// Per row: the keys and values it was given, in order, each `[1, H, n, D]`.
    pub rows: Vec<(Vec<Array>, Vec<Array>)>,
    pub seed: u64,
    pub done: Vec<Op>,
}

impl Tracked {
    pub fn new(dtype: Dtype) -> Self {
        Tracked {
            cache: BatchKvCache::new(),
            dtype,
            rows: Vec::new(),
            seed: 0,
            done: Vec::new(),
        }
    }

    /// Seeded random keys and values of `shape`, different at every call.
    pub fn random_kv(&mut self, shape: [i32; 4]) -> (Array, Array) {
        self.seed += 2;
        (
            random_array(&shape, self.dtype, self.seed),
            random_array(&shape, self.dtype, self.seed + 1),
        )
    }

    pub fn lengths(&self) -> Vec<i32> {
        self.rows
            .iter()
            .map(|(keys, _)| keys.iter().map(|part| part.shape()[2]).sum())
            .collect()
    }

    /// Applies `op`; for an update, returns what `update_and_fetch` returned.
    pub fn apply(&mut self, op: Op) -> Option<(Array, Array)> {
        self.done.push(op);
        match op {
            Add(length) => {
                let (keys, values) = self.random_kv([1, HEADS, length, HEAD_DIM]);
                ok(
                    self.cache.add(&keys, &values),
                    &format!("BatchKvCache::add after {:?}", self.done),
                );
                self.rows.push((vec![keys], vec![values]));
                None
            }
            Update(length) => {
                let batch = self.rows.len() as i32;
                let (keys, values) = self.random_kv([batch, HEADS, length, HEAD_DIM]);
                for (row, (row_keys, row_values)) in self.rows.iter_mut().enumerate() {
                    let row = row as i32;
                    row_keys.push(keys.index(row..row + 1));
                    row_values.push(values.index(row..row + 1));
                }
                Some(ok(
                    self.cache.update_and_fetch(&keys, &values),
                    &format!("BatchKvCache::update_and_fetch after {:?}", self.done),
                ))
            }
            Remove(row) => {
                ok(
                    self.cache.remove(row),
                    &format!("BatchKvCache::remove after {:?}", self.done),
                );
                self.rows.remove(row);
                None
            }
        }
    }

    /// Every row's keys (or values) so far, right-aligned: zeros on the left up to the longest
    /// row, `[B, H, longest, D]`.
    pub fn expected(&self, values: bool) -> Array {
        let longest = self.lengths().into_iter().max().unwrap_or(0);
        let rows: Vec<Array> = self
            .rows
            .iter()
            .zip(self.lengths())
            .map(|((keys, vals), length)| {
                let zeros = ops::zeros_dtype(&[1, HEADS, longest - length, HEAD_DIM], self.dtype)
                    .expect("MLX makes zeros");
                let mut parts = vec![zeros];
                parts.extend(if values { vals } else { keys }.iter().cloned());
                concatenate(&parts, 2) // [1, H, longest, D]
            })
            .collect();
        concatenate(&rows, 0)
    }

    /// `lengths()` and `positions()` both give each row's token count.
    pub fn check_lengths(&self) {
        let expected = self.lengths();
        let what = format!("after {:?}", self.done);
        assert_eq!(self.cache.len(), expected.len(), "len() {what}");
        assert_eq!(
            self.cache.is_empty(),
            expected.is_empty(),
            "is_empty() {what}"
        );
        assert_eq!(
            self.cache.lengths(),
            &expected[..],
            "lengths() {what}: each row's number of tokens"
        );
        match self.cache.positions() {
            Offset::PerRow(positions) => assert_eq!(
                positions,
                &expected[..],
                "positions() {what}: row b's next token is at position lengths[b]"
            ),
            other => panic!("positions() {what} should be Offset::PerRow, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler, driven step by step (tasks 3 to 5)

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

pub fn config(max_running: usize, token_budget: usize, prefill_chunk: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_running,
        token_budget,
        prefill_chunk,
    }
}

/// What one request received.
#[derive(Debug, Default)]
pub struct Outcome {
    pub tokens: Vec<u32>,
    /// The step (counting from 1) that produced each token.
    pub token_steps: Vec<usize>,
    /// Why and at which step it finished.
    pub finished: Option<(FinishReason, usize)>,
}

/// A scheduler with a record of every event, step by step.
pub struct Driver<'m> {
    pub scheduler: Scheduler<'m>,
    pub outcomes: BTreeMap<u64, Outcome>,
    /// Steps run so far.
    pub steps: usize,
}

/// Far more steps than any test needs: a scheduler that takes more never finishes.
const MAX_STEPS: usize = 400;

impl<'m> Driver<'m> {
    pub fn new(model: &'m Model, config: SchedulerConfig) -> Self {
        Driver {
            scheduler: ok(Scheduler::new(model, config), "Scheduler::new"),
            outcomes: BTreeMap::new(),
            steps: 0,
        }
    }

    pub fn add(&mut self, request: Request) {
        self.outcomes.entry(request.id).or_default();
        ok(self.scheduler.add(request), "Scheduler::add");
    }

    /// One step; checks that no request hears of anything after it finished.
    pub fn step(&mut self) -> Vec<Event> {
        self.steps += 1;
        let step = self.steps;
        let events = ok(self.scheduler.step(), &format!("Scheduler::step {step}"));
        for event in &events {
            let id = match event {
                Event::Token { id, .. } | Event::Finished { id, .. } => *id,
            };
            let outcome = self.outcomes.get_mut(&id).unwrap_or_else(|| {
                panic!("step {step}: an event for request {id}, which was never added: {event:?}")
            });
            if let Some((reason, at)) = outcome.finished {
                panic!("step {step}: request {id} finished at step {at} ({reason:?}), yet got {event:?}");
            }
            match *event {
                Event::Token { token, .. } => {
                    outcome.tokens.push(token);
                    outcome.token_steps.push(step);
                }
                Event::Finished { reason, .. } => outcome.finished = Some((reason, step)),
            }
        }
        events
    }

    /// Adds each request right before the step it names (1 = before the first step), and steps
    /// until every request is done.
    pub fn run(&mut self, mut arrivals: Vec<(usize, Request)>) {
        arrivals.sort_by_key(|(step, _)| *step);
        let mut arrivals = arrivals.into_iter().peekable();
        while arrivals.peek().is_some() || !self.scheduler.is_idle() {
            let next_step = self.steps + 1;
            while let Some((_, request)) = arrivals.next_if(|(step, _)| *step <= next_step) {
                self.add(request);
            }
            assert!(
                self.steps < MAX_STEPS,
                "the scheduler did not finish in {MAX_STEPS} steps: {} waiting, {} running",
                self.scheduler.waiting(),
                self.scheduler.running()
            );
            self.step();
        }
    }

    pub fn outcome(&self, id: u64) -> &Outcome {
        &self.outcomes[&id]
    }

    /// Request `id` received exactly `expected` and finished for `reason`.
    pub fn check(&self, id: u64, expected: &[u32], reason: FinishReason, what: &str) {
        let outcome = self.outcome(id);
        if let Some(at) = outcome
            .tokens
            .iter()
            .zip(expected)
            .position(|(got, want)| got != want)
        {
            panic!(
                "{what}: request {id}'s token {at} differs: got {}, expected {}\n  got      {:?}\n  expected {:?}",
                outcome.tokens[at], expected[at], outcome.tokens, expected
            );
        }
        assert_eq!(
            outcome.tokens.len(),
            expected.len(),
            "{what}: request {id} got {} tokens, expected {}\n  got      {:?}\n  expected {:?}",
            outcome.tokens.len(),
            expected.len(),
            outcome.tokens,
            expected
        );
        assert_eq!(
            outcome.finished.map(|(reason, _)| reason),
            Some(reason),
            "{what}: how request {id} finished"
        );
    }

    /// After the last request: nothing waits or runs, and every cache is freed.
    pub fn check_idle(&self, what: &str) {
        assert!(
            self.scheduler.is_idle(),
            "{what}: the scheduler should be idle"
        );
        assert_eq!(
            self.scheduler.cache_bytes(),
            0,
            "{what}: once every request has finished, no cache should remain"
        );
    }
}

/// A tiny model and its reference tensors.
pub fn tiny(model_name: &str) -> (Model, HashMap<String, Array>) {
    (
        load_model(&fixture_path(model_name)),
        load_fixture(&format!("{model_name}/reference.safetensors")),
    )
}

pub fn seq(reference: &HashMap<String, Array>, index: usize) -> Vec<u32> {
    ids(&reference[&format!("seq{index}.tokens")])
}

/// transformers' 16 greedy tokens after `seq{index}`.
pub fn continuation(reference: &HashMap<String, Array>, index: usize) -> Vec<u32> {
    ids(&reference[&format!("seq{index}.greedy_continuation")])
}
