//! Chat templates rendered as Hugging Face transformers renders them. Given.
//!
//! transformers renders a model's `chat_template` with Jinja2 (`trim_blocks`, `lstrip_blocks`, the
//! `loopcontrols` extension), lets templates call Python's string methods (`.startswith`,
//! `.split`, `.strip`...), and adds two functions: `raise_exception(message)` and
//! `strftime_now(format)`. Qwen3's template needs the methods, Llama 3's the functions;
//! [`chat_environment`] gives minijinja all of it. Keyword arguments of transformers'
//! `apply_chat_template` (Qwen3's `enable_thinking`, Llama 3's `date_string`) reach the template
//! through [`ChatTemplate::render`].

use crate::{special_token::special_token, DecodeError, Message};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

/// A minijinja environment that renders chat templates as transformers does. Use it in
/// `Tokenizer::apply_chat_template`.
pub fn chat_environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_trim_blocks(true);
    environment.set_lstrip_blocks(true);
    environment.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    environment.add_function("raise_exception", |message: String| -> Result<(), Error> {
        Err(Error::new(ErrorKind::InvalidOperation, message))
    });
    environment.add_function("strftime_now", |format: String| {
        strftime_utc(&format, now())
    });
    environment
}

/// A model's chat template and special tokens, rendered with extra arguments.
pub struct ChatTemplate {
    template: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    /// The template of the model in `dir`: `chat_template` in tokenizer_config.json (a string,
    /// or a list of named templates of which `default` is taken), else `chat_template.jinja`.
    pub fn load(dir: &Path) -> Result<Self, DecodeError> {
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|error| DecodeError::BadTokenizer {
                path: config_path.clone(),
                message: format!("not valid JSON: {error}"),
            })?,
            Err(_) => Value::Null,
        };
        let from_config = match config.get("chat_template") {
            Some(Value::String(template)) => Some(template.clone()),
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        let template = match from_config {
            Some(template) => template,
            None => std::fs::read_to_string(dir.join("chat_template.jinja"))
                .map_err(|_| DecodeError::NoChatTemplate { path: config_path })?,
        };
        Ok(Self::new(
            template,
            special_token(&config, "bos_token"),
            special_token(&config, "eos_token"),
        ))
    }

    pub fn new(template: String, bos_token: Option<String>, eos_token: Option<String>) -> Self {
        ChatTemplate {
            template,
            bos_token,
            eos_token,
        }
    }

    /// Renders `messages` as `apply_chat_template(messages, add_generation_prompt, **args)`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        args: &BTreeMap<String, Value>,
    ) -> Result<String, DecodeError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
            .collect();
        self.render_json(&messages, add_generation_prompt, args)
    }

    /// [`ChatTemplate::render`] with messages as OpenAI's JSON: an assistant's `tool_calls`, a
    /// `tool` message's `tool_call_id`, whatever the template reads (`args` carries `tools`).
    pub fn render_json(
        &self,
        messages: &[Value],
        add_generation_prompt: bool,
        args: &BTreeMap<String, Value>,
    ) -> Result<String, DecodeError> {
        let template_error = |error: Error| DecodeError::Template(error.to_string());
        let environment = chat_environment();
        let template = environment
            .template_from_str(&self.template)
            .map_err(template_error)?;
        let base = minijinja::context! {
            messages => minijinja::Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        };
        // As in transformers, the keyword arguments come last and win.
        let context = minijinja::context! { ..minijinja::Value::from_serialize(args), ..base };
        template.render(context).map_err(template_error)
    }

    /// Whether the template lists `tools` and writes calls in Hermes' syntax,
    /// `<tool_call>{"name": ..., "arguments": ...}</tool_call>` (Qwen2.5, Qwen3, Hermes).
    pub fn writes_hermes_tool_calls(&self) -> bool {
        self.template.contains("tools") && self.template.contains("<tool_call>")
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Python's `datetime.strftime` for the date fields templates use (%d %m %y %Y %b %B %H %M %S),
/// in UTC; other directives stay as written.
fn strftime_utc(format: &str, unix_seconds: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (days, seconds) = (
        unix_seconds.div_euclid(86_400),
        unix_seconds.rem_euclid(86_400),
    );
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let name = MONTHS[(month - 1) as usize];

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('Y') => out.push_str(&year.to_string()),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('H') => out.push_str(&format!("{:02}", seconds / 3600)),
            Some('M') => out.push_str(&format!("{:02}", seconds / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", seconds % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

// Given code, so its tests run with the solutions: check-solutions requires every test to fail
// against the stubs.
#[cfg(all(test, feature = "solution"))]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/chat-templates")
    }

    /// models/fixtures/chat-templates/expected.json: transformers' renderings (generate.py).
    #[test]
    fn templates_render_as_transformers_does() {
        let expected: Value = serde_json::from_slice(
            &std::fs::read(fixtures().join("expected.json")).expect("expected.json"),
        )
        .expect("JSON");
        let qwen3_tiny = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/fixtures/qwen3-tiny/tokenizer_config.json");
        let chatml: Value =
            serde_json::from_slice(&std::fs::read(qwen3_tiny).expect("config")).expect("JSON");
        let cases = expected["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 10);
        for (i, case) in cases.iter().enumerate() {
            let name = case["template"].as_str().expect("name");
            let template = match name {
                "chatml" => chatml["chat_template"].as_str().expect("template").into(),
                _ => std::fs::read_to_string(fixtures().join(format!("{name}.jinja")))
                    .expect("template file"),
            };
            let token = |key: &str| case[key].as_str().map(str::to_string);
            let messages: Vec<Message> = case["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| {
                    Message::new(
                        m["role"].as_str().expect("role"),
                        m["content"].as_str().expect("content"),
                    )
                })
                .collect();
            let args: BTreeMap<String, Value> =
                serde_json::from_value(case["kwargs"].clone()).expect("kwargs");
            let got = ChatTemplate::new(template, token("bos_token"), token("eos_token"))
                .render(&messages, case["add_generation_prompt"] == true, &args)
                .unwrap_or_else(|e| panic!("case {i} ({name}, {args:?}): {e}"));
            assert_eq!(
                got, case["rendered"],
                "case {i}: {name} with {args:?} differs from transformers"
            );
        }
    }

    #[test]
    fn qwen3_thinking_switch_and_llama3_date_default() {
        let read = |f: &str| std::fs::read_to_string(fixtures().join(f)).expect("template");
        let qwen3 = ChatTemplate::new(read("qwen3.jinja"), None, Some("<|im_end|>".into()));
        let hi = [Message::new("user", "Hi")];
        let off = BTreeMap::from([("enable_thinking".to_string(), Value::Bool(false))]);
        let rendered = qwen3.render(&hi, true, &off).expect("renders");
        assert!(rendered.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        let rendered = qwen3.render(&hi, true, &BTreeMap::new()).expect("renders");
        assert!(rendered.ends_with("<|im_start|>assistant\n"));

        // Without date_string, Llama 3's template asks strftime_now for today's date.
        let llama = ChatTemplate::new(read("llama-3.2.jinja"), Some("<bos>".into()), None);
        let rendered = llama.render(&hi, true, &BTreeMap::new()).expect("renders");
        let today = strftime_utc("Today Date: %d %b %Y\n", now());
        assert!(rendered.contains(&today), "{rendered}");
    }

    #[test]
    fn raise_exception_is_a_template_error() {
        let template = ChatTemplate::new(
            "{{ raise_exception('only user turns') }}".into(),
            None,
            None,
        );
        let error = template
            .render(&[], false, &BTreeMap::new())
            .expect_err("raises")
            .to_string();
        assert!(error.contains("only user turns"), "{error}");
    }

    #[test]
    fn strftime_formats_dates_as_python() {
        // 2024-07-26 13:05:09 UTC, and the day before the Unix epoch.
        assert_eq!(
            strftime_utc("%d %b %Y %H:%M:%S %B %m %y %%", 1_721_999_109),
            "26 Jul 2024 13:05:09 July 07 24 %"
        );
        assert_eq!(strftime_utc("%Y-%m-%d", -86_400), "1969-12-31");
        assert_eq!(strftime_utc("%Y-%m-%d", 951_782_400), "2000-02-29");
    }
}
