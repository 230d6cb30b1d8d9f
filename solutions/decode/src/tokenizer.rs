//! Text <-> token ids with the model's own tokenizer, and its chat template.

use crate::{chat_environment, special_token::special_token, DecodeError, Message};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A model's tokenizer (`tokenizer.json`) with its chat template (`tokenizer_config.json`).
///
/// Book: week 1, chapter 6 (decoding), tasks 1 and 2.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    config_path: PathBuf,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`.
    ///
    /// - A missing or unreadable file is `DecodeError::Unreadable`, a corrupt one
    ///   `DecodeError::BadTokenizer`, each naming the file.
    ///
    /// Book: week 1, chapter 6 (decoding), task 1.
    pub fn load(dir: &Path) -> Result<Self, DecodeError> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|error| DecodeError::Unreadable {
            path: path.clone(),
            message: error.to_string(),
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|error| {
            DecodeError::BadTokenizer {
                path: path.clone(),
                message: error.to_string(),
            }
        })?;
        // The chat template is optional: a base model has none.
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|error| DecodeError::BadTokenizer {
                path: config_path.clone(),
                message: format!("not valid JSON: {error}"),
            })?,
            Err(_) => Value::Null,
        };
        Ok(Self {
            inner,
            chat_template: config
                .get("chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            bos_token: special_token(&config, "bos_token"),
            eos_token: special_token(&config, "eos_token"),
            config_path,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) become their ids;
    /// nothing is added (no BOS).
    ///
    /// Book: week 1, chapter 6 (decoding), task 1.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DecodeError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|error| DecodeError::Tokenizer(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included. An incomplete UTF-8 sequence at the end
    /// (a character split across tokens) decodes to U+FFFD.
    ///
    /// Book: week 1, chapter 6 (decoding), task 1.
    pub fn decode(&self, ids: &[u32]) -> Result<String, DecodeError> {
        self.inner
            .decode(ids, false)
            .map_err(|error| DecodeError::Tokenizer(error.to_string()))
    }

    /// Renders the conversation with the model's `chat_template` (a Jinja template from
    /// tokenizer_config.json), ending with the assistant's header when `add_generation_prompt`.
    ///
    /// - The template sees `messages`, `add_generation_prompt`, `bos_token` and `eos_token`.
    /// - Render it in the given [`chat_environment`]: Hugging Face's whitespace settings
    ///   (`trim_blocks`, `lstrip_blocks`), Python's string methods and transformers' functions,
    ///   which templates such as Qwen3's and Llama 3's use.
    /// - A model without a template is `DecodeError::NoChatTemplate`.
    ///
    /// Book: week 1, chapter 6 (decoding), task 2.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, DecodeError> {
        let template =
            self.chat_template
                .as_deref()
                .ok_or_else(|| DecodeError::NoChatTemplate {
                    path: self.config_path.clone(),
                })?;
        let mut environment = chat_environment();
        let template_error = |error: minijinja::Error| DecodeError::Template(error.to_string());
        environment
            .add_template("chat", template)
            .map_err(template_error)?;
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|message| {
                minijinja::context! { role => message.role, content => message.content }
            })
            .collect();
        environment
            .get_template("chat")
            .and_then(|template| {
                template.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                })
            })
            .map_err(template_error)
    }
}
