//! Task 3: generation under a constraint; every output parses and validates.

use crate::harness::{
    assert_valid, constraint, grammar_at, schemas, tiny_grammar, tiny_model, tiny_tokenizer,
};
use constrained_decoding::{
    generate_constrained, CachedModel, Format, Model, Sampler, SamplingParams, Tokenizer,
};
use rstest::rstest;
use serde_json::Value;
use test_support::{expect_ok as ok, fetched_model_dir};

fn sampling(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        seed,
        ..SamplingParams::default()
    }
}

/// The tiny model's random weights put probability anywhere: under the constraint, whatever
/// it samples (several seeds, every schema) finishes as JSON valid under the schema.
#[rstest]
#[case::person(0)]
#[case::enum_array(1)]
#[case::nested(2)]
#[case::tool_call(3)]
fn task_3_random_sampling_under_a_schema_always_validates(#[case] which: usize) {
    let (name, schema) = &schemas()[which];
    let model = tiny_model();
    let tokenizer = tiny_tokenizer();
    let grammar = tiny_grammar();
    let prompt = ok(tokenizer.encode("Answer in JSON:"), "Tokenizer::encode");
    for seed in 0..3 {
        let mut constraint = constraint(&grammar, &Format::JsonSchema(schema.clone()));
        let mut sampler = ok(Sampler::new(sampling(seed)), "Sampler::new");
        let mut cached = CachedModel::new(&model);
        let tokens = ok(
            generate_constrained(&mut cached, &prompt, &mut constraint, &mut sampler, 400),
            "generate_constrained",
        );
        assert!(
            constraint.state.is_stopped(),
            "{name}, seed {seed}: the grammar did not finish in 400 tokens ({} generated)",
            tokens.len()
        );
        let text = ok(tokenizer.decode(&tokens), "Tokenizer::decode");
        assert_valid(&text, schema, &format!("{name}, seed {seed}"));
    }
}

#[test]
fn task_3_json_object_mode_gives_an_object() {
    let model = tiny_model();
    let tokenizer = tiny_tokenizer();
    let grammar = tiny_grammar();
    let prompt = ok(tokenizer.encode("{"), "Tokenizer::encode");
    for seed in 10..13 {
        let mut constraint = constraint(&grammar, &Format::JsonObject);
        let mut sampler = ok(Sampler::new(sampling(seed)), "Sampler::new");
        let mut cached = CachedModel::new(&model);
        let tokens = ok(
            generate_constrained(&mut cached, &prompt, &mut constraint, &mut sampler, 300),
            "generate_constrained",
        );
        let text = ok(tokenizer.decode(&tokens), "Tokenizer::decode");
        // Free-form objects may not finish in 300 random tokens; whatever came out is a prefix
        // of an object, and a finished one parses.
        assert!(
            text.starts_with('{'),
            "seed {seed}: {text:?} does not start an object"
        );
        if constraint.state.is_stopped() {
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("seed {seed}: {text:?} is not JSON: {e}"));
            assert!(value.is_object(), "seed {seed}: {text:?} is not an object");
        }
    }
}

/// The built-in SmolLM2 answers a real question under a schema: greedy and sampled answers
/// validate, and the greedy one is the same every time.
#[test]
fn task_3_smollm2_answers_under_a_schema() {
    let Some(dir) = fetched_model_dir("smollm2-135m-instruct") else {
        eprintln!("models/smollm2-135m-instruct is missing: run `cargo xtask run` once");
        return;
    };
    let model = ok(Model::load(&dir), "Model::load");
    let tokenizer = ok(Tokenizer::load(&dir), "Tokenizer::load");
    let grammar = grammar_at(&dir, &[2], 49152);
    let (_, schema) = &schemas()[0];
    // SmolLM2's ChatML, written out: the chat template is chapter 6's business.
    let prompt = "<|im_start|>user\nDescribe a person named Ada as JSON with name, age and \
                  admin.<|im_end|>\n<|im_start|>assistant\n";
    let prompt = ok(tokenizer.encode(prompt), "Tokenizer::encode");
    for (temperature, seed) in [(0.0, 0), (0.7, 1)] {
        let mut constraint = constraint(&grammar, &Format::JsonSchema(schema.clone()));
        let params = SamplingParams {
            temperature,
            seed,
            ..SamplingParams::default()
        };
        let mut sampler = ok(Sampler::new(params), "Sampler::new");
        let mut cached = CachedModel::new(&model);
        let tokens = ok(
            generate_constrained(&mut cached, &prompt, &mut constraint, &mut sampler, 60),
            "generate_constrained",
        );
        let text = ok(tokenizer.decode(&tokens), "Tokenizer::decode");
        assert_valid(
            &text,
            schema,
            &format!("SmolLM2, temperature {temperature}"),
        );
    }
}
