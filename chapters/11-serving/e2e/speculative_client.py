"""End-to-end check of speculative decoding inside the server's batches (chapter 14), with the
official `openai` Python client: concurrent greedy requests to a server started with
`--speculative ngram` get the same text as from a plain server, and its /metrics counts drafts.

Run by run.sh; by hand, with both servers up:
    python3 chapters/11-serving/e2e/speculative_client.py PLAIN_BASE_URL SPECULATIVE_BASE_URL
"""

import concurrent.futures
import sys
import urllib.request

import openai

plain_url, speculative_url = sys.argv[1], sys.argv[2]


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")
    print(f"ok: {message}")


# Text that repeats, where prompt lookup finds drafts, and a chat question, where it finds few.
prompts = [
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n",
    "1, 2, 3, 4, 5, 6, 7, 8,",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Paris is the capital of France. Berlin is the capital of Germany. Madrid is",
]


def answers(base_url):
    client = openai.OpenAI(base_url=base_url, api_key="not-needed")
    model = client.models.list().data[0].id

    def complete(prompt):
        completion = client.completions.create(
            model=model, prompt=prompt, max_tokens=40, temperature=0
        )
        return completion.choices[0].text

    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(complete, prompts))


plain = answers(plain_url)
speculative = answers(speculative_url)
for prompt, expected, got in zip(prompts, plain, speculative):
    check(got == expected, f"speculative greedy text equals plain for {prompt[:24]!r}: {got[:40]!r}")

metrics_url = speculative_url.removesuffix("/v1") + "/metrics"
with urllib.request.urlopen(metrics_url) as response:
    metrics = response.read().decode()
values = {
    line.split()[0]: float(line.split()[1])
    for line in metrics.splitlines()
    if line.startswith("tiny_llm_speculative_")
}
check(
    values.get("tiny_llm_speculative_draft_tokens_total", 0) > 0
    and values.get("tiny_llm_speculative_tokens_per_row_step", 0) > 1,
    f"/metrics counts the drafts: {values}",
)
