//! What the tests of every task share: the tokenizers and models, schemas, the library's own
//! matcher, and checks of generated JSON.

use constrained_decoding::{
    llguidance::{
        api::TopLevelGrammar,
        toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie},
        Matcher, ParserFactory,
    },
    Constraint, Format, Grammar, Model, Tokenizer,
};
use serde_json::{json, Value};
use std::{path::Path, sync::Arc};
use test_support::{expect_ok as ok, fixture_path};

/// The tiny fixture model (512-token byte-level BPE, seeded random weights: it puts its
/// probability anywhere, which is what a constraint must survive) and its end-of-sequence id.
pub const TINY: &str = "llama-tiny";
pub const TINY_EOS: u32 = 2;

pub fn tiny_dir() -> std::path::PathBuf {
    fixture_path(TINY)
}

pub fn tiny_model() -> Model {
    let dir = tiny_dir();
    Model::load(&dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

pub fn tiny_tokenizer() -> Tokenizer {
    let dir = tiny_dir();
    Tokenizer::load(&dir)
        .unwrap_or_else(|error| panic!("Tokenizer::load({}): {error}", dir.display()))
}

/// The given grammar over the tiny model's vocabulary.
pub fn tiny_grammar() -> Grammar {
    grammar_at(&tiny_dir(), &[TINY_EOS], 512)
}

pub fn grammar_at(dir: &Path, eos: &[u32], vocab_size: usize) -> Grammar {
    ok(
        Grammar::from_tokenizer_json(&dir.join("tokenizer.json"), eos, vocab_size),
        "Grammar::from_tokenizer_json",
    )
}

/// A constraint at the start of `format`.
pub fn constraint(grammar: &Grammar, format: &Format) -> Constraint {
    Constraint::new(ok(grammar.compile(format), "Grammar::compile"))
}

/// Schemas whose values are short (bounded strings, numbers, arrays), so that a model that
/// samples anything still finishes them in a few hundred tokens.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "person",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 6},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "admin": {"type": "boolean"}
                },
                "required": ["name", "age", "admin"],
                "additionalProperties": false
            }),
        ),
        (
            "enum_array",
            json!({
                "type": "array",
                "items": {"enum": ["red", "green", "blue"]},
                "minItems": 1,
                "maxItems": 4
            }),
        ),
        (
            "nested",
            json!({
                "type": "object",
                "properties": {
                    "point": {
                        "type": "object",
                        "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9},
                                       "y": {"type": "integer", "minimum": -9, "maximum": 9}},
                        "required": ["x", "y"],
                        "additionalProperties": false
                    },
                    "label": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 3}]}
                },
                "required": ["point", "label"],
                "additionalProperties": false
            }),
        ),
        (
            "weather_tool_call",
            json!({
                "type": "object",
                "properties": {
                    "name": {"const": "get_weather"},
                    "arguments": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "maxLength": 8},
                                       "unit": {"enum": ["celsius", "fahrenheit"]}},
                        "required": ["city", "unit"],
                        "additionalProperties": false
                    }
                },
                "required": ["name", "arguments"],
                "additionalProperties": false
            }),
        ),
    ]
}

/// A matcher built straight from llguidance over the same vocabulary, without the given
/// grammar's code: the reference for the masks.
pub fn library_matcher(dir: &Path, eos: u32, vocab_size: usize, schema: &Value) -> Matcher {
    let text = ok(
        std::fs::read_to_string(dir.join("tokenizer.json")),
        "reading tokenizer.json",
    );
    let json: Value = ok(serde_json::from_str(&text), "parsing tokenizer.json");
    let mut tokens = ok(
        constrained_decoding::llguidance::token_bytes_from_tokenizer_json(&json),
        "token bytes",
    );
    tokens.resize(vocab_size, Vec::new());
    let trie = TokTrie::from(&TokRxInfo::new(vocab_size as u32, eos), &tokens);
    let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
    let mut factory = ok(ParserFactory::new_simple(&env), "ParserFactory");
    factory.quiet();
    let mut schema = schema.clone();
    schema["x-guidance"] =
        json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
    let parser = ok(
        factory.create_parser(TopLevelGrammar::from_json_schema(schema)),
        "create_parser",
    );
    Matcher::new(Ok(parser))
}

/// The library's mask in `words` words: what [`Constraint::allowed_words`] must return.
pub fn library_words(matcher: &mut Matcher, words: usize) -> Vec<u32> {
    let vob = ok(
        matcher.compute_mask_or_eos(),
        "Matcher::compute_mask_or_eos",
    );
    let mut mask = vob.as_slice().to_vec();
    mask.resize(words, 0);
    mask
}

/// Whether bit `token` is set in `words`.
pub fn allowed(words: &[u32], token: u32) -> bool {
    words[token as usize / 32] >> (token % 32) & 1 == 1
}

/// Parses `text` as JSON and validates it against `schema` with the `jsonschema` crate, with a
/// failure message that shows both.
pub fn assert_valid(text: &str, schema: &Value, what: &str) {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("{what}: output is not JSON ({error}): {text:?}"));
    let validator = jsonschema::validator_for(schema)
        .unwrap_or_else(|error| panic!("{what}: jsonschema rejects the schema itself: {error}"));
    if let Err(error) = validator.validate(&value) {
        panic!("{what}: {text:?} does not validate against {schema}: {error}");
    }
}
