//! What constraints cost per step on SmolLM2's 49,152-token vocabulary: the library's mask per
//! token along a JSON document, the batched unpack-and-mask against plain sampling, and the
//! throughput of chapter 10's scheduler running SmolLM2 when constrained and free requests share
//! its batch (none, half or all of 8 constrained, measured in alternation).
//!
//! `cargo run --release -p constrained-decoding --features solution-all --example mask_cost`

use constrained_decoding::{
    mask_words, sample_batch, BatchRow, Constraint, Event, Format, Grammar, Model, Request,
    Sampler, SamplingParams, Scheduler, SchedulerConfig, Tokenizer,
};
use mlx_rs::{ops::indexing::IndexOp, random, transforms::eval};
use std::{path::Path, time::Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/smollm2-135m-instruct");
    let tokenizer = Tokenizer::load(&dir)?;
    let start = Instant::now();
    let grammar = Grammar::from_tokenizer_json(&dir.join("tokenizer.json"), &[2], 49152)?;
    println!("vocabulary as a token trie: {:.1} ms", ms(start));
    let person = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["name", "age", "tags"]
    });
    let person_document = r#"{"name": "Ada Lovelace", "age": 36, "tags": ["mathematics", "poetry", "the analytical engine"]}"#;
    // The batch below runs this schema: inside its strings nearly every token is allowed.
    let strings =
        serde_json::json!({"type": "array", "items": {"type": "string"}, "minItems": 100});
    let strings_document = r#"["apple", "banana", "a long string with many words in it, and some punctuation: yes!", "elderberry fig grape", "honeydew melon and kiwi"#;
    for (what, schema, document) in [
        ("a person object", &person, person_document),
        ("a list of strings", &strings, strings_document),
    ] {
        let tokens = tokenizer.encode(document)?;
        for round in 0..2 {
            let start = Instant::now();
            let mut constraint =
                Constraint::new(grammar.compile(&Format::JsonSchema(schema.clone()))?);
            let compile = ms(start);
            let start = Instant::now();
            for &token in &tokens {
                constraint.allowed_words()?;
                constraint.advance(token)?;
            }
            println!(
                "{what}, round {round}: schema compiled in {compile:.2} ms; mask + advance {:.1} us per token over {} tokens",
                ms(start) * 1000.0 / tokens.len() as f64,
                tokens.len()
            );
        }
    }
    let width = mask_words(49152);
    for batch in [1usize, 8, 32] {
        let key = random::key(batch as u64)?;
        let logits = random::normal::<f32>(&[batch as i32, 49152], None, None, &key)?;
        eval([&logits])?;
        let params = SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        };
        let mut plain: Vec<Sampler> = (0..batch)
            .map(|_| Sampler::new(params))
            .collect::<Result<_, _>>()?;
        let start = Instant::now();
        for _ in 0..20 {
            for (row, sampler) in plain.iter_mut().enumerate() {
                sampler.sample(&logits.index(row as i32), &[1])?;
            }
        }
        println!(
            "batch {batch:>2}, no mask at all: {:.2} ms per sampling step",
            ms(start) / 20.0
        );
        let mut mixes = vec![0, batch / 2, batch];
        mixes.dedup();
        for constrained in mixes {
            let params = SamplingParams {
                temperature: 1.0,
                ..SamplingParams::default()
            };
            let mut samplers: Vec<Sampler> = (0..batch)
                .map(|_| Sampler::new(params))
                .collect::<Result<_, _>>()?;
            let steps = 20;
            // Fresh constraints for each step, compiled before the clock starts: every row is
            // at the first position of an object, computes a real mask, and none finishes.
            let mut fresh: Vec<Vec<Option<Constraint>>> = (0..steps)
                .map(|_| {
                    (0..batch)
                        .map(|row| {
                            (row < constrained)
                                .then(|| grammar.compile(&Format::JsonObject).map(Constraint::new))
                                .transpose()
                        })
                        .collect::<Result<_, _>>()
                })
                .collect::<Result<_, _>>()?;
            let history = vec![1u32];
            let start = Instant::now();
            for constraints in fresh.iter_mut() {
                let mut rows: Vec<BatchRow<'_>> = samplers
                    .iter_mut()
                    .zip(constraints.iter_mut())
                    .map(|(sampler, constraint)| BatchRow {
                        sampler,
                        tokens: &history,
                        constraint: constraint.as_mut(),
                    })
                    .collect();
                sample_batch(&logits, &mut rows)?;
            }
            println!(
                "batch {batch:>2}, {constrained:>2} constrained: {:.2} ms per sampling step ({width} mask words a row)",
                ms(start) / steps as f64
            );
        }
    }
    batch_throughput(&dir, &tokenizer, &grammar, &strings)?;
    Ok(())
}

/// Decode tokens/s of 8 requests sampled at temperature 1 through chapter 10's scheduler, with
/// 0, 4 or 8 of them under `schema`, which cannot end within their 64 tokens (a list of at
/// least 100 strings), so that every row runs every step. Rounds alternate between the mixes
/// and the median of 3 is reported.
fn batch_throughput(
    dir: &Path,
    tokenizer: &Tokenizer,
    grammar: &Grammar,
    schema: &serde_json::Value,
) -> Result<(), Box<dyn std::error::Error>> {
    const REQUESTS: usize = 8;
    const NEW_TOKENS: usize = 64;
    let model = Model::load(dir)?;
    let prompt = tokenizer
        .encode("<|im_start|>user\nList some fruits as JSON.<|im_end|>\n<|im_start|>assistant\n")?;
    let mixes = [0, REQUESTS / 2, REQUESTS];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); mixes.len()];
    for _round in 0..3 {
        for (mix, &constrained) in mixes.iter().enumerate() {
            let config = SchedulerConfig {
                max_running: REQUESTS,
                ..SchedulerConfig::default()
            };
            let mut scheduler = Scheduler::new(&model, config)?;
            for id in 0..REQUESTS {
                let constraint = (id < constrained)
                    .then(|| grammar.compile(&Format::JsonSchema(schema.clone())))
                    .transpose()?
                    .map(|state| Constraint::new(state).into());
                scheduler.add(Request {
                    id: id as u64,
                    prompt: prompt.clone(),
                    max_new_tokens: NEW_TOKENS,
                    sampling: SamplingParams {
                        temperature: 1.0,
                        seed: id as u64,
                        ..SamplingParams::default()
                    },
                    stop_token_ids: Vec::new(),
                    constraint,
                    logprobs: None,
                })?;
            }
            // The first step prefills every prompt; the clock runs over the decode steps.
            let mut tokens = 0;
            let mut start = None;
            while !scheduler.is_idle() {
                let events = scheduler.step()?;
                if start.is_none() {
                    start = Some(Instant::now());
                    continue;
                }
                tokens += events
                    .iter()
                    .filter(|event| matches!(event, Event::Token { .. }))
                    .count();
            }
            let seconds = start.map_or(0.0, |start| start.elapsed().as_secs_f64());
            rates[mix].push(tokens as f64 / seconds);
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let free = median(&mut rates[0]);
    for (mix, &constrained) in mixes.iter().enumerate() {
        let rate = median(&mut rates[mix]);
        println!(
            "scheduler, SmolLM2 f32, {REQUESTS} requests, {constrained} constrained: {rate:.1} decode tokens/s ({:.2}x the free batch)",
            rate / free
        );
    }
    Ok(())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
