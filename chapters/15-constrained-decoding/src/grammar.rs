//! The grammar library's side: a tokenizer's vocabulary as llguidance's token trie, a format (a
//! JSON schema, any JSON object, a regex, a Lark grammar) compiled against it, and the matcher
//! that follows the tokens chosen so far. Given: your code in `src/constraint.rs` turns a
//! [`GrammarState`] into the mask of the next token.

use llguidance::{
    api::TopLevelGrammar,
    toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie},
    Matcher, ParserFactory,
};
use serde_json::Value;
use std::{path::Path, sync::Arc};

// The tests compare your masks with the library's own.
pub use llguidance;

/// What can go wrong compiling a format or following it.
#[derive(Debug, thiserror::Error)]
pub enum ConstraintError {
    #[error("{path}: {message}")]
    Tokenizer { path: String, message: String },
    /// The format cannot be compiled: not a valid schema, a feature the compiler does not
    /// support, or a schema no value satisfies. The server answers 400 with this message.
    #[error("invalid {kind}: {message}")]
    InvalidFormat { kind: &'static str, message: String },
    /// A token the grammar does not allow in its current state.
    #[error("token {token} is not allowed by the grammar here: {message}")]
    Rejected { token: u32, message: String },
    #[error("grammar: {0}")]
    Grammar(String),
    #[error(transparent)]
    Mlx(#[from] mlx_rs::error::Exception),
    #[error(transparent)]
    Decode(#[from] kv_cache::DecodeError),
}

/// What the output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// A value valid under this JSON schema (`{"type": "json_schema", ...}`).
    JsonSchema(Value),
    /// Text matching this regular expression, whole.
    Regex(String),
    /// A Lark grammar, llguidance's dialect (`start: ...`).
    Lark(String),
}

impl Format {
    fn kind(&self) -> &'static str {
        match self {
            Format::JsonObject | Format::JsonSchema(_) => "JSON schema",
            Format::Regex(_) => "regex",
            Format::Lark(_) => "grammar",
        }
    }
}

/// A tokenizer's vocabulary, ready to compile formats against: made once per model, shared by
/// every request (cheap to clone).
#[derive(Clone)]
pub struct Grammar {
    factory: Arc<ParserFactory>,
    vocab_size: usize,
    eos_tokens: Vec<u32>,
}

impl Grammar {
    /// Reads the bytes of every token from `tokenizer.json` (byte-level BPE or byte fallback).
    ///
    /// - `eos_tokens`: the ids that end generation, the first being the one the grammar offers.
    /// - `vocab_size`: the model's logits width, at least the tokenizer's (models pad it).
    pub fn from_tokenizer_json(
        path: &Path,
        eos_tokens: &[u32],
        vocab_size: usize,
    ) -> Result<Self, ConstraintError> {
        let error = |message: String| ConstraintError::Tokenizer {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
        let mut tokens = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| error(format!("{e:#}")))?;
        if tokens.len() > vocab_size {
            return Err(error(format!(
                "the tokenizer has {} tokens, more than the model's {vocab_size} logits",
                tokens.len()
            )));
        }
        // Ids the tokenizer never produces (the model's padding) have no bytes: never allowed.
        tokens.resize(vocab_size, Vec::new());
        let Some(&first_eos) = eos_tokens.first() else {
            return Err(error("no end-of-sequence token given".into()));
        };
        if let Some(&bad) = eos_tokens.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(error(format!(
                "end-of-sequence token {bad} is out of range"
            )));
        }
        let trie = TokTrie::from(&TokRxInfo::new(vocab_size as u32, first_eos), &tokens)
            .with_eos_tokens(eos_tokens);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| error(format!("{e:#}")))?;
        factory.quiet();
        Ok(Grammar {
            factory: Arc::new(factory),
            vocab_size,
            eos_tokens: eos_tokens.to_vec(),
        })
    }

    /// The logits width the masks cover.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Compiles `format` into a matcher at the start of the output. JSON comes out compact
    /// (`{"a": 1, "b": [2, 3]}`), unless the schema's `x-guidance` says otherwise: a model that
    /// may put any whitespace between tokens can also put it forever.
    pub fn compile(&self, format: &Format) -> Result<GrammarState, ConstraintError> {
        let top = match format {
            Format::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            Format::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(ConstraintError::InvalidFormat {
                        kind: format.kind(),
                        message: "a schema is a JSON object or a boolean".into(),
                    });
                }
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            Format::Regex(regex) => TopLevelGrammar::from_regex(regex),
            Format::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        };
        let parser =
            self.factory
                .create_parser(top)
                .map_err(|e| ConstraintError::InvalidFormat {
                    kind: format.kind(),
                    message: format!("{e:#}"),
                })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(message) = matcher.get_error() {
            return Err(ConstraintError::InvalidFormat {
                kind: format.kind(),
                message,
            });
        }
        Ok(GrammarState {
            matcher,
            vocab_size: self.vocab_size,
            eos_tokens: self.eos_tokens.clone(),
        })
    }
}

/// Adds llguidance's compact separators to a schema that does not choose its own.
fn compact(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

/// The number of `u32` words of a bitmask over `vocab_size` tokens.
pub fn mask_words(vocab_size: usize) -> usize {
    vocab_size.div_ceil(32)
}

/// Where a format is after the tokens consumed so far: llguidance's matcher.
pub struct GrammarState {
    matcher: Matcher,
    vocab_size: usize,
    eos_tokens: Vec<u32>,
}

impl GrammarState {
    /// The library's mask of the tokens that may come next, [`mask_words`] words: bit `t % 32` of
    /// word `t / 32` is set when token `t` is allowed. End-of-sequence tokens are set when the
    /// output may end here. Fails once the grammar has stopped or failed.
    pub fn mask(&mut self) -> Result<Vec<u32>, ConstraintError> {
        let vob = self
            .matcher
            .compute_mask()
            .map_err(|e| ConstraintError::Grammar(format!("{e:#}")))?;
        let mut words = vob.as_slice().to_vec();
        words.resize(mask_words(self.vocab_size), 0);
        Ok(words)
    }

    /// Moves past `token`; an end-of-sequence token stops the grammar (when it may end here).
    /// Fails on a token the grammar does not allow, after which the state is unusable.
    pub fn consume(&mut self, token: u32) -> Result<(), ConstraintError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Rejected {
                token,
                message: format!("{e:#}"),
            })
    }

    /// Whether nothing may follow: an end-of-sequence token was consumed, or the grammar's
    /// language has no longer strings than the output so far.
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Whether the output may end here.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// The ids that end generation.
    pub fn eos_tokens(&self) -> &[u32] {
        &self.eos_tokens
    }

    /// The logits width the masks cover.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
