"""End-to-end check of the server with the official `openai` Python client.

Run by .ci/run against `cargo xtask run serve`; by hand:
    python3 -m pip install -r chapters/11-serving/e2e/requirements.txt
    python3 chapters/11-serving/e2e/openai_client.py http://127.0.0.1:8000/v1
"""

import concurrent.futures
import json
import sys
import urllib.request

import openai

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
client = openai.OpenAI(base_url=base_url, api_key="not-needed")
model = client.models.list().data[0].id
question = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")
    print(f"ok: {message}")


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

try:
    client.chat.completions.create(model="no-such-model", messages=question)
    check(False, "an unknown model is refused")
except openai.NotFoundError as error:
    check("not served here" in str(error), "an unknown model is a 404 naming the served one")

try:
    client.chat.completions.create(model=model, messages=question, temperature=-1)
    check(False, "a negative temperature is refused")
except openai.BadRequestError as error:
    check("temperature" in str(error), "a negative temperature is a 400 naming it")

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

try:
    client.chat.completions.create(
        model=model,
        messages=question,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "empty", "schema": {"type": "integer", "minimum": 5, "maximum": 3}},
        },
    )
    check(False, "an unsatisfiable schema is refused")
except openai.BadRequestError as error:
    check("response_format" in str(error), "an unsatisfiable schema is a 400 naming response_format")

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
