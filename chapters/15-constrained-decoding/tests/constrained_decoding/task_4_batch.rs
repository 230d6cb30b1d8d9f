//! Task 4: one masked sampling step over a batch mixing constrained and free rows.

use crate::harness::{allowed, assert_valid, constraint, schemas, tiny_grammar};
use constrained_decoding::{sample_batch, BatchRow, Constraint, Format, Sampler, SamplingParams};
use mlx_rs::{ops::indexing::IndexOp, Dtype};
use test_support::{expect_ok as ok, random_array};

fn sampler(seed: u64) -> Sampler {
    ok(
        Sampler::new(SamplingParams {
            temperature: 1.0,
            seed,
            ..SamplingParams::default()
        }),
        "Sampler::new",
    )
}

/// Four rows, two under schemas and two free, over seeded random logits until the constrained
/// rows finish: the free rows choose exactly what chapter 7's sampler chooses from their raw
/// logits; each constrained row chooses only allowed tokens and ends as valid JSON.
#[test]
fn task_4_constrained_and_free_rows_share_a_batch() {
    let grammar = tiny_grammar();
    let tokenizer = crate::harness::tiny_tokenizer();
    let all = schemas();
    let schema_of_row = [Some(0), None, Some(1), None];
    let mut constraints: Vec<Option<Constraint>> = schema_of_row
        .iter()
        .map(|which| which.map(|w| constraint(&grammar, &Format::JsonSchema(all[w].1.clone()))))
        .collect();
    let mut samplers: Vec<Sampler> = (0..4).map(|row| sampler(100 + row)).collect();
    let mut references: Vec<Sampler> = (0..4).map(|row| sampler(100 + row)).collect();
    let mut histories: Vec<Vec<u32>> = vec![vec![1]; 4];
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); 4];
    let mut done = [false; 4];
    for step in 0..400u64 {
        if done[0] && done[2] {
            break;
        }
        let logits = random_array(&[4, 512], Dtype::Float32, 7000 + step);
        // What each constrained row may choose, before the step advances it.
        let masks: Vec<Option<Vec<u32>>> = constraints
            .iter_mut()
            .map(|c| c.as_mut().map(|c| ok(c.allowed_words(), "allowed_words")))
            .collect();
        let mut rows: Vec<BatchRow<'_>> = samplers
            .iter_mut()
            .zip(constraints.iter_mut())
            .zip(histories.iter())
            .map(|((sampler, constraint), tokens)| BatchRow {
                sampler,
                tokens,
                constraint: constraint.as_mut(),
            })
            .collect();
        let tokens = ok(sample_batch(&logits, &mut rows), "sample_batch");
        assert_eq!(tokens.len(), 4, "step {step}: one token per row");
        for row in 0..4 {
            let token = tokens[row];
            match &masks[row] {
                None => {
                    let expected = ok(
                        references[row].sample(&logits.index(row as i32), &histories[row]),
                        "Sampler::sample",
                    );
                    assert_eq!(
                        token, expected,
                        "step {step}, free row {row}: the plain sampler"
                    );
                }
                Some(words) => {
                    assert!(
                        allowed(words, token),
                        "step {step}, row {row}: token {token} is not allowed"
                    );
                    if done[row] {
                        continue;
                    }
                    if token == 2 {
                        done[row] = true;
                        continue;
                    }
                    outputs[row].push(token);
                }
            }
            histories[row].push(token);
        }
    }
    for row in [0, 2] {
        assert!(done[row], "row {row}: no EOS in 400 steps");
        let schema = &all[schema_of_row[row].expect("constrained")].1;
        let text = ok(tokenizer.decode(&outputs[row]), "Tokenizer::decode");
        assert_valid(&text, schema, &format!("batch row {row}"));
    }
}

/// Through chapter 10's scheduler: constrained and free requests in one batch. The constrained
/// ones (sampled) end as valid JSON with `FinishReason::Stop`; the free greedy ones generate what
/// chapter 8's cache generates for them alone.
#[test]
fn task_4_the_scheduler_batches_constrained_and_free_requests() {
    use crate::harness::{tiny_model, tiny_tokenizer};
    use constrained_decoding::{
        generate, greedy, CachedModel, Event, FinishReason, GenerationOptions, Request, Scheduler,
        SchedulerConfig,
    };
    use std::collections::BTreeMap;

    let model = tiny_model();
    let tokenizer = tiny_tokenizer();
    let grammar = tiny_grammar();
    let all = schemas();
    let prompts = [
        "Give me JSON:",
        "The weather today",
        "A list:",
        "Once upon a time",
    ];
    let schema_of = [Some(0), None, Some(3), None];
    let mut scheduler = ok(
        Scheduler::new(&model, SchedulerConfig::default()),
        "Scheduler::new",
    );
    for (id, prompt) in prompts.iter().enumerate() {
        let constraint = schema_of[id]
            .map(|w| constraint(&grammar, &Format::JsonSchema(all[w].1.clone())).into());
        let sampling = match constraint {
            Some(_) => SamplingParams {
                temperature: 1.0,
                seed: id as u64,
                ..SamplingParams::default()
            },
            None => SamplingParams::default(),
        };
        ok(
            scheduler.add(Request {
                id: id as u64,
                prompt: ok(tokenizer.encode(prompt), "encode"),
                max_new_tokens: 300,
                sampling,
                stop_token_ids: vec![2],
                constraint,
                logprobs: None,
            }),
            "Scheduler::add",
        );
    }
    let mut outputs: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut finished: BTreeMap<u64, FinishReason> = BTreeMap::new();
    for _ in 0..1000 {
        if scheduler.is_idle() {
            break;
        }
        for event in ok(scheduler.step(), "Scheduler::step") {
            match event {
                Event::Token { id, token, .. } => outputs.entry(id).or_default().push(token),
                Event::Finished { id, reason } => {
                    finished.insert(id, reason);
                }
            }
        }
    }
    for (id, prompt) in prompts.iter().enumerate() {
        let id = id as u64;
        let tokens = outputs.get(&id).cloned().unwrap_or_default();
        match schema_of[id as usize] {
            Some(w) => {
                assert_eq!(finished.get(&id), Some(&FinishReason::Stop), "request {id}");
                let text = ok(tokenizer.decode(&tokens), "decode");
                assert_valid(&text, &all[w].1, &format!("scheduled request {id}"));
            }
            None => {
                let options = GenerationOptions {
                    max_new_tokens: 300,
                    stop_strings: Vec::new(),
                    ignore_eos: false,
                };
                let alone = ok(
                    generate(
                        &mut CachedModel::new(&model),
                        &tokenizer,
                        &ok(tokenizer.encode(prompt), "encode"),
                        &options,
                        &mut greedy,
                        &mut |_| {},
                    ),
                    "generate with chapter 8's cache",
                )
                .tokens;
                let alone: Vec<u32> = alone.into_iter().filter(|&t| t != 2).collect();
                assert_eq!(tokens, alone, "free request {id}: batched vs alone");
            }
        }
    }
}
