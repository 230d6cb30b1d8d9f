//! Corrupt and hostile model files: each is an error naming the file and the problem, never a
//! panic, a crash inside MLX or an allocation of what a header claims. Also replays the fuzzer's
//! seeds and any crash inputs committed under `fuzz/artifacts/` (see `cargo xtask fuzz`).
//!
//! The reference loader's hardening is not a learner's task, so these run beside the solution
//! (with the platform tests of `cargo xtask check-solutions`), not in chapter 5's tests.

use load::{check_safetensors, load_weights, LoadError, ModelConfig};
use std::{
    fs,
    path::{Path, PathBuf},
};

/// A safetensors file: the 8-byte length, the JSON header, the data.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    [
        &(header.len() as u64).to_le_bytes()[..],
        header.as_bytes(),
        data,
    ]
    .concat()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Writes `bytes` as `model.safetensors` in a fresh folder and loads the weights from it.
fn load(bytes: &[u8]) -> (tempfile::TempDir, Result<usize, LoadError>) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    fs::write(dir.path().join("model.safetensors"), bytes).expect("write the file");
    let loaded = load_weights(dir.path()).map(|weights| weights.len());
    (dir, loaded)
}

fn assert_names(what: &str, error: impl std::fmt::Display, file: &Path, words: &[&str]) {
    let message = error.to_string();
    assert!(
        message.contains(&file.display().to_string()),
        "{what}: the error should name {}: {message}",
        file.display()
    );
    for word in words {
        assert!(
            message.contains(word),
            "{what}: the error should say {word:?}: {message}"
        );
    }
}

const ONE_TENSOR: &str = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;

#[test]
fn a_valid_file_loads_and_keeps_its_values() {
    let values = [1.0, -2.5, 3.25, 0.0];
    let (dir, _) = load(&safetensors(ONE_TENSOR, &f32_bytes(&values)));
    let weights = load_weights(dir.path()).expect("a valid file loads");
    let w = &weights["w"];
    assert_eq!(w.shape(), &[2, 2]);
    assert_eq!(w.as_slice::<f32>(), &values);
}

#[test]
fn hostile_safetensors_headers_are_named_errors() {
    let sixteen = f32_bytes(&[0.0; 4]);
    let terabytes = [&(1u64 << 40).to_le_bytes()[..], b"{}"].concat();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("an empty file", vec![], vec!["truncated", "0 bytes"]),
        ("3 bytes", vec![1, 2, 3], vec!["truncated"]),
        (
            "a header length of a terabyte",
            terabytes,
            vec!["claims 1099511627776 bytes"],
        ),
        (
            "a header length past the end",
            safetensors(ONE_TENSOR, &sixteen)[..40].to_vec(),
            vec!["claims"],
        ),
        (
            "a header that is not JSON",
            safetensors("{not json", &[]),
            vec!["not valid safetensors JSON"],
        ),
        (
            "a header that is not UTF-8",
            [&4u64.to_le_bytes()[..], &[0xff, 0xfe, 0xfd, 0xfc]].concat(),
            vec!["not valid safetensors JSON"],
        ),
        (
            "an unknown dtype",
            safetensors(
                r#"{"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,2]}}"#,
                &[0, 0],
            ),
            vec!["not valid safetensors JSON"],
        ),
        (
            "a dtype MLX cannot read",
            safetensors(
                r#"{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            vec!["\"w\"", "F8_E4M3"],
        ),
        (
            "offsets past the end",
            safetensors(
                r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
                &[0; 8],
            ),
            vec!["truncated", "need 16 bytes", "holds 8"],
        ),
        (
            "offsets that do not fit the shape",
            safetensors(
                r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            vec!["invalid shape, data type, or offset"],
        ),
        (
            "a shape whose size overflows",
            safetensors(
                r#"{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#,
                &sixteen,
            ),
            vec!["overflow"],
        ),
        (
            "reversed offsets",
            safetensors(
                r#"{"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#,
                &[0; 4],
            ),
            vec!["invalid offset for tensor `w`"],
        ),
        (
            "bytes after the last tensor",
            safetensors(ONE_TENSOR, &[sixteen.clone(), vec![0; 5]].concat()),
            vec!["end at byte 16", "21 bytes"],
        ),
    ];
    for (what, bytes, words) in cases {
        let (dir, loaded) = load(&bytes);
        let file = dir.path().join("model.safetensors");
        match loaded {
            Err(error @ LoadError::Unreadable { .. }) => assert_names(what, error, &file, &words),
            other => panic!("{what}: expected LoadError::Unreadable, got {other:?}"),
        }
    }
}

#[test]
fn nan_or_infinite_weights_are_refused_naming_the_tensor() {
    for (what, bad) in [("NaN", f32::NAN), ("infinity", f32::NEG_INFINITY)] {
        let header = r#"{"fine":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"broken":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}}"#;
        let data = f32_bytes(&[1.0, 2.0, 0.5, bad, 3.0]);
        let (dir, loaded) = load(&safetensors(header, &data));
        let file = dir.path().join("model.safetensors");
        match loaded {
            Err(error @ LoadError::NotFinite { .. }) => {
                assert_names(what, error, &file, &["broken", "NaN or infinite"])
            }
            other => {
                panic!("a tensor holding {what}: expected LoadError::NotFinite, got {other:?}")
            }
        }
    }
}

fn config(text: &str) -> (tempfile::TempDir, PathBuf, Result<ModelConfig, LoadError>) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("config.json");
    fs::write(&path, text).expect("write config.json");
    let parsed = ModelConfig::from_file(&path);
    (dir, path, parsed)
}

#[test]
fn hostile_configs_are_named_errors() {
    let llama = |extra: &str| {
        format!(
            r#"{{"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4{extra}}}"#
        )
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("an empty file", String::new(), vec!["not valid JSON"]),
        ("nesting 100000 deep", deep, vec!["not valid JSON"]),
        (
            "a list, not an object",
            "[1, 2]".into(),
            vec!["not supported"],
        ),
        (
            "a head count times head_dim past i32",
            llama(r#", "head_dim": 1073741824"#),
            vec!["num_attention_heads", "overflows"],
        ),
        (
            "more heads than hidden units",
            llama(r#", "hidden_size": 2"#),
            vec!["hidden_size", "head_dim"],
        ),
        (
            "a size past i32",
            llama(r#", "vocab_size": 4294967296"#),
            vec!["vocab_size", "positive integer"],
        ),
        (
            "a negative layer count",
            llama(r#", "num_hidden_layers": -3"#),
            vec!["num_hidden_layers"],
        ),
        (
            "an EOS id past u32",
            llama(r#", "eos_token_id": 4294967298"#),
            vec!["eos_token_id"],
        ),
        (
            "rope_theta as text",
            llama(r#", "rope_theta": "big""#),
            vec!["rope_theta"],
        ),
    ];
    for (what, text, words) in cases {
        let (_dir, path, parsed) = config(&text);
        match parsed {
            Err(error) => assert_names(what, error, &path, &words),
            Ok(config) => panic!("{what}: expected an error, got {config:?}"),
        }
    }
    let (_dir, _, parsed) = config(&llama(""));
    let parsed = parsed.expect("the base config is valid");
    assert_eq!((parsed.head_dim, parsed.num_key_value_heads), (8, 4));
}

/// The files under `fuzz/{seeds,artifacts}/TARGET` (the artifacts are crash inputs found by
/// `cargo xtask fuzz`, committed with their fix).
fn fuzz_inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(folder)
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.path()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn fuzz_seeds_parse_and_crash_inputs_are_errors() {
    let seeds = fuzz_inputs("seeds", "safetensors");
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/safetensors holds the fuzzer's seeds"
    );
    for seed in &seeds {
        check_safetensors(seed)
            .unwrap_or_else(|error| panic!("the seed {} is valid: {error}", seed.display()));
    }
    let seeds = fuzz_inputs("seeds", "config");
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/config holds the fuzzer's seeds"
    );
    for seed in &seeds {
        ModelConfig::from_file(seed)
            .unwrap_or_else(|error| panic!("the seed {} is valid: {error}", seed.display()));
    }
    // A crash input must now be refused with an error (or accepted), without a panic.
    for input in fuzz_inputs("artifacts", "safetensors") {
        let _ = check_safetensors(&input);
    }
    for input in fuzz_inputs("artifacts", "config") {
        let _ = ModelConfig::from_file(&input);
    }
}
