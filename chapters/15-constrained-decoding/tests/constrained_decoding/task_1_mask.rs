//! Task 1: a bitmask unpacked on the device, and the logits masked by it.

use crate::harness::{allowed, library_matcher, library_words, schemas, tiny_dir, tiny_tokenizer};
use constrained_decoding::{mask_logits, mask_words, unpack_bitmask};
use mlx_rs::{Array, Dtype};
use rstest::rstest;
use test_support::{expect_ok as ok, random_array};

/// Seeded pseudo-random words (xorshift), with some all-zero and all-one words mixed in.
fn random_words(count: usize, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match i % 7 {
                3 => 0,
                5 => u32::MAX,
                _ => state as u32,
            }
        })
        .collect()
}

fn check_unpacked(words: &[u32], rows: usize, vocab: usize, what: &str) {
    let width = words.len() / rows;
    let shape: Vec<i32> = if rows == 1 {
        vec![width as i32]
    } else {
        vec![rows as i32, width as i32]
    };
    let unpacked = ok(
        unpack_bitmask(&Array::from_slice(words, &shape), vocab),
        "unpack_bitmask",
    );
    let expected_shape: Vec<i32> = if rows == 1 {
        vec![vocab as i32]
    } else {
        vec![rows as i32, vocab as i32]
    };
    assert_eq!(unpacked.shape(), expected_shape, "{what}: shape");
    assert_eq!(unpacked.dtype(), Dtype::Bool, "{what}: dtype");
    let got = unpacked.as_slice::<bool>();
    for row in 0..rows {
        for token in 0..vocab {
            let expected = allowed(&words[row * width..(row + 1) * width], token as u32);
            assert_eq!(
                got[row * vocab + token],
                expected,
                "{what}: row {row}, token {token} (word {:#010x}, bit {})",
                words[row * width + token / 32],
                token % 32
            );
        }
    }
}

#[rstest]
#[case::one_word(32, 1, 1)]
#[case::partial_last_word(100, 1, 2)]
#[case::smollm2_vocab(49152, 1, 3)]
#[case::batch_of_three(77, 3, 4)]
#[case::batch_smollm2(49152, 2, 5)]
fn task_1_unpack_bitmask_matches_the_bits(
    #[case] vocab: usize,
    #[case] rows: usize,
    #[case] seed: u64,
) {
    let words = random_words(rows * mask_words(vocab), seed);
    check_unpacked(
        &words,
        rows,
        vocab,
        &format!("vocab {vocab}, {rows} row(s)"),
    );
}

#[test]
fn task_1_unpack_bitmask_rejects_too_few_words() {
    let words = Array::from_slice(&[u32::MAX; 2], &[2]);
    assert!(
        unpack_bitmask(&words, 65).is_err(),
        "2 words cover 64 tokens, not 65: unpack_bitmask should fail"
    );
}

#[rstest]
#[case::vector_f32(&[300], Dtype::Float32, 11)]
#[case::vector_bf16(&[300], Dtype::Bfloat16, 12)]
#[case::batch_f32(&[4, 70], Dtype::Float32, 13)]
fn task_1_mask_logits_sets_disallowed_to_minus_infinity(
    #[case] shape: &[i32],
    #[case] dtype: Dtype,
    #[case] seed: u64,
) {
    let logits = random_array(shape, dtype, seed);
    let count: usize = shape.iter().map(|&d| d as usize).product();
    let allowed_host: Vec<bool> = random_words(count, seed)
        .iter()
        .map(|word| word & 4 != 0)
        .collect();
    let allowed = Array::from_slice(&allowed_host, shape);
    let masked = ok(mask_logits(&logits, &allowed), "mask_logits");
    assert_eq!(masked.shape(), shape, "shape");
    assert_eq!(masked.dtype(), dtype, "dtype");
    let masked = ok(masked.as_dtype(Dtype::Float32), "as_dtype");
    let original = ok(logits.as_dtype(Dtype::Float32), "as_dtype");
    for (i, (&got, &was)) in masked
        .as_slice::<f32>()
        .iter()
        .zip(original.as_slice::<f32>())
        .enumerate()
    {
        if allowed_host[i] {
            assert_eq!(got, was, "allowed entry {i} changed");
        } else {
            assert_eq!(
                got,
                f32::NEG_INFINITY,
                "disallowed entry {i} is {got}, not -inf"
            );
        }
    }
}

/// The library's masks, state after state along a valid document, unpacked: the same tokens as
/// the library's own `is_allowed`.
#[rstest]
#[case::person(0)]
#[case::enum_array(1)]
#[case::nested(2)]
fn task_1_unpacked_library_masks_match_the_library(#[case] which: usize) {
    let (name, schema) = &schemas()[which];
    let documents = [
        r#"{"name": "Ada", "age": 36, "admin": true}"#,
        r#"["red", "blue"]"#,
        r#"{"point": {"x": -3, "y": 4}, "label": null}"#,
    ];
    let tokens = ok(
        tiny_tokenizer().encode(documents[which]),
        "Tokenizer::encode",
    );
    let mut matcher = library_matcher(&tiny_dir(), 2, 512, schema);
    for (step, &token) in tokens.iter().enumerate() {
        let vob = ok(matcher.compute_mask(), "Matcher::compute_mask");
        let words = library_words(&mut matcher, mask_words(512));
        let unpacked = ok(
            unpack_bitmask(&Array::from_slice(&words, &[words.len() as i32]), 512),
            "unpack_bitmask",
        );
        for (id, &bit) in unpacked.as_slice::<bool>().iter().enumerate() {
            assert_eq!(
                bit,
                vob.is_allowed(id as u32),
                "{name}, step {step}: token {id} unpacked as {bit}, the library says {}",
                vob.is_allowed(id as u32)
            );
        }
        ok(matcher.consume_token(token), "Matcher::consume_token");
    }
}
