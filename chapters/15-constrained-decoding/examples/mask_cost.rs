//! What constraints cost per step on SmolLM2's 49,152-token vocabulary: the library's mask per
//! token along a JSON document, and the batched unpack-and-mask against plain sampling.
//!
//! `cargo run --release -p constrained-decoding --features solution-all --example mask_cost`

use constrained_decoding::{
    mask_words, sample_batch, BatchRow, Constraint, Format, Grammar, Sampler, SamplingParams,
    Tokenizer,
};
use mlx_rs::{ops::indexing::IndexOp, random, transforms::eval};
use std::{path::Path, time::Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/smollm2-135m-instruct");
    let tokenizer = Tokenizer::load(&dir)?;
    let start = Instant::now();
    let grammar = Grammar::from_tokenizer_json(&dir.join("tokenizer.json"), &[2], 49152)?;
    println!("vocabulary as a token trie: {:.1} ms", ms(start));
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["name", "age", "tags"]
    });
    let document = r#"{"name": "Ada Lovelace", "age": 36, "tags": ["mathematics", "poetry", "the analytical engine"]}"#;
    let tokens = tokenizer.encode(document)?;
    for round in 0..2 {
        let start = Instant::now();
        let mut constraint = Constraint::new(grammar.compile(&Format::JsonSchema(schema.clone()))?);
        let compile = ms(start);
        let start = Instant::now();
        for &token in &tokens {
            constraint.allowed_words()?;
            constraint.advance(token)?;
        }
        println!(
            "round {round}: schema compiled in {compile:.2} ms; mask + advance {:.1} us per token over {} tokens",
            ms(start) * 1000.0 / tokens.len() as f64,
            tokens.len()
        );
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
    Ok(())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
