//! Reading a special token out of tokenizer_config.json.

use serde_json::Value;

/// The text of the special token `key` (`bos_token`, `eos_token`) in tokenizer_config.json, which
/// writes it either as a string or as `{"content": "...", ...}`. Given: use it in `Tokenizer::load`.
pub(crate) fn special_token(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Object(token) => token.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}
