//! The HF tokenizer files, built from the vocabulary a GGUF carries.
//!
//! SmolLM2's GGUF holds a GPT-2 style byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the tokens,
//! the merges, and a type per token (3 = control, i.e. special). Rebuilt with the `tokenizers` crate as
//! BPE + Digits(individual) + ByteLevel pre-tokenizer + ByteLevel decoder, it gives llama.cpp's ids
//! (checked on the corpus in models/fixtures/tokenizer/).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokenizers::{
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{Vocab, BPE},
    pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence},
    AddedToken, Tokenizer,
};

use super::gguf::Gguf;

/// llama.cpp's token type for control tokens such as `<|im_start|>`.
const TOKEN_TYPE_CONTROL: i32 = 3;

/// Builds the tokenizer described by the GGUF's `tokenizer.ggml.*` metadata.
pub fn build(gguf: &Gguf) -> Result<Tokenizer> {
    let model = gguf.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        bail!(
            "{}: tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") is supported",
            gguf.path().display()
        );
    }
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
    let types = gguf.get_i32_array("tokenizer.ggml.token_type")?;
    if types.len() != tokens.len() {
        bail!(
            "{}: {} token types for {} tokens",
            gguf.path().display(),
            types.len(),
            tokens.len()
        );
    }
    let merges = gguf
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            let (a, b) = m
                .split_once(' ')
                .with_context(|| format!("{}: merge {m:?} has no space", gguf.path().display()))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let vocab: Vocab = tokens
        .iter()
        .zip(0u32..)
        .map(|(t, id)| (t.to_string(), id))
        .collect();

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| {
            anyhow::anyhow!("{}: cannot build the BPE model: {e}", gguf.path().display())
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    let digits = Digits::new(true);
    let byte_level = ByteLevel::new(false, true, true);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![digits.into(), byte_level.into()])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &ty)| ty == TOKEN_TYPE_CONTROL)
        .map(|(t, _)| AddedToken::from(t.to_string(), true))
        .collect();
    tokenizer.add_special_tokens(&special);
    Ok(tokenizer)
}

/// Writes `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` into `dir`.
pub fn write_files(gguf: &Gguf, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    tokenizer
        .save(&path, true)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;

    let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
    let token = |key: &str| -> Result<(u32, &str)> {
        let id = gguf.get_u32(key)?;
        let text = tokens.get(id as usize).with_context(|| {
            format!(
                "{}: {key} = {id} is past the vocabulary",
                gguf.path().display()
            )
        })?;
        Ok((id, text))
    };
    let (bos_id, bos) = token("tokenizer.ggml.bos_token_id")?;
    let (eos_id, eos) = token("tokenizer.ggml.eos_token_id")?;
    let (pad_id, pad) = token("tokenizer.ggml.padding_token_id").unwrap_or((eos_id, eos));
    let add_bos = gguf
        .get_bool("tokenizer.ggml.add_bos_token")
        .unwrap_or(false);
    let tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad,
        "add_bos_token": add_bos,
        "add_eos_token": false,
        // HF's default clean-up rewrites " ." to "." when decoding; the GGUF tokenizer does not.
        "clean_up_tokenization_spaces": false,
        "model_max_length": gguf.get_u32("llama.context_length")?,
        "chat_template": gguf.get_str("tokenizer.chat_template")?,
    });
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config)?;
    let generation_config =
        json!({ "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id });
    write_json(&dir.join("generation_config.json"), &generation_config)
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
