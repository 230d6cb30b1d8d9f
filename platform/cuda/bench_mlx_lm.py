"""mlx-lm on the same MLX (CUDA) and weights as the engine: single-stream prefill/decode and
batch_generate at several concurrencies, with the engine bench's shapes and a warm-up for each.

    python3 bench_mlx_lm.py MODEL_DIR --json OUT.json [--concurrency 1,2,...]

Prompts are seeded random token ids; no end-of-sequence token stops generation.
"""

import argparse
import json
import pathlib
import time

import mlx.core as mx
from mlx_lm.generate import batch_generate, generate_step
from mlx_lm.utils import load_model


class TokenIdsOnly:
    """batch_generate asks its tokenizer for end-of-sequence ids and decodes the results:
    none, and nothing to decode, since the benchmark works on token ids."""

    eos_token_ids = []

    def decode(self, ids):
        return ""


def random_prompt(vocab, length, seed):
    return mx.random.randint(0, vocab, (length,), key=mx.random.key(seed)).tolist()


def single_stream(model, vocab, prompt_tokens, new_tokens):
    prompt = mx.array(random_prompt(vocab, prompt_tokens, 0))

    def run(steps):
        started = time.perf_counter()
        first = None
        for index, _ in enumerate(generate_step(prompt, model, max_tokens=steps)):
            if index == 0:
                first = time.perf_counter()
        return first - started, time.perf_counter() - first

    run(min(new_tokens, 16))  # warm-up
    prefill_s, decode_s = run(new_tokens)
    return {
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "prefill_tokens_per_s": prompt_tokens / prefill_s,
        # The first token comes with the prefill; the rest are decode steps.
        "decode_tokens_per_s": (new_tokens - 1) / decode_s,
    }


def batching(model, vocab, concurrency, prompt_tokens, new_tokens):
    rows = []
    for requests in concurrency:
        prompts = [random_prompt(vocab, prompt_tokens, seed) for seed in range(requests)]
        options = dict(completion_batch_size=requests, prefill_batch_size=requests)
        batch_generate(model, TokenIdsOnly(), prompts, max_tokens=min(new_tokens, 4), **options)
        started = time.perf_counter()
        response = batch_generate(
            model, TokenIdsOnly(), prompts, max_tokens=new_tokens, return_token_ids=True, **options
        )
        seconds = time.perf_counter() - started
        tokens = sum(len(ids) for ids in response.token_ids)
        rows.append({"concurrency": requests, "tokens": tokens, "tokens_per_s": tokens / seconds})
        print(f"mlx-lm batch_generate x{requests}: {tokens / seconds:.1f} tok/s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("--json", type=pathlib.Path, required=True)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--batch-prompt-tokens", type=int, default=128)
    parser.add_argument("--batch-new-tokens", type=int, default=128)
    args = parser.parse_args()

    model, config = load_model(args.model)
    vocab = config["vocab_size"]
    result = {
        "system": "mlx-lm",
        "device": str(mx.default_device()),
        "single_stream": single_stream(model, vocab, args.prompt_tokens, args.new_tokens),
    }
    print(f"mlx-lm single stream: {result['single_stream']}", flush=True)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    result["batching"] = batching(
        model, vocab, concurrency, args.batch_prompt_tokens, args.batch_new_tokens
    )
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
