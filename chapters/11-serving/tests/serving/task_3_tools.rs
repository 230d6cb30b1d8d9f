//! Tasks 3 and 4: OpenAI's tools. The server constrains a chat's answer to the JSON schema its
//! tools allow; here a scripted constraint stands in for chapter 15's grammars (which chapter 11
//! comes before): it records the schema and makes the model write a given answer, token by
//! token. The schema is checked against answers with the `jsonschema` crate, and the calls the
//! server returns against each tool's `parameters`; a template with its own tool syntax
//! (Qwen3's) gets a grammar in that syntax. (The e2e test runs the real grammars.)

use crate::{
    harness::{roomy, start_with_formats, start_with_template, TestServer},
    task_4_openai_stream::openai_events,
};
use axum::http::StatusCode;
use continuous_batching::{SharedConstraint, TokenConstraint};
use mlx_rs::Array;
use rstest::rstest;
use serde_json::{json, Value};
use serving::{
    tool_plan, ChatTemplate, FormatCompiler, ResponseFormat, Tool, ToolAnswer, ToolChoice, ToolPlan,
};
use std::sync::{Arc, Mutex};

/// llama-tiny's EOS.
const EOS: u32 = 2;

/// Allows only the next token of `script`, then only EOS.
struct Scripted {
    script: Vec<u32>,
    next: usize,
}

impl TokenConstraint for Scripted {
    fn allowed(&mut self, vocab_size: usize) -> Result<Array, String> {
        let token = self.script.get(self.next).copied().unwrap_or(EOS) as usize;
        let allowed: Vec<bool> = (0..vocab_size).map(|id| id == token).collect();
        Ok(Array::from_slice(&allowed, &[vocab_size as i32]))
    }

    fn advance(&mut self, _token: u32) -> Result<(), String> {
        self.next += 1;
        Ok(())
    }
}

/// A server whose compiled formats write `answer`; the schemas it was asked for land in the
/// returned list.
fn scripted_server(answer: &str) -> (TestServer, Arc<Mutex<Vec<Value>>>) {
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(Vec::new()));
    let (seen, tokens) = (Arc::clone(&schemas), Arc::clone(&script));
    let formats: FormatCompiler = Arc::new(move |format: &ResponseFormat| {
        let ResponseFormat::JsonSchema { json_schema } = format else {
            return Err(format!(
                "the test compiles JSON schemas only, not {format:?}"
            ));
        };
        seen.lock()
            .unwrap()
            .push(json_schema.schema.clone().unwrap_or(Value::Null));
        Ok(SharedConstraint::new(Scripted {
            script: tokens.lock().unwrap().clone(),
            next: 0,
        }))
    });
    let server = start_with_formats(roomy(), Some(formats));
    *script.lock().unwrap() = server.encode(answer);
    (server, schemas)
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                "required": ["zone"]}}},
    ])
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema)
        .unwrap_or_else(|error| panic!("the server's schema does not compile ({error}): {schema}"))
}

/// Every call of `message`: a tool of `tools` by name, its arguments JSON valid under that
/// tool's `parameters`. Returns the calls' names.
fn check_calls(message: &Value, tools: &Value, what: &str) -> Vec<String> {
    let calls = message["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: message.tool_calls is a list: {message}"));
    assert!(!calls.is_empty(), "{what}: {message}");
    calls
        .iter()
        .map(|call| {
            assert_eq!(call["type"], "function", "{what}: {call}");
            assert!(
                call["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{what}: {call}"
            );
            let name = call["function"]["name"].as_str().expect("a name");
            let tool = tools
                .as_array()
                .and_then(|tools| tools.iter().find(|t| t["function"]["name"] == name))
                .unwrap_or_else(|| panic!("{what}: a call of {name}, which is no tool: {call}"));
            let arguments = call["function"]["arguments"]
                .as_str()
                .expect("arguments text");
            let arguments: Value = serde_json::from_str(arguments)
                .unwrap_or_else(|error| panic!("{what}: arguments are not JSON ({error}): {call}"));
            let parameters = &tool["function"]["parameters"];
            assert!(
                validator(parameters).is_valid(&arguments),
                "{what}: {arguments} is not valid under {parameters}"
            );
            name.to_string()
        })
        .collect()
}

const CALL: &str = r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]}"#;

/// Each `tool_choice` gets the schema it should, which accepts the right answers and refuses
/// the wrong ones; the scripted call comes back as `tool_calls` with `finish_reason:
/// "tool_calls"`, whole and streamed (one delta with each call's index, id, name and
/// arguments).
#[rstest]
#[case::auto(json!("auto"), true, true)]
#[case::absent(Value::Null, true, true)]
#[case::required(json!("required"), false, true)]
#[case::named(json!({"type": "function", "function": {"name": "get_weather"}}), false, false)]
#[tokio::test(flavor = "multi_thread")]
async fn task_3_tool_calls_follow_their_schema(
    #[case] tool_choice: Value,
    #[case] text_allowed: bool,
    #[case] other_tool_allowed: bool,
) {
    let (server, schemas) = scripted_server(CALL);
    let tools = weather_tools();
    let mut request = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": tools, "max_tokens": 80, "temperature": 0});
    if !tool_choice.is_null() {
        request["tool_choice"] = tool_choice.clone();
    }
    let whole = server.post_ok("/v1/chat/completions", &request).await;
    let what = format!("tool_choice {tool_choice}");
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{what}: {whole}");
    assert_eq!(choice["message"]["content"], Value::Null, "{what}: {whole}");
    assert_eq!(
        check_calls(&choice["message"], &tools, &what),
        ["get_weather"]
    );

    let schema = schemas.lock().unwrap()[0].clone();
    let accepts = |answer: Value| validator(&schema).is_valid(&answer);
    let call = |name: &str, arguments: Value| json!({"tool_calls": [{"name": name, "arguments": arguments}]});
    assert!(
        accepts(serde_json::from_str(CALL).unwrap()),
        "{what}: {schema}"
    );
    assert_eq!(
        accepts(json!({"response": "Sunny."})),
        text_allowed,
        "{what}: text, {schema}"
    );
    assert_eq!(
        accepts(call("get_time", json!({"zone": "CET"}))),
        other_tool_allowed,
        "{what}: {schema}"
    );
    for wrong in [
        call("get_weather", json!({"unit": "celsius"})),
        call("get_weather", json!({"city": "Paris", "unit": "kelvin"})),
        call("send_mail", json!({})),
        json!({"tool_calls": []}),
        json!({"answer": "Sunny."}),
    ] {
        assert!(
            !accepts(wrong.clone()),
            "{what}: the schema accepts {wrong}: {schema}"
        );
    }

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = openai_events(server.post("/v1/chat/completions", &streamed).await).await;
    let deltas: Vec<&Value> = events
        .iter()
        .map(|event| &event["choices"][0]["delta"])
        .collect();
    assert_eq!(deltas[0]["role"], "assistant", "{what}: {events:?}");
    let calls: Vec<Value> = deltas
        .iter()
        .filter_map(|delta| delta["tool_calls"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_eq!(calls.len(), 1, "{what}: one streamed call: {events:?}");
    assert_eq!(calls[0]["index"], 0, "{what}: {events:?}");
    assert_eq!(
        check_calls(&json!({"tool_calls": calls}), &tools, &what),
        ["get_weather"]
    );
    let last = &events.last().expect("events")["choices"][0];
    assert_eq!(last["finish_reason"], "tool_calls", "{what}: {events:?}");
}

/// Under `auto`, a `{"response": ...}` answer is the message's text; the tools are described in
/// the system message; the history's call and the tool's result reach the prompt as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn task_3_a_tool_round_trip() {
    let (server, _) = scripted_server(r#"{"response": "It is sunny in Paris."}"#);
    let tools = weather_tools();
    let arguments = r#"{"city": "Paris"}"#;
    let messages = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_7", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_7", "content": "sunny, 24 C"},
    ]);
    let request = json!({"messages": messages, "tools": tools, "max_tokens": 40});
    let whole = server.post_ok("/v1/chat/completions", &request).await;
    let choice = &whole["choices"][0];
    assert_eq!(
        choice["message"]["content"], "It is sunny in Paris.",
        "{whole}"
    );
    assert_eq!(choice["finish_reason"], "stop", "{whole}");
    assert!(choice["message"].get("tool_calls").is_none(), "{whole}");

    let (status, tokenized) = server
        .post_json("/tokenize", &json!({"messages": messages}))
        .await;
    assert_eq!(status, StatusCode::OK, "{tokenized}");
    let ids: Vec<u32> = serde_json::from_value(tokenized["tokens"].clone()).expect("ids");
    let prompt = server.decode(&ids);
    for expected in [
        r#"{"tool_calls":[{"arguments":{"city":"Paris"},"name":"get_weather"}]}"#.to_string(),
        json!({"tool_response": {"tool_call_id": "call_7", "name": null, "content": "sunny, 24 C"}})
            .to_string(),
    ] {
        assert!(prompt.contains(&expected), "the prompt has {expected}: {prompt:?}");
    }
}

#[rstest]
#[case::unknown_tool_named(json!({"tool_choice": {"type": "function", "function": {"name": "send_mail"}}}), "send_mail")]
#[case::tool_choice_without_tools(json!({"tools": null, "tool_choice": "required"}), "tools")]
#[case::unknown_mode(json!({"tool_choice": "always"}), "tool_choice")]
#[case::empty_tools(json!({"tools": []}), "tools")]
#[case::not_a_function(json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}), "tools[0].type")]
#[case::bad_name(json!({"tools": [{"type": "function", "function": {"name": "get weather"}}]}), "tools[0].function.name")]
#[case::parameters_not_a_schema(json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}), "parameters")]
#[case::two_tools_one_name(json!({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]}), "tools[1]")]
#[case::no_function(json!({"tools": [{"type": "function"}]}), "function")]
#[case::with_response_format(json!({"response_format": {"type": "json_object"}}), "response_format")]
#[tokio::test(flavor = "multi_thread")]
async fn task_3_bad_tools_are_a_400(#[case] fields: Value, #[case] named: &str) {
    let (server, _) = scripted_server(CALL);
    let mut request = json!({"messages": [{"role": "user", "content": "Hi"}],
        "tools": weather_tools()});
    for (key, value) in fields.as_object().expect("fields") {
        match value {
            Value::Null => request.as_object_mut().expect("object").remove(key),
            value => request
                .as_object_mut()
                .expect("object")
                .insert(key.clone(), value.clone()),
        };
    }
    let (status, body) = server.post_json("/v1/chat/completions", &request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{request} answered {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(named), "the error names `{named}`: {body}");
}

/// `/generate` takes `response_format` too: its schema reaches the compiler and the constrained
/// text comes back, whole and streamed.
#[tokio::test(flavor = "multi_thread")]
async fn task_3_generate_takes_a_response_format() {
    let answer = r#"{"city": "Paris"}"#;
    let (server, schemas) = scripted_server(answer);
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let request = json!({"prompt": "Where?", "max_new_tokens": 30,
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}});
    let body = server.post_ok("/generate", &request).await;
    assert_eq!(body["text"], answer, "{body}");
    assert_eq!(body["finish_reason"], "stop", "{body}");
    assert_eq!(schemas.lock().unwrap()[0], schema);
    let response = server.post("/generate/stream", &request).await;
    let text = crate::harness::body_text(response).await;
    let streamed: String = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| value["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, answer, "{text}");
}

/// Qwen3's template (transformers' own file), which lists `tools` and writes calls in Hermes'
/// `<tool_call>` syntax.
fn qwen3_template() -> ChatTemplate {
    let path = test_support::fixture_path("chat-templates/qwen3.jinja");
    let template = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    ChatTemplate::new(template, None, None)
}

fn plan(tool_choice: Value) -> ToolPlan {
    let tools: Vec<Tool> = serde_json::from_value(weather_tools()).expect("tools");
    let choice: ToolChoice = serde_json::from_value(tool_choice).expect("tool_choice");
    tool_plan(&Some(tools), &Some(choice), None)
        .expect("a valid plan")
        .expect("tools to call")
}

/// Through a template with its own tool syntax, the tools, the history's call (arguments as an
/// object) and the tool's result are written as Qwen3's template writes them. Given code only:
/// it runs with the solutions.
#[cfg(feature = "solution")]
#[test]
fn task_3_a_template_with_tool_syntax_renders_tools_calls_and_results() {
    use serving::{template_messages, ChatMessage};
    let template = qwen3_template();
    assert!(template.writes_hermes_tool_calls());
    let messages: Vec<ChatMessage> = serde_json::from_value(json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_7", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_7", "content": "sunny, 24 C"},
    ]))
    .expect("messages");
    let plan = plan(json!("auto"));
    let text = template
        .render_json(&template_messages(&messages), true, &plan.template_args())
        .expect("Qwen3's template renders");
    let tool = serde_json::to_string(&weather_tools()[0]).expect("JSON");
    for expected in [
        "<tools>\n",
        tool.as_str(),
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>",
        "<tool_response>\nsunny, 24 C\n</tool_response>",
        "<|im_start|>assistant\n",
    ] {
        assert!(text.contains(expected), "{expected:?} is not in {text:?}");
    }
}

/// Calls in Hermes' syntax: a required call is constrained by a grammar holding the tools'
/// schemas and parsed into `tool_calls`; under `auto` a call written freely is kept only when it
/// names a tool and its arguments follow the tool's schema.
#[tokio::test(flavor = "multi_thread")]
async fn task_3_tool_calls_in_a_templates_own_syntax() {
    let answer = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let grammars = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&grammars);
    let script = Arc::new(Mutex::new(Vec::new()));
    let tokens = Arc::clone(&script);
    let formats: FormatCompiler = Arc::new(move |format: &ResponseFormat| {
        let ResponseFormat::Lark(grammar) = format else {
            return Err(format!("expected the tools' grammar, got {format:?}"));
        };
        seen.lock().unwrap().push(grammar.clone());
        Ok(SharedConstraint::new(Scripted {
            script: tokens.lock().unwrap().clone(),
            next: 0,
        }))
    });
    let server = start_with_template(roomy(), Some(formats), Some(qwen3_template()));
    *script.lock().unwrap() = server.encode(answer);
    let tools = weather_tools();
    let request = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": tools, "tool_choice": "required", "max_tokens": 200});
    let whole = server.post_ok("/v1/chat/completions", &request).await;
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
    assert_eq!(
        check_calls(&choice["message"], &tools, "Hermes"),
        ["get_weather"]
    );
    let grammar = grammars.lock().unwrap()[0].clone();
    let parameters = serde_json::to_string(&tools[0]["function"]["parameters"]).expect("JSON");
    assert!(
        grammar.contains("\"<tool_call>\\n\"") && grammar.contains(&parameters),
        "the grammar opens a call and holds the tool's schema: {grammar}"
    );

    let auto = plan(json!("auto"));
    let call = |arguments: &str| {
        format!(
            "<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {arguments}}}\n</tool_call>"
        )
    };
    assert!(
        matches!(auto.parse_hermes(&call(r#"{"city": "Paris"}"#), 1), ToolAnswer::Calls(calls) if calls.len() == 1)
    );
    for text in [
        call(r#"{"unit": "celsius"}"#),
        call(r#"{"city": "Paris""#),
        call(r#"{"city": "Paris"}"#).replace("get_weather", "send_mail"),
        "It is sunny.".to_string(),
    ] {
        assert_eq!(
            auto.parse_hermes(&text, 1),
            ToolAnswer::Text(text.clone()),
            "{text}"
        );
    }
}
