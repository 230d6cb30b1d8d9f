//! Text <-> token ids with the model's own tokenizer, and its chat template.

use crate::{chat_environment, special_token::special_token, DecodeError, Message};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A model's tokenizer (`tokenizer.json`) with its chat template (`tokenizer_config.json`).
///
/// Book: week 1, chapter 6 (decoding), tasks 1 and 2.
pub struct Tokenizer {
    // Keep the `tokenizers::Tokenizer`, the path of tokenizer_config.json (for errors), and the
    // config's `chat_template`, `bos_token` and `eos_token` (see `special_token`).
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`.
    ///
    /// - A missing or unreadable file is `DecodeError::Unreadable`, a corrupt one
    ///   `DecodeError::BadTokenizer`, each naming the file.
    ///
    /// Book: week 1, chapter 6 (decoding), task 1.
    pub fn load(dir: &Path) -> Result<Self, DecodeError> {
        todo!("chapter 6, task 1: read tokenizer.json, and the chat template from tokenizer_config.json")
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) become their ids;
    /// nothing is added (no BOS).
    ///
    /// Book: week 1, chapter 6 (decoding), task 1.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DecodeError> {
        todo!("chapter 6, task 1: encode without adding special tokens, return the ids")
    }

    /// The text of `ids`, special tokens included. An incomplete UTF-8 sequence at the end
    /// (a character split across tokens) decodes to U+FFFD.
    ///
    /// Book: week 1, chapter 6 (decoding), task 1.
    pub fn decode(&self, ids: &[u32]) -> Result<String, DecodeError> {
        todo!("chapter 6, task 1: decode the ids, keeping special tokens")
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
        todo!("chapter 6, task 2: render the chat_template with minijinja")
    }
}
