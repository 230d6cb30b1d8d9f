//! The HF tokenizer files, built from the vocabulary a GGUF carries.
//!
//! SmolLM2's, Qwen's and Llama 3's GGUFs hold a GPT-2 style byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`): the tokens, the merges, and a type per token (3 = control,
//! i.e. special; 4 = user-defined, such as Qwen3's `<think>`). What splits the text before BPE is
//! named by `tokenizer.ggml.pre`, as llama.cpp's converter recognised it from the HF tokenizer:
//! - `smollm`: Digits(individual) + ByteLevel with GPT-2's regex; rebuilt so, it gives llama.cpp's
//!   ids (checked on the corpus in models/fixtures/tokenizer/).
//! - `qwen2` (Qwen2, Qwen2.5, Qwen3): NFC, then a Split on Qwen2's regex (one digit per piece).
//! - `llama-bpe` (Llama 3.x): a Split on Llama 3's regex (digits in runs of up to three).
//!
//! The last two are the pre-tokenizers of those models' own tokenizer.json.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokenizers::{
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{Vocab, BPE},
    normalizers::unicode::NFC,
    pre_tokenizers::{
        byte_level::ByteLevel,
        digits::Digits,
        sequence::Sequence,
        split::{Split, SplitPattern},
        PreTokenizerWrapper,
    },
    AddedToken, SplitDelimiterBehavior, Tokenizer,
};

use super::gguf::Gguf;

/// llama.cpp's token type for control tokens such as `<|im_start|>`.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// llama.cpp's token type for added tokens that are not special, such as `<think>`.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The pre-tokenizer regex of Qwen2's tokenizer.json (Qwen2.5 and Qwen3 share it).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The pre-tokenizer regex of Llama 3's tokenizer.json: Qwen2's with digits in runs of up to 3.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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
    let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("smollm");
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(regex.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| anyhow::anyhow!("the {pre} pre-tokenizer regex: {e}"))?;
        Ok(split.into())
    };
    let pieces: Vec<PreTokenizerWrapper> = match pre {
        "smollm" => vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ],
        "qwen2" => {
            tokenizer.with_normalizer(Some(NFC));
            vec![
                split(QWEN2_REGEX)?,
                ByteLevel::new(false, false, false).into(),
            ]
        }
        "llama-bpe" => vec![
            split(LLAMA3_REGEX)?,
            ByteLevel::new(false, true, false).into(),
        ],
        other => bail!(
            "{}: tokenizer.ggml.pre is {other:?}; only smollm, qwen2 and llama-bpe are supported",
            gguf.path().display()
        ),
    };
    tokenizer.with_pre_tokenizer(Some(Sequence::new(pieces)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let added = |wanted: i32, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == wanted)
            .map(|(t, _)| AddedToken::from(t.to_string(), special).normalized(false))
            .collect()
    };
    tokenizer.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
    tokenizer.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));
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
    // Qwen's GGUFs may name no BOS: it uses none.
    let (bos_id, bos) = match token("tokenizer.ggml.bos_token_id") {
        Ok((id, text)) => (Some(id), Some(text)),
        Err(_) => (None, None),
    };
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
        "model_max_length": gguf.get_u32(&format!("{}.context_length", gguf.get_str("general.architecture")?))?,
        // A base model has no chat template.
        "chat_template": gguf.get_str("tokenizer.chat_template").ok(),
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
