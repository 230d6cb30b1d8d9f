//! Given code, not a task: Llama 3's RoPE scaling (`src/rope_scaling.rs`) against NumPy
//! (models/fixtures/rope-scaling/generate.py), and its way into the fused model.

use crate::harness::TINY_LOGITS;
use kv_cache::{Kernels, Llama3Scaling, LoadError, Model};
use mlx_rs::{fast, ops::indexing::IndexOp, Array};
use rstest::rstest;
use std::path::{Path, PathBuf};
use test_support::{assert_allclose, expect_ok as ok, fixture_path, load_fixture, Tolerance};

/// f32 periods from powf against NumPy's float64: a few units in the last place.
const PERIODS: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 0.0,
};

const SMALL: Llama3Scaling = Llama3Scaling {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 64.0,
};

#[rstest]
#[case::llama3_2("llama3_2", 500_000.0, 64, Llama3Scaling { factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192.0 })]
#[case::small("small", 10_000.0, 16, SMALL)]
fn llama3_rope_scaling_matches_numpy(
    #[case] name: &str,
    #[case] theta: f32,
    #[case] head_dim: i32,
    #[case] scaling: Llama3Scaling,
) {
    let reference = load_fixture("rope-scaling/reference.safetensors");
    let periods = scaling.periods(head_dim, theta);
    let periods = Array::from_slice(&periods, &[head_dim / 2]);
    assert_allclose(
        &periods,
        &reference[&format!("{name}.periods")],
        PERIODS,
        &format!("{name}: periods"),
    );
    // MLX's fused RoPE takes them as `freqs`: position p turns pair i by p / period_i.
    let x = &reference[&format!("{name}.x")]; // [1, H, L, D]
    let rotated = ok(
        fast::rope(x, head_dim, false, None, 1.0, 7, &periods),
        "fast::rope with periods",
    );
    assert_allclose(
        &rotated,
        &reference[&format!("{name}.rotated_at_7")],
        Tolerance::F32,
        &format!("{name}: RoPE at offset 7 with the scaled periods"),
    );
}

/// llama-tiny with `rope_scaling` added to its config.json, in a folder of its own.
fn scaled_llama_tiny(rope_scaling: serde_json::Value, folder: &str) -> PathBuf {
    let source = fixture_path("llama-tiny");
    let dir = std::env::temp_dir().join(format!(
        "kv-cache-rope-scaling-{folder}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
            .unwrap();
    config["rope_scaling"] = rope_scaling;
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        source.join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    dir
}

fn last_logits(dir: &Path) -> Array {
    let model = ok(Model::load(dir), "Model::load").with_kernels(Kernels::Fused);
    let reference = load_fixture("llama-tiny/reference.safetensors");
    let tokens = reference["seq2.tokens"].expand_dims(0).unwrap(); // [1, 16]
    let mut cache = model.new_cache();
    ok(model.forward(&tokens, &mut cache), "Model::forward").index((0, -1))
}

#[test]
fn a_config_with_llama3_scaling_gives_the_fused_model_its_periods() {
    let plain = last_logits(&fixture_path("llama-tiny"));
    let json = serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
    let dir = scaled_llama_tiny(json, "llama3");
    assert_eq!(
        ok(
            Llama3Scaling::from_config(&dir.join("config.json")),
            "from_config"
        ),
        Some(SMALL)
    );
    let scaled = last_logits(&dir);
    let change = ok(
        ok(scaled.subtract(&plain), "subtract")
            .abs()
            .and_then(|d| d.max(None)),
        "max",
    );
    ok(change.eval(), "eval");
    let largest_change = change.as_slice::<f32>()[0];
    assert!(
        largest_change > 1e-3,
        "the scaled periods must change the logits (largest change {largest_change})"
    );
    // A factor of 1 leaves every period as it was: the plain logits, up to the periods' rounding
    // (computed here with powf, by MLX from the base), as tiny-model logits elsewhere.
    let identity = serde_json::json!({"rope_type": "llama3", "factor": 1.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
    assert_allclose(
        &last_logits(&scaled_llama_tiny(identity, "identity")),
        &plain,
        TINY_LOGITS,
        "llama3 scaling with factor 1",
    );
}

#[test]
fn an_unsupported_rope_scaling_is_a_config_error() {
    let dir = scaled_llama_tiny(
        serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
        "yarn",
    );
    match Model::load(&dir) {
        Err(LoadError::BadConfig { message, .. }) => assert!(message.contains("yarn"), "{message}"),
        other => panic!(
            "expected a BadConfig error naming yarn, got {:?}",
            other.map(|_| "a model")
        ),
    }
}
