//! Our SmolLM2 tokenizer.json against llama.cpp's token ids on the committed corpus
//! (models/fixtures/tokenizer/: corpus.jsonl, and reference_ids.jsonl from generate_reference.py).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::Tokenizer;

#[derive(Deserialize)]
struct Reference {
    text: String,
    ids: Vec<u32>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Vec<T> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rows = text.lines().enumerate().map(|(i, line)| {
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), i + 1))
    });
    rows.collect()
}

#[test]
fn tokenizer_matches_llama_cpp_on_the_corpus() {
    let tokenizer_path = repo().join("models/smollm2-135m-instruct/tokenizer.json");
    if !tokenizer_path.is_file() {
        eprintln!(
            "skipped: {} is absent; run `cargo xtask models fetch` first",
            tokenizer_path.display()
        );
        return;
    }
    let tokenizer = Tokenizer::from_file(&tokenizer_path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", tokenizer_path.display()));
    let fixtures = repo().join("models/fixtures/tokenizer");
    let references: Vec<Reference> = read_jsonl(&fixtures.join("reference_ids.jsonl"));

    #[derive(Deserialize)]
    struct Text {
        text: String,
    }
    let corpus: Vec<String> = read_jsonl::<Text>(&fixtures.join("corpus.jsonl"))
        .into_iter()
        .map(|t| t.text)
        .collect();
    let referenced: Vec<&String> = references.iter().map(|r| &r.text).collect();
    assert!(
        corpus.iter().eq(referenced.iter().copied()),
        "reference_ids.jsonl is stale: regenerate it from corpus.jsonl with generate_reference.py"
    );
    assert!(
        references.len() >= 500,
        "the corpus has only {} strings",
        references.len()
    );

    let mut failures = Vec::new();
    for reference in &references {
        let encoding = match tokenizer.encode(reference.text.as_str(), false) {
            Ok(encoding) => encoding,
            Err(e) => {
                failures.push(format!("{:?}: encode failed: {e}", reference.text));
                continue;
            }
        };
        let ours = encoding.get_ids();
        if ours != reference.ids.as_slice() {
            let first = ours
                .iter()
                .zip(&reference.ids)
                .position(|(a, b)| a != b)
                .unwrap_or(ours.len().min(reference.ids.len()));
            failures.push(format!(
                "{:?}: ids differ at position {first}\n  ours:      {ours:?}\n  llama.cpp: {:?}",
                reference.text, reference.ids
            ));
        }
        match tokenizer.decode(ours, false) {
            Ok(decoded) if decoded == reference.text => {}
            Ok(decoded) => {
                failures.push(format!("{:?}: decodes back to {decoded:?}", reference.text))
            }
            Err(e) => failures.push(format!("{:?}: decode failed: {e}", reference.text)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus strings fail:\n{}",
        failures.len(),
        references.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} strings: ids equal to llama.cpp's, and decode(encode(s)) == s",
        references.len()
    );
}
