//! Task 2: a grammar's state as the mask of the next token, advanced by each token.

use crate::harness::{
    allowed, constraint, library_matcher, library_words, schemas, tiny_dir, tiny_grammar,
    tiny_tokenizer, TINY_EOS,
};
use constrained_decoding::{mask_words, ConstraintError, Format};
use rstest::rstest;
use test_support::expect_ok as ok;

/// Walks a valid document token by token: at every state, the constraint's words equal the
/// library's `compute_mask_or_eos`, then both advance; at the end only the EOS is left or
/// allowed, and the EOS is accepted.
#[rstest]
#[case::person(0, r#"{"name": "Ada", "age": 36, "admin": true}"#)]
#[case::enum_array(1, r#"["red", "green", "blue", "red"]"#)]
#[case::nested(2, r#"{"point": {"x": 9, "y": -9}, "label": "ab"}"#)]
#[case::tool_call(
    3,
    r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}"#
)]
fn task_2_masks_follow_the_library_state_by_state(#[case] which: usize, #[case] document: &str) {
    let (name, schema) = &schemas()[which];
    let grammar = tiny_grammar();
    let mut constraint = constraint(&grammar, &Format::JsonSchema(schema.clone()));
    let mut matcher = library_matcher(&tiny_dir(), TINY_EOS, 512, schema);
    let tokens = ok(tiny_tokenizer().encode(document), "Tokenizer::encode");
    for (step, &token) in tokens.iter().enumerate() {
        let words = ok(constraint.allowed_words(), "Constraint::allowed_words");
        let expected = library_words(&mut matcher, mask_words(512));
        assert_eq!(
            words.len(),
            expected.len(),
            "{name}, step {step}: word count"
        );
        if let Some(id) = (0..512u32).find(|&id| allowed(&words, id) != allowed(&expected, id)) {
            panic!(
                "{name}, step {step}: token {id} allowed: {}, the library says {}",
                allowed(&words, id),
                allowed(&expected, id)
            );
        }
        ok(constraint.advance(token), "Constraint::advance");
        ok(matcher.consume_token(token), "Matcher::consume_token");
    }
    let words = ok(
        constraint.allowed_words(),
        "Constraint::allowed_words at the end",
    );
    assert!(
        allowed(&words, TINY_EOS),
        "{name}: the document is complete, the EOS should be allowed"
    );
    assert_eq!(
        words,
        library_words(&mut matcher, mask_words(512)),
        "{name}: final mask"
    );
    ok(constraint.advance(TINY_EOS), "Constraint::advance(EOS)");
    assert!(constraint.is_end(TINY_EOS), "is_end(EOS)");
}

#[rstest]
#[case::letter_where_a_brace_goes(r#"x"#)]
#[case::string_for_an_integer(r#"{"name": "Ada", "age": ""#)]
#[case::eos_too_early(r#"{"name": "#)]
fn task_2_a_disallowed_token_is_rejected(#[case] prefix: &str) {
    let (_, schema) = &schemas()[0];
    let grammar = tiny_grammar();
    let mut constraint = constraint(&grammar, &Format::JsonSchema(schema.clone()));
    let tokenizer = tiny_tokenizer();
    let mut tokens = ok(tokenizer.encode(prefix), "Tokenizer::encode");
    let last = if prefix.ends_with(": ") {
        TINY_EOS
    } else {
        tokens.pop().expect("a token")
    };
    for &token in &tokens {
        ok(
            constraint.advance(token),
            "Constraint::advance on the valid prefix",
        );
    }
    let words = ok(constraint.allowed_words(), "Constraint::allowed_words");
    assert!(
        !allowed(&words, last),
        "token {last} should not be allowed after {tokens:?}"
    );
    match constraint.advance(last) {
        Err(ConstraintError::Rejected { token, .. }) => assert_eq!(token, last),
        other => panic!("advance({last}) after {prefix:?}: expected Rejected, got {other:?}"),
    }
}

/// Formats that cannot be compiled are an error naming the problem (the server's 400), not a
/// panic or a constraint that allows nothing. The given grammar's check, not your code: it runs
/// with the solutions (check-solutions requires every test to fail against the stubs).
#[cfg(feature = "solution")]
#[rstest]
#[case::unknown_type(Format::JsonSchema(serde_json::json!({"type": "nonsense"})))]
#[case::empty_range(Format::JsonSchema(serde_json::json!({"type": "integer", "minimum": 5, "maximum": 3})))]
#[case::contradiction(Format::JsonSchema(serde_json::json!({"allOf": [{"type": "string"}, {"type": "integer"}]})))]
#[case::not_a_schema(Format::JsonSchema(serde_json::json!([1, 2])))]
#[case::bad_regex(Format::Regex("(".into()))]
fn task_2_invalid_or_unsatisfiable_formats_are_errors(#[case] format: Format) {
    match tiny_grammar().compile(&format) {
        Err(ConstraintError::InvalidFormat { message, .. }) => {
            assert!(!message.is_empty(), "{format:?}: empty error message")
        }
        Err(other) => panic!("{format:?}: expected InvalidFormat, got {other}"),
        Ok(_) => panic!("{format:?} compiled, but no value satisfies it"),
    }
}
