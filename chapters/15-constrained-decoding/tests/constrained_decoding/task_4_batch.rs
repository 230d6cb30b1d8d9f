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
