//! The prompts a generation benchmark runs: the built-in set, `--prompt TEXT` and `--prompt-file`.

use anyhow::{bail, Context, Result};
use decode::{Message, Tokenizer};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A prompt as given: its text, and whether to wrap it in the model's chat template.
#[derive(Clone, Debug, Deserialize)]
pub struct PromptSpec {
    /// How tables and reports name it.
    pub name: String,
    pub text: String,
    /// Wrap `text` as a user message in the chat template (and its default system prompt).
    #[serde(default)]
    pub chat: bool,
}

/// A prompt ready to run: its token ids, which the peers of `--compare` receive too, so that
/// every system sees the same ids whatever its tokenizer.
#[derive(Clone, Debug, Serialize)]
pub struct Prompt {
    pub name: String,
    pub token_ids: Vec<u32>,
}

/// A short chat turn, a ~250-token passage with a question, and a ~1000-token document with a
/// request, all through the chat template, as an instruct model is used.
pub fn builtin() -> Vec<PromptSpec> {
    [
        (
            "short-chat",
            "What is the capital of France? Answer in one sentence.",
        ),
        ("medium", include_str!("prompts/medium.txt")),
        ("long", include_str!("prompts/long.txt")),
    ]
    .into_iter()
    .map(|(name, text)| PromptSpec {
        name: name.to_string(),
        text: text.trim_end().to_string(),
        chat: true,
    })
    .collect()
}

/// The built-in prompts named in `names` (all of them when `names` is empty).
pub fn builtin_named(names: &[String]) -> Result<Vec<PromptSpec>> {
    let all = builtin();
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|spec| &spec.name == name)
                .cloned()
                .with_context(|| {
                    format!("no built-in prompt {name:?}: choose short-chat, medium or long")
                })
        })
        .collect()
}

/// Reads a JSON Lines file: each non-empty line is a JSON string (the prompt's text, sent as is)
/// or an object `{"text": ..., "name": ..., "chat": true|false}` (`name` and `chat` optional).
pub fn from_file(path: &Path) -> Result<Vec<PromptSpec>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Line {
        Text(String),
        Spec {
            text: String,
            name: Option<String>,
            #[serde(default)]
            chat: bool,
        },
    }
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the prompt file {}", path.display()))?;
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let mut specs = Vec::new();
    for (index, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: expected a JSON string or {{\"text\": ...}} (one prompt per line, JSON Lines)",
                path.display(),
                index + 1
            )
        })?;
        let default_name = format!("{stem}:{}", index + 1);
        specs.push(match parsed {
            Line::Text(text) => PromptSpec {
                name: default_name,
                text,
                chat: false,
            },
            Line::Spec { text, name, chat } => PromptSpec {
                name: name.unwrap_or(default_name),
                text,
                chat,
            },
        });
    }
    if specs.is_empty() {
        bail!("the prompt file {} holds no prompt", path.display());
    }
    Ok(specs)
}

/// Tokenizes each prompt, through the chat template where asked.
pub fn tokenize(specs: &[PromptSpec], tokenizer: &Tokenizer) -> Result<Vec<Prompt>> {
    specs
        .iter()
        .map(|spec| {
            let text = if spec.chat {
                tokenizer
                    .apply_chat_template(&[Message::new("user", &spec.text)], true)
                    .with_context(|| {
                        format!(
                            "prompt {:?} asks for the chat template, which this model lacks",
                            spec.name
                        )
                    })?
            } else {
                spec.text.clone()
            };
            let token_ids = tokenizer
                .encode(&text)
                .with_context(|| format!("cannot tokenize prompt {:?}", spec.name))?;
            if token_ids.is_empty() {
                bail!("prompt {:?} has no tokens", spec.name);
            }
            Ok(Prompt {
                name: spec.name.clone(),
                token_ids,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::from_file;

    fn write_temp(name: &str, content: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{name}-{}.jsonl", std::process::id()));
        std::fs::write(&path, content).expect("a writable temp dir");
        path
    }

    #[test]
    fn prompt_file_reads_strings_and_objects_and_skips_blank_lines() {
        let path = write_temp(
            "prompts",
            "\"plain\\nwith a newline\"\n\n{\"text\": \"hi\", \"name\": \"greeting\", \"chat\": true}\n{\"text\": \"x\"}\n",
        );
        let specs = from_file(&path).expect("a valid file");
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let got: Vec<(String, String, bool)> = specs
            .into_iter()
            .map(|spec| (spec.name, spec.text, spec.chat))
            .collect();
        assert_eq!(
            got,
            [
                (
                    format!("{stem}:1"),
                    "plain\nwith a newline".to_string(),
                    false
                ),
                ("greeting".to_string(), "hi".to_string(), true),
                (format!("{stem}:4"), "x".to_string(), false),
            ]
        );
    }

    #[test]
    fn prompt_file_names_the_bad_line() {
        let path = write_temp("bad-prompts", "\"fine\"\nnot json\n");
        let error = format!("{:#}", from_file(&path).expect_err("line 2 is not JSON"));
        assert!(error.contains(":2: expected a JSON string"), "{error}");
    }
}
