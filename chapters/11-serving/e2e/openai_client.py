"""End-to-end check of the server with the official `openai` Python client.

Run by .ci/run against `cargo xtask run serve`; by hand:
    python3 -m pip install -r chapters/11-serving/e2e/requirements.txt
    python3 chapters/11-serving/e2e/openai_client.py http://127.0.0.1:8000/v1
"""

import concurrent.futures
import json
import math
import sys
import urllib.request

import jsonschema
import openai

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
client = openai.OpenAI(base_url=base_url, api_key="not-needed")
model = client.models.list().data[0].id
question = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")
    print(f"ok: {message}")


def check_refused(request, error_type, named, message):
    """`request()` raises `error_type` whose text contains `named`."""
    try:
        request()
    except error_type as error:
        check(named in str(error), message)
        return
    check(False, message)


chat = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=32)
answer = chat.choices[0].message.content
check("Paris" in answer, f"chat completion answers {answer!r}")
check(chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0, f"usage {chat.usage}")

pieces = []
for chunk in client.chat.completions.create(
    model=model, messages=question, temperature=0, max_tokens=32, stream=True
):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
check("".join(pieces) == answer, "the streamed chat completion equals the whole one")

# The same conversation again: its prompt's full blocks come from the prefix cache.
again = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=32)
cached = again.usage.prompt_tokens_details.cached_tokens
check(
    again.choices[0].message.content == answer and cached >= 16,
    f"a repeated prompt reads {cached} of its {again.usage.prompt_tokens} tokens from the prefix cache",
)

completion = client.completions.create(
    model=model, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[", 8"]
)
text = completion.choices[0].text
check(
    completion.choices[0].finish_reason == "stop" and ", 8" not in text,
    f"completion stops before its stop string: {text!r}",
)

streamed = "".join(
    chunk.choices[0].text
    for chunk in client.completions.create(
        model=model, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[", 8"], stream=True
    )
    if chunk.choices
)
check(streamed == text, "the streamed completion equals the whole one")

with concurrent.futures.ThreadPoolExecutor(8) as pool:
    answers = list(
        pool.map(
            lambda _: client.chat.completions.create(
                model=model, messages=question, temperature=0, max_tokens=32
            ).choices[0].message.content,
            range(8),
        )
    )
check(all(a == answer for a in answers), "8 concurrent greedy requests give the same answer")

check_refused(
    lambda: client.chat.completions.create(model="no-such-model", messages=question),
    openai.NotFoundError,
    "not served here",
    "an unknown model is a 404 naming the served one",
)

check_refused(
    lambda: client.chat.completions.create(model=model, messages=question, temperature=-1),
    openai.BadRequestError,
    "temperature",
    "a negative temperature is a 400 naming it",
)

# Structured output (week 3, chapter 15): the answer follows the schema, whatever the model.
person = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
structured = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Invent a person. Answer in JSON with name and age."}],
    temperature=0.7,
    max_tokens=64,
    response_format={
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": person, "strict": True},
    },
)
value = json.loads(structured.choices[0].message.content)
check(
    set(value) == {"name", "age"} and isinstance(value["age"], int) and 0 <= value["age"] <= 150,
    f"a json_schema response validates: {value}",
)
check(structured.choices[0].finish_reason == "stop", "it ends when the object is complete")

streamed = "".join(
    chunk.choices[0].delta.content or ""
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give me a JSON object about Paris."}],
        temperature=0,
        max_tokens=64,
        response_format={"type": "json_object"},
        stream=True,
    )
    if chunk.choices
)
check(streamed.startswith("{"), f"a streamed json_object response is an object: {streamed!r}")

check_refused(
    lambda: client.chat.completions.create(
        model=model,
        messages=question,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "empty", "schema": {"type": "integer", "minimum": 5, "maximum": 3}},
        },
    ),
    openai.BadRequestError,
    "response_format",
    "an unsatisfiable schema is a 400 naming response_format",
)

# Content as a list of text parts (what many clients send) is the same prompt as the string.
parts = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": [{"type": "text", "text": question[0]["content"]}]}],
    temperature=0,
    max_tokens=32,
)
check(parts.choices[0].message.content == answer, "content given as text parts answers the same")

# /tokenize and /detokenize (outside /v1, beside /generate).
root = base_url.rsplit("/v1", 1)[0]


def post(path, body):
    request = urllib.request.Request(
        root + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


tokens = post("/tokenize", {"prompt": "The capital of France"})
text = post("/detokenize", {"tokens": tokens["tokens"]})
check(text["text"] == "The capital of France", f"/tokenize then /detokenize: {tokens['count']} tokens")

# Log-probabilities: of the model's own distribution (log-softmax of its logits), per token.
greedy = client.chat.completions.create(
    model=model, messages=question, temperature=0, max_tokens=12, logprobs=True, top_logprobs=3
)
content = greedy.choices[0].logprobs.content
check(
    len(content) == greedy.usage.completion_tokens
    and all(len(entry.top_logprobs) == 3 for entry in content),
    f"chat logprobs: one entry per token, 3 alternatives each ({len(content)} tokens)",
)
check(
    all(
        entry.logprob == entry.top_logprobs[0].logprob
        and [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        and sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1.0 + 1e-4
        for entry in content
    ),
    "greedy tokens are their top alternative; alternatives sorted; probabilities sum to at most 1",
)
streamed_logprobs = [
    entry
    for chunk in client.chat.completions.create(
        model=model, messages=question, temperature=0, max_tokens=12, logprobs=True,
        top_logprobs=3, stream=True,
    )
    if chunk.choices and chunk.choices[0].logprobs
    for entry in chunk.choices[0].logprobs.content
]
check(
    [(e.token, e.logprob) for e in streamed_logprobs] == [(e.token, e.logprob) for e in content],
    "streamed chat logprobs equal the whole answer's",
)
legacy = client.completions.create(
    model=model, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0, logprobs=2
).choices[0]
check(
    "".join(legacy.logprobs.tokens) == legacy.text
    and len(legacy.logprobs.token_logprobs) == len(legacy.logprobs.tokens)
    and all(len(top) <= 2 for top in legacy.logprobs.top_logprobs),
    f"completion logprobs (legacy shape): {legacy.logprobs.tokens}",
)
check_refused(
    lambda: client.chat.completions.create(
        model=model, messages=question, logprobs=True, top_logprobs=21
    ),
    openai.BadRequestError,
    "top_logprobs",
    "top_logprobs over 20 is a 400 naming it",
)

# Tool calls, produced by constrained decoding: they always parse and follow the tool's schema.
weather = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": weather,
        },
    }
]
ask = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def run_tools(messages, stream, **options):
    """The answer's (content, tool calls as (id, name, arguments), finish_reason)."""
    request = dict(model=model, messages=messages, tools=tools, temperature=0, max_tokens=96, **options)
    if not stream:
        choice = client.chat.completions.create(**request).choices[0]
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return choice.message.content, calls, choice.finish_reason
    content, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(stream=True, **request):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            known = calls.setdefault(call.index, ["", "", ""])
            known[0] += call.id or ""
            known[1] += call.function.name or ""
            known[2] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return content or None, [tuple(calls[i]) for i in sorted(calls)], finish


for stream in (False, True):
    how = "streamed" if stream else "whole"
    content, calls, finish = run_tools(ask, stream, tool_choice="required")
    check(
        finish == "tool_calls" and len(calls) >= 1 and calls[0][1] == "get_weather",
        f"tool_choice required ({how}): {calls}",
    )
    for _, _, arguments in calls:
        jsonschema.validate(json.loads(arguments), weather)
    check(True, f"every call's arguments validate against the tool's schema ({how})")
    call_id, name, arguments = calls[0]
    history = ask + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"sky": "sunny", "celsius": 24})},
    ]
    content, calls, finish = run_tools(history, stream, tool_choice="none")
    check(
        isinstance(content, str) and content and not calls and finish == "stop",
        f"after the tool's result, the answer ({how}): {content!r}",
    )

content, calls, finish = run_tools(
    ask, False, tool_choice={"type": "function", "function": {"name": "get_weather"}}
)
check(finish == "tool_calls" and [c[1] for c in calls] == ["get_weather"], f"a named tool_choice: {calls}")
content, calls, finish = run_tools(ask, False, tool_choice="auto")
for _, _, arguments in calls:
    jsonschema.validate(json.loads(arguments), weather)
check(
    (finish == "tool_calls" and calls) or (finish == "stop" and content),
    f"tool_choice auto answers or calls: {content!r} {calls}",
)
check_refused(
    lambda: run_tools(ask, False, tool_choice={"type": "function", "function": {"name": "send_mail"}}),
    openai.BadRequestError,
    "send_mail",
    "an unknown tool in tool_choice is a 400 naming it",
)
check_refused(
    lambda: client.chat.completions.create(
        model=model, messages=ask, tools=[{"type": "function", "function": {"name": "bad name"}}]
    ),
    openai.BadRequestError,
    "tools[0]",
    "a malformed tool is a 400 naming it",
)
