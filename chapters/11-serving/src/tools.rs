//! OpenAI's `tools` and `tool_choice` on chat completions, for any chat template: the tools are
//! described in the system message, the answer is constrained (week 3, chapter 15's grammars) to
//! a JSON object that is either a text answer or tool calls whose arguments follow each tool's
//! `parameters` schema, and that object is parsed back into OpenAI's `tool_calls`. This is
//! llama.cpp's generic tool-call format (minja's polyfill for templates without tool syntax,
//! such as SmolLM2's): `{"tool_calls": [{"name": ..., "arguments": {...}}]}` or
//! `{"response": "..."}`. Earlier assistant calls and `tool` results are written in the same
//! JSON, as the template's own roles. Given.

use crate::ChatMessage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A tool the model may call (`tools[]`): only functions exist in OpenAI's API.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDefinition,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON schema of the arguments; absent: any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Accepted: the arguments always follow the schema here.
    #[serde(default, skip_serializing)]
    pub strict: Option<bool>,
}

impl FunctionDefinition {
    /// The schema its arguments follow: `parameters`, or any object when absent.
    pub fn arguments_schema(&self) -> Value {
        self.parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}))
    }
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"`, or `{"type": "function", "function":
/// {"name": ...}}`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Function {
        #[serde(rename = "type")]
        kind: String,
        function: FunctionName,
    },
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct FunctionName {
    pub name: String,
}

/// A call the assistant made (`message.tool_calls[]`, in answers and in the history).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as a JSON text, as OpenAI sends them.
    pub arguments: String,
}

/// What a request's tools ask of its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolPlan {
    /// Described to the model; those it may call.
    pub tools: Vec<Tool>,
    /// Those the answer may call: every tool, or the one `tool_choice` names.
    pub callable: Vec<Tool>,
    /// `required` or a named function: the answer must call; `auto`: it may answer text.
    pub must_call: bool,
    /// `parallel_tool_calls`: more than one call in an answer.
    pub parallel: bool,
}

/// An answer under a [`ToolPlan`], parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolAnswer {
    Text(String),
    Calls(Vec<ToolCall>),
}

/// OpenAI's rule for function names.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The plan of a request's `tools`, `tool_choice` and `parallel_tool_calls`; `None` when it
/// calls no tool (no tools, or `tool_choice: "none"`). The error names the field and the fix.
pub fn tool_plan(
    tools: &Option<Vec<Tool>>,
    choice: &Option<ToolChoice>,
    parallel: Option<bool>,
) -> Result<Option<ToolPlan>, String> {
    let Some(tools) = tools else {
        return match choice {
            None => Ok(None),
            Some(_) => Err("`tool_choice` needs `tools`: give the tools it chooses from".into()),
        };
    };
    if tools.is_empty() {
        return Err("`tools` is empty: give at least one tool, or leave `tools` out".into());
    }
    for (index, tool) in tools.iter().enumerate() {
        let name = &tool.function.name;
        if tool.kind != "function" {
            return Err(format!(
                "tools[{index}].type is {:?}; only \"function\" tools exist",
                tool.kind
            ));
        }
        if !valid_name(name) {
            return Err(format!(
                "tools[{index}].function.name {name:?} must be 1 to 64 letters, digits, `_` or `-`"
            ));
        }
        if tools[..index].iter().any(|t| &t.function.name == name) {
            return Err(format!("tools[{index}]: two tools are named {name:?}"));
        }
        if let Some(parameters) = &tool.function.parameters {
            if !parameters.is_object() {
                return Err(format!(
                    "tools[{index}].function.parameters must be a JSON schema (an object), got {parameters}"
                ));
            }
        }
    }
    let (callable, must_call) = match choice {
        None => (tools.clone(), false),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" => return Ok(None),
            "auto" => (tools.clone(), false),
            "required" => (tools.clone(), true),
            other => {
                return Err(format!(
                    "`tool_choice` {other:?} is none of \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                ))
            }
        },
        Some(ToolChoice::Function { kind, function }) => {
            if kind != "function" {
                return Err(format!(
                    "`tool_choice.type` is {kind:?}; only \"function\" exists"
                ));
            }
            let Some(tool) = tools.iter().find(|t| t.function.name == function.name) else {
                let names: Vec<&str> = tools.iter().map(|t| t.function.name.as_str()).collect();
                return Err(format!(
                    "`tool_choice` names the function {:?}, which is not in `tools` ({})",
                    function.name,
                    names.join(", ")
                ));
            };
            (vec![tool.clone()], true)
        }
    };
    Ok(Some(ToolPlan {
        tools: tools.clone(),
        callable,
        must_call,
        parallel: parallel.unwrap_or(true),
    }))
}

impl ToolPlan {
    /// What the system message gains: the tools and the two shapes an answer may take.
    pub fn instructions(&self) -> String {
        let tools = serde_json::to_string(&self.tools).unwrap_or_default();
        let answer = if self.must_call {
            "Answer with a tool call"
        } else {
            "Answer with a tool call, or, when no tool helps, with {\"response\": \"<your answer>\"}"
        };
        format!(
            "You can call these tools:\n{tools}\n\n{answer}. A tool call is written as JSON: \
             {{\"tool_calls\": [{{\"name\": \"<tool name>\", \"arguments\": {{<its parameters>}}}}]}}. \
             A tool's result comes back as {{\"tool_response\": ...}}."
        )
    }

    /// The JSON schema of an answer: the calls (each a callable tool's name and arguments valid
    /// under its `parameters`), or, unless it must call, `{"response": text}`.
    pub fn answer_schema(&self) -> Value {
        let calls: Vec<Value> = self
            .callable
            .iter()
            .map(|tool| {
                let arguments = tool.function.arguments_schema();
                json!({
                    "type": "object",
                    "properties": {"name": {"const": tool.function.name}, "arguments": arguments},
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        let mut list = json!({"type": "array", "items": {"anyOf": calls}, "minItems": 1});
        if !self.parallel {
            list["maxItems"] = json!(1);
        }
        let call = json!({
            "type": "object",
            "properties": {"tool_calls": list},
            "required": ["tool_calls"],
            "additionalProperties": false,
        });
        if self.must_call {
            return call;
        }
        let text = json!({
            "type": "object",
            "properties": {"response": {"type": "string"}},
            "required": ["response"],
            "additionalProperties": false,
        });
        json!({"anyOf": [call, text]})
    }

    /// The answer the model wrote under [`ToolPlan::answer_schema`]; text that does not parse
    /// (cut by `max_tokens`) stays text. Calls get the ids `call_<request>_<n>`.
    pub fn parse(&self, text: &str, request_id: u64) -> ToolAnswer {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return ToolAnswer::Text(text.to_string());
        };
        if let Some(response) = value.get("response").and_then(Value::as_str) {
            return ToolAnswer::Text(response.to_string());
        }
        let Some(calls) = value.get("tool_calls").and_then(Value::as_array) else {
            return ToolAnswer::Text(text.to_string());
        };
        ToolAnswer::Calls(
            calls
                .iter()
                .enumerate()
                .map(|(index, call)| ToolCall {
                    id: format!("call_{request_id}_{index}"),
                    kind: function_kind(),
                    function: FunctionCall {
                        name: call["name"].as_str().unwrap_or_default().to_string(),
                        arguments: call["arguments"].to_string(),
                    },
                })
                .collect(),
        )
    }
}

/// The chat as a template without tool syntax reads it: the plan's instructions in the system
/// message (added when there is none), an assistant's calls as `{"tool_calls": [...]}`, and a
/// `tool` message as a user message `{"tool_response": {"tool_call_id", "name", "content"}}`.
pub fn plain_messages(messages: &[ChatMessage], plan: Option<&ToolPlan>) -> Vec<ChatMessage> {
    let mut plain: Vec<ChatMessage> = messages
        .iter()
        .map(|message| {
            let content = match (message.role.as_str(), &message.tool_calls) {
                ("assistant", Some(calls)) if !calls.is_empty() => {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|call| {
                            let arguments = serde_json::from_str(&call.function.arguments)
                                .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
                            json!({"name": call.function.name, "arguments": arguments})
                        })
                        .collect();
                    json!({"tool_calls": calls}).to_string()
                }
                ("tool", _) => json!({"tool_response": {
                    "tool_call_id": message.tool_call_id,
                    "name": message.name,
                    "content": message.content,
                }})
                .to_string(),
                _ => message.content.clone(),
            };
            let role = if message.role == "tool" {
                "user"
            } else {
                &message.role
            };
            ChatMessage::new(role, &content)
        })
        .collect();
    if let Some(plan) = plan {
        let instructions = plan.instructions();
        match plain.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => plain.insert(0, ChatMessage::new("system", &instructions)),
        }
    }
    plain
}

/// The chat as OpenAI's JSON, for a template with its own tool syntax: an assistant's call
/// arguments as objects (templates such as Qwen's write them with `tojson`).
pub fn template_messages(messages: &[ChatMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|message| {
            let mut value = serde_json::to_value(message).unwrap_or(Value::Null);
            if let Some(calls) = value["tool_calls"].as_array_mut() {
                for call in calls {
                    let arguments = &mut call["function"]["arguments"];
                    if let Some(parsed) = arguments
                        .as_str()
                        .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    {
                        *arguments = parsed;
                    }
                }
            }
            value
        })
        .collect()
}

impl ToolPlan {
    /// The template's keyword arguments: `tools`.
    pub fn template_args(&self) -> std::collections::BTreeMap<String, Value> {
        std::collections::BTreeMap::from([("tools".to_string(), json!(self.tools))])
    }

    /// In Hermes' syntax, the Lark grammar (llguidance's dialect) of an answer that must call:
    /// `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`, once or more, the JSON under
    /// the callable tools' schemas. `None` under `auto`: the answer is generated freely and its
    /// calls parsed afterwards, as vLLM does ([`ToolPlan::parse_hermes`]).
    pub fn hermes_grammar(&self) -> Option<String> {
        if !self.must_call {
            return None;
        }
        let calls = &self.answer_schema()["properties"]["tool_calls"]["items"];
        let repeat = if self.parallel {
            " (\"\\n\" call)*"
        } else {
            ""
        };
        Some(format!(
            "start: call{repeat}\ncall: \"<tool_call>\\n\" body \"\\n</tool_call>\"\nbody: %json {calls}\n"
        ))
    }

    /// The calls of an answer in Hermes' syntax. Under `auto` nothing constrained them: a call
    /// whose JSON does not parse, names no callable tool or whose arguments break the tool's
    /// schema leaves the whole answer as text.
    pub fn parse_hermes(&self, text: &str, request_id: u64) -> ToolAnswer {
        let mut calls = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("<tool_call>") {
            let after = &rest[start + "<tool_call>".len()..];
            let Some(end) = after.find("</tool_call>") else {
                return ToolAnswer::Text(text.to_string());
            };
            let Ok(call) = serde_json::from_str::<Value>(after[..end].trim()) else {
                return ToolAnswer::Text(text.to_string());
            };
            calls.push(call);
            rest = &after[end + "</tool_call>".len()..];
        }
        let valid = |call: &Value| {
            self.callable.iter().any(|tool| {
                call["name"] == tool.function.name
                    && jsonschema::validator_for(&tool.function.arguments_schema())
                        .is_ok_and(|schema| schema.is_valid(&call["arguments"]))
            })
        };
        if calls.is_empty() || !calls.iter().all(valid) {
            return ToolAnswer::Text(text.to_string());
        }
        let answer = json!({ "tool_calls": calls }).to_string();
        self.parse(&answer, request_id)
    }
}
